"""A task handed to another replica: its ``work`` wake-up rides the round trip of its events.

The giving replica queues the wake-up behind the events of the commit that marked the task leaving
(:meth:`~controlplane.replicas.streams.SharedStream.publish_after`): one pipeline, the XADD first and
the PUBLISH after it, so a replica woken finds the events in the stream (per-task order across the
handover) and the wake-up waits for no second round trip. The replica woken claims the task by id
and runs no search after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from controlplane.domain.events import Event, EventType
from controlplane.domain.model import Priority, now
from controlplane.replicas import streams
from controlplane.replicas.event_notify import CHANNEL, NotifyRelay
from controlplane.replicas.event_stream import EventStream
from controlplane.replicas.wakeups import PostgresWakeupBus, RedisWakeupBus
from controlplane.scheduler.claims import WORK
from controlplane.scheduler.work_hints import WorkHint
from tests.controlplane.replicas.test_event_stream import _submit, pair, replica_pair  # noqa: F401 (pair: a fixture)
from tests.harness.server import wait_for


async def _stream_and_bus(redis_url: str, prefix: str) -> tuple[Any, EventStream, RedisWakeupBus, Any]:
    client = aioredis.Redis.from_url(redis_url)
    # (read on demand, and nothing here asks: the tests read the stream themselves)
    shared = streams.SharedStream(client, f"{prefix}events", 1000, "events", on_demand=True)
    events = EventStream(shared)
    await shared.start()
    listener = aioredis.Redis.from_url(redis_url)
    return client, events, RedisWakeupBus(listener, prefix), listener


async def _monitor_on(client: Any, shown: asyncio.Event, marker: str) -> None:
    """Return once MONITOR shows commands: ``shown`` is set when it shows ``ECHO marker``, sent (again,
    every half second) until it does."""
    deadline = time.monotonic() + 10
    while not shown.is_set():
        assert time.monotonic() < deadline, "MONITOR showed no command within 10 s"
        await client.echo(marker)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(shown.wait(), 0.5)


async def test_a_wake_up_behind_events_is_executed_after_them_and_finds_them(
    redis_url: str, redis_namespace: str
) -> None:
    client, events, bus, listener = await _stream_and_bus(redis_url, redis_namespace)
    monitor_client = aioredis.Redis.from_url(redis_url)
    found: list[tuple[str, bool]] = []
    checks: list[asyncio.Task[None]] = []

    async def check(payload: str) -> None:  # what a woken replica reads: the stream's newest entry
        newest = await client.xrevrange(events.stream.key, "+", "-", count=1)
        found.append((payload, payload.encode() in newest[0][1][b"e"]))

    bus.subscribe(
        "work", lambda payload: checks.append(asyncio.get_running_loop().create_task(check(payload)))
    )
    await asyncio.wait_for(bus.start(), 10)
    commands: list[str] = []
    marker, shown = f"{redis_namespace}:ready", asyncio.Event()

    async def watch_commands() -> None:  # the order Redis executes the commands in
        async with monitor_client.monitor() as monitor:
            async for command in monitor.listen():
                text = str(command.get("command", ""))
                if marker in text:
                    shown.set()
                elif redis_namespace in text:
                    commands.append(text)

    watching = asyncio.create_task(watch_commands())
    try:
        await _monitor_on(client, shown, marker)
        for index in range(20):
            events.send([(Event(EventType.TASK_SUBMITTED, task_id=f"task-{index}"), None)])
            woken = bus.publish_after(events, "work", f"task-{index}")
            assert woken is not None  # an entry waits: the wake-up goes in its pipeline
            await asyncio.wait_for(woken, 10)
            await wait_for(lambda count=index + 1: len(found) == count, 10, message=f"wake-up {index}")
        assert all(present for _, present in found), found
        await asyncio.wait_for(events.stream.flushed(), 10)
        assert bus.publish_after(events, "work", "late") is None  # nothing waits: publish on its own
        await wait_for(lambda: sum("PUBLISH" in c for c in commands) == 20, 10, message="20 PUBLISHes")
        for index in range(20):
            added = next(i for i, c in enumerate(commands) if "XADD" in c and f"task-{index}" in c)
            published = next(i for i, c in enumerate(commands) if "PUBLISH" in c and f"task-{index}" in c)
            assert added < published, commands[added : published + 1]
    finally:
        watching.cancel()
        await asyncio.gather(watching, *checks, return_exceptions=True)
        await bus.close()
        await events.stream.close()
        for each in (client, listener, monitor_client):
            await each.aclose()


async def test_a_wake_up_its_caller_gave_up_is_not_sent(redis_url: str, redis_namespace: str) -> None:
    client, events, bus, listener = await _stream_and_bus(redis_url, redis_namespace)
    heard: list[str] = []
    bus.subscribe("work", heard.append)
    await asyncio.wait_for(bus.start(), 10)
    try:
        events.send([(Event(EventType.TASK_SUBMITTED, task_id="dropped"), None)])
        dropped = bus.publish_after(events, "work", "dropped")
        assert dropped is not None
        dropped.cancel()  # (as a hand-over does when the events took too long)
        events.send([(Event(EventType.TASK_SUBMITTED, task_id="sent"), None)])
        sent = bus.publish_after(events, "work", "sent")
        assert sent is not None
        await asyncio.wait_for(sent, 10)
        await wait_for(lambda: heard, 10, message="the wake-up not given up")
        await asyncio.wait_for(events.stream.flushed(), 10)
        assert heard == ["sent"]
        assert not events.stream._publishes
    finally:
        await bus.close()
        await events.stream.close()
        await client.aclose()
        await listener.aclose()


async def test_a_wake_up_behind_an_append_redis_refuses_is_not_sent(
    redis_url: str, redis_namespace: str
) -> None:
    """The stream's key holds a string, so its XADD is refused: the PUBLISH behind it is not run (a
    woken replica would look for entries that are not there), neither then nor as the write is retried."""
    client, events, bus, listener = await _stream_and_bus(redis_url, redis_namespace)
    heard: list[str] = []
    bus.subscribe("work", heard.append)
    await asyncio.wait_for(bus.start(), 10)
    refused: asyncio.Future[None] | None = None
    try:
        await client.set(events.stream.key, "not a stream")
        events.send([(Event(EventType.TASK_SUBMITTED, task_id="refused"), None)])
        refused = bus.publish_after(events, "work", "refused")
        assert refused is not None
        await wait_for(lambda: events.stream.failing, 10, message="the refused write")
        await bus.publish("work", "after")  # heard after anything published before it
        await wait_for(lambda: "after" in heard, 10, message="the wake-up published after the refusal")
        assert heard == ["after"]
        assert not refused.done()  # still waiting with its entries
    finally:
        if refused is not None:
            refused.cancel()
        await client.delete(events.stream.key)
        await bus.close()
        await events.stream.close()
        await client.aclose()
        await listener.aclose()


@pytest.fixture
async def calm_pair(tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str) -> Any:
    """Replicas A (no agent) and B (an echo agent), their claims polls out of the way."""
    shared = {
        "database.primary_url": postgres_url,
        "redis.url": redis_url,
        "redis.key_prefix": redis_namespace,
        "replicas.claim_poll_interval": 600.0,
    }
    async with replica_pair(tmp_path, **shared) as replicas:
        yield replicas


async def test_a_task_handed_over_is_claimed_by_id_and_no_search_follows(calm_pair: Any) -> None:
    """Each task A hands over costs B one claim statement (by id): the dispatch pass that assigns it leaves
    B's agent with free slots, and no search claim then runs (its commit would wait behind one)."""
    a, b, stubs_a, _, _ = calm_pair
    claims = b.engine.claims
    await wait_for(lambda: claims._pass is None or claims._pass.done(), 10, message="B's first pass")
    for index in range(5):
        passes, by_id = claims.passes, claims.claimed_by_id
        name = await _submit(stubs_a, f"handed over {index}")

        async def done(name: str = name) -> bool:
            reply = await stubs_a.tasks.GetTask(t.GetTaskRequest(name=name), timeout=5)
            return reply.task.status == enums.TASK_STATUS_COMPLETED

        await wait_for(done, 30, message=f"task {index} completed on B")
        await b.engine.durable()
        assert claims.claimed_by_id == by_id + 1
        assert claims.passes == passes + 1, "one pass: the claim by id, no search after it"
    assert a.engine.claims.released >= 5 and not a.engine.tasks


