"""Claims: which replica runs which task, when several control planes share one PostgreSQL.

A component of :class:`~controlplane.scheduler.engine.Engine`, present only on a database
replicas share (PostgreSQL); on SQLite the one process holds everything and none of this runs.

**The unit of claim is a task.** A replica holds a task (``tasks.claimed_by`` is its id) and keeps
it in memory exactly as a single control plane does: its subtasks run on this replica's agents,
so no subtask can be assigned by two replicas. The rules:

* **Claim passes** take claimable tasks (unclaimed, or held by a lost replica) best first
  (:mod:`controlplane.storage.sql.claims`), only those some connected agent here could take
  (a QUEUED, BLOCKED or RUNNING subtask of its type or capability; a PENDING task is planned
  wherever it is claimed), and at most ``free credit + replicas.claim_window`` unstarted
  (QUEUED) tasks in all. A pass runs at start, on a ``work`` wake-up (unless its hint,
  :mod:`.work_hints`, says no pass here could take any of it), when an agent here has
  free credit and nothing runnable, on the poll interval (``replicas.claim_poll_interval``:
  the fallback when wake-ups are lost) and for one task on demand (:meth:`Claims.claim_task`).
* **Don't hoard.** After a dispatch pass, a QUEUED task that nothing has started, with no local
  agent able to take it or beyond the window, is given up: it leaves memory, and the commit of its
  state marks it *leaving* (still held here: no claim pass elsewhere takes it;
  :mod:`controlplane.storage.sql.claims`), and it is handed over (:mod:`.hand_over`): behind that
  commit's events a ``work`` wake-up naming the tasks is published (one per commit), in the round
  trip that sends the events, right after them: with Redis in the script that appends them to the
  stream (no wake-up when an append is refused); without, in the statement that NOTIFYs them (waited
  for at most :data:`.hand_over.EVENTS_WAIT` seconds: past that it is published on its own). A
  replica woken claims them by id, guarded on the mark, in one statement, and runs no search after
  it when it took them all; meanwhile this replica lets them go (``claimed_by = NULL``, where the
  mark still stands), so a claim pass finds any the wake-up did not bring (a lost wake-up; one too
  long to name them all names the first, and a second one, naming none, follows the let-go). A
  successful let-go runs a claim pass here (agents may have connected). So the replica claiming a
  task next cannot send a later event of it before this replica's (per-task order holds across the
  handover), and no second commit waits on the way. The let-go runs
  :data:`.hand_over.LET_GO_DELAY` after the wake-up (a claim by id would otherwise wait for its
  commit on the same rows); one that fails, or passes over rows a claim by id has locked (which may
  yet abort), is tried again on the poll.
* **Dependencies across replicas.** A task that finishes is announced on ``finished`` (its id,
  after its commit); a replica holding tasks that wait for it evaluates them again. Where events
  cross replicas over LISTEN/NOTIFY (no Redis) the task's relayed TASK_STATUS_CHANGED event is that
  announcement, and no ``finished`` wake-up is sent. A lost announcement is made up for by the
  claims poll, which looks the dependencies held elsewhere up.
* **Self-fencing.** A replica that may have been considered lost (its heartbeat could not be
  written for ``replicas.lost_after``, or its registry row is gone) writes nothing more
  (:meth:`~controlplane.scheduler.committer.Committer.fence`) and stops (``on_fenced``: ``maos
  start`` stops its process), with an error in the log: others may hold its tasks by now. It is
  checked on the claims poll and before every write of the committer, so a replica frozen
  (stopped, swapped out) past ``replicas.lost_after`` fences itself as it wakes, before its first write. Writes of a task another replica claimed
  since are ignored by the database too (a fenced upsert).
* A clean stop writes the final state, then gives up every task it holds and wakes the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controlplane.domain.events import Event, EventType
from controlplane.domain.model import Subtask, SubtaskStatus, Task, TaskStatus
from controlplane.scheduler.hand_over import EVENTS_WAIT, WORK, HandOver
from controlplane.scheduler.queue import matches
from controlplane.scheduler.work_hints import WorkHint

if TYPE_CHECKING:
    from controlplane.scheduler.engine import Engine

log = logging.getLogger(__name__)

#: Wake-up topic: tasks finished (payload: their ids, comma-separated); ``work``: :data:`.hand_over.WORK`.
FINISHED = "finished"
#: The names of the finished task statuses, as events carry them.
FINISHED_STATUSES = frozenset(status.name for status in TaskStatus if status.finished)
#: Tasks a full replica claims in one pass when better work than its worst appeared.
SWAP_BATCH = 4
#: Longest ``finished`` payload (the buses carry up to 4000 bytes).
PAYLOAD_LIMIT = 3500
_TAKING = (SubtaskStatus.QUEUED, SubtaskStatus.BLOCKED, SubtaskStatus.RUNNING)

Agents = list[tuple[str, frozenset[str], bool]]


def stop_process(why: str) -> None:
    """The default reaction to being fenced: stop this process as ``maos stop`` would (SIGTERM)."""
    os.kill(os.getpid(), signal.SIGTERM)


def this_process() -> str:
    """``host/pid-namespace/pid`` of this process (a replica's registry row carries it)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}/{namespace}/{os.getpid()}"


def dead_here(process: str) -> bool:
    """Whether ``process`` (as :func:`this_process` wrote it) ran on this machine, in this pid namespace,
    and no longer runs: a replica killed here and started again need not wait ``replicas.lost_after``
    for its own tasks. Anything uncertain (another machine, a pid now in use) is not dead."""
    parts = process.rsplit("/", 2)
    if len(parts) != 3:
        return False
    host, namespace, pid = parts
    here_host, here_namespace, _ = this_process().rsplit("/", 2)
    if not namespace or (host, namespace) != (here_host, here_namespace) or not pid.isdigit():
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # gone, or hidden from this user (hidepid): ask the kernel
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:  # (PermissionError: it runs, under another user)
            return False
        return False
    return state in ("Z", "X")  # killed, not yet reaped


def could_take(agents: Agents, task: Task, subs: list[Subtask]) -> bool:
    """Whether one of ``agents`` (type, capabilities, offline) could take work of ``task``."""
    if task.status == TaskStatus.PENDING:
        return True
    return any(
        matches((sub.agent_type, sub.capability), agent_type, caps, offline=offline)
        for sub in subs
        if sub.status in _TAKING
        for agent_type, caps, offline in agents
    )


class Claims:
    """The claims of one replica (see the module docstring).

    Args:
        engine: The engine whose records and transitions this reads and calls.
        store: The :class:`~controlplane.storage.sql.claims.SqlClaimStore`.
        bus: The wake-up bus (:mod:`controlplane.replicas.wakeups`).
        registry: The replica registry (when its last heartbeat was written), or None.
        lost_after: ``replicas.lost_after``.
        window: ``replicas.claim_window``.
        poll_interval: ``replicas.claim_poll_interval``.
        on_fenced: Called once this replica fenced itself (default: SIGTERM to this process; the
            app sets its own, :meth:`~controlplane.app.App.fenced`).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        store: Any,
        bus: Any,
        registry: Any,
        lost_after: float,
        window: int,
        poll_interval: float,
        on_fenced: Callable[[str], None] = stop_process,
    ):
        self.engine = engine
        self.store = store
        self.bus = bus
        self.registry = registry
        self.holder = engine.replica
        self.lost_after = lost_after
        self.window = window
        self.poll_interval = poll_interval
        self.on_fenced = on_fenced
        #: Held tasks that are QUEUED (nothing of theirs started), in the order they became so.
        self.queued: dict[str, None] = {}
        self._fresh: list[str] = []
        #: Tasks claimed on demand since the last poll (kept until it, even once planned).
        self._on_demand: set[str] = set()
        #: Whether claimable work may be waiting (cleared by a pass that found less than it wanted).
        self._maybe_more = True
        self._pass: asyncio.Task[None] | None = None
        self._again = False
        self._finished: list[str] = []
        #: Whether the event relay tells the other replicas which tasks finished here (LISTEN/NOTIFY
        #: without Redis), so no `finished` wake-up is published.
        self._announced_by_relay = False
        #: Tasks ``work`` wake-ups named, by the replica that gave them up: the next pass claims them by id.
        self._named: dict[str, dict[str, None]] = {}
        #: Tasks given up here on their way to the other replicas (wake-ups, let-go).
        self.hand_over = HandOver(self)
        #: Tasks handed to another replica with an agent's session, by that replica's id: only its claim
        #: (:meth:`claim_given`) takes them until they are let go (:meth:`let_go_later`), not this one's.
        self.handed_to: dict[str, str] = {}
        self._poller: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.fenced = ""
        self._stopped = False
        #: Passes made, tasks claimed and given up, wake-ups that needed no pass (for tests and ``maos status``).
        self.passes = self.claimed = self.released = self.skipped = 0
        #: Of the tasks claimed, those claimed by id from a ``work`` wake-up that named them.
        self.claimed_by_id = 0

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Listen for wake-ups, then claim (called once the replica is registered)."""
        self._loop = asyncio.get_running_loop()
        self.bus.subscribe(WORK, self._woken)
        self.bus.subscribe(FINISHED, self._finished_elsewhere)
        watchers = self.engine.watchers
        if watchers.relay is not None:
            # Every replica hears every event through the relay, finishes included: no `finished`
            # wake-up of its own (a NOTIFY per commit that finishes tasks) is sent.
            watchers.relayed_listeners.append(self._relayed)
            self._announced_by_relay = True
        await self.bus.start()
        await self._bury_dead()
        # An earlier run with this replica id (server.replica_id) may have died holding tasks: they
        # are not in this run's memory, so they are given up here (the live id would keep them from
        # every other replica).
        with contextlib.suppress(Exception):  # (the poll's passes find them once the row is lost)
            kept = list(self.engine.tasks)
            given = await self.engine.storage.call(self.store.release_all, self.holder, kept)
            if given:
                log.info("gave up %d tasks an earlier run of replica %s held", given, self.holder)
        self._poller = self._loop.create_task(self._poll(), name="maos-claims-poll")
        self.request()

    async def stop(self) -> None:
        """Write the final state, give up every task held here and wake the others (once)."""
        if self._stopped or self._loop is None:  # (never started: nothing claimed, nothing to give up)
            return
        self._stopped = True
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        if self._pass is not None:
            await asyncio.gather(self._pass, return_exceptions=True)
        if not self.fenced:
            try:
                await self.engine.committer.durable()
                given = await self.engine.storage.call(self.store.release_all, self.holder)
                self.engine.committer.fence("it stopped and gave up its tasks")
                if given:
                    log.info("gave up %d unfinished tasks to the other replicas", given)
                    await self.bus.publish(WORK)
            except Exception as exc:  # they become claimable once this replica counts as lost
                log.warning("could not give up the tasks held here: %s", exc)
        with contextlib.suppress(Exception):
            await self.bus.close()

    # --- what the engine tells ------------------------------------------------

    def status_changed(self, task: Task, before: TaskStatus, status: TaskStatus) -> None:
        """A held task's status changed."""
        if status == TaskStatus.QUEUED:
            self.queued[task.id] = None
            if task.id not in self._on_demand:
                self._fresh.append(task.id)
        elif before == TaskStatus.QUEUED:
            self.queued.pop(task.id, None)
        if status.finished:
            self._announce(task.id)

    def adopted(self, tasks: list[Task], *, fresh_check: bool = True) -> None:
        """Tasks claimed into memory (``fresh_check``: give them up at once if no agent here can take them;
        a task claimed on demand is kept until the next poll, so its claimer can act on it)."""
        for task in tasks:
            if not fresh_check:
                self._on_demand.add(task.id)  # (planned meanwhile, it is kept all the same)
            if task.status == TaskStatus.QUEUED:
                self.queued[task.id] = None
                if fresh_check and task.id not in self._fresh:  # (planned as it was taken: listed then)
                    self._fresh.append(task.id)

    def reloaded(self, tasks: list[Task]) -> None:
        """A recovery replaced the work in memory with what a checkpoint held: this replica holds all
        of it from now on (it gives back what it cannot run, as after a submit)."""
        self.queued.clear()
        self._fresh.clear()
        self.adopted(tasks)

    def hold_restored(self, task_ids: list[str]) -> None:
        """Hold the tasks a recovery restored, whoever held them (on the storage thread, in the
        recovery's pause of writes: its first writes of them are not fenced off)."""
        self.store.hold(self.holder, task_ids)

    def forgotten(self, task_id: str) -> None:
        """A task left memory."""
        self.queued.pop(task_id, None)

    def dispatched(self, hungry: bool) -> None:
        """A dispatch pass ended; ``hungry``: an agent here still has free credit."""
        if self._fresh or len(self.queued) > self.window:
            self._trim()  # in the commit of what the pass did: a submit's release rides its own commit
        if hungry and self._maybe_more:
            self.request()

    def holds(self, task_id: str) -> bool:
        """Whether this replica holds the task (it is in memory here)."""
        return task_id in self.engine.tasks

    # --- claiming -------------------------------------------------------------

    def request(self) -> None:
        """Run a claim pass soon (one at a time; one more after it when asked meanwhile)."""
        if self.fenced or self._stopped or self._loop is None:
            return
        if self._pass is not None and not self._pass.done():
            self._again = True
            return
        self._pass = self._loop.create_task(self._passes(), name="maos-claim-pass")

    def _agents(self) -> Agents:
        return [
            (s.info.agent_type, s.capabilities, s.offline)
            for s in self.engine.sessions.values()
            if not s.draining
        ]

    def _free(self) -> int:
        return sum(max(0, s.free) for s in self.engine.sessions.values() if not s.draining)

    async def _passes(self) -> None:
        while True:
            self._again = False
            try:
                await self._claim_pass()
            except Exception as exc:  # the database is away: the poll tries again
                log.warning("claim pass failed: %s", exc)
            if not self._again or self.fenced:
                return

    async def _claim_pass(self) -> None:
        if self.check_fence():
            return
        agents = self._agents()
        if not agents:
            return
        engine = self.engine
        aging = engine.setting("scheduler.aging_interval")
        want, better_than = self._room(aging)
        if want <= 0:
            if self._named:
                self._maybe_more = True  # (named tasks wait for room here: the next hungry pass claims them)
            return
        self.passes += 1
        named, self._named = self._named, {}
        if named:  # a wake-up named the tasks given up: claim those by id (no search)
            await self._claim_named(named, agents, aging)
            return
        tasks, subs = await engine.storage.call(
            self.store.claim,
            self.holder,
            time.time(),
            self.lost_after,
            want,
            aging,
            lambda task, task_subs: could_take(agents, task, task_subs),
            (),
            False,
            better_than,
        )
        if better_than is None:  # (a full replica's pass says nothing about what else is claimable)
            self._maybe_more = len(tasks) >= want
        self._adopt(tasks, subs)

    async def _claim_named(self, named: dict[str, dict[str, None]], agents: Agents, aging: float) -> None:
        every = True  # (every task named claimed: no search follows, see _woken)
        try:
            for origin, ids in named.items():
                want, better_than = self._room(aging)
                if want <= 0:
                    every = False
                    return
                tasks, subs = await self.engine.storage.call(
                    self.store.claim_named,
                    self.holder,
                    time.time(),
                    self.lost_after,
                    list(ids),
                    origin,
                    want,
                    aging,
                    lambda task, task_subs: could_take(agents, task, task_subs),
                    better_than,
                )
                before = self.claimed
                self._adopt(tasks, subs)
                self.claimed_by_id += self.claimed - before
                if len(tasks) < len(ids):  # (taken elsewhere, refused, locked, or beyond the room here)
                    every = False
        except BaseException:
            every = False
            raise
        finally:
            if not every:  # (the next hungry dispatch pass searches, as after a wake-up naming none)
                self._maybe_more = True

    def _room(self, aging: float) -> tuple[int, float | None]:
        """How many tasks a pass would claim now, and the virtual time they must be better than (None: any).

        A replica already full takes only work that runs before the worst task it holds (which it then
        gives back), a few at a time; (0, None) when it holds nothing it could give back.
        """
        want = self._free() + self.window - len(self.queued)
        if want > 0:
            return want, None
        worst = self._worst(aging)
        return (0, None) if worst is None else (SWAP_BATCH, worst)

    def _worst(self, aging: float) -> float | None:
        """The virtual time of the worst unstarted task held here, or None."""
        keys = [
            task.create_time - int(task.priority) * aging
            for task in (self.engine.tasks.get(t) for t in self.queued)
            if task is not None and self._releasable(task)
        ]
        return max(keys) if keys else None

    def _adopt(self, tasks: list[Task], subs: list[Subtask], *, fresh_check: bool = True) -> None:
        if self.fenced:
            return
        fresh = [t for t in tasks if t.id not in self.engine.tasks]
        if not fresh:
            return
        ids = {t.id for t in fresh}
        self.claimed += len(fresh)
        # (claimed by a pass: planned at once, so its first dispatch pass comes a loop turn sooner)
        self.engine._restore(fresh, [s for s in subs if s.task_id in ids], start_now=fresh_check)
        self.adopted(fresh, fresh_check=fresh_check)

    async def claim_task(self, task_id: str, *, finished_too: bool = False) -> bool:
        """Claim one task into this replica if it is claimable (``finished_too``: or finished, to retry
        it); whether this replica holds it now."""
        if task_id in self.engine.tasks:
            return True
        if self.fenced or task_id in self.handed_to:  # (handed over: its reports are carried there)
            return False
        await self.until_released(task_id)  # given up here a moment ago: claimable once released
        await self._bury_dead()
        # (given up here and not let go, a let-go that failed: taken back)
        if await self._claim_one(task_id, finished_too, given_up_by=self.holder):
            self.hand_over.marked.discard(task_id)  # (its own id over the mark: nothing left to let go)
            self.hand_over.unlet.discard(task_id)
            return True
        return False

    async def claim_given(self, task_id: str, origin: str) -> bool:
        """Claim a task replica ``origin`` gave up for this one (an agent's work moving with its session:
        :mod:`.session_moves`), taking its leaving mark; whether this replica holds it now."""
        if task_id in self.engine.tasks:
            return True
        if self.fenced:
            return False
        return await self._claim_one(task_id, False, given_up_by=origin)

    async def _claim_one(self, task_id: str, finished_too: bool, *, given_up_by: str) -> bool:
        """Claim ``task_id`` alone (also over ``given_up_by``'s leaving mark) and adopt it; whether this
        replica holds it now."""
        tasks, subs = await self.engine.storage.call(
            self.store.claim,
            self.holder,
            time.time(),
            self.lost_after,
            1,
            self.engine.setting("scheduler.aging_interval"),
            None,
            [task_id],
            finished_too,
            None,
            [given_up_by],
        )
        self._adopt(tasks, subs, fresh_check=False)
        return task_id in self.engine.tasks

    def let_go_later(self, task_ids: list[str], delay: float) -> None:
        """Tasks given up for one replica to claim by id (:meth:`claim_given`), their mark committed: let
        go of those it did not claim after ``delay`` seconds (it died meanwhile), so that any replica may
        claim them."""
        self.hand_over.marked.update(task_ids)
        self.released += len(task_ids)

        async def later() -> None:
            await asyncio.sleep(delay)
            if not (self._stopped or self.check_fence()):
                await self.hand_over.let_go(task_ids)
            for task_id in task_ids:
                self.handed_to.pop(task_id, None)

        self.engine._background(later())

    async def take_back(self, task_id: str) -> bool:
        """A call for a task given up here reached this replica (from another, which asked who holds it):
        once the task is released, take it back if its row may still be marked leaving from here (not let
        go yet: no other replica's claim takes it), so the call is served here; whether it is held here."""
        await self.until_released(task_id)
        if task_id in self.engine.tasks:
            return True
        if task_id not in self.hand_over.marked or task_id in self.handed_to or self.fenced or self._stopped:
            return False
        return await self.claim_task(task_id)

    async def until_released(self, task_id: str) -> None:
        """Return once a task given up here is released (at once for any other task)."""
        released = self.hand_over.releasing.get(task_id)
        if released is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(released.wait(), EVENTS_WAIT + 1.0)

    async def _bury_dead(self) -> None:
        """Deregister replicas whose process died on this machine (see :func:`dead_here`): their tasks
        are claimable at once, not after ``replicas.lost_after``."""
        registry = self.registry
        if registry is None:
            return
        try:
            rows = await self.engine.storage.call(registry.store.list_replicas)
            for row in rows:
                if row.id != self.holder and dead_here(str(row.details.get("process", ""))):
                    await self.engine.storage.call(registry.store.deregister_replica, row.id)
                    log.info("replica %s stopped on this machine: its tasks are claimable now", row.id)
                    self._maybe_more = True
        except Exception as exc:  # they become claimable after replicas.lost_after anyway
            log.warning("could not look for stopped replicas: %s", exc)

    # --- giving up ------------------------------------------------------------

    def _trim(self) -> None:
        if self.fenced:
            return
        engine = self.engine
        fresh, self._fresh = self._fresh, []
        agents = self._agents()
        for task_id in fresh:
            task = engine.tasks.get(task_id)
            if task is not None and task_id in self.queued and self._releasable(task):
                subs = list(engine.subtasks.get(task_id, {}).values())
                if not could_take(agents, task, subs):
                    self._give_up(task)
        excess = len(self.queued) - self._free() - self.window
        if excess <= 0:
            return
        aging = engine.setting("scheduler.aging_interval")
        held = [engine.tasks[t] for t in self.queued if t in engine.tasks]
        held.sort(key=lambda t: (t.create_time - int(t.priority) * aging, t.seq), reverse=True)
        for task in held:
            if excess <= 0:
                break
            if self._releasable(task):
                self._give_up(task)
                excess -= 1

    def _releasable(self, task: Task) -> bool:
        return (
            task.status == TaskStatus.QUEUED
            and not self.engine.dispatch.running(task.id)
            and not any(
                s.status == SubtaskStatus.RUNNING for s in self.engine.subtasks.get(task.id, {}).values()
            )
        )

    def sends_away(self, tasks: list[Task]) -> bool:
        """See :meth:`HandOver.sends_away`."""
        return self.hand_over.sends_away(tasks)

    def leave_in_commit(self, tasks: list[Task]) -> None:
        """See :meth:`HandOver.leave_in_commit`."""
        self.hand_over.leave_in_commit(tasks)

    def sent_away(self, tasks: list[Task]) -> None:
        """See :meth:`HandOver.sent_away`."""
        self.hand_over.sent_away(tasks)

    def _give_up(self, task: Task) -> None:
        self.released += 1
        subs = self.engine.subtasks.get(task.id, {}).values()
        needs = (
            None
            if task.status == TaskStatus.PENDING
            else [(sub.agent_type, sub.capability) for sub in subs if sub.status in _TAKING]
        )
        self.engine._give_up(task)
        self.hand_over.soon(task, needs)
        self.engine.committer.release(task.id)  # marked leaving in the commit of its state

    def _publish(self, topic: str, payload: str) -> None:
        async def send() -> None:
            try:
                await self.bus.publish(topic, payload)
            except Exception as exc:  # the others find the work at their next poll
                log.warning("could not publish a %s wake-up: %s", topic, exc)

        self.engine._background(send())

    # --- dependencies across replicas -----------------------------------------

    def _announce(self, task_id: str) -> None:
        if self._announced_by_relay:
            return  # its TASK_STATUS_CHANGED event tells the other replicas (see :meth:`_relayed`)
        if not self._finished:
            self.engine.committer.after_commit(self._publish_finished)
        self._finished.append(task_id)

    def _publish_finished(self) -> None:
        ids, self._finished = self._finished, []
        chunk: list[str] = []
        size = 0
        for task_id in ids:
            if chunk and size + len(task_id) + 1 > PAYLOAD_LIMIT:
                self._publish(FINISHED, ",".join(chunk))
                chunk, size = [], 0
            chunk.append(task_id)
            size += len(task_id) + 1
        if chunk:
            self._publish(FINISHED, ",".join(chunk))

    def _relayed(self, event: Event) -> None:
        """An event of another replica came through the relay: a task finishing there is a `finished` wake-up."""
        if event.type == EventType.TASK_STATUS_CHANGED and event.to_status in FINISHED_STATUSES:
            self._finished_elsewhere(event.task_id)

    def _finished_elsewhere(self, payload: str) -> None:
        engine = self.engine
        for task_id in payload.split(","):
            if task_id in engine.tasks:
                continue  # held here: its dependants were settled when it finished
            for dependant in engine._dependants.pop(task_id, ()):
                if dependant in engine.tasks:
                    engine._background(engine._start_if_ready(dependant))

    def _woken(self, payload: str) -> None:
        """A ``work`` wake-up: claim now, unless its hint says no pass here could take any of it.

        One naming the tasks is claimed by id, and says nothing of other claimable work: no search follows
        it (the next hungry dispatch pass would otherwise run one, and the commit of the assignments just
        made would wait behind it on the storage thread), unless that claim takes fewer than it named.
        """
        hint = WorkHint.decode(payload)
        if hint.origin == self.holder:
            self._maybe_more = True
            return  # given up here: no agent here takes them now, or this replica is full
        if not hint.could_take(self._agents()):
            self._maybe_more = True  # (a skipped pass still looks at the next hungry dispatch pass or poll)
            self.skipped += 1
            return
        aging = self.engine.setting("scheduler.aging_interval")
        want, better_than = self._room(aging)
        best = hint.best(aging)
        if want <= 0 or (better_than is not None and best is not None and best >= better_than):
            self._maybe_more = True
            self.skipped += 1
            return
        if hint.ids:
            self._named.setdefault(hint.origin, {}).update(dict.fromkeys(hint.ids))
        else:
            self._maybe_more = True
        self.request()

    # --- the poll, and self-fencing -------------------------------------------

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            if self.check_fence():
                return
            self._maybe_more = True
            self._on_demand.clear()
            self._fresh.extend(self.queued)  # agents may have left: is every held task still takeable?
            self.dispatched(hungry=True)
            if self.hand_over.unlet:
                unlet, self.hand_over.unlet = list(self.hand_over.unlet), set()
                await self.hand_over.let_go(unlet)
            if getattr(self.store, "unreturned", None):  # a claim by id could not give back what it refused
                try:
                    await self.engine.storage.call(self.store.give_back_unreturned, self.holder)
                except Exception as exc:  # the next poll tries again
                    log.warning("could not give back tasks a claim by id took: %s", exc)
            try:
                await self._recheck_dependencies()
            except Exception as exc:  # the next poll tries again
                log.warning("could not look up the dependencies held elsewhere: %s", exc)

    async def _recheck_dependencies(self) -> None:
        """Start held tasks whose dependencies, held elsewhere, finished (a lost `finished` wake-up)."""
        engine = self.engine
        elsewhere = {dep for dep in engine._dependants if dep not in engine.tasks}
        if not elsewhere:
            return
        found = await engine.book.lookup(elsewhere)
        done = [task_id for task_id, task in found.items() if task.status.finished]
        if done:
            self._finished_elsewhere(",".join(done))

    def check_fence(self) -> bool:
        """Fence this replica if it may have been considered lost; whether it is fenced.

        Cheap (a few attribute reads and a monotonic clock read): the committer asks before every
        write, so a replica frozen past ``replicas.lost_after`` writes nothing as it wakes.
        """
        if self.fenced:
            return True
        registry = self.registry
        if registry is None or not registry.registered:
            return False
        if registry.gone:
            self.fence("its row in the replica registry is gone")
        elif registry.lapsed:
            self.fence(f"{registry.lapsed:.1f} s passed between two of its heartbeats")
        else:
            silent = registry.silent_for()
            if silent > self.lost_after:
                self.fence(f"it could not write its heartbeat for {silent:.1f} s")
        return bool(self.fenced)

    def fence(self, why: str) -> None:
        """Stop acting on the work in memory: write nothing more, and stop (see the module docstring)."""
        if self.fenced:
            return
        self.fenced = why
        log.error(
            "replica %s stops: %s, past replicas.lost_after (%g s), so other replicas may hold its tasks "
            "by now; it writes nothing more and stops (its agents reconnect to another replica)",
            self.holder,
            why,
            self.lost_after,
        )
        self.engine.committer.fence(why)
        self.on_fenced(why)
