"""Replacing the engine's in-memory state after a recovery rewrote the database.

The engine has no public reload hook yet; this resets the same structures
``Engine.__init__`` creates and then uses the engine's own start-up path
(``Engine._restore``). The engine method this stands in for would be::

    def reload(self, tasks, subtasks, task_seq) -> None:
        '''Forget unfinished work in memory and restore it as loaded from storage.'''

Records the committer has pending for tasks that were not restored (later
work) are kept and win over what was loaded, so nothing accepted during the
recovery is lost; pending records of restored tasks are dropped, since the
checkpoint replaces them.
"""

from __future__ import annotations

from typing import Any

from controlplane.domain.model import Subtask, Task
from controlplane.scheduler.queue import ReadyQueue


def reload_engine(engine: Any, tasks: list[Task], subtasks: list[Subtask], task_seq: int,
                  keep_pending: set[str]) -> None:
    """Reset the engine's work state and restore ``tasks``/``subtasks`` (unfinished, as stored)."""
    pending = engine.committer.pending()
    newer_tasks = {k: t for k, t in pending.tasks.items() if k in keep_pending}
    newer_subs = {k: s for k, s in pending.subtasks.items() if k[0] in keep_pending}
    for key in [k for k in pending.tasks if k not in keep_pending]:
        del pending.tasks[key]
    for key in [k for k in pending.subtasks if k[0] not in keep_pending]:
        del pending.subtasks[key]
    tasks = [newer_tasks.get(t.id, t) for t in tasks]
    subtasks = [newer_subs.get((s.task_id, s.id), s) for s in subtasks]

    handles = [*engine._delayed.values(), *engine._timeouts.values(), *engine._round_timers.values()]
    for handle in handles:
        handle.cancel()
    for planning in engine._planning.values():
        planning.cancel()
    for mapping in (engine._delayed, engine._timeouts, engine._round_timers, engine._planning, engine.tasks,
                    engine.subtasks, engine.leases, engine._tokens, engine._running_per_task, engine._parked,
                    engine._dependants):
        mapping.clear()
    engine.queue = ReadyQueue(engine.queue.aging_interval)
    engine._task_seq = max(engine._task_seq, task_seq)
    engine._restore(tasks, subtasks)
