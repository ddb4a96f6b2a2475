"""The queue window: at most ``scheduler.queue_window`` queued tasks in memory; the rest in the database.

A component of :class:`~controlplane.scheduler.engine.Engine`, present when one control plane holds
every task (SQLite; among replicas on PostgreSQL, :mod:`.claims` bounds what each holds). It reuses
the claims' model for one process:

* **Held** tasks are the QUEUED tasks in memory (nothing of theirs started), ranked like the ready
  queue ranks work: the virtual time ``create_time - priority × scheduler.aging_interval``, then
  submit order. After a dispatch pass, while more than the window are held, the worst is **spilled**:
  it leaves memory (as a task given up to another replica does) and its latest state is written with
  the mark that it waits in the database (:mod:`controlplane.storage.sql.spill`), in one commit.
* **Taking back**: when the held tasks fall :attr:`QueueWindow.batch` below the window and some are
  spilled, the best spilled ones are read back in one storage call (after the commit of every spill
  made so far) and restored into memory as at a start, so they are dispatched in order.
* **User operations** on a spilled task (cancel, update, watch through to its end) take it back
  first (:meth:`QueueWindow.take_back`), as a replica claims a task nobody holds. Reads need
  nothing: a task not in memory is read from the database, which holds its latest state.
* **Ranking anew**: a change of ``scheduler.aging_interval`` at run time re-ranks the held tasks
  (:meth:`QueueWindow.reranked`) and exchanges them with the spilled ones, a batch at a time,
  while the best spilled task is better than the worst held one.
* **Timeouts** of spilled tasks (a retried task's clock runs while it waits): the earliest deadline
  among them is kept; once it passes, the lease sweep asks the database for the spilled tasks
  past their deadline (the index ``ix_tasks_spilled_deadline``, migration 0021), takes them
  back and fires their timeouts at once.
* **Counts** of what is spilled (tasks, their QUEUED subtasks by priority and by agent type and
  capability, with the earliest queue time) are kept as tasks move, and read from the database
  only at start and after a restore, so GetStatus, ``/metrics`` and the autoscaler see the whole
  queue without walking it.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from controlplane.domain.model import Priority, Subtask, SubtaskStatus, Task, TaskStatus
from controlplane.scheduler.book import slim_task

if TYPE_CHECKING:
    from controlplane.scheduler.engine import Engine

log = logging.getLogger(__name__)

#: Most tasks taken back in one storage call.
MAX_BATCH = 1000

Kind = tuple[str, str]


class QueueWindow:
    """Queued tasks in memory up to a window, the rest in the database (see the module docstring).

    Args:
        engine: The engine whose records and transitions this reads and calls.
        store: The :class:`~controlplane.storage.sql.spill.SqlSpillStore`.
        window: ``scheduler.queue_window`` (at least 1).
    """

    def __init__(self, engine: Engine, *, store: Any, window: int):
        self.engine = engine
        self.store = store
        self.window = window
        #: Held tasks are taken back once this many fewer than the window are held.
        self.batch = max(1, min(MAX_BATCH, window // 10))
        #: QUEUED tasks in memory, and a heap of (-virtual time, -seq, id, virtual time) over them whose
        #: stale entries (tasks gone or ranked anew) are dropped as they surface.
        self.held: dict[str, None] = {}
        self._worst: list[tuple[float, int, str, float]] = []
        #: Spilled tasks; their QUEUED subtasks by priority and by kind, with the earliest queue time
        #: per kind (kept until that kind has none spilled: an upper bound of the wait).
        self.spilled = 0
        self.queued: Counter[Priority] = Counter()
        self.kinds: dict[Kind, int] = {}
        self.oldest: dict[Kind, float] = {}
        #: The earliest deadline (start time + timeout) of a spilled task, or None: none has one. A
        #: lower bound: the database is asked once it passes.
        self.deadline: float | None = None
        self._lock = asyncio.Lock()
        self._refill: asyncio.Task[None] | None = None
        self._expiry: asyncio.Task[None] | None = None
        #: A re-ranking asks for an exchange of held and spilled tasks (run with the refill passes).
        self._exchange = False
        #: Tasks spilled and taken back so far (for tests and diagnostics).
        self.spills = self.taken = 0

    # --- lifecycle ------------------------------------------------------------

    def started(self, tasks: list[Task], counts: Any) -> None:
        """The engine started with ``tasks`` in memory and ``counts`` in the database (counted before any
        spill of this run): hold the queued ones, and take back what fits."""
        self.recount(counts)
        for task in tasks:
            if task.status == TaskStatus.QUEUED:
                self._hold(task)
        self.request()

    async def stop(self) -> None:
        """Stop taking tasks back (at stop)."""
        for job in (self._refill, self._expiry):
            if job is not None:
                job.cancel()
                await asyncio.gather(job, return_exceptions=True)
        self._refill = self._expiry = None

    def held_still(self) -> asyncio.Lock:
        """A lock under which no task is taken back (a restore replaces the rows meanwhile)."""
        return self._lock

    def recount(self, counts: Any) -> None:
        """Replace the spilled counts with ``counts`` (a :class:`~controlplane.storage.sql.spill.SpilledCounts`)."""
        self.spilled = counts.tasks
        self.deadline = counts.deadline
        self.queued.clear()
        self.kinds.clear()
        self.oldest.clear()
        for priority, agent_type, capability, n, oldest in counts.queued:
            kind = (agent_type, capability)
            self.queued[priority] += n
            self.kinds[kind] = self.kinds.get(kind, 0) + n
            if oldest:
                self.oldest[kind] = min(self.oldest.get(kind, oldest), oldest)

    def reloaded(self, tasks: list[Task], counts: Any) -> None:
        """A recovery replaced the work in memory (``tasks``) and in the database (``counts``)."""
        self.held.clear()
        self._worst.clear()
        self.recount(counts)
        for task in tasks:
            if task.status == TaskStatus.QUEUED:
                self._hold(task)
        self.request()

    # --- what the engine tells ------------------------------------------------

    def status_changed(self, task: Task, before: TaskStatus, status: TaskStatus) -> None:
        """A task in memory changed status."""
        if status == TaskStatus.QUEUED:
            self._hold(task)
        elif before == TaskStatus.QUEUED and self.held.pop(task.id, 0) is None:
            self._room()

    def ranked_anew(self, task: Task) -> None:
        """A held task's priority changed."""
        if task.id in self.held:
            self._push(task)

    def reranked(self) -> None:
        """``scheduler.aging_interval`` changed: rank the held tasks anew, and exchange the worst of them
        for better spilled ones (in the background)."""
        self._rebuild()
        if self.spilled > 0:
            self._exchange = True
            self.request()

    def forgotten(self, task_id: str) -> None:
        """A task left memory."""
        if self.held.pop(task_id, 0) is None:
            self._room()

    def dispatched(self, hungry: bool) -> None:
        """A dispatch pass ended: spill beyond the window (in the commit of what the pass did)."""
        if len(self.held) > self.window:
            self._trim()
        else:
            self._room()

    # --- counts (whole queue: memory and database) ----------------------------

    def queued_by_priority(self, in_memory: dict[str, int]) -> dict[str, int]:
        """``in_memory`` (QUEUED subtasks by priority name) with the spilled ones added."""
        if not self.spilled:
            return in_memory
        out = dict(in_memory)
        for priority, n in self.queued.items():
            if n:
                out[priority.name] = out.get(priority.name, 0) + n
        return out

    def queued_subtasks(self) -> int:
        """QUEUED subtasks of spilled tasks."""
        return sum(self.queued.values()) if self.spilled else 0

    def queued_demand(
        self, in_memory: dict[Kind, tuple[int, float | None]]
    ) -> dict[Kind, tuple[int, float | None]]:
        """``in_memory`` (QUEUED subtasks by kind: how many, earliest queue time) with the spilled ones."""
        if not self.spilled:
            return in_memory
        out = dict(in_memory)
        for kind, n in self.kinds.items():
            count, since = out.get(kind, (0, None))
            oldest = self.oldest.get(kind)
            if since is None or (oldest is not None and oldest < since):
                since = oldest
            out[kind] = (count + n, since)
        return out

    def explain(self) -> str:
        """Why a task kept in the database waits, for people."""
        return (
            f"waiting in the database behind the {len(self.held)} queued tasks in memory "
            f"(scheduler.queue_window {self.window}); taken back in priority order as work starts"
        )

    # --- spilling -------------------------------------------------------------

    def _key(self, task: Task) -> float:
        aging: float = self.engine.setting("scheduler.aging_interval")
        return task.create_time - int(task.priority) * aging

    def _hold(self, task: Task) -> None:
        self.held[task.id] = None
        self._push(task)

    def _push(self, task: Task) -> None:
        key = self._key(task)
        heapq.heappush(self._worst, (-key, -task.seq, task.id, key))
        if len(self._worst) > 2 * len(self.held) + 64:  # mostly stale entries: keep the live ones
            self._rebuild()

    def _rebuild(self) -> None:
        """The heap over the held tasks made afresh, with their current keys."""
        tasks = self.engine.tasks
        self._worst = [
            (-key, -tasks[t].seq, t, key) for t in self.held if t in tasks for key in (self._key(tasks[t]),)
        ]
        heapq.heapify(self._worst)

    def _trim(self) -> None:
        engine = self.engine
        tasks = engine.tasks
        while len(self.held) > self.window and self._worst:
            _, _, task_id, key = heapq.heappop(self._worst)
            task = tasks.get(task_id)
            if task is None or task_id not in self.held or key != self._key(task):
                continue  # stale
            if (
                task.status != TaskStatus.QUEUED
                or engine.dispatch.running(task_id)
                or any(s.status == SubtaskStatus.RUNNING for s in engine.subtasks.get(task_id, {}).values())
            ):
                continue  # something of it runs: it stays (it leaves the held tasks once it starts)
            self._spill(task)

    def _spill(self, task: Task) -> None:
        for sub in self.engine.subtasks.get(task.id, {}).values():
            if sub.status == SubtaskStatus.QUEUED:
                self._count(task.priority, sub, 1)
        self.spilled += 1
        self.spills += 1
        if task.timeout and task.start_time:
            due = task.start_time + task.timeout
            self.deadline = due if self.deadline is None else min(self.deadline, due)
        self.engine._give_up(task)
        self.engine.committer.release(task.id)

    def _count(self, priority: Priority, sub: Subtask, delta: int) -> None:
        kind = (sub.agent_type, sub.capability)
        self.queued[priority] += delta
        left = self.kinds.get(kind, 0) + delta
        if left > 0:
            self.kinds[kind] = left
            if delta > 0 and sub.queue_time:
                self.oldest[kind] = min(self.oldest.get(kind, sub.queue_time), sub.queue_time)
        else:
            self.kinds.pop(kind, None)
            self.oldest.pop(kind, None)

    # --- taking back ----------------------------------------------------------

    def _room(self) -> None:
        if self.spilled > 0 and len(self.held) <= self.window - self.batch:
            self.request()

    def request(self) -> None:
        """Take back spilled tasks soon, while there is room (one pass at a time)."""
        loop = self.engine._loop
        if loop is None or (self._refill is not None and not self._refill.done()):
            return
        self._refill = loop.create_task(self._passes(), name="maos-queue-window")

    async def _passes(self) -> None:
        try:
            while True:
                if self._exchange:
                    self._exchange = False
                    await self._exchange_passes()
                await self._refill_passes()
                if not self._exchange:
                    return
        except Exception as exc:  # the database is away: the next dispatch pass asks again
            log.warning("could not take queued tasks back from the database: %s", exc)

    async def _refill_passes(self) -> None:
        while self.spilled > 0:
            room = self.window - len(self.held)
            if room <= 0 or not await self._take(min(room, MAX_BATCH), ()):
                return

    async def _exchange_passes(self) -> None:
        """Take back the best spilled tasks a batch at a time and spill the worst held ones, until a
        batch taken back is spilled again whole (no spilled task is better than a held one)."""
        while self.spilled > 0:
            taken = await self._take(self.batch, ())
            if not taken:
                return
            self._trim()
            if not any(t in self.held for t in taken):
                return

    # --- timeouts -------------------------------------------------------------

    def swept(self, at: float) -> None:
        """The lease sweep ran at ``at``: take back the spilled tasks past their deadline (their timeouts
        fire once they are in memory)."""
        if self.deadline is None or at < self.deadline:
            return
        loop = self.engine._loop
        if loop is None or (self._expiry is not None and not self._expiry.done()):
            return
        self._expiry = loop.create_task(self._expire(at), name="maos-queue-window-timeouts")

    async def _expire(self, at: float) -> None:
        engine = self.engine
        try:
            await engine.committer.durable()  # every spill (and its deadline) is in the database
            self.deadline = None  # spills from now on lower it again
            due, later = await engine.storage.call(self.store.due, at, MAX_BATCH)
            if len(due) == MAX_BATCH:  # more may be past theirs: the next sweep asks again
                later = at
            if later is not None:
                self.deadline = later if self.deadline is None else min(self.deadline, later)
            if due:
                for task_id in await self._take(len(due), tuple(due)):
                    engine._timed_out(task_id)  # now, before a dispatch pass could spill it again
        except Exception as exc:  # the database is away: the next sweep asks again
            log.warning("could not read the deadlines of queued tasks in the database: %s", exc)
            self.deadline = at if self.deadline is None else min(self.deadline, at)

    async def take_back(self, task_id: str) -> bool:
        """Take one spilled task back into memory (a user operation acts on it); whether it is in memory."""
        if task_id not in self.engine.tasks:
            await self._take(1, (task_id,))
        return task_id in self.engine.tasks

    async def _take(self, limit: int, task_ids: tuple[str, ...]) -> list[str]:
        """Take spilled tasks back (``task_ids``, or the best ``limit``); the ids of those that joined memory."""
        engine = self.engine
        async with self._lock:
            if task_ids and all(t in engine.tasks for t in task_ids):
                return []
            await engine.committer.durable()  # every spill marked so far is in the database
            call = asyncio.ensure_future(
                engine.storage.call(
                    self.store.take_back,
                    limit,
                    engine.setting("scheduler.aging_interval"),
                    task_ids,
                    slim_task,  # on the storage thread, before any of them is in memory
                )
            )
            try:
                tasks, subs = await asyncio.shield(call)
            except asyncio.CancelledError:
                # The caller went away (a client's deadline): the storage thread clears the marks
                # all the same, so the tasks it read must still reach memory.
                call.add_done_callback(self._taken_late)
                raise
            return self._taken(tasks, subs)

    def _taken_late(self, call: asyncio.Future[tuple[list[Task], list[Subtask]]]) -> None:
        if not call.cancelled() and call.exception() is None:
            self._taken(*call.result())

    def _taken(self, tasks: list[Task], subs: list[Subtask]) -> list[str]:
        """Tasks read back from the database (their marks cleared) join memory; their ids."""
        engine = self.engine
        fresh = [t for t in tasks if t.id not in engine.tasks]
        if not fresh:
            return []
        ids = {t.id for t in fresh}
        subs = [s for s in subs if s.task_id in ids]
        priority = {t.id: t.priority for t in fresh}
        for sub in subs:
            if sub.status == SubtaskStatus.QUEUED:
                self._count(priority[sub.task_id], sub, -1)
        self.spilled = max(0, self.spilled - len(fresh))
        self.taken += len(fresh)
        engine._restore(fresh, subs)
        for task in fresh:
            if task.status == TaskStatus.QUEUED:
                self._hold(task)
        return [t.id for t in fresh]
