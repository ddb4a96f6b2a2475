"""Consensus: several agents answer the decision step, then vote on the answers.

A component of :class:`~controlplane.scheduler.engine.Engine`; it owns the
timers of the open rounds. For a task with
``consensus.required``, the plan's decision step (its single sink: the
synthesis step, or the only step) is replaced by ``candidates`` CANDIDATE
subtasks that must run on distinct agents. When every candidate is done, a
voting round opens: each voter (the candidates' authors that are still
connected, topped up with other capable agents) gets a VoteRequest; the
round closes when all have voted or its timeout passes, and
:func:`controlplane.domain.consensus.tally` decides. No winner after
``max_rounds`` rounds fails the task with ERROR_REASON_NO_CONSENSUS, keeping
every candidate and vote. The record lives on the task
(``Task.consensus_state``), so it is durable and survives restarts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from controlplane.domain.budget import NOTHING_LEFT, reserve_share
from controlplane.domain.consensus import Ballot, tally
from controlplane.domain.limits import quote
from controlplane.domain.model import (
    AgentInfo,
    ExecutionPlan,
    Failure,
    PlannedSubtask,
    Subtask,
    SubtaskKind,
    SubtaskStatus,
    Task,
    TaskStatus,
    Usage,
    as_dict,
    now,
)
from controlplane.domain.planning import SYNTHESIS_CAPABILITY
from controlplane.scheduler.budgets import Reservations
from controlplane.scheduler.commands import Ack, Ref, VoteOnCandidates
from controlplane.scheduler.committer import Committer
from controlplane.scheduler.sessions import AgentSession

MIN_VOTERS = 3


def candidate_key(step: str, index: int) -> str:
    """The subtask id of candidate ``index`` of decision step ``step``."""
    return f"{step}-c{index}"


def with_candidates(plan: ExecutionPlan, candidates: int) -> tuple[ExecutionPlan, str]:
    """The plan with its decision step replaced by candidate steps; and the step's key."""
    sinks = [s for s in plan.subtasks if not any(s.key in o.depends_on for o in plan.subtasks)]
    if len(sinks) == 1:
        decision = sinks[0]
        others = [s for s in plan.subtasks if s is not decision]
    else:  # several ends: a synthesis step becomes the decision
        decision = PlannedSubtask(
            "synthesis",
            "Synthesize the results",
            "Combine the results of the parts into one answer.",
            capability=SYNTHESIS_CAPABILITY,
            kind=SubtaskKind.SYNTHESIS,
            depends_on=[s.key for s in sinks],
        )
        others = list(plan.subtasks)
    copies = [
        PlannedSubtask(
            candidate_key(decision.key, i),
            f"{decision.title} (candidate {i + 1})",
            decision.instructions,
            decision.capability,
            decision.agent_type,
            SubtaskKind.CANDIDATE,
            list(decision.depends_on),
        )
        for i in range(candidates)
    ]
    return ExecutionPlan(
        subtasks=[*others, *copies],
        planner=plan.planner,
        warnings=list(plan.warnings),
        complexity=plan.complexity,
        recommended_agents=max(plan.recommended_agents, candidates),
        estimated_parallel_efficiency=plan.estimated_parallel_efficiency,
        critical_path_length=plan.critical_path_length,
    ), decision.key


