"""The replicas' bus: a request reaches the replica that holds its target, over Redis and NOTIFY."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controlplane.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from controlplane.replicas.bus import (
    POSTGRES_MAX_PAYLOAD,
    REDIS_MAX_PAYLOAD,
    ReplicaBus,
    decode_error,
    encode_error,
    reply_topic,
)
from controlplane.replicas.wakeups import TOPIC, PostgresWakeupBus, RedisWakeupBus
from tests.harness.server import wait_for


class Replica:
    """One replica's bus and the agents "connected" to it."""

    def __init__(self, bus: ReplicaBus, agents: set[str]):
        self.bus = bus
        self.agents = agents
        self.seen: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        bus.handle("agent", self.serve)

    async def serve(self, body: dict[str, Any]) -> dict[str, Any] | None:
        self.seen.append(body)
        if body["agent"] not in self.agents:
            return None
        if body.get("op") == "forbidden":
            raise PermissionDenied("agents/a1 belongs to bob", metadata={"permission": "agent:manage-all"})
        if body.get("op") == "invalid":
            raise InvalidArgument("grace must be between 0 and 86400 seconds", field="grace")
        if body.get("op") == "slow":  # a restart waiting for its new process
            self.started.set()
            await self.release.wait()
        if body.get("op") == "huge":
            return {"text": "x" * (REDIS_MAX_PAYLOAD + 10)}
        return {"paused": body["agent"], "by": self.bus.replica}


@pytest.fixture(params=["redis", "postgres"])
async def replicas(request: pytest.FixtureRequest) -> AsyncIterator[list[Replica]]:
    """Three replicas on one transport: ``a`` asks; ``b`` holds agent a1; ``c`` holds nothing."""
    clients: list[Any] = []
    if request.param == "redis":
        import redis.asyncio as aioredis

        namespace = request.getfixturevalue("redis_namespace")
        url = request.getfixturevalue("redis_url")

        def transport() -> Any:
            client = aioredis.Redis.from_url(url)
            clients.append(client)
            return RedisWakeupBus(client, namespace, max_payload=REDIS_MAX_PAYLOAD)
    else:
        url = request.getfixturevalue("postgres_url")
        prefix = f"t{uuid.uuid4().hex[:8]}_"

        def transport() -> Any:
            return PostgresWakeupBus(url, prefix, max_payload=POSTGRES_MAX_PAYLOAD)

    made = [
        Replica(ReplicaBus(transport(), name, timeout=2.0, peers=lambda: 2), agents)
        for name, agents in (("cp-a", set()), ("cp-b", {"a1"}), ("cp-c", set()))
    ]
    for replica in made:
        await replica.bus.start()
    yield made
    for replica in made:
        await replica.bus.close()
    for client in clients:
        await client.aclose()


async def test_the_holder_answers_and_the_others_decline(replicas: list[Replica]) -> None:
    a, b, c = replicas
    answer = await a.bus.ask("agent", {"agent": "a1", "op": "pause"})
    assert answer is not None and not answer.truncated
    assert (answer.replica, answer.result) == ("cp-b", {"paused": "a1", "by": "cp-b"})
    assert a.seen == []  # a replica never handles its own request
    assert [body["agent"] for body in b.seen + c.seen] == ["a1", "a1"]


async def test_nobody_holding_it_is_known_once_every_peer_declined(replicas: list[Replica]) -> None:
    a, _, _ = replicas
    started = time.monotonic()
    assert await a.bus.ask("agent", {"agent": "ghost", "op": "pause"}) is None
    assert time.monotonic() - started < 1.5  # both peers said so: the 2 s deadline is not waited out


async def test_a_request_for_one_replica_is_seen_by_it_alone_and_its_decline_ends_the_wait(
    replicas: list[Replica],
) -> None:
    a, b, c = replicas
    answer = await a.bus.ask("agent", {"agent": "a1", "op": "pause"}, only="cp-b")
    assert answer is not None and answer.replica == "cp-b"
    started = time.monotonic()
    assert await a.bus.ask("agent", {"agent": "ghost", "op": "pause"}, only="cp-b") is None
    assert time.monotonic() - started < 1.5  # (cp-c, which would answer nothing, is not waited for)
    assert await a.bus.ask("agent", {"agent": "a1", "op": "pause"}, only="cp-c") is None
    assert [body["agent"] for body in b.seen] == ["a1", "ghost"]
    assert [body["agent"] for body in c.seen] == ["a1"]


async def test_the_holders_errors_are_raised_by_the_asker(replicas: list[Replica]) -> None:
    a, _, _ = replicas
    with pytest.raises(PermissionDenied) as denied:
        await a.bus.ask("agent", {"agent": "a1", "op": "forbidden"})
    assert denied.value.message == "agents/a1 belongs to bob"
    assert denied.value.metadata == {"permission": "agent:manage-all"}
    with pytest.raises(InvalidArgument) as invalid:
        await a.bus.ask("agent", {"agent": "a1", "op": "invalid"})
    assert [(v.field, v.description) for v in invalid.value.violations] == [
        ("grace", "grace must be between 0 and 86400 seconds")
    ]


