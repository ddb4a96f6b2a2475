"""Claude-backed agents through the real control plane: consensus that passes and fails, budgets."""

from __future__ import annotations

import asyncio
import re
from contextlib import asynccontextmanager
from typing import Any

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import errors_pb2 as errors
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from agent_sdk.worker import Worker
from controlplane.app import App
from maos_plugins.claude.agents import CoordinatorAgent, ResearcherAgent
from tests.harness.messages_api import MessageReply, MessagesAPIServer
from tests.harness.server import Stubs, wait_for
from tests.plugins.claude.conftest import params


def judge(preferred: str):
    """A responder: candidates answer "Use canary releases."; voters pick the candidate saying ``preferred``."""

    def respond(body: dict[str, Any]) -> Any:
        if "cast_vote" not in str(body.get("tools")):
            return "Use canary releases."
        prompt = str(body["messages"][-1]["content"])
        found = re.findall(r'<candidate id="([^"]+)">\s*(.*?)\s*</candidate>', prompt, re.S)
        choice = next((cid for cid, text in found if preferred in text), found[0][0])
        return MessageReply(
            content=[
                {
                    "type": "tool_use",
                    "id": "toolu_vote",
                    "name": "cast_vote",
                    "input": {"candidate_id": choice, "confidence": 0.9, "rationale": f"it says {preferred}"},
                }
            ],
            stop_reason="tool_use",
        )

    return respond


@asynccontextmanager
async def coordinators(address: str, api: MessagesAPIServer, count: int):
    workers = [Worker(CoordinatorAgent(params(api)), address) for _ in range(count)]
    runners = [asyncio.get_running_loop().create_task(w.run()) for w in workers]
    try:
        for worker in workers:
            await asyncio.wait_for(worker.registered.wait(), 10)
        yield workers
    finally:
        for worker in workers:
            await worker.shutdown(0.5)
        await asyncio.gather(*runners)


async def finished(stubs: Stubs, name: str) -> tasks_pb.GetTaskResponse:
    async def done():
        full = await stubs.tasks.GetTask(
            tasks_pb.GetTaskRequest(name=name, view=enums.TASK_VIEW_FULL), timeout=5
        )
        return full if full.task.status in (enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED) else None

    return await wait_for(done, 30, interval=0.05, message=f"{name} to finish")


async def test_claude_agents_reach_consensus(
    control_plane: App, stubs: Stubs, api: MessagesAPIServer
) -> None:
    api.responder = judge("canary")
    async with coordinators(control_plane.address, api, 3):
        reply = await stubs.tasks.SubmitTask(
            tasks_pb.SubmitTaskRequest(
                task=msgs.Task(
                    description="Recommend a production deployment strategy",
                    consensus=msgs.ConsensusPolicy(required=True, threshold=0.75),
                )
            ),
            timeout=5,
        )
        full = await finished(stubs, reply.task.name)
    assert full.task.status == enums.TASK_STATUS_COMPLETED
    assert full.consensus.outcome == enums.CONSENSUS_OUTCOME_REACHED
    assert len(full.consensus.votes) == 3 and all("canary" in v.rationale for v in full.consensus.votes)
    assert full.task.usage.model_calls == 6 == len(api.requests)  # three candidates and three votes
    assert all(v.usage.model_calls == 1 and v.usage.input_tokens > 0 for v in full.consensus.votes)


async def test_claude_agents_without_consensus(
    control_plane: App, stubs: Stubs, api: MessagesAPIServer
) -> None:
    answers = iter(["Use canary releases.", "Use blue-green deployments.", "Use rolling updates."])

    def respond(body: dict[str, Any]) -> Any:
        if "cast_vote" in str(body.get("tools")):  # every voter prefers a different answer
            prompt = str(body["messages"][-1]["content"])
            found = re.findall(r'<candidate id="([^"]+)">', prompt)
            return MessageReply(
                content=[
                    {
                        "type": "tool_use",
                        "id": "toolu_v",
                        "name": "cast_vote",
                        "input": {
                            "candidate_id": found[len(api.requests) % len(found)],
                            "confidence": 0.6,
                            "rationale": "hmm",
                        },
                    }
                ],
                stop_reason="tool_use",
            )
        return next(answers, "Use rolling updates.")

    api.responder = respond
    async with coordinators(control_plane.address, api, 3):
        reply = await stubs.tasks.SubmitTask(
            tasks_pb.SubmitTaskRequest(
                task=msgs.Task(
                    description="Recommend a production deployment strategy",
                    consensus=msgs.ConsensusPolicy(required=True, threshold=0.75, max_rounds=1),
                )
            ),
            timeout=5,
        )
        full = await finished(stubs, reply.task.name)
    assert full.task.status == enums.TASK_STATUS_FAILED
    assert full.task.failure.reason == errors.ERROR_REASON_NO_CONSENSUS
    assert full.consensus.outcome == enums.CONSENSUS_OUTCOME_NO_CONSENSUS
    assert {c.content for c in full.consensus.candidates} == {
        "Use canary releases.",
        "Use blue-green deployments.",
        "Use rolling updates.",
    }
    assert len(full.consensus.votes) == 3


async def test_a_share_too_small_for_the_prompt_fails_the_task_before_any_call(
    control_plane: App, stubs: Stubs, api: MessagesAPIServer
) -> None:
    worker = Worker(ResearcherAgent(params(api)), control_plane.address)
    runner = asyncio.get_running_loop().create_task(worker.run())
    try:
        await asyncio.wait_for(worker.registered.wait(), 10)
        reply = await stubs.tasks.SubmitTask(
            tasks_pb.SubmitTaskRequest(
                task=msgs.Task(
                    description="Research:\n1. a\n2. b",
                    task_type="research",
                    max_agents=1,
                    budget=msgs.Budget(max_total_tokens=500),
                )
            ),
            timeout=5,
        )
        full = await finished(stubs, reply.task.name)
    finally:
        await worker.shutdown(0.5)
        await runner
    assert full.task.status == enums.TASK_STATUS_FAILED
    assert full.task.failure.reason == errors.ERROR_REASON_BUDGET_EXCEEDED
    assert "budget exhausted" in full.task.failure.message and "s0" in full.task.failure.message
    assert (
        len(api.requests) == 0
    )  # 250 tokens (half of 500: the synthesis needs its share) cannot hold the prompt
