"""Claims of tasks between replicas on PostgreSQL: ``tasks.claimed_by`` (migration 0018).

The unit of claim is a task: the replica named in ``claimed_by`` runs its subtasks on its own
agents and keeps it in memory. A task is *claimable* when it is unfinished and nobody live holds
it: ``claimed_by`` is NULL, or names a replica whose ``replicas`` row is silent past
``replicas.lost_after`` (or gone). :meth:`SqlClaimStore.claim` takes claimable tasks with
``SELECT … FOR UPDATE SKIP LOCKED`` in the order the ready queue runs work (the virtual time
``create_time - priority × scheduler.aging_interval``, then submit order), so concurrent
claimers never take the same task and priority holds across replicas: one prepared statement locks,
claims and reads the best claimable tasks with their subtasks, a few rows per priority from the partial
index ``ix_tasks_claimable`` (migration 0019) however deep the queue. A replica gives a task
up in the commit that writes its last state (``WriteBatch.released``) and gives up everything
it holds on a clean stop (:meth:`SqlClaimStore.release_all`).

Reached through :func:`claim_store`, never through the backend's class. Methods are synchronous
and run on the storage thread.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select, tuple_, update

from controlplane.domain.model import Priority, Subtask, Task, TaskStatus
from controlplane.storage.sql import codec, schema
from controlplane.storage.sql.backend import SqlBackend, translate_errors

_T, _S, _R = schema.tasks, schema.subtasks, schema.replicas
_UNFINISHED = tuple(int(s) for s in TaskStatus if not s.finished)

#: Pages of candidates one claim looks through (those no agent of the claimer can take are passed over).
PAGES = 8

_PRIORITIES = [int(p) for p in Priority]

#: The unfinished statuses, as the partial index ``ix_tasks_claimable`` (migration 0019) spells them: the
#: statements below repeat them literally so that the planner uses that index with a cached plan too.
UNFINISHED_SQL = "status IN ({})".format(", ".join(str(s) for s in _UNFINISHED))

#: Claimable (see the module docstring), for a row ``t`` of ``tasks``; ``live`` lists the live replicas.
_CLAIMABLE = f"t.{UNFINISHED_SQL} AND (t.claimed_by IS NULL OR t.claimed_by NOT IN (SELECT id FROM live))"
_LIVE = "live AS MATERIALIZED (SELECT id FROM replicas WHERE heartbeat_at >= %(since)s)"
#: Locks the rows chosen by ``locked``, claims them and reads them with their subtasks, best first.
_CLAIM_AND_READ = """,
claimed AS (
    UPDATE tasks SET claimed_by = %(holder)s FROM locked WHERE tasks.id = locked.id
    RETURNING tasks.id, tasks.seq, tasks.owner, tasks.status, tasks.priority, tasks.task_type,
        tasks.create_time, tasks.batch, tasks.data, locked.before, locked.virtual_time
)
SELECT claimed.*, s.id AS s_id, s.status AS s_status, s.checkpoint AS s_checkpoint, s.data AS s_data
FROM claimed LEFT JOIN subtasks AS s ON s.task_id = claimed.id
ORDER BY claimed.virtual_time, claimed.seq, s.ord"""
_LOCKED = """locked AS (
    SELECT t.id, t.claimed_by AS before, t.create_time - t.priority * %(aging)s AS virtual_time
    FROM tasks AS t
    WHERE {where} AND t.create_time - t.priority * %(aging)s < %(better)s
    ORDER BY virtual_time, t.seq
    LIMIT %(limit)s
    FOR UPDATE OF t SKIP LOCKED
)"""

#: Claim the best claimable tasks in one statement. The ready queue's order (virtual time, then seq) is,
#: within one priority, the order of ``(create_time, seq)``: the index ``ix_tasks_claimable`` gives the
#: first ``reach`` claimable tasks of each priority, and the best ``limit`` of those are locked (passing
#: over rows another claimer holds locked), claimed and returned. However deep the queue, a claim reads
#: a few rows per priority.
CLAIM_BEST = (
    f"""WITH {_LIVE},
