"""Leases: who holds each running subtask and until when; granting them, and expiring them.

A component of :class:`~controlplane.scheduler.engine.Engine`. It owns the
leases, the lease epochs and the sweeper. :meth:`Leases.assign` is what a
dispatch pass calls for an agent with credit: it takes the step's budget
share, grants the lease (epoch ``incarnation << 32 | counter``, never reused
after a restart) and sends the Assign. The sweeper re-queues the work of
every lease that expired (or fails its task once retries are exhausted);
heartbeats and progress reports renew leases on the agent side.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controlplane.domain.budget import over_budget
from controlplane.domain.context import plan_outline, step_inputs
from controlplane.domain.events import Event, EventType
from controlplane.domain.model import Failure, Subtask, SubtaskKind, SubtaskStatus, Task, TaskStatus, now
from controlplane.domain.review import LOOP_KINDS, answer_inputs
from controlplane.scheduler.budgets import Grants, Reservations
from controlplane.scheduler.commands import CancelWork, Ref, assign
from controlplane.scheduler.sessions import AgentSession

log = logging.getLogger(__name__)

HOUSEKEEPING_EVERY = 60  # sweeps


@dataclass
class Lease:
    """Who holds a running subtask, and until when."""

    agent_id: str
    epoch: int
    expires: float


class Leases:
    """The leases of running work, granted at assignment and swept when they expire."""

    def __init__(
        self,
        *,
        tasks: dict[str, Task],
        subtasks: dict[str, dict[str, Subtask]],
        session_of: Callable[[str], AgentSession | None],
        metrics: Any,
        lease_ttl: float,
        grants: Grants,
        reservations: Reservations,
        setting: Callable[[str], Any],
        started: Callable[[str], None],
        set_task_status: Callable[[Task, TaskStatus], None],
        set_subtask_status: Callable[[Task, Subtask, SubtaskStatus], None],
        arm_timeout: Callable[[Task], None],
        finish_task: Callable[[Task, TaskStatus, Failure | None], None],
        release: Callable[[Task, Subtask], None],
        requeue: Callable[..., None],
        publish: Callable[..., None],
        sweep: Callable[[float, bool], None],
        housekeeping: Callable[[float], None],
    ):
        #: The task book's records (read; changed through the engine's transitions).
        self.tasks = tasks
        self.subtasks = subtasks
        self._session_of = session_of
        self.metrics = metrics
        self.lease_ttl = lease_ttl
        self.grants = grants
        self.reservations = reservations
        self.setting = setting
        self._started = started
        self._set_task_status = set_task_status
        self._set_subtask_status = set_subtask_status
        self._arm_timeout = arm_timeout
        self._finish_task = finish_task
        self._release = release
        self._requeue = requeue
        self._publish = publish
        self._sweep = sweep
        self._housekeeping = housekeeping
        self.leases: dict[tuple[str, str], Lease] = {}
        #: This start's incarnation (set at start): the high half of every lease epoch.
        self.incarnation = 0
        self._epoch_counter = 0
        self._sweeper: asyncio.Task[None] | None = None
        #: Replicas on a shared database: runs its argument once what is marked so far is committed
        #: (the committer's ``after_commit``), and an assignment is sent only then. None: sent at once.
        self.send_after_commit: Callable[[Callable[[], None]], None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the lease sweeper on ``loop``."""
        self._sweeper = loop.create_task(self._sweep_leases(), name="maos-lease-sweeper")

    async def stop(self) -> None:
        """Stop the lease sweeper."""
        if self._sweeper:
            self._sweeper.cancel()
            # Cancelled, or it had failed: the final commit must still run.
            with contextlib.suppress(BaseException):
                await self._sweeper

    @staticmethod
    def _over_budget(task: Task, *, or_at: bool = False) -> str:
        """ "token" or "cost" when the task spent more than (``or_at``: at least) its budget, else ""."""
        return over_budget(task, or_at=or_at)

    def _next_epoch(self) -> int:
        self._epoch_counter += 1
        return (self.incarnation << 32) | self._epoch_counter

    def assign(self, session: AgentSession, task: Task, sub: Subtask) -> None:
        key = (task.id, sub.id)
        siblings = self.subtasks[task.id]
        share: tuple[int, int] | None = (0, 0)
        if task.max_total_tokens or task.max_cost_micros:  # a step reserves its share of what is left
            unstarted = sum(
                1 for s in siblings.values() if s.status in (SubtaskStatus.BLOCKED, SubtaskStatus.QUEUED)
            )
            share = (
                None if self._over_budget(task, or_at=True) else self.reservations.take(task, key, unstarted)
            )
        if share is None:  # nothing left to spend (and nothing running to give any back): no more work starts
            self._finish_task(
                task,
                TaskStatus.FAILED,
                Failure(
                    "ERROR_REASON_BUDGET_EXCEEDED",
                    "the task used up its budget before all its work could run",
                ),
            )
            return
        stamp = now()
        self.metrics.schedule_to_start(stamp - (sub.queue_time or stamp))
        sub.lease_epoch = self._next_epoch()
        sub.agent_id = session.id
        sub.start_time = stamp
        sub.status_reason = ""
        self._set_subtask_status(task, sub, SubtaskStatus.RUNNING)
        self.leases[key] = Lease(session.id, sub.lease_epoch, stamp + self.lease_ttl)
        self.grants.granted(task.id, sub.id, sub.lease_epoch, session.id)
        session.running.add(key)
        session.assigned()
        self._started(task.id)
        if task.status in (TaskStatus.QUEUED, TaskStatus.PENDING):
            if task.start_time is None:
                task.start_time = stamp
                if task.timeout:
                    self._arm_timeout(task)
            self._set_task_status(task, TaskStatus.RUNNING)
        context_limit = self.setting("tasks.context_max_chars")
        combining = sub.kind in (SubtaskKind.SYNTHESIS, SubtaskKind.CANDIDATE)
        # A review or revision step sees the answer alone; any other step, what it depends on.
        inputs = (
            answer_inputs(task, siblings, context_limit)
            if sub.kind in LOOP_KINDS
            else step_inputs(task.id, siblings, sub.id, context_limit)
        )
        message = assign(
            task,
            sub,
            inputs=inputs,
            lease_ttl=self.lease_ttl,
            budget=share,
            plan=plan_outline(task.plan, siblings) if combining else "",
        )
        if self.send_after_commit is None:
            session.send(message)
        else:
            # Another replica taking this task over finds the assignment committed (the subtask
            # RUNNING, its lease the agent's), never QUEUED while the agent runs it: one attempt
            # runs on one agent, whichever replica dies when.
            self.send_after_commit(
                functools.partial(self._send_assigned, session, key, sub.lease_epoch, message)
            )

    def _send_assigned(self, session: AgentSession, key: tuple[str, str], epoch: int, message: Any) -> None:
        """Send a committed assignment, unless its lease ended meanwhile (cancelled, expired, moved)."""
        lease = self.leases.get(key)
        if lease is not None and lease.epoch == epoch and lease.agent_id == session.id:
            session.send(message)

    async def _sweep_leases(self) -> None:
        interval = max(0.05, min(1.0, self.lease_ttl / 5))
        sweeps = 0
        while True:
            await asyncio.sleep(interval)
            try:
                self.expire_leases(now())
                sweeps += 1
                housekeeping = sweeps % HOUSEKEEPING_EVERY == 0
                self._sweep(now(), housekeeping)  # the engine's part: counts for /metrics, the queue
                if housekeeping:
                    self._housekeeping(now())
            except Exception:  # one bad record must not stop every later expiry
                log.exception("lease sweep failed")

    def expire_leases(self, at: float) -> int:
        """Re-queue every subtask whose lease expired before ``at``; returns how many."""
        expired = [key for key, lease in self.leases.items() if lease.expires <= at]
        for key in expired:
            task, sub = self.tasks.get(key[0]), self.subtasks.get(key[0], {}).get(key[1])
            lease = self.leases.get(key)
            if lease is None:
                continue  # released meanwhile (its task finished while an earlier lease expired)
            if task is None or sub is None:
                self.leases.pop(key, None)
                continue
            session = self._session_of(lease.agent_id)
            if session is not None:
                session.suspect = True
                session.send(CancelWork(Ref(task.id, sub.id, sub.attempt, sub.lease_epoch), "lease expired"))
            self._release(task, sub)
            self.metrics.lease_expired()
            self._publish(
                Event(EventType.LEASE_EXPIRED, task_id=task.id, subtask_id=sub.id, agent_id=lease.agent_id),
                task,
                sub,
            )
            why = f"the lease of agent agents/{lease.agent_id} expired"
            if sub.retries_used < task.retry.max_retries:
                self._requeue(task, sub, delay=task.retry.backoff(sub.retries_used + 1), why=why)
            else:
                failure = Failure("ERROR_REASON_LEASE_EXPIRED", f"{why}; retries exhausted", sub.name)
                sub.failure = failure
                self._set_subtask_status(task, sub, SubtaskStatus.FAILED)
                self._finish_task(task, TaskStatus.FAILED, failure)
        return len(expired)
