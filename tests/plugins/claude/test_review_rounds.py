"""Review rounds on Claude agents: a tester reviews through ``submit_review``, the author revises.

A real control plane; Claude researcher and tester agents (the worker, in this process, as the other
Claude tests run them) against the fake Messages API, whose :class:`ReviewScript` answers each review
request with a scripted verdict while work and revision requests are echoed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from agent_sdk.worker import Worker
from controlplane.app import App
from maos_plugins.claude import agents as claude
from tests.harness.messages_api import MessagesAPIServer, ReviewScript, offers_tool
from tests.harness.server import Stubs, wait_for
from tests.plugins.claude.conftest import params

TIMEOUT = 5.0
CHANGE = "Cite a source for the 2024 market figure"


@pytest.fixture
async def claude_pool(control_plane: App, api: MessagesAPIServer) -> AsyncIterator[list[Worker]]:
    """A researcher and a tester connected to ``control_plane``, both on the fake API."""
    workers = [
        Worker(claude.ResearcherAgent(params(api)), control_plane.address, max_backoff=0.5),
        Worker(claude.TesterAgent(params(api)), control_plane.address, max_backoff=0.5),
    ]
    runners = [asyncio.get_running_loop().create_task(w.run()) for w in workers]
    try:
        for worker in workers:
            await asyncio.wait_for(worker.registered.wait(), 20)
        yield workers
    finally:
        for worker in workers:
            await worker.shutdown(1)
        await asyncio.wait_for(asyncio.gather(*runners), 10)


async def _run(stubs: Stubs, rounds: int) -> tuple[msgs.Task, tasks_pb.GetTaskResponse, msgs.TaskResult]:
    submitted = await stubs.tasks.SubmitTask(
        tasks_pb.SubmitTaskRequest(
            task=msgs.Task(
                description="Size the European market for hospital scheduling software",
                task_type="research",
                constraints="Every figure needs a source",
                review_rounds=rounds,
            )
        ),
        timeout=TIMEOUT,
    )
    name = submitted.task.name

    async def finished() -> msgs.Task | None:
        task = (await stubs.tasks.GetTask(tasks_pb.GetTaskRequest(name=name), timeout=TIMEOUT)).task
        return task if task.status >= enums.TASK_STATUS_COMPLETED else None

    task = await wait_for(finished, 30, interval=0.05, message=f"{name} to finish")
    full = await stubs.tasks.GetTask(
        tasks_pb.GetTaskRequest(name=name, view=enums.TASK_VIEW_FULL), timeout=TIMEOUT
    )
    result = (
        await stubs.tasks.GetTaskResults(tasks_pb.GetTaskResultsRequest(name=name), timeout=TIMEOUT)
    ).result
    return task, full, result


async def test_changes_are_revised_then_approved(
    control_plane: App, stubs: Stubs, api: MessagesAPIServer, claude_pool: list[Worker]
) -> None:
    script = ReviewScript([[CHANGE], True])
    api.responder = script
    task, full, result = await _run(stubs, rounds=3)
    assert task.status == enums.TASK_STATUS_COMPLETED, task

    review = full.review
    assert review.outcome == enums.REVIEW_OUTCOME_APPROVED and review.max_rounds == 3
    assert [(r.round, r.verdict.approved, list(r.verdict.changes)) for r in review.rounds] == [
        (1, False, [CHANGE]),
        (2, True, []),
    ]
    assert review.rounds[0].revision_subtask.endswith("/revision-1") and not review.rounds[1].revision_subtask
    assert all(r.reviewer.startswith("agents/tester-") for r in review.rounds)
    assert result.review == review
    kinds = {s.name.rsplit("/", 1)[1]: s.kind for s in full.subtasks}
    assert kinds == {
        "s0": enums.SUBTASK_KIND_WORK,
        "review-1": enums.SUBTASK_KIND_REVIEW,
        "revision-1": enums.SUBTASK_KIND_REVISION,
        "review-2": enums.SUBTASK_KIND_REVIEW,
    }
    revision = next(s for s in full.subtasks if s.name.endswith("/revision-1"))
    assert revision.agent.startswith("agents/researcher-")  # the author revises
    assert result.output == revision.output  # the approved answer is the revision

    reviews = [r for r in api.requests if offers_tool(r.body, "submit_review")]
    assert len(reviews) == 2 == script.reviews
    first = reviews[0].body
    assert first["tool_choice"] == {"type": "tool", "name": "submit_review"}
    assert "Every figure needs a source" in json.dumps(first["system"])  # graded against the constraints
    work = next(r for r in api.requests if not offers_tool(r.body, "submit_review"))
    assert work.body["messages"][0]["content"] in first["messages"][0]["content"]  # the answer under review
    revising = [
        r
        for r in api.requests
        if CHANGE in json.dumps(r.body.get("messages")) and not offers_tool(r.body, "submit_review")
    ]
    assert len(revising) == 1

    # Usage counts every call: the work, two reviews and one revision.
    assert task.usage.model_calls == 4
    assert [r.usage.model_calls for r in review.rounds] == [1, 1]
    assert sum(s.usage.model_calls for s in full.subtasks) == 4


async def test_an_approval_in_round_one_ends_the_loop(
    control_plane: App, stubs: Stubs, api: MessagesAPIServer, claude_pool: list[Worker]
) -> None:
    api.responder = ReviewScript([True])
    task, full, result = await _run(stubs, rounds=5)
    assert task.status == enums.TASK_STATUS_COMPLETED, task
    assert full.review.outcome == enums.REVIEW_OUTCOME_APPROVED and len(full.review.rounds) == 1
    assert [s.name.rsplit("/", 1)[1] for s in full.subtasks] == ["s0", "review-1"]
    assert result.output == full.subtasks[0].output
    assert task.usage.model_calls == 2


def test_a_reply_without_the_tool_call_is_kept_as_text() -> None:
    class Block:
        type, text = "text", "Looks fine to me."

    class Message:
        content = [Block()]

    assert claude.parse_review(Message()) == "Looks fine to me."
