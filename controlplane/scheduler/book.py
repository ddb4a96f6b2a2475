"""The task book: the unfinished tasks and their subtasks in memory, and counts kept as they move.

A component of :class:`~controlplane.scheduler.engine.Engine`. It owns the
records (``tasks``, ``subtasks``), which tasks wait on which (``dependants``),
the task sequence and the counters read by ``/metrics`` and GetStatus. It
reads through to storage for tasks that left memory (finished and committed,
or never loaded). Transitions are the engine's: they change these records and
mark them on the committer.
"""

from __future__ import annotations

import heapq
import sys
import time
from collections import Counter, defaultdict
from typing import Any, TypeVar

from controlplane.domain.model import Priority, Subtask, SubtaskStatus, Task, Usage
from controlplane.errors import NotFound
from controlplane.storage.executor import StorageExecutor

_P = TypeVar("_P")

#: Low bits of a seq that tell replicas apart (see :meth:`TaskBook.next_seq`).
SEQ_BITS = 10
SEQ_MASK = (1 << SEQ_BITS) - 1

#: The usage of every record that has not been charged yet. Usage is replaced on a charge, never changed in
#: place (see :mod:`controlplane.scheduler.charges`), so one copy serves them all.
UNUSED = Usage()
#: The empty list and dict records share. Like every container on a record, they are replaced, never changed
#: in place (the committer's shallow copies rely on that too).
NOTHING: list[Any] = []
NO_ENTRIES: dict[str, str] = {}
_POLICIES: dict[tuple[Any, ...], Any] = {}


def word(text: str) -> str:
    """One copy of a short string that many records repeat (agent type, capability, task type, owner)."""
    return sys.intern(text) if len(text) <= 64 else text


def shared(policy: _P) -> _P:
    """One copy of each distinct retry or consensus policy (frozen: records replace them).

    May run on any thread (see :func:`slim_task`): ``_POLICIES`` is only read with one ``get`` and
    written with one item assignment, each atomic on a dict. Two threads finding the same new policy
    at once each store theirs and the last stays: equal, frozen copies, so which one a record keeps
    does not matter (the bound of 1024 may be passed by as many threads as run it).
    """
    key = (type(policy), *(getattr(policy, name) for name in policy.__slots__))  # type: ignore[attr-defined]
    found = _POLICIES.get(key)
    if found is None:
        if len(_POLICIES) >= 1024:  # unusual policies: each keeps its own copy
            return policy
        _POLICIES[key] = found = policy
    return found


def slim_task(task: Task) -> None:
    """Let an accepted task share what it has in common with others (saves memory per queued task).

    May run on any thread: on the event loop for a task submitted, on the storage thread for tasks
    read back from the database (before memory holds them). It changes only ``task``, which no other
    thread holds yet, and shares values that cannot change: interned strings, frozen policies and
    usage, and empty containers every record replaces rather than changes (see :func:`shared` for
    the table of policies).
    """
    task.owner = word(task.owner)
    task.task_type = word(task.task_type)
    task.agent_type = word(task.agent_type)
    task.retry = shared(task.retry)
    task.consensus = shared(task.consensus)
    if task.usage == UNUSED:
        task.usage = UNUSED
    for name in ("depends_on", "warnings", "dependency_results"):
        if not getattr(task, name):
            setattr(task, name, NOTHING)
    if not task.metadata:
        task.metadata = NO_ENTRIES


