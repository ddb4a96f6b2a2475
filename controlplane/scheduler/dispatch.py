"""Dispatch: the ready queue, and which queued subtask goes to which agent when.

A component of :class:`~controlplane.scheduler.engine.Engine`. It owns the
ready queue and everything that holds work back from it: retry delays
(``_delayed``), validity tokens, tasks at their ``max_agents`` (``_parked``),
work waiting for a task slot under ``system.max_concurrent_tasks``, and the
count of running subtasks per task. A dispatch pass (:meth:`kick`, coalesced)
hands each agent with free credit the best runnable entry; making the
assignment itself (lease, budget share, the Assign message) is the engine's
``assign`` callback.

This is the seam for claims across replicas: :meth:`enqueue`, :meth:`kick`,
:meth:`forget_task` and the ``assign`` callback are all the engine uses, so a
claim from shared storage (``SELECT … FOR UPDATE SKIP LOCKED``) or a wake-up
from another replica can replace the in-memory pop without the callers
changing.
"""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from collections.abc import Callable, Iterable

from controlplane.domain.model import Subtask, SubtaskKind, SubtaskStatus, Task, TaskStatus, now
from controlplane.scheduler.budgets import Reservations
from controlplane.scheduler.pool_side import PoolSide
from controlplane.scheduler.queue import Entry, ReadyQueue
from controlplane.scheduler.review import WAITING_REASON, Review
from controlplane.scheduler.sessions import AgentSession

SubKey = tuple[str, str]


