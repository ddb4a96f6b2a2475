"""Routing between replicas: two real ``maos start`` processes on one PostgreSQL (and Redis).

An agent process connects to replica B; replica A is asked to read, pause, resume, drain and
terminate it (gRPC and the CLI), and to cancel and update a task B holds. Every answer is the one
B gives, and B's state shows the change. Without Redis the same goes over LISTEN/NOTIFY.
"""

from __future__ import annotations

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
    """``maos start`` (no agents of its own) as a foreground process."""

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "maos_cli.main", "start", "--agents", "echo=0", "--address", self.address],
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


async def _replicas(tmp_path: Path, postgres_url: str, **env: str) -> AsyncIterator[Replicas]:
    build_app(make_settings(tmp_path / "migrate", **{"database.primary_url": postgres_url})).storage.close()
    empty_postgres(postgres_url)
    common = {"MAOS_DATABASE_PRIMARY_URL": postgres_url, "MAOS_REPLICAS_HEARTBEAT_INTERVAL": "0.5", **env}
    a, b = MaosStart(tmp_path / "a", **common), MaosStart(tmp_path / "b", **common)
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
