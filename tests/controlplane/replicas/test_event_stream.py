"""Events across replicas: two control planes on one PostgreSQL and one Redis see each other's events.

Replica B holds the task (submitted on B, run by an agent connected to B); replica A watches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent_sdk.builtin import EchoAgent
from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from agent_sdk.worker import Worker
from controlplane.app import build_app
from controlplane.domain.events import Event, EventType
from controlplane.replicas.event_stream import decode_event, decode_events, encode_event, encode_events
from tests.controlplane.access.test_access import user_key
from tests.controlplane.api.test_stream_resume import reason_of
from tests.controlplane.replicas.test_redis import private_redis  # noqa: F401 (a fixture)
from tests.harness.server import Stubs, admin_key, empty_postgres, make_settings, start_app, wait_for

PROGRESS = {enums.EVENT_TYPE_SUBTASK_PROGRESS, enums.EVENT_TYPE_SUBTASK_OUTPUT}


class GatedEcho(EchoAgent):
    """Echo, once the test opens the gate (so a watcher can start before the work ends)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def handle(self, ctx: Any) -> str:
        await self.gate.wait()
        return await super().handle(ctx)


@contextlib.asynccontextmanager
async def replica_pair(tmp_path: Path, **shared: Any) -> AsyncIterator[Any]:
    """Replicas A and B with the ``shared`` settings (B with a gated echo agent, its gate open)."""
    build_app(make_settings(tmp_path / "m", **shared)).storage.close()  # migrates
    empty_postgres(shared["database.primary_url"])
    a = await start_app(make_settings(tmp_path / "a", **shared))
    b = await start_app(make_settings(tmp_path / "b", **shared))
    agent = GatedEcho()
    agent.gate.set()
    worker = Worker(agent, b.address)
    runner = asyncio.create_task(worker.run())
    stubs_a, stubs_b = Stubs(a.address), Stubs(b.address)
    try:
        await wait_for(lambda: b.engine.sessions, 15, message="the agent on B")
        yield a, b, stubs_a, stubs_b, agent
    finally:
        await worker.shutdown(0.5)
        await runner
        await stubs_a.close()
        await stubs_b.close()
        await b.stop(grace=1.0)
        await a.stop(grace=1.0)


@pytest.fixture
async def pair(tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str) -> AsyncIterator[Any]:
    """Replicas A and B on the session's PostgreSQL and Redis (B with an echo agent)."""
    shared = {
        "database.primary_url": postgres_url,
        "redis.url": redis_url,
        "redis.key_prefix": redis_namespace,
    }
    async with replica_pair(tmp_path, **shared) as replicas:
        yield replicas


@contextlib.asynccontextmanager
async def one_replica(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str, **extra: Any
) -> AsyncIterator[tuple[Stubs, Any]]:
    """One replica on PostgreSQL and Redis, its stubs, and a Redis client to write its stream directly."""
    import redis

    settings = {
        "database.primary_url": postgres_url,
        "redis.url": redis_url,
        "redis.key_prefix": redis_namespace,
        **extra,
    }
    app = build_app(make_settings(tmp_path / "a", **settings))
    empty_postgres(postgres_url)
    await app.start("127.0.0.1:0")
    stubs = Stubs(app.address)
    client = redis.Redis.from_url(redis_url)
    try:
        yield stubs, client
    finally:
        client.close()
        await stubs.close()
        await app.stop(grace=1.0)


async def _events_of(stream: Any, task: str, until: str = "TASK_STATUS_COMPLETED") -> list[m.Event]:
    seen: list[m.Event] = []
    while not seen or seen[-1].to_status != until:
        event = (await stream.read()).event
        if event.task == task and event.type not in PROGRESS:
            seen.append(event)
    return seen


async def _submit(stubs: Stubs, description: str) -> str:
    reply = await stubs.tasks.SubmitTask(t.SubmitTaskRequest(task=m.Task(description=description)), timeout=5)
    return reply.task.name


