"""Routing between replicas: two real ``maos start`` processes on one PostgreSQL (and Redis).

An agent process connects to replica B; replica A is asked to read, pause, resume, drain and
terminate it (gRPC and the CLI), and to cancel and update a task B holds. Every answer is the one
B gives, and B's state shows the change. Without Redis the same goes over LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2

from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from controlplane.app import build_app
from tests.cli.conftest import Maos
from tests.harness.server import (
    AgentProcess,
    ControlPlaneProcess,
    Stubs,
    empty_postgres,
    make_settings,
    wait_for,
)

pytestmark = pytest.mark.slow

RPC = 15.0


class MaosStart(ControlPlaneProcess):
    """``maos start --agents AGENTS`` (none by default) as a foreground process."""

    def __init__(self, home: Path, agents: str = "echo=0", **env: str):
        super().__init__(home, **env)
        self.agents = agents

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "maos_cli.main",
                "start",
                "--agents",
                self.agents,
                "--address",
                self.address,
            ],
            env=self.env,
            stdin=subprocess.DEVNULL,
        )


class Replicas:
    """Two replicas, A and B, with stubs and a CLI for each."""

    def __init__(self, a: MaosStart, b: MaosStart, tmp_path: Path):
        self.a, self.b = a, b
        self.stubs_a, self.stubs_b = Stubs(a.address), Stubs(b.address)
        self.cli_a = Maos(a.address, tmp_path / "cli-a")

    async def close(self) -> None:
        await self.stubs_a.close()
        await self.stubs_b.close()


async def _replicas(
    tmp_path: Path, postgres_url: str, b_agents: str = "echo=0", **env: str
) -> AsyncIterator[Replicas]:
    build_app(make_settings(tmp_path / "migrate", **{"database.primary_url": postgres_url})).storage.close()
    empty_postgres(postgres_url)
    common = {"MAOS_DATABASE_PRIMARY_URL": postgres_url, "MAOS_REPLICAS_HEARTBEAT_INTERVAL": "0.5", **env}
    a, b = MaosStart(tmp_path / "a", **common), MaosStart(tmp_path / "b", b_agents, **common)
    a.start()
    b.start()
    replicas = Replicas(a, b, tmp_path)
    try:
        await a.wait_ready()
        await b.wait_ready()
        yield replicas
    finally:
        await replicas.close()
        b.stop()
        a.stop()


@pytest.fixture
async def over_redis(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str
) -> AsyncIterator[Replicas]:
    """Replicas A and B sharing PostgreSQL and Redis (the bus on Redis pub/sub)."""
    async for replicas in _replicas(
        tmp_path, postgres_url, MAOS_REDIS_URL=redis_url, MAOS_REDIS_KEY_PREFIX=redis_namespace
    ):
        yield replicas


@pytest.fixture
async def b_launches(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str
) -> AsyncIterator[Replicas]:
    """Replicas A and B on PostgreSQL and Redis; B launched one echo agent (``--agents echo=1``)."""
    async for replicas in _replicas(
        tmp_path, postgres_url, "echo=1", MAOS_REDIS_URL=redis_url, MAOS_REDIS_KEY_PREFIX=redis_namespace
    ):
        yield replicas


@pytest.fixture
async def over_postgres(tmp_path: Path, postgres_url: str) -> AsyncIterator[Replicas]:
    """Replicas A and B sharing PostgreSQL only (the bus on LISTEN/NOTIFY)."""
    async for replicas in _replicas(tmp_path, postgres_url):
        yield replicas


async def _agent_on(
    stubs: Stubs, agent_processes: Callable[..., AgentProcess], address: str
) -> tuple[str, AgentProcess]:
    """Start an echo agent process connected to ``address``; its name once ``stubs`` lists it live."""
    before = {
        a.name for a in (await stubs.agents.ListAgents(agents_pb.ListAgentsRequest(), timeout=RPC)).agents
    }
    process = agent_processes(address, "echo")

    async def new_agent() -> str | None:
        listed = await stubs.agents.ListAgents(agents_pb.ListAgentsRequest(), timeout=RPC)
        fresh = [a for a in listed.agents if a.name not in before and a.status == enums.AGENT_STATUS_IDLE]
        return fresh[0].name if fresh else None

    name = await wait_for(new_agent, 30, interval=0.1, message="the agent listed by the other replica")
    return str(name), process


async def _status(stubs: Stubs, name: str) -> int:
    return (await stubs.agents.GetAgent(agents_pb.GetAgentRequest(name=name), timeout=RPC)).agent.status


async def test_agent_commands_through_another_replica(over_redis: Replicas, agent_processes: Any) -> None:
    r = over_redis
    name, process = await _agent_on(r.stubs_a, agent_processes, r.b.address)  # A lists every replica's
    agent_id = name.removeprefix("agents/")

    # GetAgent on A is B's live answer: the agent's replica and its free slot
    got = (await r.stubs_a.agents.GetAgent(agents_pb.GetAgentRequest(name=name), timeout=RPC)).agent
    replica_b = got.replica
    assert replica_b and got.status == enums.AGENT_STATUS_IDLE
    assert got.free_slots == got.max_concurrency > 0  # live: only its session knows its free slots

    paused = await r.stubs_a.agents.PauseAgent(agents_pb.PauseAgentRequest(name=name), timeout=RPC)
    assert paused.agent.status == enums.AGENT_STATUS_PAUSED and paused.agent.replica == replica_b
    assert await _status(r.stubs_b, name) == enums.AGENT_STATUS_PAUSED  # B holds the change

    # a task submitted on B stays queued there (its one agent is paused): A cancels it through B
    task = (
        await r.stubs_b.tasks.SubmitTask(
            tasks_pb.SubmitTaskRequest(task=msgs.Task(description="say hello")), timeout=RPC
        )
    ).task
    updated = await r.stubs_a.tasks.UpdateTask(
        tasks_pb.UpdateTaskRequest(
            task=msgs.Task(name=task.name, priority=enums.PRIORITY_CRITICAL),
            update_mask=field_mask_pb2.FieldMask(paths=["priority"]),
        ),
        timeout=RPC,
    )
    assert updated.task.priority == enums.PRIORITY_CRITICAL
    cancelled = await r.stubs_a.tasks.CancelTask(
        tasks_pb.CancelTaskRequest(name=task.name, reason="not needed"), timeout=RPC
    )
    assert cancelled.task.status == enums.TASK_STATUS_CANCELLED
    on_b = (await r.stubs_b.tasks.GetTask(tasks_pb.GetTaskRequest(name=task.name), timeout=RPC)).task
    assert on_b.status == enums.TASK_STATUS_CANCELLED and on_b.priority == enums.PRIORITY_CRITICAL
    with pytest.raises(grpc.aio.AioRpcError) as finished:  # B's answer, through A
        await r.stubs_a.tasks.CancelTask(tasks_pb.CancelTaskRequest(name=task.name), timeout=RPC)
    assert finished.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "already CANCELLED" in (finished.value.details() or "")

    # the CLI against A: resume, list, then drain (the agent process leaves)
    resumed = await r.cli_a("-o", "json", "agent", "resume", agent_id)
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["status"] == "IDLE"
    assert await _status(r.stubs_b, name) == enums.AGENT_STATUS_IDLE
    listed = await r.cli_a("-o", "json", "agent", "list")
    assert [a["name"] for a in json.loads(listed.stdout)["agents"]] == [name]
    drained = await r.cli_a("agent", "drain", agent_id, "--grace", "5")
    assert drained.exit_code == 0, drained.output
    await wait_for(
        lambda: process.process.poll() is not None, 30, message="the drained agent process to exit"
    )


async def test_terminate_through_another_replica(over_redis: Replicas, agent_processes: Any) -> None:
    r = over_redis
    name, process = await _agent_on(r.stubs_a, agent_processes, r.b.address)
    terminated = await r.cli_a("-o", "json", "agent", "terminate", name.removeprefix("agents/"), "--force")
    assert terminated.exit_code == 0, terminated.output
    assert json.loads(terminated.stdout)["name"] == name
    await wait_for(
        lambda: process.process.poll() is not None, 30, message="the terminated agent process to exit"
    )

    async def terminated_on_b() -> bool:
        return await _status(r.stubs_b, name) == enums.AGENT_STATUS_TERMINATED

    await wait_for(terminated_on_b, 30, interval=0.1, message="B to record the agent TERMINATED")


async def test_unknown_agents_are_not_found_on_every_replica(over_redis: Replicas) -> None:
    r = over_redis
    for stubs in (r.stubs_a, r.stubs_b):
        for call in (
            stubs.agents.GetAgent(agents_pb.GetAgentRequest(name="agents/nobody-1"), timeout=RPC),
            stubs.agents.PauseAgent(agents_pb.PauseAgentRequest(name="agents/nobody-1"), timeout=RPC),
            stubs.agents.TerminateAgent(agents_pb.TerminateAgentRequest(name="agents/nobody-1"), timeout=RPC),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await call
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            assert "agents/nobody-1 does not exist" in (missing.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await r.stubs_a.tasks.CancelTask(tasks_pb.CancelTaskRequest(name="tasks/t0"), timeout=RPC)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_request_id_is_recognised_on_another_replica(over_redis: Replicas) -> None:
    r = over_redis
    request = tasks_pb.SubmitTaskRequest(
        task=msgs.Task(description="once only"), request_id="cross-replica-1"
    )
    first = (await r.stubs_a.tasks.SubmitTask(request, timeout=RPC)).task
    again = (await r.stubs_b.tasks.SubmitTask(request, timeout=RPC)).task
    assert again.name == first.name
    other = tasks_pb.SubmitTaskRequest(
        task=msgs.Task(description="something else"), request_id="cross-replica-1"
    )
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await r.stubs_b.tasks.SubmitTask(other, timeout=RPC)
    assert reused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "already used for a different request" in (reused.value.details() or "")


async def _task_names(stubs: Stubs) -> list[str]:
    """The names of every task (by ListTasks pages)."""
    names: list[str] = []
    token = ""
    while True:
        reply = await stubs.tasks.ListTasks(
            tasks_pb.ListTasksRequest(page_size=1000, page_token=token), timeout=RPC
        )
        names.extend(task.name for task in reply.tasks)
        token = reply.next_page_token
        if not token:
            return names


async def test_one_request_id_sent_to_both_replicas_at_once_makes_one_task(over_redis: Replicas) -> None:
    """Calls with one request_id racing on two replicas: the database lets one create its task, and
    every other call answers with that task (a repeat still in flight on its own replica is told so)."""
    r = over_redis
    rounds, per_replica = 25, 4
    for n in range(rounds):
        request = tasks_pb.SubmitTaskRequest(task=msgs.Task(description=f"race {n}"), request_id=f"race-{n}")
        calls = [
            s.tasks.SubmitTask(request, timeout=RPC)
            for s in (r.stubs_a, r.stubs_b)
            for _ in range(per_replica)
        ]
        names = set()
        for result in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(result, grpc.aio.AioRpcError):
                assert result.code() == grpc.StatusCode.ABORTED, result
                assert "is still in progress; retry it in a moment" in (result.details() or "")
            else:
                assert not isinstance(result, BaseException), result
                names.add(result.task.name)
        assert len(names) == 1, f"request_id race-{n} made {sorted(names)}"
    assert len(await _task_names(r.stubs_b)) == rounds


async def test_one_request_id_with_two_requests_at_once_makes_one_task(over_redis: Replicas) -> None:
    """Two different requests with one request_id, on two replicas at once: one creates its task, the
    other is refused as a reuse of the request_id."""
    r = over_redis
    rounds = 25
    for n in range(rounds):
        calls = [
            stubs.tasks.SubmitTask(
                tasks_pb.SubmitTaskRequest(
                    task=msgs.Task(description=f"{side} {n}"), request_id=f"clash-{n}"
                ),
                timeout=RPC,
            )
            for side, stubs in (("left", r.stubs_a), ("right", r.stubs_b))
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        refused = [x for x in results if isinstance(x, grpc.aio.AioRpcError)]
        assert len(refused) == 1, results
        assert refused[0].code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"request_id 'clash-{n}' was already used for a different request" in (
            refused[0].details() or ""
        )
    assert len(await _task_names(r.stubs_a)) == rounds


async def test_pause_through_another_replica_over_listen_notify(
    over_postgres: Replicas, agent_processes: Any
) -> None:
    r = over_postgres
    name, _ = await _agent_on(r.stubs_a, agent_processes, r.b.address)
    paused = await r.stubs_a.agents.PauseAgent(agents_pb.PauseAgentRequest(name=name), timeout=RPC)
    assert paused.agent.status == enums.AGENT_STATUS_PAUSED
    assert await _status(r.stubs_b, name) == enums.AGENT_STATUS_PAUSED
    drained = await r.stubs_a.agents.DrainAgent(agents_pb.DrainAgentRequest(name=name), timeout=RPC)
    assert drained.agent.status == enums.AGENT_STATUS_DRAINING


async def test_permissions_and_audit_are_those_of_a_local_call(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str
) -> None:
    from agent_sdk.builtin import EchoAgent
    from agent_sdk.client import Client
    from agent_sdk.errors import MaosRpcError
    from agent_sdk.worker import Worker
    from tests.harness.server import start_app, stored_audit

    shared = {
        "database.primary_url": postgres_url,
        "redis.url": redis_url,
        "redis.key_prefix": redis_namespace,
        "security.auth": "required",
    }
    build_app(make_settings(tmp_path / "migrate", **shared)).storage.close()
    empty_postgres(postgres_url)
    a = await start_app(make_settings(tmp_path / "a", **shared))
    admin_key, admin = await a.storage.call(a.access.issue_key_sync, "admin", "admin")
    narrow_key, narrow = await a.storage.call(
        a.access.issue_key_sync, "admin", "narrow", ["agent:view", "agent:manage"]
    )
    b = await start_app(make_settings(tmp_path / "b", **shared))  # it reads the keys A stored
    worker = Worker(
        EchoAgent(), b.address, token=b.launcher.token, max_backoff=0.5
    )  # owned by B's agents user
    runner = asyncio.get_running_loop().create_task(worker.run())
    try:
        await asyncio.wait_for(worker.registered.wait(), 15)
        [agent_id] = [session.id for session in b.engine.connected()]
        async with Client(a.address, token=narrow) as client:
            with pytest.raises(MaosRpcError) as denied:
                await client.pause_agent(agent_id)
            assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
            assert "agent:manage-all" in denied.value.message
        assert not b.engine.connected_session(agent_id).paused
        async with Client(a.address, token=admin) as client:
            paused = await client.pause_agent(agent_id)
        assert paused.replica == b.engine.replica and b.engine.connected_session(agent_id).paused
        # one record per call, by the replica that received it (the holder writes none)
        records = [r for r in await stored_audit(a, limit=1000) if r["method"].endswith("/PauseAgent")]
        assert sorted(
            (r["principal"], r["status_code"], r["key_id"], r["resource"]) for r in records
        ) == sorted(
            [
                ("users/admin", "OK", admin_key["id"], f"agents/{agent_id}"),
                ("users/admin", "PERMISSION_DENIED", narrow_key["id"], f"agents/{agent_id}"),
            ]
        )
    finally:
        await worker.shutdown(grace=1.0)
        await asyncio.wait_for(runner, 15)
        await b.stop(grace=1.0)
        await a.stop(grace=1.0)


class _Replies:
    """The agent side of a session: the shared-state replies sent to it."""

    def __init__(self) -> None:
        self.replies: list[Any] = []

    def send(self, message: Any) -> None:
        self.replies.append(message)


async def test_shared_state_is_one_store_for_every_replica(tmp_path: Path, postgres_url: str) -> None:
    """The path agents' shared state takes on each replica (the ``shared_state`` table) is one store:
    what an agent on A writes, an agent on B reads, and compare-and-set holds between them."""
    from controlplane.scheduler.shared_state import serve_shared_state
    from tests.harness.server import start_app

    pg = {"database.primary_url": postgres_url}
    build_app(make_settings(tmp_path / "migrate", **pg)).storage.close()
    empty_postgres(postgres_url)
    a = await start_app(make_settings(tmp_path / "a", **pg))
    b = await start_app(make_settings(tmp_path / "b", **pg))
    on_a, on_b = _Replies(), _Replies()

    async def op(app: Any, session: _Replies, *args: Any) -> Any:
        await serve_shared_state(app.storage, session, len(session.replies), "t1", *args)  # type: ignore[arg-type]
        return session.replies[-1]

    try:
        written = await op(a, on_a, "put", "plan", b"v1", None)
        assert (written.error, written.version) == ("", 1)
        read = await op(b, on_b, "get", "plan")
        assert (read.found, read.value, read.version) == (True, b"v1", 1)
        # both replicas compare-and-set version 1 at once: one wins, the other is told the new version
        both = await asyncio.gather(op(a, on_a, "put", "plan", b"a", 1), op(b, on_b, "put", "plan", b"b", 1))
        assert sorted(r.error for r in both) == ["", "ERROR_REASON_VERSION_CONFLICT"]
        assert {r.version for r in both} == {2}
        # first writes of new keys at once ("create if absent", expected version 0): one creates each
        for n in range(20):
            key = f"new-{n}"
            both = await asyncio.gather(op(a, on_a, "put", key, b"a", 0), op(b, on_b, "put", key, b"b", 0))
            assert sorted(r.error for r in both) == ["", "ERROR_REASON_VERSION_CONFLICT"], [
                (r.error, r.message) for r in both
            ]
    finally:
        await b.stop(grace=1.0)
        await a.stop(grace=1.0)


async def test_plan_approval_through_another_replica(over_redis: Replicas, agent_processes: Any) -> None:
    r = over_redis
    await _agent_on(r.stubs_a, agent_processes, r.b.address)
    names = []
    for text in ("approve me", "reject me"):
        submitted = await r.stubs_b.tasks.SubmitTask(
            tasks_pb.SubmitTaskRequest(task=msgs.Task(description=text, approve_plan=True)), timeout=RPC
        )
        names.append(submitted.task.name)

    async def waiting(name: str) -> bool:
        task = (await r.stubs_b.tasks.GetTask(tasks_pb.GetTaskRequest(name=name), timeout=RPC)).task
        return "waiting for plan approval" in task.status_reason

    for name in names:
        await wait_for(
            lambda name=name: waiting(name), 30, interval=0.1, message=f"{name} to wait for approval"
        )
    approved = await r.stubs_a.tasks.ApproveTask(tasks_pb.ApproveTaskRequest(name=names[0]), timeout=RPC)
    assert approved.task.approval.state == enums.PLAN_APPROVAL_STATE_APPROVED
    assert approved.task.approval.principal == "users/local"
    rejected = await r.stubs_a.tasks.RejectTask(
        tasks_pb.RejectTaskRequest(name=names[1], reason="not this one"), timeout=RPC
    )
    assert rejected.task.status == enums.TASK_STATUS_CANCELLED

    async def completed() -> bool:
        task = (await r.stubs_a.tasks.GetTask(tasks_pb.GetTaskRequest(name=names[0]), timeout=RPC)).task
        return task.status == enums.TASK_STATUS_COMPLETED

    await wait_for(completed, 30, interval=0.1, message="the approved task to run on B's agent")
    with pytest.raises(grpc.aio.AioRpcError) as again:  # decided and finished: refused wherever answered
        await r.stubs_a.tasks.RejectTask(
            tasks_pb.RejectTaskRequest(name=names[0], reason="late"), timeout=RPC
        )
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_replica_starting_leaves_the_agents_of_live_replicas_as_they_are(
    tmp_path: Path, postgres_url: str
) -> None:
    from agent_sdk.builtin import EchoAgent
    from agent_sdk.worker import Worker
    from tests.harness.server import start_app

    pg = {"database.primary_url": postgres_url}
    build_app(make_settings(tmp_path / "migrate", **pg)).storage.close()
    empty_postgres(postgres_url)
    a = await start_app(make_settings(tmp_path / "a", **pg))
    worker = Worker(EchoAgent(), a.address, max_backoff=0.5)
    runner = asyncio.get_running_loop().create_task(worker.run())
    b = None
    try:
        await asyncio.wait_for(worker.registered.wait(), 15)
        await a.engine.durable()
        b = await start_app(make_settings(tmp_path / "b", **pg))  # its start marks lost agents DISCONNECTED
        stubs = Stubs(b.address)
        try:
            [listed] = (await stubs.agents.ListAgents(agents_pb.ListAgentsRequest(), timeout=RPC)).agents
        finally:
            await stubs.close()
        assert (listed.status, listed.replica) == (enums.AGENT_STATUS_IDLE, a.engine.replica)
    finally:
        await worker.shutdown(grace=1.0)
        await asyncio.wait_for(runner, 15)
        if b is not None:
            await b.stop(grace=1.0)
        await a.stop(grace=1.0)


async def test_restart_and_metrics_of_an_agent_another_replica_launched(b_launches: Replicas) -> None:
    r = b_launches

    async def launched() -> str | None:
        listed = await r.stubs_a.agents.ListAgents(agents_pb.ListAgentsRequest(), timeout=RPC)
        live = [a for a in listed.agents if a.status == enums.AGENT_STATUS_IDLE and a.managed]
        return live[0].name if live else None

    name = await wait_for(launched, 30, interval=0.1, message="B's launched agent listed by A")
    metrics = await r.stubs_a.agents.GetAgentMetrics(agents_pb.GetAgentMetricsRequest(name=name), timeout=RPC)
    assert metrics.agent.name == name and metrics.connected_seconds > 0  # B's live reading
    # only B's launcher can restart it: A carries the call there and waits while B works on it
    restarted = await r.stubs_a.agents.RestartAgent(
        agents_pb.RestartAgentRequest(name=name, force=True), timeout=60
    )
    assert restarted.previous.name == name
    assert restarted.agent.name and restarted.agent.name != name

    async def replaced() -> bool:
        old = await _status(r.stubs_b, name)
        new = await _status(r.stubs_b, restarted.agent.name)
        return old == enums.AGENT_STATUS_TERMINATED and new == enums.AGENT_STATUS_IDLE

    await wait_for(replaced, 30, interval=0.1, message="B to run the new agent in the old one's place")