async def test_an_answer_too_long_for_the_transport_is_marked_truncated(replicas: list[Replica]) -> None:
    a, _, _ = replicas
    answer = await a.bus.ask("agent", {"agent": "a1", "op": "huge"})
    assert answer is not None and answer.truncated and answer.result == {}


async def test_a_request_too_long_for_the_transport_is_refused(replicas: list[Replica]) -> None:
    a, _, _ = replicas
    with pytest.raises(InvalidArgument, match="another replica can be sent at most"):
        await a.bus.ask("agent", {"agent": "a1", "pad": "y" * (a.bus.transport.max_payload + 1)})


async def test_without_a_count_of_peers_nobody_is_learnt_at_the_deadline(
    redis_url: str, redis_namespace: str
) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    lonely = ReplicaBus(RedisWakeupBus(client, redis_namespace), "cp-alone", timeout=0.3)
    await lonely.start()
    try:
        started = time.monotonic()
        assert await lonely.ask("agent", {"agent": "a1"}) is None
        assert 0.3 <= time.monotonic() - started < 2.0
    finally:
        await lonely.close()
        await client.aclose()


async def test_an_unreachable_redis_is_unavailable_at_once() -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    bus = ReplicaBus(
        RedisWakeupBus(client, "maos:"), "cp-a", timeout=30.0, where="Redis at redis://127.0.0.1:1/0"
    )
    await bus.start()  # the subscriber keeps reconnecting in the background
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="Redis at redis://127.0.0.1:1/0 is not connected"):
            await bus.ask("agent", {"agent": "a1"})
        assert time.monotonic() - started < 1.0  # not the 30 s deadline
    finally:
        await bus.close()
        await client.aclose()


async def test_an_unreachable_database_is_unavailable_at_once() -> None:
    bus = ReplicaBus(
        PostgresWakeupBus("postgresql://postgres@127.0.0.1:1/test"),
        "cp-a",
        timeout=30.0,
        where="PostgreSQL LISTEN/NOTIFY",
    )
    await bus.start()
    try:
        with pytest.raises(Unavailable, match="PostgreSQL LISTEN/NOTIFY is not connected"):
            await bus.ask("agent", {"agent": "a1"})
    finally:
        await bus.close()


async def test_an_unstarted_bus_is_unavailable() -> None:
    with pytest.raises(Unavailable):
        await ReplicaBus(None, "cp-a").ask("agent", {"agent": "a1"})


def test_errors_round_trip_and_reply_topics_are_topics() -> None:
    again = decode_error(
        encode_error(NotFound("agent agents/x does not exist", reason="ERROR_REASON_AGENT_NOT_FOUND"))
    )
    assert type(again) is NotFound
    assert (again.message, again.reason) == ("agent agents/x does not exist", "ERROR_REASON_AGENT_NOT_FOUND")
    assert TOPIC.match(reply_topic("Replica with spaces/and:colons" * 5))
    assert reply_topic("cp-a") != reply_topic("cp-b")


def count_working(replica: Replica) -> list[str]:
    """Record the "working" answers ``replica`` has published."""
    sent: list[str] = []
    publish = replica.bus.transport.publish

    async def counting(topic: str, payload: str = "") -> None:
        await publish(topic, payload)
        if '"h":2' in payload:
            sent.append(payload)  # published: on its way to the asker

    replica.bus.transport.publish = counting
    return sent


async def test_a_holder_at_work_keeps_the_asker_waiting_past_its_deadline(replicas: list[Replica]) -> None:
    a, b, _ = replicas
    working = count_working(b)
    started = time.monotonic()
    asking = asyncio.get_running_loop().create_task(
        a.bus.ask("agent", {"agent": "a1", "op": "slow"}, timeout=0.3)
    )
    # "working" every 0.1 s: six of them take the holder well past the asker's 0.3 s
    await wait_for(lambda: len(working) >= 6, 10, message="six working answers")
    assert not asking.done()
    b.release.set()
    answer = await asking
    assert answer is not None and answer.result == {"paused": "a1", "by": "cp-b"}
    assert time.monotonic() - started > 0.5


async def test_a_holder_falling_silent_mid_call_is_unavailable_not_nobody(replicas: list[Replica]) -> None:
    a, b, _ = replicas
    working = count_working(b)
    asking = asyncio.get_running_loop().create_task(
        a.bus.ask("agent", {"agent": "a1", "op": "slow"}, timeout=0.3)
    )
    await wait_for(lambda: working, 10, message="a working answer")
    await b.bus.close()  # the holder dies mid-call
    with pytest.raises(Unavailable, match="replica cp-b, which holds the target, stopped answering"):
        await asking
