"""Queued tasks the single control plane keeps in the database rather than in memory (SQLite).

Beyond ``scheduler.queue_window`` queued tasks, the engine gives up the worst ones
(:mod:`controlplane.scheduler.spill`): each is written in its latest state with
``tasks.claimed_by = '~spilled'`` (:data:`~controlplane.storage.sql.schema.SPILLED`) in one commit
(the write batch's ``released`` ids, on SQLite). :meth:`SqlSpillStore.take_back` reads them back in
the order the ready queue runs work: the virtual time ``create_time - priority ×
scheduler.aging_interval``, then submit order. Within one priority that is the order of
``(create_time, seq)``, which the partial index ``ix_tasks_spilled`` (migration 0020) serves, so a
batch costs one short index walk per priority and a merge, at any queue depth. SQLite has one
writer, so no row lock is needed: the mark is cleared in the transaction that reads the rows, and
a trigger (migration 0021) clears it in the transaction of any write that finishes a marked task,
whichever path wrote it, so only unfinished tasks carry it.

Spilled tasks with a deadline (start time + timeout: a retried task's clock runs while it waits) are found by
:meth:`SqlSpillStore.due` through the partial expression index ``ix_tasks_spilled_deadline`` (migration 0021;
its condition settles most rows without parsing their JSON since 0022: by the text's first key since 0023, so
setting and clearing marks costs less), at any queue depth.

On PostgreSQL replicas claim work instead (:mod:`controlplane.storage.sql.claims`).

Reached through :func:`spill_store`. Methods are synchronous and run on the storage thread.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select, text, update

from controlplane.domain.model import Priority, Subtask, SubtaskStatus, Task, TaskStatus
from controlplane.storage.sql import row_batches, schema
from controlplane.storage.sql.backend import SqlBackend, translate_errors

_T, _S = schema.tasks, schema.subtasks
_UNFINISHED = tuple(int(s) for s in TaskStatus if not s.finished)
_SPILLED = _T.c.claimed_by == schema.SPILLED
#: A spilled task that has not finished (a write that finishes one clears its mark: migration 0021).
_WAITING = _SPILLED & _T.c.status.in_(_UNFINISHED)
_IN_CHUNK = 500

# The statements of take_back, as DB-API text (SQLite: ``?`` marks; the mark written as a literal,
# so the planner sees the partial index ``ix_tasks_spilled`` applies).
# Task rows: the rowid (the marks are cleared by it: no walk of the primary key's index), then only the
# columns a record is decoded from (not the mark), as row_batches reads them.
_TASK_COLUMNS = ("rowid", *row_batches.TASK_COLUMNS)
_SUBTASK_COLUMNS = row_batches.SUBTASK_COLUMNS
_CREATE_TIME, _PRIORITY, _SEQ = (_TASK_COLUMNS.index(c) for c in ("create_time", "priority", "seq"))
_WAITING_SQL = f"claimed_by = '{schema.SPILLED}' AND status IN ({', '.join(map(str, _UNFINISHED))})"
_BEST = (
    f"SELECT {', '.join(_TASK_COLUMNS)} FROM tasks WHERE {_WAITING_SQL} AND priority = ? "
    "ORDER BY create_time, seq LIMIT ?"
)
_BY_ID = f"SELECT {', '.join(_TASK_COLUMNS)} FROM tasks WHERE {_WAITING_SQL} AND id IN "
_CLEAR = "UPDATE tasks SET claimed_by = NULL WHERE rowid IN "
_SUBTASKS = f"SELECT {', '.join(_SUBTASK_COLUMNS)} FROM subtasks WHERE task_id IN "
_SUBTASKS_ORDER = " ORDER BY task_id, ord"


def _marks(count: int) -> str:
    return "(" + ", ".join("?" * count) + ")"


#: A spilled task's deadline, and the condition of the index serving it, exactly as migrations 0021
#: and 0023 declare them (SQLite uses an expression index only for the very same expression text). The
#: queries name the index: without statistics the planner would rather walk every spilled row
#: through ``ix_tasks_claimed_by`` and sort them.
DEADLINE = "json_extract(data, '$.start_time') + json_extract(data, '$.timeout')"
#: (``\\:`` keeps SQLAlchemy's text() from reading ``:null`` as a parameter; SQLite sees ``:null``.)
WITH_DEADLINE = (
    f"claimed_by = '{schema.SPILLED}' AND substr(data, 1, 16) <> '{{\"timeout\"\\:null,' "
    "AND json_extract(data, '$.timeout') > 0"
)
_STATUS_UNFINISHED = f"status IN ({', '.join(map(str, _UNFINISHED))})"
_DUE = text(
    f"SELECT id FROM tasks INDEXED BY ix_tasks_spilled_deadline WHERE {WITH_DEADLINE} AND {DEADLINE} <= :at AND {_STATUS_UNFINISHED} "
    f"ORDER BY {DEADLINE} LIMIT :limit"
)
_NEXT = text(
    f"SELECT {DEADLINE} FROM tasks INDEXED BY ix_tasks_spilled_deadline WHERE {WITH_DEADLINE} AND {DEADLINE} > :at AND {_STATUS_UNFINISHED} "
    f"ORDER BY {DEADLINE} LIMIT 1"
)


@dataclass(frozen=True)
class SpilledCounts:
    """What the database holds beyond the window: tasks, and their QUEUED subtasks by kind.

    ``queued`` rows: (priority, agent type, capability, how many, earliest queue time);
    ``deadline``: the earliest deadline of a spilled task (None: none has one).
    """

    tasks: int
    queued: list[tuple[Priority, str, str, int, float]]
    deadline: float | None = None


def spill_store(backend: Any) -> SqlSpillStore | None:
    """The spill store of ``backend`` when it is the SQLAlchemy backend on SQLite, else None."""
    if isinstance(backend, SqlBackend) and backend.kind == "sqlite":
        return SqlSpillStore(backend.engine, backend.engine.execution_options(maos_writes=True))
    return None


class SqlSpillStore:
    """Spilled tasks in the ``tasks`` table (see the module docstring)."""

    def __init__(self, reads: Engine, writes: Engine) -> None:
        self._reads = reads
        self._writes = writes
        #: (used on the storage thread only, as every method here)
        self._decoder = row_batches.RowBatchDecoder()

    def take_back(
        self,
        limit: int,
        aging_interval: float,
        task_ids: Sequence[str] = (),
        prepare: Callable[[Task], None] | None = None,
    ) -> tuple[list[Task], list[Subtask]]:
        """Take up to ``limit`` spilled tasks back into memory, best first (their mark cleared).

        Args:
            limit: The most tasks to take.
            aging_interval: ``scheduler.aging_interval`` (seconds worth one priority level).
            task_ids: Only these tasks (empty: the best ones).
            prepare: Called with each task decoded, here on the storage thread (what memory does to
                a task it accepts, done off the event loop).

        Returns:
            The tasks taken and their subtasks (in plan order).
        """
        if limit <= 0:
            return [], []
        with translate_errors(), self._writes.begin() as conn:
            # Plain DB-API on the transaction's connection: rows as tuples, no statement compiled,
            # so a batch costs what SQLite and the decoding cost (read back at any queue depth).
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                if task_ids:
                    rows = []
                    wanted = list(dict.fromkeys(task_ids))
                    for start in range(0, len(wanted), _IN_CHUNK):
                        chunk = wanted[start : start + _IN_CHUNK]
                        rows += cursor.execute(_BY_ID + _marks(len(chunk)), chunk).fetchall()
                else:  # the best of each priority (one index walk each), merged by virtual time
                    per_priority = [cursor.execute(_BEST, (int(p), limit)).fetchall() for p in Priority]
                    best = heapq.merge(
                        *per_priority,
                        key=lambda row: (row[_CREATE_TIME] - row[_PRIORITY] * aging_interval, row[_SEQ]),
                    )
                    rows = [row for _, row in zip(range(limit), best, strict=False)]
                decode = self._decoder
                tasks = [decode.task(row[1:]) for row in rows]
                rowids = [row[0] for row in rows]
                if prepare is not None:
                    for task in tasks:
                        prepare(task)
                ids = [t.id for t in tasks]
                subs: list[Subtask] = []
                for start in range(0, len(ids), _IN_CHUNK):
                    chunk = ids[start : start + _IN_CHUNK]
                    cursor.execute(_CLEAR + _marks(len(chunk)), rowids[start : start + _IN_CHUNK])
                    found = cursor.execute(_SUBTASKS + _marks(len(chunk)) + _SUBTASKS_ORDER, chunk).fetchall()
                    subs += [decode.subtask(row) for row in found]
            finally:
                cursor.close()
        return tasks, subs

    def due(self, at: float, limit: int) -> tuple[list[str], float | None]:
        """Spilled unfinished tasks whose deadline is at or before ``at`` (up to ``limit``, earliest
        first), and the earliest deadline after ``at`` (None: none); two short walks of the index."""
        with translate_errors(), self._reads.connect() as conn:
            due = [row[0] for row in conn.execute(_DUE, {"at": at, "limit": limit})]
            later = conn.execute(_NEXT, {"at": at}).scalar()
        return due, None if later is None else float(later)

    def forget_all(self) -> int:
        """Clear every mark (the window is off: all unfinished work is loaded at start); how many."""
        with translate_errors(), self._writes.begin() as conn:
            return int(conn.execute(update(_T).where(_SPILLED).values(claimed_by=None)).rowcount or 0)

    def counts(self) -> SpilledCounts:
        """How many tasks are spilled, and their QUEUED subtasks by priority and kind (one scan of
        the spilled rows: at start and after a restore)."""
        kind = (
            _T.c.priority,
            func.json_extract(_S.c.data, "$.agent_type"),
            func.json_extract(_S.c.data, "$.capability"),
        )
        with translate_errors(), self._reads.connect() as conn:
            tasks = conn.execute(select(func.count()).select_from(_T).where(_WAITING)).scalar_one()
            rows = conn.execute(
                select(*kind, func.count(), func.min(func.json_extract(_S.c.data, "$.queue_time")))
                .select_from(_S.join(_T, _T.c.id == _S.c.task_id))
                .where(_WAITING, _S.c.status == int(SubtaskStatus.QUEUED))
                .group_by(*kind)
            ).all()
            deadline = conn.execute(_NEXT, {"at": float("-inf")}).scalar()
        return SpilledCounts(
            int(tasks),
            [
                (Priority(priority), agent_type or "", capability or "", int(n), float(oldest or 0.0))
                for priority, agent_type, capability, n, oldest in rows
            ],
            None if deadline is None else float(deadline),
        )
