"""Claims of tasks between replicas on PostgreSQL: ``tasks.claimed_by`` (migration 0018).

The unit of claim is a task: the replica named in ``claimed_by`` runs its subtasks on its own
agents and keeps it in memory. A task is *claimable* when it is unfinished and nobody live holds
it: ``claimed_by`` is NULL, or names a replica whose ``replicas`` row is silent past
``replicas.lost_after`` (or gone). :meth:`SqlClaimStore.claim` takes claimable tasks with
``SELECT … FOR UPDATE SKIP LOCKED`` in the order the ready queue runs work (the virtual time
``create_time - priority × scheduler.aging_interval``, then submit order), so concurrent
claimers never take the same task and priority holds across replicas: one prepared statement locks,
claims and reads the best claimable tasks with their subtasks, a few rows per priority from the partial
index ``ix_tasks_claimable`` (migration 0019) however deep the queue.

**Giving a task up** takes two steps. The commit that writes its last state (``WriteBatch.released``)
marks it *leaving*: ``claimed_by = '~leaving:<holder>'`` (:func:`leaving`). A leaving task counts as
held while its holder is live, so no claim pass takes it yet; the ``work`` wake-up that names it
(published once the task's events are in the event stream) lets another replica claim it by id
(:meth:`SqlClaimStore.claim_named`: one statement, guarded on the marker). Then its holder lets it
go (:meth:`SqlClaimStore.let_go`: ``claimed_by = NULL`` where the marker still stands), so a claim
pass finds it if the wake-up was lost. A replica that reclaims the task writes its own id over the
marker, so a late wake-up naming it claims nothing. A leaving task of a lost replica is claimable
like the rest of its tasks. A clean stop gives up everything the replica holds, leaving or not
(:meth:`SqlClaimStore.release_all`).

Reached through :func:`claim_store`, never through the backend's class. Methods are synchronous
and run on the storage thread.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Engine, String, and_, func, literal, or_, select, tuple_, union_all, update

from controlplane.domain.model import Priority, Subtask, Task, TaskStatus
from controlplane.storage.sql import row_batches, schema
from controlplane.storage.sql.backend import SqlBackend, translate_errors

log = logging.getLogger(__name__)

_T, _S, _R = schema.tasks, schema.subtasks, schema.replicas
#: The columns a search claim reads, as :class:`.row_batches.RowBatchDecoder` decodes them (then the
#: virtual time); the subtasks' columns likewise.
_TASK_READ = [_T.c[name] for name in row_batches.TASK_COLUMNS]
_VIRTUAL_TIME, _SEQ = len(_TASK_READ), row_batches.TASK_COLUMNS.index("seq")
_SUBTASK_READ = [_S.c[name] for name in row_batches.SUBTASK_COLUMNS]
#: The subtask's columns (but its task's id) in a row the one-statement claims return
#: (:data:`_CLAIM_AND_READ`).
_SUB_COLUMNS = ("s_id", "s_status", "s_checkpoint", "s_data")
_UNFINISHED = tuple(int(s) for s in TaskStatus if not s.finished)

#: SQLSTATE of a lock wait past ``lock_timeout``.
LOCK_NOT_AVAILABLE = "55P03"

#: Pages of candidates one claim looks through (those no agent of the claimer can take are passed over).
PAGES = 8

_PRIORITIES = [int(p) for p in Priority]

LEAVING, leaving = schema.LEAVING, schema.leaving


def _sqlstate(exc: BaseException) -> str:
    """The SQLSTATE of a database error (psycopg's, or the one SQLAlchemy wraps), else ""."""
    return str(getattr(exc, "sqlstate", None) or getattr(getattr(exc, "orig", None), "sqlstate", None) or "")


def holder_of(claimed_by: str | None) -> str | None:
    """The replica a ``claimed_by`` value names (a leaving task's still counts as its holder)."""
    if claimed_by is not None and claimed_by.startswith(LEAVING):
        return claimed_by[len(LEAVING) :]
    return claimed_by


#: The unfinished statuses, as the partial index ``ix_tasks_claimable`` (migration 0019) spells them: the
#: statements below repeat them literally so that the planner uses that index with a cached plan too.
UNFINISHED_SQL = "status IN ({})".format(", ".join(str(s) for s in _UNFINISHED))

#: Claimable (see the module docstring), for a row ``t`` of ``tasks``; ``live`` lists the live replicas.
_CLAIMABLE = f"t.{UNFINISHED_SQL} AND (t.claimed_by IS NULL OR t.claimed_by NOT IN (SELECT id FROM live))"
#: The live replicas' ids and the leaving marks of their tasks (both held: not claimable by a pass).
_LIVE = (
    "live AS MATERIALIZED (SELECT unnest(ARRAY[id, '" + LEAVING + "' || id]) AS id "
    "FROM replicas WHERE heartbeat_at >= %(since)s)"
)
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
    FOR UPDATE OF t{skip}
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
    + _LOCKED.format(where=f"t.id IN (SELECT id FROM candidates) AND {_CLAIMABLE}", skip=" SKIP LOCKED")
    + _CLAIM_AND_READ
)