class Consensus:
    """Candidate answers and voting rounds."""

    def __init__(
        self,
        *,
        tasks: dict[str, Task],
        subtasks: dict[str, dict[str, Subtask]],
        sessions: dict[str, AgentSession],
        agents: dict[str, AgentInfo],
        committer: Committer,
        reservations: Reservations,
        setting: Callable[[str], Any],
        heartbeat_interval: float,
        finish_task: Callable[[Task, TaskStatus, Failure | None], None],
        answer_ready: Callable[..., None],
        charge_agent: Callable[[AgentSession, Usage], None],
        charge_task: Callable[[str, Usage], None],
        kick: Callable[[], None],
    ):
        #: The task book's records, and the agent side's sessions and agents (read only here).
        self.tasks = tasks
        self.subtasks = subtasks
        self.sessions = sessions
        self.agents = agents
        self.committer = committer
        self.reservations = reservations
        self.setting = setting
        self.heartbeat_interval = heartbeat_interval
        self._finish_task = finish_task
        self._answer_ready = answer_ready
        self._charge_agent = charge_agent
        self.charge_task = charge_task
        self._kick = kick
        self._round_timers: dict[str, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Time rounds on ``loop`` from now on."""
        self._loop = loop

    def cancel(self, task_id: str | None = None) -> None:
        """Stop the round timer of the task (of every task when None)."""
        if task_id is not None:
            timer = self._round_timers.pop(task_id, None)
            if timer:
                timer.cancel()
            return
        for timer in self._round_timers.values():
            timer.cancel()
        self._round_timers.clear()

    def _consensus_plan(self, task: Task, plan: ExecutionPlan) -> ExecutionPlan:
        plan, step = with_candidates(plan, task.consensus.candidates)
        strategy = task.consensus.strategy or self.setting("consensus.voting_strategy")
        task.consensus_state = {
            "step": step,
            "round": 0,
            "outcome": "PENDING",
            "strategy": strategy,
            "threshold": task.consensus.threshold,
            "candidates": [],
            "votes": [],
            "voters": [],
            "winner": "",
            "agreement": 0.0,
            "deadline": None,
        }
        return plan

    def _candidate_allowed(self, task: Task, subtask_id: str, session: AgentSession) -> bool:
        """Candidates of one step run on distinct agents."""
        state = task.consensus_state
        sub = self.subtasks[task.id][subtask_id]
        if state is None or sub.kind != SubtaskKind.CANDIDATE:
            return True
        return not any(
            other.kind == SubtaskKind.CANDIDATE
            and other.id != sub.id
            and other.agent_id == session.id
            and other.status in (SubtaskStatus.RUNNING, SubtaskStatus.COMPLETED)
            for other in self.subtasks[task.id].values()
        )

    def _candidates_done(self, task: Task) -> bool:
        """Whether voting should start (or has): every candidate completed."""
        subs = [s for s in self.subtasks[task.id].values() if s.kind == SubtaskKind.CANDIDATE]
        return bool(subs) and all(s.status == SubtaskStatus.COMPLETED for s in subs)

    def _open_round(self, task: Task, *, same_round: bool = False) -> None:
        state = dict(task.consensus_state or {})
        if not same_round:
            state["round"] += 1
        candidates = [s for s in self.subtasks[task.id].values() if s.kind == SubtaskKind.CANDIDATE]
        state["candidates"] = [{"id": s.id, "agent": s.agent_id, "content": s.output} for s in candidates]
        voters = [c["agent"] for c in state["candidates"] if c["agent"] in self.sessions]
        voters = list(dict.fromkeys(voters))
        if len(voters) < MIN_VOTERS:
            step = next((s for s in candidates), None)
            for session in self.sessions.values():
                if len(voters) >= MIN_VOTERS:
                    break
                capable = (
                    step is None
                    or not step.capability
                    or step.capability in session.capabilities
                    or "*" in session.capabilities
                )
                if session.id not in voters and capable and not session.paused and not session.draining:
                    voters.append(session.id)
        timeout = task.consensus.round_timeout or self.setting("consensus.timeout")
        state["voters"] = voters
        state["deadline"] = now() + timeout
        task.consensus_state = state
        self.committer.task(task)
        proposal = self._proposal(task, state["round"])
        previous = [v for v in state["votes"] if v["round"] == state["round"] - 1]
        # Each voter may spend an equal share of what the task has left (nothing else runs meanwhile).
        held_tokens, held_cost = self.reservations.held(task.id)
        token_share = reserve_share(task.max_total_tokens, task.usage.total_tokens, held_tokens, len(voters))
        cost_share = reserve_share(task.max_cost_micros, task.usage.cost_micros, held_cost, len(voters))
        if voters and NOTHING_LEFT in (token_share, cost_share):
            task.consensus_state = {**state, "outcome": "NO_CONSENSUS"}
            self._finish_task(
                task,
                TaskStatus.FAILED,
                Failure("ERROR_REASON_BUDGET_EXCEEDED", "the task's budget has nothing left for the votes"),
            )
            return
        for voter in voters:
            self.sessions[voter].send(
                VoteOnCandidates(
                    proposal=proposal,
                    task_id=task.id,
                    question=task.description,
                    candidates=[(c["id"], c["agent"], c["content"]) for c in state["candidates"]],
                    round=state["round"],
                    deadline=state["deadline"],
                    previous_votes=[
                        (v["voter"], v["candidate_id"], v["confidence"], v["rationale"]) for v in previous
                    ],
                    context=task.context,
                    constraints=task.constraints,
                    max_total_tokens=token_share,
                    max_cost_micros=cost_share,
                )
            )
        handle = self._round_timers.pop(task.id, None)
        if handle:
            handle.cancel()
        self._round_timers[task.id] = self._loop.call_later(  # type: ignore[union-attr]
            timeout, self._close_round, task.id, state["round"]
        )
        if not voters:
            self._close_round(task.id, state["round"])

    @staticmethod
    def _proposal(task: Task, round_number: int) -> str:
        return f"tasks/{task.id}/proposals/r{round_number}"

    def cast_vote(
        self,
        session: AgentSession,
        proposal: str,
        candidate_id: str,
        confidence: float,
        rationale: str,
        round_number: int,
        *,
        usage: Usage | None = None,
        abstain: bool = False,
    ) -> None:
        """Count one agent's vote in the open round (once); ack it after commit.

        ``usage`` (what judging cost) is charged to the task once per voter and
        round. An abstention (no usable judgement) ends the voter's turn but is
        not counted: a round where every vote abstains reaches no consensus.
        """
        parts = proposal.split("/")
        task = self.tasks.get(parts[1]) if len(parts) == 4 and parts[0] == "tasks" else None
        state = task.consensus_state if task is not None else None
        ref = Ref(parts[1] if len(parts) > 1 else "", "", round_number, 0)
        if (
            task is None
            or state is None
            or state["outcome"] != "PENDING"
            or proposal != self._proposal(task, state["round"])
        ):
            if (
                task is not None
                and state is not None
                and session.id in state["voters"]
                and not any(v["voter"] == session.id and v["round"] == round_number for v in state["votes"])
            ):
                self._charge_agent(session, usage or Usage())
                self.charge_task(task.id, usage or Usage())  # judged too late
            session.send(
                Ack(
                    ref, False, "ERROR_REASON_PROPOSAL_CLOSED", "that proposal is not open", proposal=proposal
                )
            )
            return
        if session.id not in state["voters"]:
            session.send(
                Ack(
                    ref,
                    False,
                    "ERROR_REASON_PERMISSION_DENIED",
                    "this agent was not asked to vote",
                    proposal=proposal,
                )
            )
            return
        if abstain:
            candidate_id, confidence = "", 0.0
        elif candidate_id not in {c["id"] for c in state["candidates"]}:
            session.send(
                Ack(
                    ref,
                    False,
                    "ERROR_REASON_INVALID_FIELD",
                    f"no candidate {quote(candidate_id)}",
                    proposal=proposal,
                )
            )
            return
        if any(v["voter"] == session.id and v["round"] == state["round"] for v in state["votes"]):
            session.send(Ack(ref, True, message="duplicate vote ignored", proposal=proposal))
            return
        spent = usage or Usage()
        vote = {
            "voter": session.id,
            "candidate_id": candidate_id,
            "confidence": max(0.0, min(1.0, confidence)),
            "rationale": rationale[:4000],
            "round": state["round"],
            "weight": 0.0,
            "usage": as_dict(spent),
        }
        task.consensus_state = {**state, "votes": [*state["votes"], vote]}
        self.committer.task(task)
        self._charge_agent(session, spent)
        self.charge_task(task.id, spent)
        if task.status.finished:  # the vote's cost took the task past its budget
            return
        self.committer.after_commit(lambda: session.send(Ack(ref, True, proposal=proposal)))
        voted = {v["voter"] for v in task.consensus_state["votes"] if v["round"] == state["round"]}
        if voted >= set(state["voters"]):
            self._close_round(task.id, state["round"])

    def _close_round(self, task_id: str, round_number: int) -> None:
        task = self.tasks.get(task_id)
        state = task.consensus_state if task is not None else None
        if task is None or state is None or state["outcome"] != "PENDING" or state["round"] != round_number:
            return
        handle = self._round_timers.pop(task_id, None)
        if handle:
            handle.cancel()
        votes = [
            v for v in state["votes"] if v["round"] == round_number and v["candidate_id"]
        ]  # no abstentions
        reliability = {a: self.agents[a].reliability for a in {v["voter"] for v in votes} if a in self.agents}
        result = tally(
            state["strategy"],
            state["threshold"],
            [Ballot(v["voter"], v["candidate_id"], v["confidence"]) for v in votes],
            reliability,
        )
        weighted = [
            {**v, "weight": result.weights.get(v["voter"], 0.0)} if v["round"] == round_number else v
            for v in state["votes"]
        ]
        state = {**state, "votes": weighted, "agreement": result.agreement}
        if result.reached:
            winner = next(c for c in state["candidates"] if c["id"] == result.leader)
            task.consensus_state = {**state, "outcome": "REACHED", "winner": winner["id"]}
            self._answer_ready(task, winner["id"])  # reviewed first with review_rounds
        elif round_number < task.consensus.max_rounds:
            task.consensus_state = state
            self._open_round(task)
        else:
            task.consensus_state = {**state, "outcome": "NO_CONSENSUS"}
            cast = [v for v in state["votes"] if v["round"] == round_number]
            best = (
                f"; the best candidate had {result.agreement:.0%}"
                if votes
                else "; every vote abstained (no usable judgement)"
                if cast
                else "; no votes arrived"
            )
            self._finish_task(
                task,
                TaskStatus.FAILED,
                Failure(
                    "ERROR_REASON_NO_CONSENSUS",
                    f"no candidate reached the {state['strategy']} threshold of {state['threshold']:g} "
                    f"in {round_number} round(s){best}",
                ),
            )
        self._kick()

    def _resume_consensus(self, task: Task) -> None:
        """After a restart: reopen the round that was open (votes already cast are kept)."""
        state = task.consensus_state
        if state and state["outcome"] == "PENDING" and self._candidates_done(task) and state["round"] > 0:
            self._round_timers[task.id] = self._loop.call_later(  # type: ignore[union-attr]
                self.heartbeat_interval * 2, self._reopen, task.id
            )

    def _reopen(self, task_id: str) -> None:
        task = self.tasks.get(task_id)
        if task is not None and task.consensus_state and task.consensus_state["outcome"] == "PENDING":
            self._open_round(task, same_round=True)