async def test_a_replica_sees_the_events_of_a_task_held_by_another(pair: Any) -> None:
    a, b, stubs_a, stubs_b, _ = pair
    assert not a.engine.watchers.stream.stream.reading  # nobody watches on A yet: A reads nothing
    on_a = stubs_a.system.WatchEvents(system_pb.WatchEventsRequest(), timeout=30)
    on_b = stubs_b.system.WatchEvents(system_pb.WatchEventsRequest(), timeout=30)
    await wait_for(lambda: a.engine.event_listeners and b.engine.event_listeners, 5, message="the listeners")
    name = await _submit(stubs_b, "held by B")
    seen_a = await asyncio.wait_for(_events_of(on_a, name), 20)
    seen_b = await asyncio.wait_for(_events_of(on_b, name), 20)
    on_a.cancel()
    on_b.cancel()
    assert name.removeprefix("tasks/") not in a.engine.tasks  # A never held it
    # One order and one id per event, whichever replica is asked: the stream's.
    assert [(e.id, e.type, e.to_status) for e in seen_a] == [(e.id, e.type, e.to_status) for e in seen_b]
    assert seen_a[0].type == enums.EVENT_TYPE_TASK_SUBMITTED
    ms = [tuple(map(int, e.id.split("-"))) for e in seen_a]
    assert ms == sorted(ms) and len(set(ms)) == len(ms)

    # Resuming on A from an id B sent replays exactly what followed it.
    resumed = stubs_a.system.WatchEvents(
        system_pb.WatchEventsRequest(task=name, after_event_id=seen_b[1].id), timeout=10
    )
    replayed = await asyncio.wait_for(_events_of(resumed, name), 10)
    resumed.cancel()
    assert [e.id for e in replayed] == [e.id for e in seen_b[2:]]


