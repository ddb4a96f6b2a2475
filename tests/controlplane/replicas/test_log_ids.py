"""Log record ids across replicas: with Redis, a record's id is its id in the shared stream.

Two real ``maos start`` processes on one PostgreSQL and Redis; B launched an echo agent, whose
records (``echo_log``) cross to A through the stream. A tail opened on A is cut at one record;
a TailLogs on B resuming after that record's id sends exactly the records A's reference tail got
after it, in the same order, none twice. Malformed and lost ids get precise errors, and a resumed
tail shows a caller only the records they may see.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from tests.controlplane.api.test_stream_resume import reason_of
from tests.controlplane.replicas.test_routing import RPC, Replicas, _replicas
from tests.harness.server import Stubs

pytestmark = pytest.mark.slow

AGENTS = "agents"  # the records agents forwarded


@pytest.fixture
async def replicas(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str
) -> AsyncIterator[Replicas]:
    """Replicas A and B on PostgreSQL and Redis; B launched one echo agent."""
    async for made in _replicas(
        tmp_path, postgres_url, "echo=1", MAOS_REDIS_URL=redis_url, MAOS_REDIS_KEY_PREFIX=redis_namespace
    ):
        yield made


async def _submit(stubs: Stubs, text: str) -> None:
    task = msgs.Task(description=f"echo {text}", metadata={"echo_log": text})
    await stubs.tasks.SubmitTask(tasks_pb.SubmitTaskRequest(task=task), timeout=RPC)


async def _next(call: Any) -> Any:
    reply = await asyncio.wait_for(call.read(), 30)
    assert reply is not grpc.aio.EOF, "the log stream ended"
    return reply.record


async def _first_record(call: Any, stubs: Stubs, label: str) -> Any:
    """The first record of a fresh tail: a record written before it subscribed is missed, so
    records are written until one arrives (reading is never cancelled: that would end the call)."""
    reading = asyncio.ensure_future(_next(call))
    for attempt in range(10):
        await _submit(stubs, f"{label} {attempt}")
        done, _ = await asyncio.wait({reading}, timeout=3)
        if done:
            return reading.result()
    reading.cancel()
    raise AssertionError("no record of B's agent reached the tail")


async def _read_until(call: Any, into: list[Any], text: str) -> None:
    while not any(text in record.message for record in into):
        into.append(await _next(call))


async def test_a_tail_cut_on_one_replica_resumes_on_another(replicas: Replicas) -> None:
    r = replicas
    reference = r.stubs_a.system.TailLogs(system_pb.TailLogsRequest(component=AGENTS))
    seen: list[Any] = []
    try:
        seen.append(await _first_record(reference, r.stubs_b, "first"))
        cut = seen[0].id
        ms, _, sequence = cut.partition("-")
        assert ms.isdigit() and sequence.isdigit()  # a stream id, not one of A alone
        for n in range(3):
            await _submit(r.stubs_b, f"after the cut {n}")
        await _read_until(reference, seen, "after the cut 2")
    finally:
        reference.cancel()
    expected = [(record.id, record.message) for record in seen[1:]]
    assert len(expected) >= 3

    for stubs in (r.stubs_b, r.stubs_a):  # on another replica, and on the one that gave the id
        resumed = stubs.system.TailLogs(system_pb.TailLogsRequest(component=AGENTS, after_record_id=cut))
        try:
            got = [await _next(resumed) for _ in expected]
        finally:
            resumed.cancel()
        assert [(record.id, record.message) for record in got] == expected


async def test_bad_record_ids_are_refused_precisely(replicas: Replicas) -> None:
    r = replicas
    # One record in the stream, so that an id before it is one no longer kept.
    tail = r.stubs_a.system.TailLogs(system_pb.TailLogsRequest(component=AGENTS))
    try:
        newest = (await _first_record(tail, r.stubs_b, "probe")).id
    finally:
        tail.cancel()
    far = str(int(newest.partition("-")[0]) + 86_400_000)
    cases = {
        "not-an-id": (grpc.StatusCode.INVALID_ARGUMENT, "is not an id this API sent"),
        "12-x": (grpc.StatusCode.INVALID_ARGUMENT, "is not an id this API sent"),
        f"{far}-0": (grpc.StatusCode.INVALID_ARGUMENT, "names no log record sent yet"),
        "1-0": (grpc.StatusCode.FAILED_PRECONDITION, "is no longer kept"),
        "3.7": (grpc.StatusCode.FAILED_PRECONDITION, "did not cross replicas"),
    }
    for value, (code, text) in cases.items():
        call = r.stubs_b.system.TailLogs(system_pb.TailLogsRequest(component=AGENTS, after_record_id=value))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.wait_for(call.read(), 30)
        assert caught.value.code() == code, (value, caught.value)
        assert text in (caught.value.details() or ""), (value, caught.value.details())
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            assert reason_of(caught.value) == "ERROR_REASON_RESUME_POINT_LOST"


async def test_a_resumed_tail_shows_only_the_records_the_caller_may_see(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str
) -> None:
    """Records another replica wrote to the stream, read back by a resume, are filtered per caller."""
    import json

    import redis

    from agent_sdk.client import Client
    from controlplane.app import build_app
    from tests.harness.server import admin_key, empty_postgres, make_settings

    settings = {
        "database.primary_url": postgres_url,
        "redis.url": redis_url,
        "redis.key_prefix": redis_namespace,
        "security.auth": "required",
    }
    build_app(make_settings(tmp_path / "migrate", **settings)).storage.close()
    empty_postgres(postgres_url)
    app = build_app(make_settings(tmp_path / "a", **settings))  # its admin user on the emptied database
    await app.start("127.0.0.1:0")
    writer = redis.Redis.from_url(redis_url)
    try:
        async with Client(app.address, token=await admin_key(app)) as admin:
            user = (await admin.create_user("dev-a@example.com", ["developer"])).name.removeprefix("users/")
        _, key = await app.storage.call(app.access.issue_key_sync, user, "k")

        def written(n: int, message: str, task: str = "", task_owner: str = "", agent_owner: str = "") -> str:
            """A record as another replica writes it to the stream; its id."""
            body = [
                20,
                "agents/x",
                message,
                1.0,
                task,
                "",
                "x" if agent_owner else "",
                {},
                task_owner,
                agent_owner,
            ]
            fields = {"r": "elsewhere/0001", "n": str(n), "e": json.dumps(body)}
            return writer.xadd(f"{redis_namespace}logs", fields).decode()  # type: ignore[no-any-return]

        cut = written(1, "the cut")
        written(2, "dev-b's task", task="t1", task_owner="users/dev-b")
        written(3, "dev-a's task", task="t2", task_owner=f"users/{user}")
        written(4, "someone's agent", agent_owner="users/ops")
        written(5, "the control plane's")
        written(5, "a second copy of entry 5 (a resent pipeline)")
        written(6, "the last")
        got: list[str] = []
        async with Client(app.address, token=key) as dev_a:
            request = system_pb.TailLogsRequest(component="agents/x", after_record_id=cut)
            async for response in dev_a.system.TailLogs(request, timeout=30):
                got.append(response.record.message)
                if response.record.message == "the last":
                    break
        assert got == ["dev-a's task", "the control plane's", "the last"]
    finally:
        writer.close()
        await app.stop(grace=1.0)
