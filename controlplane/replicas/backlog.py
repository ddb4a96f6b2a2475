"""The unclaimed backlog: unfinished tasks no replica holds, counted in the shared database.

With replicas, each one's queue gauges (``maos_tasks_pending``, ``maos_scaling_queue_depth``)
count the tasks it holds. Work nobody holds (beyond every replica's claim window, or given up
because no agent connected there could take it) is in none of them, so an autoscaler summing
those gauges would see no reason to add agents for it. :class:`UnclaimedBacklog` counts it: every
:data:`INTERVAL` seconds one grouped count over the unfinished tasks (on the tasks' status index,
:meth:`~controlplane.storage.sql.claims.SqlClaimStore.unclaimed`). Every replica counts and
exports the same figure for the whole system, so a query takes its ``max`` over replicas (never
the sum), and adds it to the sum of the per-replica queue depths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controlplane.domain.model import now
from controlplane.domain.planning import capability_for
from controlplane.domain.pool import wildcard_match
from controlplane.hookspecs import hookimpl
from controlplane.periodic import PeriodicJob

#: Seconds between two counts.
INTERVAL = 2.0


@dataclass(frozen=True)
class Unclaimed:
    """Unfinished tasks of one task type that nobody holds."""

    task_type: str
    count: int
    oldest_create_time: float


class UnclaimedBacklog:
    """The last count of the unclaimed backlog, refreshed every :data:`INTERVAL` seconds between start and stop.

    Args:
        storage: The storage executor (the count runs on its read thread).
        store: The claim store (:class:`~controlplane.storage.sql.claims.SqlClaimStore`).
    """

    def __init__(self, storage: Any, store: Any, interval: float = INTERVAL):
        self._storage = storage
        self._store = store
        self.rows: list[Unclaimed] = []
        self._job = PeriodicJob("unclaimed-backlog", self.refresh, interval)

    async def refresh(self) -> None:
        """Count again."""
        # Beside the storage thread: a count over a deep queue must not hold up commits and claims.
        found = await self._storage.quick_read(self._store.unclaimed)
        self.rows = [Unclaimed(*row) for row in found]

    def start(self) -> None:
        """Count now and every interval."""
        self._job.start()

    async def stop(self) -> None:
        """Stop counting."""
        await self._job.stop()

    def total(self) -> int:
        """Unclaimed tasks of every type."""
        return sum(row.count for row in self.rows)

    def oldest_wait(self, wall: float | None = None) -> float:
        """Seconds since the oldest unclaimed task was submitted (0 when there is none)."""
        if not self.rows:
            return 0.0
        return max(0.0, (now() if wall is None else wall) - min(r.oldest_create_time for r in self.rows))

    def for_type(
        self, agent_type: str, capabilities: frozenset[str], wall: float | None = None
    ) -> tuple[int, float]:
        """The unclaimed tasks agents of ``agent_type`` could take, by the capability their task
        type needs (their plan is made once claimed), and the oldest one's wait in seconds."""
        rows = [
            r for r in self.rows if wildcard_match("", capability_for(r.task_type), agent_type, capabilities)
        ]
        if not rows:
            return 0, 0.0
        wall = now() if wall is None else wall
        return sum(r.count for r in rows), max(0.0, wall - min(r.oldest_create_time for r in rows))


class BacklogLifecycle:
    """A plugin object counting the backlog from startup to shutdown."""

    def __init__(self, backlog: UnclaimedBacklog):
        self.backlog = backlog

    @hookimpl
    async def startup(self, app: Any) -> None:
        self.backlog.start()

    @hookimpl
    async def shutdown(self, app: Any) -> None:
        await self.backlog.stop()
