"""Charges: what work spent, added to its task and agent, on time or late.

A component of :class:`~controlplane.scheduler.engine.Engine` (used by the
agent side and consensus). A charge that takes a task past its budget fails
the task with ERROR_REASON_BUDGET_EXCEEDED. Usage reported after its attempt
ended is charged once, and only to the agent that held that lease
(:class:`~controlplane.scheduler.budgets.Grants`); a task that left memory is
read back from storage and written again, one such charge at a time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from controlplane.domain.budget import over_budget
from controlplane.domain.model import Failure, Task, TaskStatus, Usage
from controlplane.scheduler.budgets import Grants
from controlplane.scheduler.commands import Ref
from controlplane.scheduler.committer import Committer
from controlplane.scheduler.relayed_reports import RelayedSession
from controlplane.scheduler.sessions import AgentSession
from controlplane.storage.executor import StorageExecutor

log = logging.getLogger(__name__)


class Charges:
    """Usage charged to tasks and agents."""

    def __init__(
        self,
        *,
        tasks: dict[str, Task],
        storage: StorageExecutor,
        committer: Committer,
        grants: Grants,
        finish_task: Callable[[Task, TaskStatus, Failure | None], None],
        background: Callable[[Coroutine[Any, Any, Any]], None],
    ):
        #: The task book's tasks in memory (charged there; the others in storage).
        self.tasks = tasks
        self.storage = storage
        self.committer = committer
        self.grants = grants
        self._finish_task = finish_task
        self._background = background
        self._late_charges = asyncio.Lock()

    @staticmethod
    def _over_budget(task: Task, *, or_at: bool = False) -> str:
        return over_budget(task, or_at=or_at)

    def charge(self, task: Task, session: AgentSession, usage: Usage, *, success: bool) -> bool:
        """Add what a report spent to its task and agent; True when that ended the task (budget)."""
        task.usage = task.usage.plus(usage)
        self.charge_agent(session, usage, success)
        over = self._over_budget(task)
        if over:
            self._finish_task(
                task,
                TaskStatus.FAILED,
                Failure("ERROR_REASON_BUDGET_EXCEEDED", f"the task spent more than its {over} budget"),
            )
            return True
        return False

    def charge_agent(self, session: AgentSession, usage: Usage, success: bool | None = None) -> None:
        """Add what a report spent to the agent that sent it; ``success``: and count the subtask it
        settled so (completed or failed). Where the agent is connected to another replica (a report
        carried here) that replica charges it, told by the answer
        (:class:`~controlplane.scheduler.relayed_reports.RelayedSession`)."""
        if isinstance(session, RelayedSession):
            session.charge(usage, success)
            return
        if session.moved:  # resumed on another replica: its record is that replica's (it charges there)
            log.info("usage of agents/%s reported on the session it left is not charged to it", session.id)
            return
        session.info.usage = session.info.usage.plus(usage)
        if success is not None:
            if success:
                session.info.completed_subtasks += 1
            else:
                session.info.failed_subtasks += 1
            session.info.status = session.status()
        self.committer.agent(session.info)

    def charge_task(self, task_id: str, usage: Usage) -> None:
        """Add usage to a task, finished or not (a vote, a call that ended late); durable with the next commit.

        A task that left memory is read back from storage and written again;
        such charges run one at a time, each committed before the next reads.
        """
        if not usage.total_tokens and not usage.cost_micros and not usage.model_calls:
            return
        task = self.tasks.get(task_id)
        if task is not None:
            task.usage = task.usage.plus(usage)
            self.committer.task(task)
            if not task.status.finished and self._over_budget(task):
                self._finish_task(
                    task,
                    TaskStatus.FAILED,
                    Failure("ERROR_REASON_BUDGET_EXCEEDED", "the task spent more than its budget"),
                )
            return
        self._background(self._charge_stored(task_id, usage))

    async def _charge_stored(self, task_id: str, usage: Usage) -> None:
        async with self._late_charges:
            await self.committer.durable()  # an earlier charge of this task may still be pending
            stored = await self.storage.call(self.storage.backend.get_task, task_id)
            if task_id in self.tasks:  # back in memory meanwhile (a retry): charge that copy
                self.charge_task(task_id, usage)
                return
            if stored is None:
                return
            stored.usage = stored.usage.plus(usage)
            self.committer.task(stored)
            await self.committer.durable()

    def charge_late(self, session: AgentSession, ref: Ref, usage: Usage) -> None:
        """Charge what an attempt that already ended spent, once, if this agent held that lease."""
        if self.grants.claim(ref.task_id, ref.subtask_id, ref.lease_epoch, session.id):
            self.charge_agent(session, usage)
            self.charge_task(ref.task_id, usage)