class _SlowWrites:
    """A Redis client whose stream writes take ``delay`` seconds longer (a slow link to Redis)."""

    def __init__(self, client: Any, delay: float):
        self._client = client
        self._delay = delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    async def xadd(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(self._delay)
        return await self._client.xadd(*args, **kwargs)

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        pipe = self._client.pipeline(*args, **kwargs)
        execute = pipe.execute

        async def slow_execute(*a: Any, **k: Any) -> Any:
            await asyncio.sleep(self._delay)
            return await execute(*a, **k)

        pipe.execute = slow_execute
        return pipe


async def test_events_keep_their_order_across_a_handover(pair: Any) -> None:
    """A gives a task up (no agent there) and B claims and runs it at once: A's events of the task
    reach the stream first, however slowly A writes to Redis."""
    a, b, stubs_a, stubs_b, _ = pair
    shared = a.engine.watchers.stream.stream
    shared.client = _SlowWrites(shared.client, 0.3)
    on_b = stubs_b.system.WatchEvents(system_pb.WatchEventsRequest(), timeout=30)
    await wait_for(lambda: b.engine.event_listeners, 5, message="the listener on B")
    names = [await _submit(stubs_a, f"given up by A, run by B {n}") for n in range(3)]
    order: dict[str, list[m.Event]] = {name: [] for name in names}
    wanted = {"TASK_STATUS_PENDING", "TASK_STATUS_QUEUED", "TASK_STATUS_COMPLETED"}

    async def collect() -> None:
        while not all(wanted <= {e.to_status for e in seen} for seen in order.values()):
            event = (await on_b.read()).event
            if event.task in order and event.type not in PROGRESS:
                order[event.task].append(event)

    try:
        await asyncio.wait_for(collect(), 30)
    finally:
        on_b.cancel()
    rank = {
        "TASK_STATUS_PENDING": 0,
        "TASK_STATUS_QUEUED": 1,
        "TASK_STATUS_RUNNING": 2,
        "TASK_STATUS_COMPLETED": 3,
    }
    for name, seen in order.items():
        assert b.engine.claims is not None and name.removeprefix("tasks/") not in a.engine.tasks
        statuses = [e.to_status for e in seen if e.to_status in rank]
        assert statuses[0] == "TASK_STATUS_PENDING" and "TASK_STATUS_QUEUED" in statuses, statuses
        assert statuses == sorted(statuses, key=rank.__getitem__), f"{name}: {statuses}"
        ids = [tuple(map(int, e.id.split("-"))) for e in seen]
        assert ids == sorted(ids)  # one stream order


async def test_watch_task_on_a_replica_that_does_not_hold_it(pair: Any) -> None:
    a, b, stubs_a, stubs_b, agent = pair
    agent.gate.clear()
    name = await _submit(stubs_b, "watched on A")
    watch = stubs_a.tasks.WatchTask(t.WatchTaskRequest(name=name), timeout=30)
    snapshot = await watch.read()
    assert not snapshot.HasField("event") and snapshot.task.name == name
    assert snapshot.task.status != enums.TASK_STATUS_COMPLETED
    agent.gate.set()
    replies = []
    while (reply := await watch.read()) != grpc.aio.EOF:  # ends by itself once the task finished
        replies.append(reply)
    assert replies[-1].event.to_status == "TASK_STATUS_COMPLETED"
    assert replies[-1].task.status == enums.TASK_STATUS_COMPLETED
    assert all("-" in r.event.id for r in replies)

    # Resuming on A after the first change B committed: the rest, then the end.
    again = stubs_a.tasks.WatchTask(
        t.WatchTaskRequest(name=name, after_event_id=replies[0].event.id), timeout=10
    )
    assert [r.event.id async for r in again] == [r.event.id for r in replies[1:]]


async def test_resume_ids_are_checked_precisely(pair: Any) -> None:
    a, _, stubs_a, stubs_b, _ = pair
    events = stubs_a.system.WatchEvents(system_pb.WatchEventsRequest(), timeout=30)
    await wait_for(lambda: a.engine.event_listeners, 5, message="the listener")
    held = await _events_of(events, await _submit(stubs_b, "one task"))  # the stream holds entries
    events.cancel()
    entry = held[0].id.rsplit("-", 1)[0]
    cases = {
        "1.5": (
            grpc.StatusCode.FAILED_PRECONDITION,
            "ERROR_REASON_RESUME_POINT_LOST",
            "did not cross replicas",
        ),
        "abc": (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_FIELD", "MILLISECONDS-SEQUENCE"),
        "99999999999999-0-0": (
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_INVALID_FIELD",
            "names no event sent yet",
        ),
        f"{entry}-999": (
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_INVALID_FIELD",
            "names no event sent",
        ),
        "1-0-0": (grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_RESUME_POINT_LOST", "is no longer kept"),
    }
    for value, (code, reason, text) in cases.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await anext(
                aiter(
                    stubs_a.system.WatchEvents(system_pb.WatchEventsRequest(after_event_id=value), timeout=5)
                )
            )
        assert (caught.value.code(), reason_of(caught.value)) == (code, reason), value
        assert text in (caught.value.details() or ""), value


async def test_an_id_whose_successors_were_trimmed_is_lost(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str
) -> None:
    async with one_replica(
        tmp_path, postgres_url, redis_url, redis_namespace, **{"redis.stream_max_len": 10}
    ) as (stubs, client):
        first = client.xadd(f"{redis_namespace}events", {"e": encode_events([Event(EventType.TASK_UPDATED)])})
        body = encode_events([Event(EventType.TASK_UPDATED)])
        for _ in range(300):  # as the replicas write (MAXLEN ~ trims whole nodes of 100 entries)
            client.xadd(f"{redis_namespace}events", {"e": body}, maxlen=10, approximate=True)
        assert client.xinfo_stream(f"{redis_namespace}events")["first-entry"][0] != first
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            request = system_pb.WatchEventsRequest(after_event_id=f"{first.decode()}-0")
            await anext(aiter(stubs.system.WatchEvents(request, timeout=5)))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(caught.value) == "ERROR_REASON_RESUME_POINT_LOST"
        assert "is no longer kept" in (caught.value.details() or "")


def test_events_cross_the_stream_unchanged() -> None:
    event = Event(
        EventType.SUBTASK_STATUS_CHANGED,
        task_id="t1",
        subtask_id="s1",
        agent_id="a1",
        from_status="QUEUED",
        to_status="RUNNING",
        message="m",
        data={"k": [1, "v"]},
        time=12.5,
        owner="users/ann",
    )
    back = decode_event(encode_event(event), "5-1")
    assert back == Event(**{**event.__dict__, "stream_id": "5-1"})


async def test_a_redis_outage_ends_watchers_resumably_and_loses_nothing(
    tmp_path: Path,
    postgres_url: str,
    private_redis: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    url, server = private_redis
    await wait_for(lambda: _answers(url), 10, message="the private Redis to answer")
    settings = make_settings(tmp_path / "a", **{"database.primary_url": postgres_url, "redis.url": url})
    app = build_app(settings)
    empty_postgres(postgres_url)
    await app.start("127.0.0.1:0")
    stubs = Stubs(app.address)
    worker = Worker(EchoAgent(), app.address)
    runner = asyncio.create_task(worker.run())
    try:
        watch = stubs.system.WatchEvents(system_pb.WatchEventsRequest(), timeout=60)
        await wait_for(lambda: app.engine.event_listeners, 5, message="the listener")
        before = await _submit(stubs, "before the outage")
        last = (await asyncio.wait_for(_events_of(watch, before), 20))[-1].id

        os.kill(server.pid, signal.SIGSTOP)  # Redis stops answering (and keeps its data)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                while True:
                    await watch.read()
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "after_event_id" in (caught.value.details() or "")
            # The control plane goes on: work is accepted and done meanwhile.
            during = await _submit(stubs, "during the outage")

            async def completed() -> bool:
                reply = await stubs.tasks.GetTask(t.GetTaskRequest(name=during), timeout=5)
                return reply.task.status == enums.TASK_STATUS_COMPLETED

            await wait_for(completed, 20, message="the task run during the outage")
        finally:
            os.kill(server.pid, signal.SIGCONT)
        # Resumed where it broke: the changes committed during the outage, each once, in order.
        resumed = stubs.system.WatchEvents(system_pb.WatchEventsRequest(after_event_id=last), timeout=60)
        seen = await asyncio.wait_for(_events_of(resumed, during), 30)
        resumed.cancel()
        assert seen[0].type == enums.EVENT_TYPE_TASK_SUBMITTED
        assert len({e.id for e in seen}) == len(seen)
        changes = [(e.type, e.subtask, e.from_status, e.to_status) for e in seen]
        assert len(set(changes)) == len(changes)
    finally:
        await worker.shutdown(0.5)
        await runner
        await stubs.close()
        await app.stop(grace=1.0)


def _answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


async def test_a_viewer_on_one_replica_sees_only_their_tasks_of_another(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str
) -> None:
    shared = {
        "database.primary_url": postgres_url,
        "redis.url": redis_url,
        "redis.key_prefix": redis_namespace,
        "security.auth": "required",
    }
    build_app(make_settings(tmp_path / "m", **shared)).storage.close()
    empty_postgres(postgres_url)
    a = await start_app(make_settings(tmp_path / "a", **shared))
    b = await start_app(make_settings(tmp_path / "b", **shared))
    key_a, key_b = (
        await user_key(a, "dev-a@example.com", "developer"),
        await user_key(a, "dev-b@example.com", "developer"),
    )
    clients = [
        Client(a.address, token=key_a),  # dev-a, watching on A
        Client(a.address, token=await admin_key(a)),  # an admin (task:view-all), watching on A
        Client(b.address, token=key_a),  # dev-a, working on B
        Client(b.address, token=key_b),  # dev-b, working on B
    ]
    watch_a, watch_admin, dev_a, dev_b = clients
    seen: dict[str, list[m.Event]] = {"dev-a": [], "admin": []}

    async def read(client: Client, into: list[m.Event]) -> None:
        async for event in client.watch_events(timeout=60):
            into.append(event)

    readers = [
        asyncio.create_task(read(watch_a, seen["dev-a"])),
        asyncio.create_task(read(watch_admin, seen["admin"])),
    ]
    try:
        await wait_for(lambda: len(a.engine.event_listeners) == 2, message="both watchers on A")
        theirs = await dev_b.submit_task(description="dev-b's secret plans")
        mine = await dev_a.submit_task(description="dev-a's own work")
        await dev_b.cancel_task(theirs.name)
        await dev_a.cancel_task(mine.name)
        for name in seen:  # B wrote dev-b's events first: once dev-a's cancellation is in, they were read too
            await wait_for(
                lambda name=name: any(
                    e.task == mine.name and e.to_status == "TASK_STATUS_CANCELLED" for e in seen[name]
                ),
                15,
                message=f"dev-a's cancellation seen by {name}",
            )
        assert {e.task for e in seen["dev-a"]} == {mine.name}
        assert {e.task for e in seen["admin"]} == {mine.name, theirs.name}
        # Resuming on A with an id of dev-b's event shows dev-a nothing of dev-b's either.
        first = next(e for e in seen["admin"] if e.task == theirs.name)
        again = [
            e async for e in _until(watch_a.watch_events(after_event_id=first.id, timeout=10), mine.name)
        ]
        assert {e.task for e in again} == {mine.name}
        with pytest.raises(MaosRpcError) as caught:  # and dev-b's task cannot be watched on A
            await anext(aiter(watch_a.watch_task(theirs.name, timeout=5)))
        assert caught.value.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED)
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for client in clients:
            await client.close()
        await b.stop(grace=1.0)
        await a.stop(grace=1.0)


async def _until(events: Any, task: str) -> AsyncIterator[m.Event]:
    async for event in events:
        yield event
        if event.task == task and event.to_status == "TASK_STATUS_CANCELLED":
            return


async def test_events_dropped_while_redis_was_away_are_said_lost(
    redis_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis.asyncio as aioredis

    from controlplane.errors import FailedPrecondition
    from controlplane.replicas import streams
    from controlplane.replicas.event_stream import EventStream

    monkeypatch.setattr(streams, "MAX_OUTBOX", 3)
    client = aioredis.Redis.from_url(redis_url)
    shared = streams.SharedStream(client, f"{redis_namespace}events", 1000, "events")
    events = EventStream(shared)
    delivered: list[Event] = []
    severed: list[Exception] = []
    events.deliver = lambda event, snapshots: delivered.append(event)
    events.sever = severed.append
    try:
        await shared.start()
        events.send([(Event(EventType.TASK_UPDATED, task_id="before"), None)])
        await wait_for(lambda: delivered, 10, message="the first event back")
        before = delivered[0].stream_id
        await shared.close()  # "Redis away": nothing is written while five groups are committed
        for n in range(5):
            events.send([(Event(EventType.TASK_UPDATED, task_id=f"t{n}"), None)])
        await shared.start()  # back: the gap first, then the three groups the outbox kept
        await wait_for(lambda: len(delivered) == 4, 10, message="the kept groups")
        assert [e.task_id for e in delivered[1:]] == ["t2", "t3", "t4"]
        [error] = severed  # live watchers were ended...
        assert isinstance(error, FailedPrecondition) and error.reason == "ERROR_REASON_RESUME_POINT_LOST"
        assert "2 commit groups of events were lost" in error.message
        with pytest.raises(FailedPrecondition) as caught:  # ...and cannot resume from before the gap
            await events.after(before)
        assert caught.value.reason == "ERROR_REASON_RESUME_POINT_LOST"
        assert [e.task_id for e in await events.after(delivered[1].stream_id)] == ["t3", "t4"]
    finally:
        await shared.close()
        await client.aclose()


async def test_a_resume_too_far_back_is_refused_not_read_whole(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume replays at most ``MAX_REPLAY`` entries: one caller's memory stays bounded."""
    from controlplane.replicas import streams

    monkeypatch.setattr(streams, "MAX_REPLAY", 50)
    async with one_replica(tmp_path, postgres_url, redis_url, redis_namespace) as (stubs, client):
        body = encode_events([Event(EventType.TASK_UPDATED)])
        first = client.xadd(f"{redis_namespace}events", {"e": body})
        for _ in range(40):  # within the bound: the resume replays them
            client.xadd(f"{redis_namespace}events", {"e": body})
        request = system_pb.WatchEventsRequest(after_event_id=f"{first.decode()}-0")
        call = stubs.system.WatchEvents(request, timeout=5)
        assert (await anext(aiter(call))).event.id  # the first replayed event
        call.cancel()
        for _ in range(40):  # now 80 entries after it: past the bound
            client.xadd(f"{redis_namespace}events", {"e": body})
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await anext(aiter(stubs.system.WatchEvents(request, timeout=5)))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(caught.value) == "ERROR_REASON_RESUME_POINT_LOST"
        assert "too far back" in (caught.value.details() or "")


async def test_the_stream_is_read_only_while_someone_watches(
    redis_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica without watchers neither reads nor decodes the stream; a watcher gets every entry
    written after it subscribed; reading stops ``LINGER`` seconds after the last one left."""
    import redis.asyncio as aioredis

    from controlplane.replicas import streams
    from controlplane.replicas.event_stream import EventStream

    monkeypatch.setattr(streams, "LINGER", 0.2)
    client = aioredis.Redis.from_url(redis_url)
    shared = streams.SharedStream(client, f"{redis_namespace}events", 1000, "events", on_demand=True)
    events = EventStream(shared)
    delivered: list[str] = []
    events.deliver = lambda event, snapshots: delivered.append(event.task_id)
    try:
        await shared.start()
        events.send([(Event(EventType.TASK_UPDATED, task_id="unwatched"), None)])
        await shared.flushed()
        assert not shared.reading
        await events.want()
        events.send([(Event(EventType.TASK_UPDATED, task_id="watched"), None)])
        await wait_for(lambda: delivered, 10, message="the watched event")
        assert delivered == ["watched"]
        await events.want()  # a second watcher: one reader
        events.unwant()
        events.unwant()
        assert shared.reading  # for LINGER seconds still
        await wait_for(lambda: not shared.reading, 5, message="reading to stop")
        events.send([(Event(EventType.TASK_UPDATED, task_id="after"), None)])
        await shared.flushed()
        await events.want()  # starts after the newest entry: "after" was before it
        events.send([(Event(EventType.TASK_UPDATED, task_id="again"), None)])
        await wait_for(lambda: len(delivered) == 2, 10, message="the event after the restart")
        assert delivered == ["watched", "again"]
        events.unwant()
    finally:
        await shared.close()
        await client.aclose()


async def test_watching_while_redis_does_not_answer_is_unavailable() -> None:
    import redis.asyncio as aioredis

    from controlplane.errors import Unavailable
    from controlplane.replicas import streams

    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    shared = streams.SharedStream(client, "maos-test:dead:events", 1000, "events", on_demand=True)
    try:
        await shared.start()
        with pytest.raises(Unavailable) as caught:
            await shared.want()
        assert "Redis does not answer" in caught.value.message
        assert not shared.reading and shared._wanted == 0
    finally:
        await shared.close()
        await client.aclose()


async def _submit_batch(stubs: Stubs, count: int) -> list[str]:
    requests = [t.SubmitTaskRequest(task=m.Task(description=f"batch {i}")) for i in range(count)]
    request = t.BatchSubmitTasksRequest(requests=requests, request_id=str(uuid.uuid4()))
    reply = await stubs.tasks.BatchSubmitTasks(request, timeout=10)
    return [task.name.removeprefix("tasks/") for task in reply.tasks]


async def test_a_batch_sent_away_at_its_submit_is_one_entry_of_the_stream(
    pair: Any, redis_url: str, redis_namespace: str
) -> None:
    """A has no agent: a batch submitted there is written leaving in its submit's commit, and the events
    of that commit go to the stream as one group (one entry), as any commit's do."""
    import redis.asyncio as aioredis

    a, _, stubs_a, _, _ = pair
    sent_away = a.engine.claims.sent_away
    calls: list[int] = []
    a.engine.claims.sent_away = lambda tasks: (calls.append(len(tasks)), sent_away(tasks))  # type: ignore[method-assign]
    ids = await _submit_batch(stubs_a, 4)
    assert calls == [4]  # written leaving in the submit's commit
    await asyncio.wait_for(a.engine.watchers.stream.stream.flushed(), 10)
    client = aioredis.Redis.from_url(redis_url)
    try:
        entries = await client.xrange(f"{redis_namespace}events", "-", "+")
    finally:
        await client.aclose()
    groups = []
    for stream_id, fields in entries:
        decoded = [
            e for e in decode_events(fields[b"e"], stream_id.decode()) if e.type == EventType.TASK_SUBMITTED
        ]
        if any(e.task_id in ids for e in decoded):
            groups.append(sorted(e.task_id for e in decoded))
    assert groups == [sorted(ids)]
