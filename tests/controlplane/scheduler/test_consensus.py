"""Consensus with real agents over the stream: candidates on distinct agents, voting rounds, outcomes."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from agent_sdk.agent import Agent
from agent_sdk.context import Ballot, Context, VoteChoice
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import errors_pb2 as errors
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from agent_sdk.worker import Worker
from controlplane.app import App
from tests.harness.server import Stubs, wait_for


class Opinionated(Agent):
    """Answers with its opinion and votes for the candidate that says the same."""

    agent_type = "opinion"
    capabilities = ["*"]
    max_concurrency = 4

    def __init__(self, opinion: str, confidence: float = 0.9):
        self.opinion = opinion
        self.confidence = confidence
        self.ballots: list[Ballot] = []

    async def handle(self, ctx: Context) -> str:
        return self.opinion

    async def vote(self, ballot: Ballot) -> VoteChoice:
        self.ballots.append(ballot)
        mine = next(c for c in ballot.candidates if c.content == self.opinion)
        return VoteChoice(mine.id, self.confidence, f"I said {self.opinion}")


@asynccontextmanager
async def agents(address: str, *opinions: str):
    workers = [Worker(Opinionated(o), address) for o in opinions]
    runners = [asyncio.get_running_loop().create_task(w.run()) for w in workers]
    try:
        for worker in workers:
            await asyncio.wait_for(worker.registered.wait(), 10)
        yield workers
    finally:
        for worker in workers:
            await worker.shutdown(0.5)
        await asyncio.gather(*runners)


def consensus_task(threshold: float, rounds: int = 2, strategy: int = 0) -> t.SubmitTaskRequest:
    return t.SubmitTaskRequest(
        task=m.Task(
            description="Recommend a deployment strategy",
            consensus=m.ConsensusPolicy(
                required=True, threshold=threshold, max_rounds=rounds, strategy=strategy
            ),
        )
    )


async def finished(stubs: Stubs, name: str) -> t.GetTaskResponse:
    async def done():
        full = await stubs.tasks.GetTask(t.GetTaskRequest(name=name, view=enums.TASK_VIEW_FULL), timeout=5)
        return full if full.task.status in (enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED) else None

    return await wait_for(done, 20, message=f"{name} to finish")


async def test_consensus_reached(control_plane: App, stubs: Stubs) -> None:
    async with agents(control_plane.address, "blue-green", "blue-green", "canary") as workers:
        reply = await stubs.tasks.SubmitTask(consensus_task(0.6), timeout=5)
        full = await finished(stubs, reply.task.name)
    assert full.task.status == enums.TASK_STATUS_COMPLETED
    record = full.consensus
    assert record.outcome == enums.CONSENSUS_OUTCOME_REACHED and record.rounds == 1
    assert len(record.candidates) == 3
    assert len({c.agent for c in record.candidates}) == 3  # candidates came from distinct agents
    winner = next(c for c in record.candidates if c.id == record.winning_candidate_id)
    assert winner.content == "blue-green" and round(record.agreement, 2) == 0.67
    content = {c.id: c.content for c in record.candidates}
    assert sorted(content[v.candidate_id] for v in record.votes) == ["blue-green", "blue-green", "canary"]
    assert all(v.round == 1 and v.weight == 1.0 for v in record.votes)
    results = await stubs.tasks.GetTaskResults(t.GetTaskResultsRequest(name=reply.task.name), timeout=5)
    assert results.result.output == "blue-green"
    assert results.result.consensus.winning_candidate_id == record.winning_candidate_id
    assert all(len(w.agent.ballots) == 1 for w in workers)


async def test_no_consensus_keeps_every_candidate_and_vote(control_plane: App, stubs: Stubs) -> None:
    async with agents(control_plane.address, "blue-green", "blue-green", "canary") as workers:
        reply = await stubs.tasks.SubmitTask(consensus_task(0.75, rounds=2), timeout=5)
        full = await finished(stubs, reply.task.name)
    assert full.task.status == enums.TASK_STATUS_FAILED
    assert full.task.failure.reason == errors.ERROR_REASON_NO_CONSENSUS
    assert "threshold of 0.75 in 2 round(s)" in full.task.failure.message
    record = full.consensus
    assert record.outcome == enums.CONSENSUS_OUTCOME_NO_CONSENSUS and record.rounds == 2
    assert len(record.candidates) == 3 and len(record.votes) == 6
    assert {v.round for v in record.votes} == {1, 2}
    # The second round showed each voter the votes of the first.
    assert all(len(w.agent.ballots[1].previous_votes) == 3 for w in workers)


async def test_unanimous_strategy_from_runtime_config(control_plane: App, stubs: Stubs) -> None:
    await stubs.system.SetConfig(
        system_pb.SetConfigRequest(key="consensus.voting_strategy", value="unanimous")
    )
    async with agents(control_plane.address, "a", "a", "b"):
        reply = await stubs.tasks.SubmitTask(consensus_task(0.5, rounds=1), timeout=5)
        full = await finished(stubs, reply.task.name)
    assert full.consensus.strategy == enums.VOTING_STRATEGY_UNANIMOUS
    assert full.task.status == enums.TASK_STATUS_FAILED  # 2 of 3 is a majority, not unanimity


async def test_too_few_distinct_agents_fail_at_once(control_plane: App, stubs: Stubs) -> None:
    """Candidates run on distinct agents: with one agent and no type to launch more, the task fails at once
    saying how many it needs and has (it used to wait forever for a free agent slot)."""
    async with agents(control_plane.address, "solo"):
        reply = await stubs.tasks.SubmitTask(consensus_task(0.5), timeout=5)
        full = await finished(stubs, reply.task.name)
    assert full.task.status == enums.TASK_STATUS_FAILED
    assert full.task.failure.reason == errors.ERROR_REASON_NO_ELIGIBLE_AGENTS
    assert "consensus needs 3 distinct agents" in full.task.failure.message
    assert "1 connected" in full.task.failure.message