class Dispatcher:
    """The ready queue and the dispatch passes that empty it onto agents with credit."""

    def __init__(
        self,
        *,
        aging_interval: float,
        max_running_tasks: int,
        tasks: dict[str, Task],
        subtasks: dict[str, dict[str, Subtask]],
        sessions: Callable[[], Iterable[AgentSession]],
        reservations: Reservations,
        candidate_allowed: Callable[[Task, str, AgentSession], bool],
        generic_ok: Callable[[tuple[str, str]], bool],
        assign: Callable[[AgentSession, Task, Subtask], None],
    ):
        #: The task book's tasks and subtasks in memory (read only here).
        self.tasks = tasks
        self.subtasks = subtasks
        self._sessions = sessions
        self.reservations = reservations
        self._candidate_allowed = candidate_allowed
        self._generic_ok = generic_ok
        self._assign = assign
        self.queue = ReadyQueue(aging_interval)
        self._tokens: dict[SubKey, int] = {}
        self._delayed: dict[SubKey, asyncio.TimerHandle] = {}
        self._running_per_task: dict[str, int] = defaultdict(int)
        self._parked: dict[str, list[tuple[tuple[str, str], Entry]]] = defaultdict(list)
        #: ``system.max_concurrent_tasks`` (0: no cap): tasks RUNNING at once.
        self.max_running_tasks = max_running_tasks
        self._running_tasks: set[str] = set()
        #: Work of tasks that cannot start until a running task ends (the cap above is reached).
        self._awaiting_task_slot: list[tuple[tuple[str, str], Entry]] = []
        self._schedule_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Called after each pass with whether an agent still has free credit and got nothing
        #: (claims between replicas take more work then); None alone on a database.
        self.after_pass: Callable[[bool], None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Dispatch on ``loop`` from now on (passes asked for before are skipped: the engine kicks at start)."""
        self._loop = loop

    def clear(self) -> None:
        """Forget every entry, delay and count (a recovery restores the work afresh)."""
        for handle in self._delayed.values():
            handle.cancel()
        for mapping in (
            self._delayed,
            self._tokens,
            self._running_per_task,
            self._parked,
            self._running_tasks,
            self._awaiting_task_slot,
        ):
            mapping.clear()
        self.queue = ReadyQueue(self.queue.aging_interval)

    def stop(self) -> None:
        """Cancel the retry delays."""
        for handle in self._delayed.values():
            handle.cancel()

    def running_changed(self, task_id: str, before: TaskStatus, status: TaskStatus) -> None:
        """A task's status changed: count it among the running tasks (or free its slot)."""
        if status == TaskStatus.RUNNING:
            self._running_tasks.add(task_id)
        elif before == TaskStatus.RUNNING:
            self._running_tasks.discard(task_id)
            for heap_key, entry in self._awaiting_task_slot:  # a slot is free: their turn again
                self.queue.push_entry(heap_key, entry)
            self._awaiting_task_slot.clear()
            self.kick()

    def started(self, task_id: str) -> None:
        """One more subtask of the task runs (an assignment, or a lease restored at start)."""
        self._running_per_task[task_id] += 1

    def stopped(self, task_id: str) -> None:
        """A running subtask of the task let go of its lease: its parked work may run."""
        self._running_per_task[task_id] -= 1
        if self._parked.get(task_id):
            self.unpark(task_id)
        self.kick()

    def running(self, task_id: str) -> int:
        """How many subtasks of the task run now."""
        return self._running_per_task.get(task_id, 0)

    def running_tasks(self) -> int:
        """How many tasks run now."""
        return len(self._running_tasks)

    def cancel(self, key: SubKey) -> None:
        """Forget a subtask's place in the queue (its task finished)."""
        handle = self._delayed.pop(key, None)
        if handle:
            handle.cancel()
        self._tokens.pop(key, None)

    def delayed(self, key: SubKey) -> bool:
        """Whether the subtask waits for a retry delay to pass."""
        return key in self._delayed

    def forget_task(self, task_id: str) -> None:
        """The task finished: drop its parked and queued entries."""
        self._parked.pop(task_id, None)
        self._running_per_task.pop(task_id, None)
        self.queue.forget_task(task_id)

    def forget_tokens(self, task_id: str, subtask_ids: Iterable[str]) -> None:
        """The task left memory: drop the tokens of its subtasks."""
        for sid in subtask_ids:
            self._tokens.pop((task_id, sid), None)

    def compact(self, queued: int) -> None:
        """Drop stale entries from the queue (housekeeping) once they are more than the ``queued`` live ones,
        so a deep queue of live work is not walked every time."""
        if len(self.queue) > 2 * queued:
            self.queue.compact(self._valid)

    def enqueue(self, task: Task, sub: Subtask) -> None:
        key = (task.id, sub.id)
        token = self._tokens.get(key, 0) + 1
        self._tokens[key] = token
        delay = sub.not_before - now()
        if delay > 0:
            self._delayed[key] = self._loop.call_later(delay, self._release_delayed, key, token)  # type: ignore[union-attr]
            return
        heap_key = (sub.agent_type, sub.capability)
        self.queue.push(heap_key, self.queue.key(now(), task.priority, task.id), task.id, sub.id, token)

    def _release_delayed(self, key: SubKey, token: int) -> None:
        self._delayed.pop(key, None)
        task = self.tasks.get(key[0])
        sub = self.subtasks.get(key[0], {}).get(key[1])
        if task and sub and sub.status == SubtaskStatus.QUEUED and self._tokens.get(key) == token:
            sub.not_before = 0.0
            self.enqueue(task, sub)
            self.kick()

    def _valid(self, entry: Entry) -> bool:
        sub = self.subtasks.get(entry.task_id, {}).get(entry.subtask_id)
        return (
            sub is not None
            and sub.status == SubtaskStatus.QUEUED
            and self._tokens.get((entry.task_id, entry.subtask_id)) == entry.token
        )

    def _runnable(self, entry: Entry, session: AgentSession) -> bool:
        task = self.tasks[entry.task_id]
        running = self._running_per_task[entry.task_id]
        if running and not self.reservations.free(task):
            return False  # its running steps hold the rest of the budget: wait for what they leave
        return (
            running < task.max_agents
            and self.task_may_run(task)
            and self._candidate_allowed(task, entry.subtask_id, session)
        )

    def task_may_run(self, task: Task) -> bool:
        """Whether ``task`` runs already or may start under ``system.max_concurrent_tasks``."""
        return (
            not self.max_running_tasks
            or task.id in self._running_tasks
            or len(self._running_tasks) < self.max_running_tasks
        )

    def _runnable_for(self, session: AgentSession, entry: Entry) -> bool:
        return self._runnable(entry, session)

    def _park_into(self, skipped: list[tuple[tuple[str, str], Entry]], entry: Entry) -> None:
        self._park(entry, skipped)

    def _park(self, entry: Entry, skipped: list[tuple[tuple[str, str], Entry]]) -> None:
        task = self.tasks[entry.task_id]
        sub = self.subtasks[entry.task_id][entry.subtask_id]
        heap_key = (sub.agent_type, sub.capability)
        if not self.task_may_run(task):
            self._awaiting_task_slot.append((heap_key, entry))  # back when a running task ends
        elif self._running_per_task[entry.task_id] < task.max_agents:
            skipped.append((heap_key, entry))  # another agent may take it now
        else:
            self._parked[entry.task_id].append((heap_key, entry))  # back when the task runs less

    def unpark(self, task_id: str) -> None:
        """Put back the entries of a task parked at its max_agents."""
        for heap_key, entry in self._parked.pop(task_id, []):
            self.queue.push_entry(heap_key, entry)

    def kick(self) -> None:
        """Schedule a dispatch pass soon (coalesced)."""
        if not self._schedule_pending and self._loop is not None:
            self._schedule_pending = True
            self._loop.call_soon(self._dispatch)

    def dispatch_now(self) -> None:
        """Run a dispatch pass now (what it changes joins the commit being gathered)."""
        if self._loop is not None:
            self._dispatch()

    def _dispatch(self) -> None:
        self._schedule_pending = False
        if not self.queue.has_entries():
            if self.after_pass is not None:
                self.after_pass(any(s.free > 0 for s in self._sessions()))
            return  # nothing ready: do not scan every connected agent
        hungry = [s for s in self._sessions() if s.free > 0]
        starving = False
        while hungry:
            still = []
            for session in hungry:
                skipped: list[tuple[tuple[str, str], Entry]] = []
                entry = self.queue.pop_for(
                    session.info.agent_type,
                    session.capabilities,
                    self._valid,
                    functools.partial(self._runnable_for, session),
                    functools.partial(self._park_into, skipped),
                    offline=session.offline,
                    generic_ok=self._generic_ok,
                )
                for heap_key, kept in skipped:  # runnable elsewhere, just not on this agent
                    self.queue.push_entry(heap_key, kept)
                if entry is None:
                    starving = True
                    continue
                self._assign(
                    session, self.tasks[entry.task_id], self.subtasks[entry.task_id][entry.subtask_id]
                )
                if session.free > 0:
                    still.append(session)
            hungry = still
        if self.after_pass is not None:
            self.after_pass(starving)

    def explain(self, task: Task, pool: PoolSide) -> str:
        """Why an unfinished task is where it is, for people."""
        if task.status.finished:
            return task.failure.message if task.failure else ""
        if task.status == TaskStatus.PENDING:
            waiting = [d for d in task.depends_on if d in self.tasks and not self.tasks[d].status.finished]
            if waiting:
                return "waiting for " + ", ".join(f"tasks/{d}" for d in waiting)
            return WAITING_REASON if Review.awaiting_approval(task) else "planning"
        reasons = []
        for sub in self.subtasks.get(task.id, {}).values():
            if sub.status != SubtaskStatus.QUEUED:
                continue
            if sub.not_before > now():
                reasons.append(
                    f"subtask {sub.id} retries in {sub.not_before - now():.1f} s (attempt {sub.attempt + 1})"
                    + (f" after: {sub.status_reason}" if sub.status_reason else "")
                )
                continue
            candidates = [s for s in self._sessions() if pool.may_take(s, sub.agent_type, sub.capability)]
            if not candidates:
                launching = pool.launching(sub.agent_type, sub.capability)
                if sub.agent_type:
                    reasons.append(
                        f"no connected agent of type {sub.agent_type}"
                        + ("; launching one" if launching else "")
                    )
                elif sub.capability:
                    reasons.append(
                        f"no connected agent has capability {sub.capability}"
                        + ("; launching one" if launching else "")
                    )
                else:
                    reasons.append("no connected agent" + ("; launching one" if launching else ""))
            elif sub.kind == SubtaskKind.CANDIDATE and not any(
                self._candidate_allowed(task, sub.id, s) for s in candidates
            ):
                reasons.append(
                    f"waiting for a distinct agent: the other candidates hold all "
                    f"{len(candidates)} able to take it"
                )
            elif self.running(task.id) >= task.max_agents:
                reasons.append(f"at its max_agents ({task.max_agents})")
            elif not self.task_may_run(task):
                reasons.append(
                    f"waiting for one of the {self.running_tasks()} running tasks to end "
                    f"(system.max_concurrent_tasks: {self.max_running_tasks})"
                )
            elif all(s.paused or s.draining for s in candidates):
                reasons.append("every agent that could take it is paused or draining")
            else:
                reasons.append("waiting for a free agent slot")
        return "; ".join(dict.fromkeys(reasons))
