"""Warm agents: a Claude agent pays its ``anthropic`` import and client set-up before it registers."""

from __future__ import annotations

import asyncio
import time

import maos_plugins.claude.agents as claude_agents
from agent_sdk.agent import Agent
from agent_sdk.worker import Worker
from controlplane.app import App
from maos_plugins.claude.agents import ResearcherAgent
from tests.harness.messages_api import MessagesAPIServer
from tests.harness.server import Stubs
from tests.plugins.claude.conftest import params


class Recorder(Agent):
    """Records the order of warm-up and the first assignment."""

    agent_type = "recorder"

    def __init__(self) -> None:
        self.events: list[str] = []

    async def warm_up(self) -> None:
        self.events.append("warm_up")

    async def handle(self, ctx) -> str:
        self.events.append("handle")
        return "ok"

    async def close(self) -> None:
        self.events.append("close")


async def test_the_worker_warms_the_agent_up_before_registering(control_plane: App) -> None:
    agent = Recorder()
    worker = Worker(agent, control_plane.address, max_backoff=0.5)
    runner = asyncio.get_running_loop().create_task(worker.run())
    await asyncio.wait_for(worker.registered.wait(), 10)
    assert agent.events == ["warm_up"]
    await worker.shutdown(1)
    await asyncio.wait_for(runner, 10)
    assert agent.events == ["warm_up", "close"]


async def test_a_claude_agent_builds_its_client_once_before_its_first_task(
    control_plane: App, stubs: Stubs, api: MessagesAPIServer, monkeypatch
) -> None:
    built = []
    real = claude_agents.make_client

    def counting(config):
        built.append(time.monotonic())
        return real(config)

    monkeypatch.setattr(claude_agents, "make_client", counting)
    agent = ResearcherAgent(params(api))
    worker = Worker(agent, control_plane.address, max_backoff=0.5)
    runner = asyncio.get_running_loop().create_task(worker.run())
    try:
        await asyncio.wait_for(worker.registered.wait(), 10)
        assert len(built) == 1 and agent._client is not None  # built before it registered
        registered_at = time.monotonic()
        from agent_sdk.proto.maos.v1 import enums_pb2 as enums
        from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
        from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
        from tests.harness.server import wait_for

        for text in ("first", "second"):
            api.push_text(f"answer {text}")
            reply = await stubs.tasks.SubmitTask(
                tasks_pb.SubmitTaskRequest(task=msgs.Task(description=text)), timeout=5
            )

            async def done(name=reply.task.name):
                got = await stubs.tasks.GetTask(tasks_pb.GetTaskRequest(name=name), timeout=5)
                return got.task.status == enums.TASK_STATUS_COMPLETED

            await wait_for(done, 15, message=f"task {text}")
        assert len(built) == 1 and built[0] < registered_at  # reused: no set-up on the tasks
    finally:
        await worker.shutdown(1)
        await asyncio.wait_for(runner, 10)
    assert agent._client is None  # closed when the worker stopped