class TaskBook:
    """Tasks and subtasks in memory, with their dependants and counters."""

    def __init__(self, storage: StorageExecutor):
        self._storage = storage
        self.tasks: dict[str, Task] = {}
        self.subtasks: dict[str, dict[str, Subtask]] = {}
        #: Task id -> ids of the tasks waiting for it.
        self.dependants: dict[str, set[str]] = defaultdict(set)
        #: The sequence number of the latest task accepted (restored at start).
        self.task_seq = 0
        #: Among replicas: what makes this replica's seqs its own (see :meth:`next_seq`), else None.
        self.seq_source: int | None = None
        #: Subtasks in memory by status, and QUEUED ones by their task's priority: counted as work
        #: moves (see :meth:`count`), so reading them costs nothing at any queue depth.
        self.subtask_counts: Counter[SubtaskStatus] = Counter()
        self.queued_counts: Counter[Priority] = Counter()
        #: QUEUED subtasks by (agent type, capability), and per pair a heap of (queue time, task id,
        #: subtask id) whose stale entries are dropped as they surface (see :meth:`queued_demand`).
        self.queued_kinds: dict[tuple[str, str], int] = {}
        self._waits: dict[tuple[str, str], list[tuple[float, str, str]]] = {}

    def next_seq(self) -> int:
        """The sequence number of the next task accepted.

        Alone on a database, a counter. Among replicas (``seq_source`` set: this start's
        incarnation, unique among them) a number no other replica makes: the microseconds now
        (never less than the last one's + 1) shifted by 10 bits, over the source's low 10 bits,
        so seqs still follow submit order across replicas to the microsecond.
        """
        if self.seq_source is None:
            self.task_seq += 1
            return self.task_seq
        micros = max(int(time.time() * 1_000_000), (self.task_seq >> SEQ_BITS) + 1)
        self.task_seq = (micros << SEQ_BITS) | (self.seq_source & SEQ_MASK)
        return self.task_seq

    def clear(self) -> None:
        """Forget every record (a recovery restores them afresh)."""
        self.tasks.clear()
        self.subtasks.clear()
        self.dependants.clear()
        self.subtask_counts.clear()
        self.queued_counts.clear()
        self.queued_kinds.clear()
        self._waits.clear()

    def count(self, task: Task, sub: Subtask, status: SubtaskStatus, delta: int) -> None:
        """Count subtask ``sub`` of ``task`` in (``delta`` 1) or out of (-1) ``status``."""
        self.subtask_counts[status] += delta
        if status == SubtaskStatus.QUEUED:
            self.queued_counts[task.priority] += delta
            kind = (sub.agent_type, sub.capability)
            left = self.queued_kinds.get(kind, 0) + delta
            if left > 0:
                self.queued_kinds[kind] = left
            else:
                self.queued_kinds.pop(kind, None)
                self._waits.pop(kind, None)
                return
            if delta > 0 and sub.queue_time:
                waits = self._waits.setdefault(kind, [])
                heapq.heappush(waits, (sub.queue_time, task.id, sub.id))
                if len(waits) > 2 * left + 64:  # mostly stale entries: keep the live ones only
                    waits[:] = [w for w in waits if self._waiting(kind, w)]
                    heapq.heapify(waits)

    def _waiting(self, kind: tuple[str, str], wait: tuple[float, str, str]) -> bool:
        """Whether a wait entry is still that of a QUEUED subtask of that kind."""
        sub = self.subtasks.get(wait[1], {}).get(wait[2])
        return (
            sub is not None
            and sub.status == SubtaskStatus.QUEUED
            and sub.queue_time == wait[0]
            and (sub.agent_type, sub.capability) == kind
        )

    def queued_demand(self) -> dict[tuple[str, str], tuple[int, float | None]]:
        """QUEUED subtasks by (agent type, capability): how many, and the earliest queue time (None if
        none is known). Maintained as work moves: the cost does not grow with the queue."""
        out: dict[tuple[str, str], tuple[int, float | None]] = {}
        for kind, n in self.queued_kinds.items():
            waits = self._waits.get(kind)
            while waits and not self._waiting(kind, waits[0]):
                heapq.heappop(waits)
            out[kind] = (n, waits[0][0] if waits else None)
        return out

    def queued_by_priority(self) -> dict[str, int]:
        """Queued subtasks by priority name (maintained counts: no walk over the queue)."""
        return {priority.name: n for priority, n in self.queued_counts.items() if n}

    def subtasks_by_status(self) -> dict[str, int]:
        """Subtasks in memory (those of unfinished tasks, and of finished ones until evicted) by status name."""
        return {status.name: n for status, n in self.subtask_counts.items() if n}

    def forget(self, task_id: str) -> list[str]:
        """Drop a task and its subtasks from memory; the ids of the subtasks dropped."""
        task = self.tasks.pop(task_id)
        subs = self.subtasks.pop(task_id, {})
        for sub in subs.values():
            self.count(task, sub, sub.status, -1)
        return list(subs)

    def worked_on(self, agent_id: str, task_id: str) -> bool:
        """Whether agent ``agent_id`` holds, or ran, a subtask of task ``task_id`` (as memory knows it)."""
        return any(sub.agent_id == agent_id for sub in self.subtasks.get(task_id, {}).values())

    async def lookup(self, task_ids: set[str]) -> dict[str, Task]:
        """The tasks of ``task_ids`` that exist: from memory, the others from storage."""
        found = {tid: self.tasks[tid] for tid in task_ids if tid in self.tasks}
        missing = [tid for tid in task_ids if tid not in found]
        if missing:
            for task in await self._storage.call(self._storage.backend.get_tasks, missing):
                found[task.id] = task
        return found

    async def get_task(self, task_id: str) -> Task:
        """A task by id (memory first, then storage); NotFound if unknown."""
        task = self.tasks.get(task_id)
        if task is None:
            task = await self._storage.call(self._storage.backend.get_task, task_id)
        if task is None:
            raise NotFound(f"task tasks/{task_id} does not exist", reason="ERROR_REASON_TASK_NOT_FOUND")
        return task

    async def get_subtasks(self, task_id: str) -> list[Subtask]:
        """A task's subtasks in plan order (memory first, then storage)."""
        if task_id in self.subtasks and task_id in self.tasks:
            return list(self.subtasks[task_id].values())
        return await self._storage.call(self._storage.backend.get_subtasks, task_id)
