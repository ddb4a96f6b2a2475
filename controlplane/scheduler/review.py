"""Review rounds and plan approval: the steps a task takes after its answer, and before its work.

A component of :class:`~controlplane.scheduler.engine.Engine`. It holds no state of its own: every
record it keeps is on the task (durable); it takes the task book's records and the engine's
transitions it needs.

* **Review rounds** (``Task.review_rounds``, the rules in :mod:`controlplane.domain.review`): when a
  task's answer is ready, :meth:`_answer_ready` either finishes the task or adds the REVIEW step of
  round 1; each time the loop's latest step completes, :meth:`_review_step_done` reads the verdict and
  adds a REVISION step, the next REVIEW step, or finishes the task. The steps are ordinary subtasks
  (leased, retried, charged, checkpointed like any other); the record is on the task, so a restart
  resumes the loop where it was.
* **Plan approval** (``Task.approve_plan``): :meth:`_await_approval` keeps a planned task PENDING,
  its plan stored and no subtask made, until :meth:`approve` makes the subtasks of exactly that plan
  or :meth:`reject` cancels the task. The approval record is on the task (durable).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from controlplane.domain import review as rules
from controlplane.domain.events import Event, EventType
from controlplane.domain.model import Failure, Subtask, SubtaskStatus, Task, TaskStatus, now
from controlplane.domain.tasks import combine_outputs
from controlplane.errors import FailedPrecondition
from controlplane.scheduler.committer import Committer
from controlplane.scheduler.pool_side import PoolSide

WAITING, APPROVED, REJECTED = "WAITING", "APPROVED", "REJECTED"
WAITING_REASON = "waiting for plan approval"


class Review:
    """Review rounds and plan approval."""

    def __init__(
        self,
        *,
        tasks: dict[str, Task],
        subtasks: dict[str, dict[str, Subtask]],
        committer: Committer,
        pool: PoolSide,
        get_task: Callable[[str], Awaitable[Task]],
        publish: Callable[..., None],
        finish_task: Callable[[Task, TaskStatus, Failure | None], None],
        enqueue: Callable[[Task, Subtask], None],
        count: Callable[[Task, Subtask, SubtaskStatus, int], None],
        start_plan: Callable[..., None],
        kick: Callable[[], None],
    ):
        #: The task book's records (the steps added here join them).
        self.tasks = tasks
        self.subtasks = subtasks
        self.committer = committer
        self._pool = pool
        self.get_task = get_task
        self._publish = publish
        self._finish_task = finish_task
        self._enqueue = enqueue
        self._count = count
        #: Ids of tasks that started waiting for plan approval (some may have moved on since).
        self.waiting: set[str] = set()
        self._start_plan = start_plan
        self._kick = kick

    @property
    def supply(self) -> Any:
        """What the supervisor can launch, or None."""
        return self._pool.supply

    def agent_pool(self) -> Any:
        """The pool review steps are made for."""
        return self._pool.agent_pool()

    def _demand(self, agent_type: str, capability: str) -> None:
        self._pool._demand(agent_type, capability)

    # --- review rounds ----------------------------------------------------------

    def _answer_ready(self, task: Task, answer: str | None = None) -> None:
        """Every step of the task completed (and its consensus, if any, was reached): review or finish.

        ``answer``: the step whose output is the answer (the consensus winner); by default the plan's.
        """
        subs = self.subtasks[task.id]
        record = task.review_state
        if record is None and task.review_rounds > 0:
            step = rules.answer_step(subs) if answer is None else answer
            task.review_state = rules.new_record(task.review_rounds, step)
            self._add_review(task, 1, step)
            return
        if record is not None and record["outcome"] == rules.PENDING:
            self._review_step_done(task)
            return
        if record is not None:
            task.output = rules.current_answer(record, subs)
        elif answer is not None:
            task.output = subs[answer].output
        else:
            task.output = combine_outputs(list(subs.values()))
        self._finish_task(task, TaskStatus.COMPLETED, None)

    def _add_review(self, task: Task, round_number: int, after: str) -> None:
        sub = rules.review_step(task, round_number, after, self.agent_pool())
        record = dict(task.review_state or {})
        record["rounds"] = [
            *record["rounds"],
            {
                "round": round_number,
                "review_step": sub.id,
                "reviewer": "",
                "verdict": None,
                "revision_step": "",
                "usage": {},
                "note": "",
            },
        ]
        task.review_state = record
        self._add_step(task, sub)

    def _add_step(self, task: Task, sub: Subtask) -> None:
        sub.status = SubtaskStatus.QUEUED
        sub.queue_time = now()
        replaced = self.subtasks[task.id].get(sub.id)
        if replaced is not None:
            self._count(task, replaced, replaced.status, -1)
        self.subtasks[task.id][sub.id] = sub
        self._count(task, sub, sub.status, 1)
        task.update_time = now()
        self.committer.task(task)
        self.committer.subtask(sub)
        self._publish(
            Event(
                EventType.SUBTASK_STATUS_CHANGED,
                task_id=task.id,
                subtask_id=sub.id,
                to_status=SubtaskStatus.QUEUED.name,
            ),
            task,
            sub,
        )
        self._enqueue(task, sub)
        if self.supply is not None:  # launch an agent for it if none can take it
            self._demand(sub.agent_type, sub.capability)

    def _review_step_done(self, task: Task) -> None:
        """The loop's latest step (a review or a revision) completed: take the next one, or finish."""
        subs = self.subtasks[task.id]
        record = dict(task.review_state or {})
        rounds = [dict(r) for r in record["rounds"]]
        last: dict[str, Any] = rounds[-1]
        number = last["round"]
        if last["verdict"] is None:  # the review of this round just completed
            review = subs[last["review_step"]]
            verdict = rules.parse_verdict(review.output)
            last.update(
                verdict=verdict.as_dict(),
                reviewer=review.agent_id,
                usage=dataclasses.asdict(review.usage),
                note=verdict.note,
            )
            record["rounds"] = rounds
            task.review_state = record
            if verdict.note:
                task.warnings = [*task.warnings, f"review round {number}: {verdict.note}"]
            self._publish(
                Event(
                    EventType.REVIEW_ROUND,
                    task_id=task.id,
                    subtask_id=review.id,
                    agent_id=review.agent_id,
                    message=f"review round {number}: {rules.verdict_text(verdict.as_dict())}",
                    data={"round": number, "approved": verdict.approved, "changes": list(verdict.changes)},
                ),
                task,
                review,
            )
            if verdict.approved:
                task.review_state = {**record, "outcome": rules.APPROVED}
                self._answer_ready(task)
                return
            author = subs.get(record["answer_step"]) if record["answer_step"] else None
            revision = rules.revision_step(task, number, verdict.changes, author)
            last["revision_step"] = revision.id
            task.review_state = {**record, "rounds": rounds}
            self._add_step(task, revision)
            return
        # The revision of this round completed: it is the answer now.
        record["answer_step"] = last["revision_step"]
        if number >= record["max_rounds"]:
            task.review_state = {**record, "outcome": rules.EXHAUSTED}
            task.warnings = [
                *task.warnings,
                f"the reviewer still asked for changes after {number} round(s); "
                f"the last revision is the answer (not reviewed again)",
            ]
            self._answer_ready(task)
            return
        task.review_state = record
        self._add_review(task, number + 1, last["revision_step"])

    # --- plan approval -------------------------------------------------------------

    def _await_approval(self, task: Task) -> bool:
        """Whether a just-planned task must wait for approval (it then waits: event, durable record)."""
        if not task.approve_plan or (task.approval or {}).get("state") == APPROVED:
            return False
        task.approval = {
            "state": WAITING,
            "request_time": now(),
            "principal": "",
            "decide_time": None,
            "reason": "",
        }
        self.waiting.add(task.id)
        task.update_time = now()
        self.committer.task(task)
        self._publish(
            Event(
                EventType.PLAN_APPROVAL, task_id=task.id, message=WAITING_REASON, data={"approval": WAITING}
            ),
            task,
        )
        return True

    @staticmethod
    def awaiting_approval(task: Task) -> bool:
        """Whether the task is planned and waiting for its plan to be approved."""
        return (
            task.status == TaskStatus.PENDING
            and task.plan is not None
            and (task.approval or {}).get("state") == WAITING
        )

    def awaiting_approval_count(self) -> int:
        """Tasks in memory waiting for their plan to be approved (no walk over every task)."""
        self.waiting = {
            tid for tid in self.waiting if tid in self.tasks and self.awaiting_approval(self.tasks[tid])
        }
        return len(self.waiting)

    def _not_waiting(self, task: Task) -> FailedPrecondition:
        state = (task.approval or {}).get("state")
        if task.status.finished:
            why = f"it is {task.status.name}"
        elif not task.approve_plan:
            why = "it was not submitted with approve_plan"
        elif state == APPROVED:
            why = f"its plan was approved by {task.approval['principal'] or 'a user'}"  # type: ignore[index]
        else:
            why = "it is not planned yet"
        return FailedPrecondition(
            f"task {task.name} is not waiting for plan approval: {why}",
            reason="ERROR_REASON_NOT_AWAITING_APPROVAL",
        )

    async def approve(self, task_id: str, principal: str, request_id: str = "") -> Task:
        """Run the plan a task waits with, exactly as it was shown; FailedPrecondition if it is not waiting."""
        task = await self.get_task(task_id)
        if not self.awaiting_approval(task) or self.tasks.get(task.id) is not task:
            raise self._not_waiting(task)
        task.approval = {
            **(task.approval or {}),
            "state": APPROVED,
            "principal": principal,
            "decide_time": now(),
            "request_id": request_id,
        }
        self._publish(
            Event(
                EventType.PLAN_APPROVAL,
                task_id=task.id,
                message=f"plan approved by {principal or 'a user'}",
                data={"approval": APPROVED},
            ),
            task,
        )
        self._start_plan(task, task.plan)
        self._kick()
        await self.committer.durable()
        return task

    async def reject(self, task_id: str, principal: str, reason: str, request_id: str = "") -> Task:
        """Cancel a task waiting for plan approval, with who rejected it and why."""
        task = await self.get_task(task_id)
        if not self.awaiting_approval(task) or self.tasks.get(task.id) is not task:
            raise self._not_waiting(task)
        task.approval = {
            **(task.approval or {}),
            "state": REJECTED,
            "principal": principal,
            "decide_time": now(),
            "reason": reason,
            "request_id": request_id,
        }
        message = f"plan rejected by {principal or 'a user'}: {reason}"
        self._publish(
            Event(
                EventType.PLAN_APPROVAL,
                task_id=task.id,
                message=message,
                data={"approval": REJECTED, "reason": reason},
            ),
            task,
        )
        self._finish_task(task, TaskStatus.CANCELLED, Failure("ERROR_REASON_CANCELLED", message))
        await self.committer.durable()
        return task
