"""Committed reads: the one read-consistency rule, for GetTask, ListTasks and GetTaskResults.

A component of :class:`~controlplane.scheduler.engine.Engine`. **Reads answer
committed state**: a task (and its subtasks) is shown as memory holds it only
once that state is committed, so a reader never sees a change that a crash
could still undo, the same rule WatchTask follows for its events. When the
task has no uncommitted change (nothing marked for it in the generation being
gathered nor in the one being written) memory is answered at once; else a
shallow snapshot is taken and returned when the commit holding it resolves
(records are copy-on-write below the top level, so the snapshot is
consistent). A change made while waiting is not shown: it is not committed
either. Tasks not in memory come from storage, which holds only what is
committed.

The one exception, stated in the API's contract: the progress fraction and
message of a running subtask are live (they are never made durable), as are
the subtask counts of a WatchTask stream (:meth:`CommittedReads.live_subtasks`).
"""

from __future__ import annotations

import copy
from typing import Any

from controlplane.domain.model import Subtask, Task
from controlplane.scheduler.book import TaskBook
from controlplane.scheduler.committer import Committer
from controlplane.storage.executor import StorageExecutor


class CommittedReads:
    """Reads of tasks and subtasks that answer committed state."""

    def __init__(self, *, book: TaskBook, committer: Committer, storage: StorageExecutor):
        self.book = book
        self.tasks = book.tasks
        self.subtasks = book.subtasks
        self.committer = committer
        self.storage = storage

    def _uncommitted(self, task_id: str) -> bool:
        """Whether memory may hold a change of the task that is not committed yet.

        True when the task or one of its subtasks is marked in the generation being gathered or in
        the one being written: then :meth:`_committed` waits.
        """
        for generation in self.committer.uncommitted():
            if task_id in generation.tasks or any(key[0] == task_id for key in generation.subtasks):
                return True
        return False

    async def _committed(
        self, task_id: str, task: Task, subs: list[Subtask] | None
    ) -> tuple[Task, list[Subtask]]:
        """The task (and subtasks) as memory holds them, once that is committed.

        Snapshots are taken now and returned after the commit holding them resolved, so a change
        made while waiting (not committed yet either) is not shown.
        """
        if task_id not in self.tasks or not self._uncommitted(task_id):
            return task, subs or []
        snapshot = copy.copy(task)
        sub_snapshots = [copy.copy(sub) for sub in subs] if subs is not None else []
        await self.committer.durable()
        return snapshot, sub_snapshots

    async def get_task(self, task_id: str) -> Task:
        """A task by id, as committed; NotFound if unknown.

        Read-consistency rule: what this returns is durable (a crash cannot undo it). Progress
        fractions and messages of running subtasks are live and never durable.
        """
        task, _ = await self._committed(task_id, await self.book.get_task(task_id), None)
        return task

    async def get_tasks(self, task_ids: list[str]) -> list[Task]:
        """Several tasks as committed, in the order asked; missing ones are skipped."""
        found = await self.book.lookup(set(task_ids))
        if any(t in self.tasks and self._uncommitted(t) for t in found):
            snapshots = {t: copy.copy(task) for t, task in found.items()}
            await self.committer.durable()
            found = snapshots
        return [found[t] for t in task_ids if t in found]

    async def get_subtasks(self, task_id: str) -> list[Subtask]:
        """A task's subtasks in plan order, as committed."""
        subs = await self.book.get_subtasks(task_id)
        task = self.tasks.get(task_id)
        if task is None:
            return subs
        _, subs = await self._committed(task_id, task, subs)
        return subs

    async def read_task(self, task_id: str) -> tuple[Task, list[Subtask]]:
        """A task and its subtasks in plan order, as committed together (one wait at most)."""
        task = await self.book.get_task(task_id)
        subs = await self.book.get_subtasks(task_id)
        return await self._committed(task_id, task, subs)

    def live_subtasks(self, task_id: str) -> list[Subtask] | None:
        """The subtasks of a task in memory as they are now (None if it is not in memory).

        Not under the read rule: for a WatchTask stream's counts, whose events are committed.
        """
        if task_id in self.tasks and task_id in self.subtasks:
            return list(self.subtasks[task_id].values())
        return None

    async def list_tasks(self, query: Any) -> list[Task]:
        """Tasks as stored (a ``TaskQuery``), each replaced by its newer committed state in memory."""
        rows = await self.storage.call(self.storage.backend.list_tasks, query)
        shown = [self.tasks.get(t.id, t) for t in rows]
        if any(t.id in self.tasks and self._uncommitted(t.id) for t in rows):
            shown = [copy.copy(t) for t in shown]
            await self.committer.durable()
        return shown
