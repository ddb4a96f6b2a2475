"""A real control plane runs a research task on an in-process Claude researcher backed by the fake API."""

from __future__ import annotations

import asyncio

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from agent_sdk.worker import Worker
from controlplane.app import App
from maos_plugins.claude.agents import ResearcherAgent
from maos_plugins.claude.config import DEFAULT_MODEL
from maos_plugins.claude.pricing import cost_micros
from tests.harness.messages_api import MessagesAPIServer
from tests.harness.server import Stubs, wait_for
from tests.plugins.claude.conftest import params

TIMEOUT = 5.0


async def test_research_task_runs_on_a_claude_researcher(
    control_plane: App, stubs: Stubs, api: MessagesAPIServer
) -> None:
    answer = "Cloud trends in 2025: AI platforms, FinOps and sovereign clouds."
    api.push_text(
        answer,
        usage={
            "input_tokens": 120,
            "output_tokens": 14,
            "cache_read_input_tokens": 2048,
            "cache_creation_input_tokens": 64,
        },
    )
    worker = Worker(ResearcherAgent(params(api)), control_plane.address, max_backoff=0.5)
    runner = asyncio.get_running_loop().create_task(worker.run())
    try:
        await asyncio.wait_for(worker.registered.wait(), 10)
        submitted = await stubs.tasks.SubmitTask(
            tasks_pb.SubmitTaskRequest(
                task=msgs.Task(
                    description="Research the top 3 cloud computing trends in 2025",
                    task_type="research",
                    context="For a hospital's IT department",
                )
            ),
            timeout=TIMEOUT,
        )
        name = submitted.task.name

        async def finished() -> msgs.Task | None:
            reply = await stubs.tasks.GetTask(tasks_pb.GetTaskRequest(name=name), timeout=TIMEOUT)
            return (
                reply.task
                if reply.task.status
                in (enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED, enums.TASK_STATUS_CANCELLED)
                else None
            )

        task = await wait_for(finished, 20, interval=0.05, message=f"{name} to finish")
        assert task.status == enums.TASK_STATUS_COMPLETED, task

        result = (
            await stubs.tasks.GetTaskResults(tasks_pb.GetTaskResultsRequest(name=name), timeout=TIMEOUT)
        ).result
        assert answer in result.output or any(s.output == answer for s in result.subtasks)
        usage = result.usage
        assert (usage.input_tokens, usage.output_tokens) == (120, 14)
        assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (2048, 64)
        assert usage.model_calls == 1
        assert usage.cost_micros == cost_micros(DEFAULT_MODEL, 120, 14, 64, 2048)
        (sub,) = result.subtasks
        assert sub.usage.input_tokens == 120

        (paced,) = control_plane.engine.pacer.status()  # the call took a permit over the stream, and reported
        assert (paced.model, paced.granted) == (DEFAULT_MODEL, 1)
        await wait_for(lambda: not control_plane.engine.pacer.status()[0].in_flight, 5, message="the outcome")

        (request,) = api.requests
        shared = request.body["system"][1]
        assert shared["cache_control"] == {"type": "ephemeral"}
        assert "hospital" in shared["text"]
    finally:
        await worker.shutdown(1)
        await asyncio.wait_for(runner, 10)


async def test_the_control_plane_plans_with_claude_and_charges_the_planning(
    tmp_path, api: MessagesAPIServer
) -> None:
    """With an API key configured, tasks are planned by the model in the background."""
    from tests.harness.server import make_settings, start_app

    plan = {
        "subtasks": [
            {
                "key": "market",
                "title": "Market",
                "instructions": "Size the market",
                "capability": "researcher",
                "depends_on": [],
            },
            {
                "key": "rivals",
                "title": "Rivals",
                "instructions": "List competitors",
                "capability": "researcher",
                "depends_on": [],
            },
            {
                "key": "report",
                "title": "Report",
                "instructions": "Combine",
                "capability": "synthesis",
                "depends_on": ["market", "rivals"],
            },
        ],
        "complexity": "medium",
        "recommended_agents": 2,
    }
    api.push_tool_use("submit_plan", plan, usage={"input_tokens": 300, "output_tokens": 90})
    app = await start_app(
        make_settings(tmp_path, **{"claude.api_key": "sk-ant-test-key", "claude.base_url": api.base_url})
    )
    stubs = Stubs(app.address)
    try:
        reply = await stubs.tasks.SubmitTask(
            tasks_pb.SubmitTaskRequest(
                task=msgs.Task(description="Competitive analysis for a SaaS platform", task_type="research")
            ),
            timeout=TIMEOUT,
        )

        async def planned() -> tasks_pb.GetTaskResponse | None:
            full = await stubs.tasks.GetTask(
                tasks_pb.GetTaskRequest(name=reply.task.name, view=enums.TASK_VIEW_FULL), timeout=TIMEOUT
            )
            return full if full.plan.planner else None

        full = await wait_for(planned, 10, message="the Claude plan")
        assert full.plan.planner == "claude"
        assert [s.name.rsplit("/", 1)[1] for s in full.subtasks] == ["market", "rivals", "report"]
        assert full.task.usage.input_tokens == 300 and full.task.usage.model_calls == 1
        assert full.task.status == enums.TASK_STATUS_QUEUED  # no researcher connected
        assert "no connected agent has capability researcher" in full.task.status_reason
    finally:
        await stubs.close()
        await app.stop(grace=0.5)
