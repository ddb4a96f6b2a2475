"""Memory and CPU limits of supervised agent processes, and the cap on running tasks (the guides' settings)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from agent_sdk import Agent, Client, Context, Worker
from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import agent_service_pb2_grpc as agents_grpc
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from controlplane.app import App
from tests.harness.server import alive, make_settings, start_app, wait_for

pytestmark = pytest.mark.slow


def limits_of(pid: int) -> tuple[str, str]:
    """The process's data-segment limit (``Max data size`` soft value) and its allowed CPUs."""
    data = next(
        line
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
        if line.startswith("Max data size")
    )
    cpus = next(
        line
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("Cpus_allowed_list")
    )
    return data.split()[3], cpus.split()[1]


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[App]:
    app = await start_app(
        make_settings(
            tmp_path / "home",
            **{
                "agents.defaults.max_memory": "256MiB",
                "system.max_memory": "600MiB",
                "system.max_cpu_cores": 1,
            },
        )
    )
    try:
        yield app
    finally:
        pids = [launch.process.pid for launch in app.launcher.launches.values() if launch.process]
        await app.stop(grace=1.0)
        for pid in pids:
            if alive(pid):
                os.kill(pid, 9)


async def test_spawned_agents_get_the_memory_and_cpu_limits(limited: App) -> None:
    async with grpc.aio.insecure_channel(limited.address) as channel:
        stub = agents_grpc.AgentServiceStub(channel)
        spawned = await stub.SpawnAgents(agents_pb.SpawnAgentsRequest(agent_type="echo", count=2), timeout=60)
        pids = [agent.pid for agent in spawned.agents]
        assert len(pids) == 2
        for pid in pids:
            assert limits_of(pid) == (str(256 * 2**20), str(min(os.sched_getaffinity(0))))
        # Two agents of 256 MiB fill 600 MiB: a third is refused before anything starts.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SpawnAgents(agents_pb.SpawnAgentsRequest(agent_type="echo", count=1), timeout=60)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "system.max_memory" in (refused.value.details() or "")
        assert limited.launcher.active == 2
        # The agents run under their limits.
        await wait_for(lambda: all(alive(pid) for pid in pids), 5, message="agents alive")


class GateAgent(Agent):
    """Holds each assignment until the test opens the gate."""

    agent_type = "gate"
    capabilities = ["*"]
    max_concurrency = 4

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started: list[str] = []

    async def handle(self, ctx: Context) -> str:
        self.started.append(ctx.assignment.task_description)
        await self.gate.wait()
        return "done"


async def test_max_concurrent_tasks_caps_running_tasks(tmp_path: Path) -> None:
    app = await start_app(make_settings(tmp_path / "home", **{"system.max_concurrent_tasks": 1}))
    agent = GateAgent()
    worker = Worker(agent, app.address)
    runner = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.registered.wait(), 10)
        async with Client(app.address) as client:
            first = await client.submit_task(description="first")
            second = await client.submit_task(description="second")
            await wait_for(lambda: agent.started == ["first"], 10, message="the first task to start")
            waiting = (await client.get_task(second.name)).task
            assert waiting.status == enums.TASK_STATUS_QUEUED
            assert "system.max_concurrent_tasks: 1" in waiting.status_reason
            assert agent.started == ["first"]  # the agent has free slots, yet the second waits
            agent.gate.set()
            assert (await client.wait_task(first.name, timeout=10)).status == enums.TASK_STATUS_COMPLETED
            assert (await client.wait_task(second.name, timeout=10)).status == enums.TASK_STATUS_COMPLETED
            assert agent.started == ["first", "second"]
    finally:
        await worker.shutdown()
        await asyncio.gather(runner, return_exceptions=True)
        await app.stop(grace=1.0)