async def test_a_claim_by_id_that_takes_fewer_than_named_is_followed_by_a_search(calm_pair: Any) -> None:
    """A wake-up naming a task B cannot take (no such task: as one claimed elsewhere first) leaves B's
    claim by id with fewer than named, so it says nothing of what else is claimable: the next dispatch
    pass with room runs a search claim."""
    a, b, _, _, _ = calm_pair
    claims = b.engine.claims
    await wait_for(lambda: claims._pass is None or claims._pass.done(), 10, message="B's first pass")
    passes, by_id = claims.passes, claims.claimed_by_id
    hint = WorkHint(origin=a.engine.claims.holder, ids=[f"t{uuid.uuid4().hex[:24]}"])
    hint.add(int(Priority.NORMAL), now(), None)
    await a.engine.claims.bus.publish(WORK, hint.encode())
    await wait_for(
        lambda: claims.passes > passes and claims._pass is not None and claims._pass.done(),
        10,
        message="B's claim by id",
    )
    assert claims.claimed_by_id == by_id  # it took none of those named
    b.engine._kick()  # a dispatch pass: B's agent has room
    await wait_for(lambda: claims.passes == passes + 2, 10, message="the search claim after it")


async def test_without_redis_the_wake_up_is_notified_behind_the_events(postgres_url: str) -> None:
    """Over LISTEN/NOTIFY the wake-up goes in the statement that NOTIFYs the events, after them: one
    listening connection receives them in that order, at the commit (a replica hears the events and the
    wake-ups on two connections, between which the order is not assured)."""
    import psycopg
    from psycopg import sql

    relay = NotifyRelay(postgres_url)
    bus = PostgresWakeupBus(postgres_url, prefix=f"t{uuid.uuid4().hex[:8]}_")
    listener = await psycopg.AsyncConnection.connect(relay.conninfo, autocommit=True)
    heard: list[str] = []
    try:
        for channel in (CHANNEL, bus.channel("work")):
            await listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        await relay.start()
        for index in range(10):
            relay.send([Event(EventType.TASK_SUBMITTED, task_id=f"task-{index}")])
            woken = bus.publish_after(relay, "work", f"wake-{index}")
            assert woken is not None
            await asyncio.wait_for(woken, 10)
        await asyncio.wait_for(relay.flushed(), 10)
        assert bus.publish_after(relay, "work", "late") is None  # nothing waits: notify on its own

        async def hear() -> None:
            async for note in listener.notifies():
                if note.channel == CHANNEL and relay.origin in note.payload:
                    heard.append(next(f"task-{i}" for i in range(10) if f'"task-{i}"' in note.payload))
                elif note.channel == bus.channel("work"):
                    heard.append(note.payload)
                if len(heard) == 20:
                    return

        await asyncio.wait_for(hear(), 10)
        for index in range(10):
            assert heard.index(f"task-{index}") < heard.index(f"wake-{index}"), heard
    finally:
        await relay.close()
        await bus.close()
        await listener.close()