#: Claim given tasks (by primary key) when claimable, or leaving with one of the ``leaving`` marks (a
#: wake-up named them); with ``finished_too`` a finished one as well.
_BY_ID = (
    f"t.id = ANY(CAST(%(ids)s AS varchar[])) AND (({_CLAIMABLE}) OR "
    f"(t.{UNFINISHED_SQL} AND t.claimed_by = ANY(CAST(%(leaving)s AS varchar[]))) OR "
    f"(%(finished_too)s AND NOT t.{UNFINISHED_SQL}))"
)
CLAIM_BY_ID = f"WITH {_LIVE},\n" + _LOCKED.format(where=_BY_ID, skip=" SKIP LOCKED") + _CLAIM_AND_READ

#: Seconds a claim by id waits for a row another transaction locks before it gives up (claiming nothing:
#: the claims poll finds the tasks once let go). It runs on the storage thread: a long wait would hold
#: every commit of its replica back.
NAMED_LOCK_TIMEOUT = 1.0
#: The same as :data:`CLAIM_BY_ID`, waiting (at most :data:`NAMED_LOCK_TIMEOUT`, set for this statement
#: alone: it is its own transaction) for a row another transaction locks rather than passing it over: the
#: tasks a wake-up named may be locked a moment by their holder letting them go
#: (:meth:`SqlClaimStore.let_go`, which passes over the rows a claim locks) or by another replica
#: claiming them (then this one finds them taken, once that one commits). The best ``limit`` are picked
#: first, then locked in id order, as every statement locking several task rows does (no deadlock with
#: a clean stop's :meth:`SqlClaimStore.release_all`).
CLAIM_NAMED = (
    f"""WITH waits AS MATERIALIZED (SELECT set_config('lock_timeout', %(lock_timeout)s, true) AS lock_timeout),
{_LIVE},
picked AS (
    SELECT t.id FROM tasks AS t CROSS JOIN waits
    WHERE {_BY_ID} AND t.create_time - t.priority * %(aging)s < %(better)s
    ORDER BY t.create_time - t.priority * %(aging)s, t.seq
    LIMIT %(limit)s
),
locked AS (
    SELECT t.id, t.claimed_by AS before, t.create_time - t.priority * %(aging)s AS virtual_time
    FROM tasks AS t
    WHERE t.id IN (SELECT id FROM picked) AND {_BY_ID}
    ORDER BY t.id
    FOR UPDATE OF t
)"""
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
        #: Tasks a claim by id took (committed) and meant to give back, whose give-back failed: the value
        #: ``claimed_by`` had (see :meth:`give_back_unreturned`).
        self.unreturned: dict[str, str | None] = {}
        #: Decodes the rows claimed. (Claims run on the storage thread; should several threads claim at
        #: once, they share its small records, which are frozen, and at worst each makes its own copy.)
        self._decoder = row_batches.RowBatchDecoder()

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
        given_up_by: Sequence[str] = (),
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
            given_up_by: Among ``task_ids``, those these replicas gave up and have not let go yet
                (leaving) are claimable too.

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
                [leaving(replica) for replica in given_up_by],
            )
            chosen += first
            if not rejected:
                return chosen, [sub for task in chosen for sub in subs.get(task.id, [])]
            # Some were refused: look further, a page at a time (the order of the statement, in SQLAlchemy).
            live_rows = _R.c.heartbeat_at >= now - lost_after
            live = union_all(
                select(_R.c.id).where(live_rows),
                select(literal(LEAVING, String) + _R.c.id).where(live_rows),
            )
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
                    select(*_TASK_READ, virtual_time.label("virtual_time"))
                    .where(where)
                    .order_by(virtual_time, _T.c.seq)
                    .limit(page)
                    .with_for_update(skip_locked=True, of=_T)
                )
                found = list(conn.execute(stmt))
                if not found:
                    break
                after = (found[-1][_VIRTUAL_TIME], found[-1][_SEQ])
                decode = self._decoder
                tasks = [decode.task(row[:_VIRTUAL_TIME]) for row in found]
                rows = conn.execute(
                    select(*_SUBTASK_READ)
                    .where(_S.c.task_id.in_([t.id for t in tasks]))
                    .order_by(_S.c.task_id, _S.c.ord)
                )
                for row in rows:
                    sub = decode.subtask(row)
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
        leaving_of: Sequence[str] = (),
        named: bool = False,
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
            sql = CLAIM_NAMED if named else CLAIM_BY_ID
            params.update(ids=list(task_ids), finished_too=finished_too, leaving=list(leaving_of))
            if named:
                params["lock_timeout"] = f"{round(NAMED_LOCK_TIMEOUT * 1000)}ms"
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
            found = cursor.fetchall()
        task_of = itemgetter(*map(names.index, row_batches.TASK_COLUMNS))
        sub_of = itemgetter(*map(names.index, _SUB_COLUMNS))
        id_at, before_at, s_id_at = names.index("id"), names.index("before"), names.index("s_id")
        decode = self._decoder
        for row in found:
            task_id = row[id_at]
            if task_id not in tasks:
                tasks[task_id] = decode.task(task_of(row))
                before[task_id] = row[before_at]
            if row[s_id_at] is not None:
                sub = decode.subtask((task_id, *sub_of(row)))
                subs.setdefault(task_id, []).append(sub)
        chosen = [t for t in tasks.values() if wanted is None or wanted(t, subs.get(t.id, []))]
        kept = {t.id for t in chosen}
        rejected = [task_id for task_id in tasks if task_id not in kept]
        # As it was; but a task its holder gave up is let go (see claim_named).
        back = {
            t: None if (was := before[t]) is not None and was.startswith(LEAVING) else was for t in rejected
        }
        if named:  # committed already (autocommit): a give-back that fails is tried again later
            try:
                self._give_back(conn, holder, back)
            except Exception as exc:
                log.warning(
                    "could not give back %d tasks a claim by id took (tried again later): %s", len(back), exc
                )
                self.unreturned.update(back)
        else:  # (in the claim's transaction: failing, it undoes the claim too)
            self._give_back(conn, holder, back)
        return chosen, rejected

    @staticmethod
    def _give_back(conn: Any, holder: str, back: dict[str, str | None]) -> None:
        for task_id, was in sorted(back.items()):
            conn.execute(
                update(_T).where(_T.c.id == task_id, _T.c.claimed_by == holder).values(claimed_by=was)
            )

    def give_back_unreturned(self, holder: str) -> int:
        """Give back what a claim by id of ``holder`` took and could not give back (:attr:`unreturned`:
        never in ``holder``'s memory, so held by nobody else meanwhile); how many are left to give back."""
        back, self.unreturned = dict(self.unreturned), {}
        if back:
            try:
                with translate_errors(), self._writes.begin() as conn:
                    self._give_back(conn, holder, back)
            except Exception:
                self.unreturned.update(back)
                raise
        return len(self.unreturned)

    def claim_named(
        self,
        holder: str,
        now: float,
        lost_after: float,
        task_ids: Sequence[str],
        origin: str,
        limit: int,
        aging_interval: float,
        wanted: Wanted | None = None,
        better_than: float | None = None,
    ) -> tuple[list[Task], list[Subtask]]:
        """Claim tasks a ``work`` wake-up of ``origin`` named, in one statement (one round trip).

        Takes those of ``task_ids`` that are claimable or that ``origin`` gave up and has not let go yet
        (leaving, see the module docstring): whoever holds one by now (``origin`` again, or another
        replica that claimed it first) keeps it. At most ``limit``, best first; those ``wanted`` refuses
        are given back at once (a second statement), let go if they were leaving.

        Returns:
            The tasks claimed and their subtasks (in plan order).
        """
        if limit <= 0 or not task_ids:
            return [], []
        subs: dict[str, list[Subtask]] = {}
        with translate_errors(), self._writes.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")  # the statement is its transaction
            try:
                chosen, _ = self._named_at_once(
                    conn,
                    holder,
                    now,
                    lost_after,
                    task_ids,
                    origin,
                    limit,
                    aging_interval,
                    wanted,
                    better_than,
                    subs,
                )
            except Exception as exc:  # (the statement runs on the DB-API cursor: psycopg's error, unwrapped)
                if _sqlstate(exc) != LOCK_NOT_AVAILABLE:
                    raise
                log.info("a claim by id waited %g s for a locked row: claimed nothing", NAMED_LOCK_TIMEOUT)
                return [], []
        return chosen, [sub for task in chosen for sub in subs.get(task.id, [])]

    def _named_at_once(
        self,
        conn: Any,
        holder: str,
        now: float,
        lost_after: float,
        task_ids: Sequence[str],
        origin: str,
        limit: int,
        aging_interval: float,
        wanted: Wanted | None,
        better_than: float | None,
        subs: dict[str, list[Subtask]],
    ) -> tuple[list[Task], list[str]]:
        return self._claim_at_once(
            conn,
            holder,
            now - lost_after,
            limit,
            aging_interval,
            wanted,
            subs,
            task_ids,
            False,
            better_than,
            leaving_of=[leaving(origin)] if origin else [],
            named=True,
        )

    def let_go(self, holder: str, task_ids: Sequence[str]) -> list[str]:
        """Make tasks ``holder`` gave up (leaving) claimable by any claim pass (those claimed by id meanwhile
        stay where they are); the ones still marked leaving, whose rows another transaction held locked:
        let go again later (a claim by id holding them may yet abort)."""
        if not task_ids:
            return []
        mark, ids = leaving(holder), sorted(task_ids)
        with translate_errors(), self._writes.begin() as conn:
            # (passing over a row a claim locks: that claim takes the task, or lets it go if unwanted)
            free = (
                select(_T.c.id)
                .where(_T.c.id.in_(ids), _T.c.claimed_by == mark)
                .order_by(_T.c.id)
                .with_for_update(skip_locked=True)
            )
            conn.execute(update(_T).where(_T.c.id.in_(free), _T.c.claimed_by == mark).values(claimed_by=None))
            # What was passed over, as last committed (a claim that commits meanwhile makes it a no-op later).
            return list(
                conn.execute(select(_T.c.id).where(_T.c.id.in_(ids), _T.c.claimed_by == mark)).scalars()
            )

    def hold(self, holder: str, task_ids: Sequence[str]) -> None:
        """Make ``holder`` hold these tasks, whoever held them (after a recovery restored them all)."""
        with translate_errors(), self._writes.begin() as conn:
            ids = sorted(task_ids)  # (locked in id order)
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                ordered = select(_T.c.id).where(_T.c.id.in_(chunk)).order_by(_T.c.id).with_for_update()
                conn.execute(update(_T).where(_T.c.id.in_(ordered)).values(claimed_by=holder))

    def release_all(self, holder: str, keep: Sequence[str] = ()) -> int:
        """Give up every task ``holder`` holds but those of ``keep`` (a clean stop, after its final
        commit; a start, for what an earlier run with the same id held); how many."""
        with translate_errors(), self._writes.begin() as conn:
            held = _T.c.claimed_by.in_([holder, leaving(holder)])
            where = held & _T.c.id.notin_(list(keep)) if keep else held
            ordered = select(_T.c.id).where(where).order_by(_T.c.id).with_for_update()  # (locked in id order)
            done = conn.execute(update(_T).where(_T.c.id.in_(ordered), held).values(claimed_by=None))
            return done.rowcount or 0

    def unclaimed(self) -> list[tuple[str, int, float]]:
        """Per task type, the unfinished tasks nobody holds and the oldest one's create time.

        One grouped count over the unfinished tasks (on ``ix_tasks_claimable``). Tasks held by a lost
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
        """Who holds a task now (None: nobody, or no such task); a task given up and not let go yet is
        still its holder's."""
        with translate_errors(), self._writes.connect() as conn:
            found = conn.execute(select(_T.c.claimed_by).where(_T.c.id == task_id)).scalar_one_or_none()
        return holder_of(found)

    def live_holders(self, task_ids: Sequence[str], since: float) -> dict[str, str]:
        """The live replica (heartbeat at or after ``since``) holding each unfinished task of ``task_ids``
        (a task given up and not let go yet is still its holder's); the other tasks are left out."""
        if not task_ids:
            return {}
        with translate_errors(), self._writes.connect() as conn:
            found = conn.execute(
                select(_T.c.id, _T.c.claimed_by).where(
                    _T.c.id.in_(list(task_ids)), _T.c.status.in_(_UNFINISHED), _T.c.claimed_by.is_not(None)
                )
            )
            held = {str(task_id): str(holder_of(claimed_by)) for task_id, claimed_by in found}
            if not held:
                return {}
            live = set(
                conn.execute(
                    select(_R.c.id).where(_R.c.id.in_(set(held.values())), _R.c.heartbeat_at >= since)
                ).scalars()
            )
        return {task_id: holder for task_id, holder in held.items() if holder in live}
