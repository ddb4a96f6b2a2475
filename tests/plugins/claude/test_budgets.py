"""Every token counted, budgets honoured: real control plane, CLI, Claude agents and the Messages API test server.

The test server reports token usage as word counts; the responder here answers with as many words as the
request's ``max_tokens`` allows (at most 400), the way a model writes until its limit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import errors_pb2 as errors
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from controlplane.app import App
from controlplane.domain.events import EventType
from maos_plugins.claude.agents import CoordinatorAgent, ResearcherAgent
from tests.cli.conftest import Maos
from tests.harness.messages_api import MessageReply, MessagesAPIServer
from tests.harness.server import Stubs, wait_for
from tests.plugins.claude.conftest import params
from tests.plugins.claude.test_context_flows import agents

FOUR_PARTS = "Research four markets:\n1. Cloud\n2. Edge\n3. AI platforms\n4. Security"


def up_to_max_tokens(body: dict[str, Any]) -> MessageReply:
    words = min(400, int(body["max_tokens"]))
    return MessageReply(
        [{"type": "text", "text": " ".join(["word"] * words)}],
        stop_reason="max_tokens" if words < 400 else "end_turn",
    )


def spent(usage: msgs.TokenUsage) -> int:
    return (
        usage.input_tokens
        + usage.output_tokens
        + usage.cache_read_input_tokens
        + usage.cache_creation_input_tokens
    )


async def test_parallel_parts_share_the_token_budget_and_a_stopped_task_keeps_its_parts(
    control_plane: App, maos_home: Path, api: MessagesAPIServer
) -> None:
    api.responder = up_to_max_tokens
    maos = Maos(control_plane.address, maos_home)
    async with agents(control_plane.address, ResearcherAgent(params(api)), ResearcherAgent(params(api))):
        submitted = await maos(
            "task",
            "submit",
            FOUR_PARTS,
            "--type",
            "research",
            "--max-agents",
            "4",
            "--max-tokens",
            "3000",
            "--wait",
            "-o",
            "json",
        )
    assert submitted.exit_code == 10, submitted.output  # FAILED
    result = json.loads(submitted.stdout)["result"]
    task_id = json.loads(submitted.stdout)["task_id"]
    assert result["failure"]["reason"] == "BUDGET_EXCEEDED"
    served = sum(int(r.body["max_tokens"]) for r in api.requests)
    usage = result["usage"]
    total = sum(
        int(usage.get(k, 0))
        for k in ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    )
    assert total <= 3300, (total, served)  # never more than 10 % over (before: 2.4 times the budget)
    assert len(api.requests) == 4  # the four parts ran; the synthesis could not fit in what was left
    kept = [s for s in result["subtasks"] if s["status"] == "COMPLETED"]
    assert len(kept) == 4 and all(s["output"].startswith("word word") for s in kept)

    shown = await maos("task", "results", task_id)
    assert "BUDGET_EXCEEDED" in shown.stdout
    assert "Completed parts (kept):" in shown.stdout
    assert [line for line in shown.stdout.splitlines() if line.startswith("## ")] == [
        "## Cloud",
        "## Edge",
        "## AI platforms",
        "## Security",
    ]
    show = await maos("task", "show", task_id)
    assert re.search(r"Budget:\s+[\d,]+ of 3,000 tokens", show.stdout), show.stdout


async def test_a_task_within_its_budget_completes_with_every_call_counted(
    control_plane: App, stubs: Stubs, api: MessagesAPIServer
) -> None:
    api.responder = up_to_max_tokens
    async with agents(control_plane.address, ResearcherAgent(params(api)), CoordinatorAgent(params(api))):
        reply = await stubs.tasks.SubmitTask(
            tasks_pb.SubmitTaskRequest(
                task=msgs.Task(
                    description=FOUR_PARTS,
                    task_type="research",
                    max_agents=4,
                    budget=msgs.Budget(max_total_tokens=12_000),
                )
            ),
            timeout=5,
        )

        async def finished() -> tasks_pb.GetTaskResponse | None:
            got = await stubs.tasks.GetTask(tasks_pb.GetTaskRequest(name=reply.task.name), timeout=5)
            return got if got.task.status in (enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED) else None

        done = await wait_for(finished, 30, message="the task")
    assert done.task.status == enums.TASK_STATUS_COMPLETED, done.task.failure
    assert done.task.usage.model_calls == 5 == len(api.requests)  # four parts and the synthesis
    reported = sum(
        len(" ".join(["word"] * min(400, int(r.body["max_tokens"]))).split()) for r in api.requests
    )
    assert done.task.usage.output_tokens == reported
    assert spent(done.task.usage) <= 12_000
    # the first part could not take the whole budget: it got a fifth of it (minus its prompt)
    assert max(int(r.body["max_tokens"]) for r in api.requests[:4]) < 12_000 // 5


async def test_a_cancelled_stream_is_charged_for_what_it_delivered(
    control_plane: App, stubs: Stubs, api: MessagesAPIServer
) -> None:
    api.responder = lambda body: MessageReply(
        [{"type": "text", "text": " ".join(["slow"] * 200)}], chunk_delay=0.05
    )
    async with agents(control_plane.address, ResearcherAgent(params(api))):
        reply = await stubs.tasks.SubmitTask(
            tasks_pb.SubmitTaskRequest(task=msgs.Task(description="Write slowly")), timeout=5
        )
        await wait_for(
            lambda: any(e.type == EventType.SUBTASK_OUTPUT for e in control_plane.engine.recent_events),
            10,
            message="the first words of the answer",
        )
        cancelled = await stubs.tasks.CancelTask(tasks_pb.CancelTaskRequest(name=reply.task.name), timeout=5)
        assert cancelled.task.status == enums.TASK_STATUS_CANCELLED

        async def charged() -> msgs.Task | None:
            got = await stubs.tasks.GetTask(tasks_pb.GetTaskRequest(name=reply.task.name), timeout=5)
            return got.task if got.task.usage.model_calls else None

        task = await wait_for(charged, 10, message="the cancelled call's usage")
    assert task.status == enums.TASK_STATUS_CANCELLED
    assert task.usage.model_calls == 1 and task.usage.input_tokens > 0 and task.usage.output_tokens > 0
    assert task.usage.output_tokens < 200  # what was delivered, not the whole answer


async def test_a_round_of_unusable_votes_is_no_consensus_and_every_vote_is_counted(
    control_plane: App, stubs: Stubs, api: MessagesAPIServer
) -> None:
    api.responder = lambda body: (
        "I cannot decide." if "cast_vote" in str(body.get("tools")) else "Use canary."
    )
    async with agents(control_plane.address, *(CoordinatorAgent(params(api)) for _ in range(3))):
        reply = await stubs.tasks.SubmitTask(
            tasks_pb.SubmitTaskRequest(
                task=msgs.Task(
                    description="Recommend a deployment strategy",
                    context="A hospital",
                    constraints="No downtime",
                    consensus=msgs.ConsensusPolicy(required=True, threshold=0.5, max_rounds=1),
                )
            ),
            timeout=5,
        )

        async def finished() -> tasks_pb.GetTaskResponse | None:
            got = await stubs.tasks.GetTask(
                tasks_pb.GetTaskRequest(name=reply.task.name, view=enums.TASK_VIEW_FULL), timeout=5
            )
            return got if got.task.status in (enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED) else None

        full = await wait_for(finished, 20, message="the consensus task")
    assert full.task.status == enums.TASK_STATUS_FAILED
    assert full.task.failure.reason == errors.ERROR_REASON_NO_CONSENSUS
    assert "every vote abstained" in full.task.failure.message
    assert full.consensus.outcome == enums.CONSENSUS_OUTCOME_NO_CONSENSUS
    assert len(full.consensus.votes) == 3 and all(
        v.abstained and not v.candidate_id for v in full.consensus.votes
    )
    assert full.task.usage.model_calls == 6 == len(api.requests)  # three candidates, three votes
    votes = [r for r in api.requests if "cast_vote" in str(r.body.get("tools"))]
    assert all(
        "A hospital" in str(r.body["messages"]) and "No downtime" in str(r.body["messages"]) for r in votes
    )


async def test_wait_follow_prints_the_models_text_as_it_streams(
    control_plane: App, maos_home: Path, api: MessagesAPIServer
) -> None:
    api.responder = lambda body: MessageReply(
        [{"type": "text", "text": "Streaming answer in several words."}], chunk_delay=0.02
    )
    maos = Maos(control_plane.address, maos_home)
    async with agents(control_plane.address, ResearcherAgent(params(api))):
        followed = await maos("task", "submit", "Write an answer", "--wait", "--follow")
    assert followed.exit_code == 0, followed.output
    streamed, _, result = followed.stdout.partition("Task:")
    assert "── s0 Write an answer ──" in streamed
    assert "Streaming answer in several words." in streamed  # before the result block
    assert "Streaming answer in several words." in result
    assert "1/1 steps done" in followed.stderr


async def test_a_cost_budget_is_overshot_by_at_most_one_calls_price(
    control_plane: App, stubs: Stubs, api: MessagesAPIServer
) -> None:
    api.responder = up_to_max_tokens
    async with agents(control_plane.address, ResearcherAgent(params(api)), CoordinatorAgent(params(api))):
        reply = await stubs.tasks.SubmitTask(
            tasks_pb.SubmitTaskRequest(
                task=msgs.Task(
                    description=FOUR_PARTS,
                    task_type="research",
                    max_agents=4,
                    budget=msgs.Budget(max_cost_micros=20_000),
                )
            ),
            timeout=5,
        )

        async def finished() -> tasks_pb.GetTaskResponse | None:
            got = await stubs.tasks.GetTask(
                tasks_pb.GetTaskRequest(name=reply.task.name, view=enums.TASK_VIEW_FULL), timeout=5
            )
            return got if got.task.status in (enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED) else None

        done = await wait_for(finished, 30, message="the task")
    assert (
        done.task.status == enums.TASK_STATUS_COMPLETED
        or done.task.failure.reason == errors.ERROR_REASON_BUDGET_EXCEEDED
    ), done.task.failure
    dearest = max(s.usage.cost_micros for s in done.subtasks)
    assert done.task.usage.cost_micros <= 20_000 + dearest
    assert len(api.requests) >= 4  # the parts shared the budget rather than the first taking it all


async def test_votes_share_what_the_budget_has_left(
    control_plane: App, stubs: Stubs, api: MessagesAPIServer
) -> None:
    def respond(body: dict[str, Any]) -> Any:
        if "cast_vote" not in str(body.get("tools")):
            return "Use canary releases."
        first = re.search(r'<candidate id="([^"]+)">', str(body["messages"][-1]["content"])).group(1)
        return MessageReply(
            [
                {
                    "type": "tool_use",
                    "id": "toolu_v",
                    "name": "cast_vote",
                    "input": {"candidate_id": first, "confidence": 0.9, "rationale": "fine"},
                }
            ],
            stop_reason="tool_use",
        )

    api.responder = respond
    async with agents(control_plane.address, *(CoordinatorAgent(params(api)) for _ in range(3))):
        reply = await stubs.tasks.SubmitTask(
            tasks_pb.SubmitTaskRequest(
                task=msgs.Task(
                    description="Recommend a deployment strategy",
                    budget=msgs.Budget(max_total_tokens=2400),
                    consensus=msgs.ConsensusPolicy(required=True, threshold=0.5, max_rounds=1),
                )
            ),
            timeout=5,
        )

        async def finished() -> tasks_pb.GetTaskResponse | None:
            got = await stubs.tasks.GetTask(
                tasks_pb.GetTaskRequest(name=reply.task.name, view=enums.TASK_VIEW_FULL), timeout=5
            )
            return got if got.task.status in (enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED) else None

        full = await wait_for(finished, 20, message="the consensus task")
    assert full.task.status == enums.TASK_STATUS_COMPLETED, full.task.failure
    votes = [r for r in api.requests if "cast_vote" in str(r.body.get("tools"))]
    assert len(votes) == 3
    candidates_spent = spent(full.task.usage) - sum(spent(v.usage) for v in full.consensus.votes)
    share = (2400 - candidates_spent) // 3
    assert all(
        int(r.body["max_tokens"]) < share for r in votes
    )  # each vote within its third of what was left
    assert spent(full.task.usage) <= 2400
