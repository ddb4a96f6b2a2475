"""Claims of tasks between replicas on PostgreSQL: ``tasks.claimed_by`` (migration 0018).

The unit of claim is a task: the replica named in ``claimed_by`` runs its subtasks on its own
agents and keeps it in memory. A task is *claimable* when it is unfinished and nobody live holds
it: ``claimed_by`` is NULL, or names a replica whose ``replicas`` row is silent past
``replicas.lost_after`` (or gone). :meth:`SqlClaimStore.claim` takes claimable tasks with
``SELECT … FOR UPDATE SKIP LOCKED`` in the order the ready queue runs work (the virtual time
``create_time - priority × scheduler.aging_interval``, then submit order), so concurrent
claimers never take the same task and priority holds across replicas. A replica gives a task
up in the commit that writes its last state (``WriteBatch.released``) and gives up everything
it holds on a clean stop (:meth:`SqlClaimStore.release_all`).

Reached through :func:`claim_store`, never through the backend's class. Methods are synchronous
and run on the storage thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Engine, and_, or_, select, update

from controlplane.domain.model import Subtask, Task, TaskStatus
from controlplane.storage.sql import codec, schema
from controlplane.storage.sql.backend import SqlBackend, translate_errors

_T, _S, _R = schema.tasks, schema.subtasks, schema.replicas
_UNFINISHED = tuple(int(s) for s in TaskStatus if not s.finished)

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

        Returns:
            The tasks claimed and their subtasks (in plan order).
        """
        if limit <= 0:
            return [], []
        live = select(_R.c.id).where(_R.c.heartbeat_at >= now - lost_after)
        claimable = and_(
            _T.c.status.in_(_UNFINISHED), or_(_T.c.claimed_by.is_(None), _T.c.claimed_by.not_in(live))
        )
        if finished_too:
            claimable = or_(claimable, _T.c.status.not_in(_UNFINISHED))
        stmt = (
            select(_T)
            .where(claimable)
            .order_by(_T.c.create_time - _T.c.priority * aging_interval, _T.c.seq)
            .limit(limit if wanted is None else 4 * limit + 16)
            .with_for_update(skip_locked=True, of=_T)
        )
        if task_ids:
            stmt = stmt.where(_T.c.id.in_(list(task_ids)))
        with translate_errors(), self._writes.begin() as conn:
            tasks = [codec.task_from_row(row) for row in conn.execute(stmt).mappings()]
            if not tasks:
                return [], []
            rows = conn.execute(
                select(_S).where(_S.c.task_id.in_([t.id for t in tasks])).order_by(_S.c.task_id, _S.c.ord)
            ).mappings()
            subs: dict[str, list[Subtask]] = {}
            for row in rows:
                sub = codec.subtask_from_row(row)
                subs.setdefault(sub.task_id, []).append(sub)
            chosen = [t for t in tasks if wanted is None or wanted(t, subs.get(t.id, []))][:limit]
            if chosen:
                conn.execute(update(_T).where(_T.c.id.in_([t.id for t in chosen])).values(claimed_by=holder))
        return chosen, [sub for task in chosen for sub in subs.get(task.id, [])]

    def hold(self, holder: str, task_ids: Sequence[str]) -> None:
        """Make ``holder`` hold these tasks, whoever held them (after a recovery restored them all)."""
        with translate_errors(), self._writes.begin() as conn:
            for start in range(0, len(task_ids), 500):
                chunk = list(task_ids[start : start + 500])
                conn.execute(update(_T).where(_T.c.id.in_(chunk)).values(claimed_by=holder))

    def release_all(self, holder: str) -> int:
        """Give up every task ``holder`` holds (a clean stop, after its final commit); how many."""
        with translate_errors(), self._writes.begin() as conn:
            done = conn.execute(update(_T).where(_T.c.claimed_by == holder).values(claimed_by=None))
            return done.rowcount or 0

    def holder(self, task_id: str) -> str | None:
        """Who holds a task now (None: nobody, or no such task)."""
        with translate_errors(), self._writes.connect() as conn:
            return conn.execute(select(_T.c.claimed_by).where(_T.c.id == task_id)).scalar_one_or_none()