candidates AS (
    SELECT c.id
    FROM unnest(CAST(%(priorities)s AS integer[])) AS p(priority)
    CROSS JOIN LATERAL (
        SELECT t.id FROM tasks AS t
        WHERE {_CLAIMABLE} AND t.priority = p.priority
        ORDER BY t.create_time, t.seq
        LIMIT %(reach)s
    ) AS c
),
"""
    + _LOCKED.format(where=f"t.id IN (SELECT id FROM candidates) AND {_CLAIMABLE}")
    + _CLAIM_AND_READ
)

#: Claim given tasks (by primary key) when claimable; with ``finished_too`` a finished one as well.
CLAIM_BY_ID = (
    f"WITH {_LIVE},\n"
    + _LOCKED.format(
        where=f"t.id = ANY(CAST(%(ids)s AS varchar[])) AND (({_CLAIMABLE}) OR "
        f"(%(finished_too)s AND NOT t.{UNFINISHED_SQL}))"
    )
    + _CLAIM_AND_READ
)

#: Decides, on the storage thread, whether this replica wants a claimable task (with its subtasks).
Wanted = Callable[[Task, list[Subtask]], bool]


def claim_store(backend: Any) -> SqlClaimStore | None:
    """The claim store of ``backend`` when it is the SQLAlchemy backend on PostgreSQL, else None."""
    if isinstance(backend, SqlBackend) and backend.kind == "postgresql":
        return SqlClaimStore(backend.engine.execution_options(maos_writes=True))
    return None


class SqlClaimStore:
    """Claims on the ``tasks`` table (see the module docstring)."""

    def __init__(self, writes: Engine) -> None:
        self._writes = writes

    def claim(
        self,
        holder: str,
        now: float,
        lost_after: float,
        limit: int,
        aging_interval: float,
        wanted: Wanted | None = None,
        task_ids: Sequence[str] = (),
        finished_too: bool = False,
        better_than: float | None = None,
    ) -> tuple[list[Task], list[Subtask]]:
        """Claim up to ``limit`` claimable tasks for ``holder``, best first, that ``wanted`` accepts.

        Args:
            holder: This replica's id.
            now: The wall clock (seconds since the epoch).
            lost_after: A holder silent this long is lost (``replicas.lost_after``).
            limit: The most tasks to claim.
            aging_interval: ``scheduler.aging_interval`` (seconds worth one priority level).
            wanted: Called for each candidate with its subtasks; only those it accepts are claimed
                (the others stay claimable and unlocked). None: every candidate.
            task_ids: Only these tasks (empty: any).
            finished_too: A finished task among ``task_ids`` is claimed whoever holds it (nothing of it
                runs: a retry makes it run again where it is claimed).
            better_than: Only tasks whose virtual time is below this (they run before it).

        Returns:
            The tasks claimed and their subtasks (in plan order).
        """
        if limit <= 0:
            return [], []
        chosen: list[Task] = []
        subs: dict[str, list[Subtask]] = {}
        with translate_errors(), self._writes.begin() as conn:
            # Most often every candidate is wanted: lock, claim and read them in one statement.
            first, rejected = self._claim_at_once(
                conn,
                holder,
                now - lost_after,
                limit,
                aging_interval,
                wanted,
                subs,
                task_ids,
                finished_too,
                better_than,
            )
            chosen += first
            if not rejected:
                return chosen, [sub for task in chosen for sub in subs.get(task.id, [])]
            # Some were refused: look further, a page at a time (the order of the statement, in SQLAlchemy).
            live = select(_R.c.id).where(_R.c.heartbeat_at >= now - lost_after)
            claimable = and_(
                _T.c.status.in_(_UNFINISHED), or_(_T.c.claimed_by.is_(None), _T.c.claimed_by.not_in(live))
            )
            if finished_too:
                claimable = or_(claimable, _T.c.status.not_in(_UNFINISHED))
            virtual_time = _T.c.create_time - _T.c.priority * aging_interval
            if better_than is not None:
                claimable = and_(claimable, virtual_time < better_than)
            page = limit if wanted is None else 4 * limit + 16
            if task_ids:
                claimable = and_(claimable, _T.c.id.in_(list(task_ids)))
            claimable = and_(claimable, _T.c.id.not_in([t.id for t in chosen] + rejected))
            after: tuple[float, int] | None = None
            for _ in range(PAGES):  # candidates nobody here can take are passed over, a page at a time
                where = claimable
                if after is not None:
                    where = and_(where, tuple_(virtual_time, _T.c.seq) > tuple_(*after))
                stmt = (
                    select(_T, virtual_time.label("virtual_time"))
                    .where(where)
                    .order_by(virtual_time, _T.c.seq)
                    .limit(page)
                    .with_for_update(skip_locked=True, of=_T)
                )
                found = list(conn.execute(stmt).mappings())
                if not found:
                    break
                after = (found[-1]["virtual_time"], found[-1]["seq"])
                tasks = [codec.task_from_row(row) for row in found]
                rows = conn.execute(
                    select(_S).where(_S.c.task_id.in_([t.id for t in tasks])).order_by(_S.c.task_id, _S.c.ord)
                ).mappings()
                for row in rows:
                    sub = codec.subtask_from_row(row)
                    subs.setdefault(sub.task_id, []).append(sub)
                chosen += [t for t in tasks if wanted is None or wanted(t, subs.get(t.id, []))]
                if len(chosen) >= limit or len(found) < page:
                    break
            chosen = chosen[:limit]
            fresh = [t.id for t in chosen if t.id not in {c.id for c in first}]
            if fresh:
                conn.execute(update(_T).where(_T.c.id.in_(fresh)).values(claimed_by=holder))
        return chosen, [sub for task in chosen for sub in subs.get(task.id, [])]

    def _claim_at_once(
        self,
        conn: Any,
        holder: str,
        live_since: float,
        limit: int,
        aging_interval: float,
        wanted: Wanted | None,
        subs: dict[str, list[Subtask]],
        task_ids: Sequence[str],
        finished_too: bool,
        better_than: float | None,
    ) -> tuple[list[Task], list[str]]:
        """Claim the best ``limit`` candidates in one statement; give back those ``wanted`` refuses.

        Returns:
            The tasks claimed (their subtasks added to ``subs``) and the ids given back.
        """
        params = {
            "holder": holder,
            "since": live_since,
            "aging": float(aging_interval),
            "limit": limit,
            "better": math.inf if better_than is None else float(better_than),
        }
        if task_ids:
            sql = CLAIM_BY_ID
            params.update(ids=list(task_ids), finished_too=finished_too)
        else:
            sql = CLAIM_BEST
            params.update(priorities=_PRIORITIES, reach=2 * limit + 8)
        tasks: dict[str, Task] = {}
        before: dict[str, str | None] = {}
        # Prepared (planned once per connection, planned again when the tables' statistics change):
        # planning the statement costs more than running it on a short queue.
        with conn.connection.dbapi_connection.cursor() as cursor:
            cursor.execute(sql, params, prepare=True)
            names = [column.name for column in cursor.description]
            found = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
        for row in found:
            task_id = row["id"]
            if task_id not in tasks:
                tasks[task_id] = codec.task_from_row(row)
                before[task_id] = row["before"]
            if row["s_id"] is not None:
                sub = codec.subtask_from_row(
                    {
                        "task_id": task_id,
                        "id": row["s_id"],
                        "status": row["s_status"],
                        "checkpoint": row["s_checkpoint"],
                        "data": row["s_data"],
                    }
                )
                subs.setdefault(task_id, []).append(sub)
        chosen = [t for t in tasks.values() if wanted is None or wanted(t, subs.get(t.id, []))]
        kept = {t.id for t in chosen}
        rejected = [task_id for task_id in tasks if task_id not in kept]
        for task_id in rejected:
            conn.execute(update(_T).where(_T.c.id == task_id).values(claimed_by=before[task_id]))
        return chosen, rejected

    def hold(self, holder: str, task_ids: Sequence[str]) -> None:
        """Make ``holder`` hold these tasks, whoever held them (after a recovery restored them all)."""
        with translate_errors(), self._writes.begin() as conn:
            for start in range(0, len(task_ids), 500):
                chunk = list(task_ids[start : start + 500])
                conn.execute(update(_T).where(_T.c.id.in_(chunk)).values(claimed_by=holder))

    def release_all(self, holder: str, keep: Sequence[str] = ()) -> int:
        """Give up every task ``holder`` holds but those of ``keep`` (a clean stop, after its final
        commit; a start, for what an earlier run with the same id held); how many."""
        with translate_errors(), self._writes.begin() as conn:
            where = _T.c.claimed_by == holder
            if keep:
                where = where & _T.c.id.notin_(list(keep))
            done = conn.execute(update(_T).where(where).values(claimed_by=None))
            return done.rowcount or 0

    def unclaimed(self) -> list[tuple[str, int, float]]:
        """Per task type, the unfinished tasks nobody holds and the oldest one's create time.

        One grouped count over the unfinished tasks (on ``ix_tasks_status``). Tasks held by a lost
        replica are claimable too but not counted: the next claim pass of a live replica takes them.
        """
        stmt = (
            select(_T.c.task_type, func.count(), func.min(_T.c.create_time))
            .where(_T.c.status.in_(_UNFINISHED), _T.c.claimed_by.is_(None))
            .group_by(_T.c.task_type)
        )
        with translate_errors(), self._writes.connect() as conn:
            return [(str(kind), int(n), float(oldest)) for kind, n, oldest in conn.execute(stmt)]

    def holder(self, task_id: str) -> str | None:
        """Who holds a task now (None: nobody, or no such task)."""
        with translate_errors(), self._writes.connect() as conn:
            return conn.execute(select(_T.c.claimed_by).where(_T.c.id == task_id)).scalar_one_or_none()
