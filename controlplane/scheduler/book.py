"""The task book: the unfinished tasks and their subtasks in memory, and counts kept as they move.

A component of :class:`~controlplane.scheduler.engine.Engine`. It owns the
records (``tasks``, ``subtasks``), which tasks wait on which (``dependants``),
the task sequence and the counters read by ``/metrics`` and GetStatus. It
reads through to storage for tasks that left memory (finished and committed,
or never loaded). Transitions are the engine's: they change these records and
mark them on the committer.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from controlplane.domain.model import Priority, Subtask, SubtaskStatus, Task
from controlplane.errors import NotFound
from controlplane.storage.executor import StorageExecutor


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
        #: Subtasks in memory by status, and QUEUED ones by their task's priority: counted as work
        #: moves (see :meth:`count`), so reading them costs nothing at any queue depth.
        self.subtask_counts: Counter[SubtaskStatus] = Counter()
        self.queued_counts: Counter[Priority] = Counter()

    def next_seq(self) -> int:
        """The sequence number of the next task accepted."""
        self.task_seq += 1
        return self.task_seq

    def clear(self) -> None:
        """Forget every record (a recovery restores them afresh)."""
        self.tasks.clear()
        self.subtasks.clear()
        self.dependants.clear()
        self.subtask_counts.clear()
        self.queued_counts.clear()

    def count(self, task: Task, status: SubtaskStatus, delta: int) -> None:
        """Count a subtask of ``task`` in (``delta`` 1) or out of (-1) ``status``."""
        self.subtask_counts[status] += delta
        if status == SubtaskStatus.QUEUED:
            self.queued_counts[task.priority] += delta

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
            self.count(task, sub.status, -1)
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
