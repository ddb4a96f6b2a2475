"""Watching tasks: snapshots and committed changes, for WatchTask and WatchEvents.

A component of :class:`~controlplane.scheduler.engine.Engine`: it owns the
watchers, the event numbering and the recent events. Events are delivered
only once the change they describe is committed (progress and output chunks,
which change nothing durable, are delivered at once).

With several replicas (``redis.url`` set) the committed events go out through the shared event
stream (:mod:`controlplane.replicas.event_stream`) instead, and every replica's watchers and
listeners are fed from it, this replica's own events included: one order (the stream's) for
every replica, and event ids that any replica can resume from. A watched task held by another
replica is read from storage as its events arrive. The stream is read only while this replica
has a watcher or listener: reading is on (:meth:`Watchers._reading`) before one subscribes and
reads the task or replays, so nothing committed after its snapshot or replay escapes it.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controlplane.domain.events import Event, EventType
from controlplane.domain.model import Subtask, Task, TaskStatus
from controlplane.errors import FailedPrecondition, InvalidArgument, MaosError, ResourceExhausted
from controlplane.scheduler.committer import Committer

if TYPE_CHECKING:
    from controlplane.replicas.event_notify import NotifyRelay
    from controlplane.replicas.event_stream import EventStream

log = logging.getLogger(__name__)

RECENT_EVENTS = 10_000
MAX_PENDING = 10_000  # changes a WatchTask reader may fall behind before it is cut off
MAX_PENDING_EVENTS = 10_000  # events a WatchEvents reader may fall behind before it is cut off
#: The reason of a resume id the server no longer keeps (errors.proto).
RESUME_POINT_LOST = "ERROR_REASON_RESUME_POINT_LOST"
_PROGRESS = (EventType.SUBTASK_PROGRESS, EventType.SUBTASK_OUTPUT)
_FINISHED = frozenset(status.name for status in TaskStatus if status.finished)

#: A task and subtask as they were when an event was published (None: not taken, read them later).
Snapshots = tuple[Task, Subtask | None] | None
#: An event id to resume after: a local sequence number, or a stream id (events across replicas).
ResumePoint = int | str


@dataclass(eq=False)
class Watch:
    """One WatchTask subscriber (an error in its queue ends it)."""

    queue: asyncio.Queue[tuple[Event, Snapshots] | MaosError]
    include_progress: bool


def _key(event: Event) -> int | str:
    return event.stream_id or event.id


class Watchers:
    """Task watchers and event listeners: who hears of each state change, once it is committed."""

    def __init__(
        self,
        *,
        committer: Committer,
        tasks: dict[str, Task],
        get_task: Callable[[str], Awaitable[Task]],
        evict: Callable[[str], None],
    ):
        self.committer = committer
        #: The task book's tasks in memory (read: the latest state of a watched task).
        self.tasks = tasks
        self.get_task = get_task
        #: Drops a finished task from memory once nobody watches it.
        self._evict = evict
        self._watchers: dict[str, set[Watch]] = defaultdict(set)
        self.event_listeners: list[Callable[[Event], None]] = []
        #: Called with every state-change event and its task as the change is made (before it is
        #: committed), so that what they mark on the committer joins the same commit (webhooks' outbox).
        self.event_taps: list[Callable[[Event, Task], None]] = []
        #: The latest events, for WatchEvents resuming after an event id.
        self.recent_events: deque[Event] = deque(maxlen=RECENT_EVENTS)
        #: Called with an error when events stop arriving (the shared stream broke): listeners end.
        self.event_breaks: list[Callable[[MaosError], None]] = []
        self._event_seq = 0
        self._events_generation = -1
        self._pending_events: list[tuple[Event, Snapshots]] = []
        #: The shared event stream of the replicas (None: events stay in this process).
        self.stream: EventStream | None = None
        #: Without a stream, the relay of events between replicas over the database (LISTEN/NOTIFY).
        self.relay: NotifyRelay | None = None
        #: Resuming after an event numbered this or lower is refused: the relay broke after it, so
        #: other replicas' events may have been missed since.
        self._lost_through = 0
        #: Called with each event another replica relayed here (after its watchers got it).
        self.relayed_listeners: list[Callable[[Event], None]] = []

    def attach(self, stream: EventStream) -> None:
        """Send committed events through ``stream`` and deliver what it brings (every replica's)."""
        self.stream = stream
        stream.deliver = self._fan_out
        stream.sever = self._sever

    def attach_relay(self, relay: NotifyRelay) -> None:
        """Send committed events to other replicas through ``relay`` too, and deliver theirs here.

        Their events are numbered here when they arrive (ids stay this replica's).
        """
        self.relay = relay
        relay.receive = self._received
        relay.sever = self._relay_broke

    async def sent_on(self) -> None:
        """Return once the events delivered so far have left for the other replicas (are in the Redis
        stream, or NOTIFYed); at once when events stay in this process. Waits while Redis or the
        database does not take them: callers bound the wait."""
        if self.stream is not None:
            await self.stream.flushed()
        elif self.relay is not None:
            await self.relay.flushed()

    async def close(self) -> None:
        """After the final commit: send what the relay still holds to the other replicas, then close it."""
        if self.relay is not None:
            await self.relay.close()

    def _received(self, event: Event) -> None:
        self._event_seq += 1
        event.id = self._event_seq
        self._fan_out(event, None, remote=True)
        for listener in self.relayed_listeners:
            try:
                listener(event)
            except Exception:  # a failing listener must not stop the relay
                log.exception("relayed-event listener failed")

    def _relay_broke(self, error: MaosError) -> None:
        self._lost_through = self._event_seq
        self._sever(error)

    @property
    def streamed(self) -> bool:
        """Whether events cross replicas (their ids are stream ids)."""
        return self.stream is not None

    def watched(self, task_id: str) -> bool:
        """Whether someone watches the task (it stays in memory while they do)."""
        return bool(self._watchers.get(task_id))

    # --- watching -----------------------------------------------------------

    async def watch(
        self, task_id: str, include_progress: bool = False, after: ResumePoint | None = None
    ) -> AsyncIterator[tuple[Event | None, Task, Subtask | None]]:
        """The task now, then every committed change until it finishes.

        With ``after`` (an event id) there is no snapshot first: the kept changes of the task
        delivered after that event come first (with the task as it is now), then the live ones,
        none twice (see :meth:`events_after` and :meth:`replay` for the errors). A change made by
        another replica comes with the task as committed when it arrives (read from storage).
        """
        watch = Watch(asyncio.Queue(), include_progress)
        await self._reading()
        self._watchers[task_id].add(watch)  # first: a change arriving while the task is read is queued
        try:
            task = await self.get_task(task_id)
            # Show only committed state: what is in memory now is durable once this resolves
            # (changes after it arrive through the queue).
            await self.committer.durable()
            task = self.tasks.get(task_id, task)
            snapshot = copy.copy(task)
            replayed: set[int | str] = set()
            if after is None:
                yield None, snapshot, None
            else:
                # Everything published before the watch was added was delivered by now (after-commit
                # callbacks run before durable() resolves); what was delivered since is also queued.
                for event in await self.replay(after):
                    if event.task_id == task_id and (include_progress or event.type not in _PROGRESS):
                        replayed.add(_key(event))
                        yield event, snapshot, None
            if snapshot.status.finished:
                return
            while True:
                if watch.queue.qsize() > MAX_PENDING:
                    raise ResourceExhausted(
                        f"the watcher fell more than {MAX_PENDING} changes behind; watch again"
                    )
                item = await watch.queue.get()
                if isinstance(item, MaosError):
                    raise item
                event, snapshots = item
                if _key(event) in replayed:
                    continue
                if snapshots is not None:
                    snapshot, sub = snapshots
                    finished = snapshot.status.finished
                else:  # published by another replica (or before this watch): the task as committed now
                    if event.type not in _PROGRESS:
                        if task_id in self.tasks:  # held here: what is in memory, once it is durable
                            await self.committer.durable()
                        snapshot = copy.copy(await self.get_task(task_id))
                    sub, finished = None, event.to_status in _FINISHED
                yield event, snapshot, sub
                if event.type == EventType.TASK_STATUS_CHANGED and finished:
                    return
        finally:
            self._done_reading()
            watchers = self._watchers.get(task_id)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self._watchers[task_id]
                    # Only a committed final state may leave memory.
                    self.committer.after_commit(lambda: self._evict(task_id))

    async def follow(
        self, wanted: Callable[[Event], bool], after: ResumePoint | None = None
    ) -> AsyncIterator[Event]:
        """Every ``wanted`` event from now on (WatchEvents); with ``after``, the kept ones after it first.

        Raises:
            ResourceExhausted: The reader fell more than :data:`MAX_PENDING_EVENTS` behind.
            Unavailable: Events stopped arriving (the shared stream broke); resume after the last one.
        """
        queue: asyncio.Queue[Event | MaosError] = asyncio.Queue()
        behind = ResourceExhausted(
            f"the watcher fell more than {MAX_PENDING_EVENTS} events behind; "
            "reconnect with after_event_id to resume"
        )

        def listener(event: Event) -> None:
            if wanted(event):  # a consumer this slow is cut off, not buffered forever
                queue.put_nowait(event if queue.qsize() < MAX_PENDING_EVENTS else behind)

        await self._reading()
        self.event_listeners.append(listener)
        self.event_breaks.append(queue.put_nowait)
        try:
            # Locally, replay() does not yield to the loop: the ring is read right after subscribing,
            # so nothing is missed or sent twice. Across replicas the stream read may overlap with
            # what the listener queued meanwhile: those are skipped by id.
            replayed: set[int | str] = set()
            if after is not None:
                for event in await self.replay(after):
                    if wanted(event):
                        replayed.add(_key(event))
                        yield event
            while True:
                item = await queue.get()
                if isinstance(item, MaosError):
                    raise item
                if replayed and _key(item) in replayed:
                    continue
                yield item
        finally:
            self._done_reading()
            self.event_listeners.remove(listener)
            self.event_breaks.remove(queue.put_nowait)

    async def _reading(self) -> None:
        """Have the shared stream read from now on, for one watcher or listener (at once without one).

        The watcher subscribes right after this returns, with no await between: the reader hands
        it every entry read from then on (it started after the newest one, or was running already).

        Raises:
            Unavailable: The stream is not read now and Redis does not answer.
        """
        if self.stream is not None:
            await self.stream.want()

    def _done_reading(self) -> None:
        if self.stream is not None:
            self.stream.unwant()

    async def replay(self, after: ResumePoint) -> list[Event]:
        """The kept events delivered after event ``after``, in the order they were delivered.

        Raises:
            InvalidArgument: No such event was sent.
            FailedPrecondition: The events after it are no longer kept (reason
                ERROR_REASON_RESUME_POINT_LOST).
            Unavailable: The shared stream cannot be read.
        """
        if isinstance(after, int):
            return self.events_after(after)
        if self.stream is None:
            raise InvalidArgument(
                f"event {after} is not an event id of this control plane", field="after_event_id"
            )
        return await self.stream.after(after)

    def events_after(self, sequence: int) -> list[Event]:
        """The kept events delivered after event ``sequence``, in the order they were delivered.

        Events are numbered when they happen but delivered once committed, so the order of
        delivery (what streams sent) is the one followed, not the numbers'.

        Raises:
            InvalidArgument: No event with that number has happened yet on this control plane.
            FailedPrecondition: The event is no longer kept (reason ERROR_REASON_RESUME_POINT_LOST).
        """
        if 0 < sequence <= self._lost_through:
            raise FailedPrecondition(
                f"event {sequence} was sent before this control plane lost its connection to the "
                "other replicas' events (some may have been missed since); open the stream again "
                "without a resume id",
                reason=RESUME_POINT_LOST,
            )
        kept = self.recent_events
        for index in range(len(kept) - 1, -1, -1):
            if kept[index].id == sequence:
                return [kept[i] for i in range(index + 1, len(kept))]
        if sequence > self._event_seq or sequence < 0:
            raise InvalidArgument(
                f"after_event_id names event {sequence}, which this control plane has not sent "
                f"(the latest is {self._event_seq})",
                field="after_event_id",
            )
        oldest = min((event.id for event in kept), default=self._event_seq + 1)
        raise FailedPrecondition(
            f"event {sequence} is no longer kept: this control plane keeps its last {kept.maxlen} events "
            f"(the oldest now is {oldest}); open the stream again without a resume id",
            reason=RESUME_POINT_LOST,
            metadata={"oldest_kept": str(oldest)},
        )

    def publish(
        self,
        event: Event,
        task: Task,
        sub: Subtask | None = None,
        *,
        committed: bool = False,
    ) -> None:
        """Deliver an event to task watchers and event listeners once it is durable.

        Progress and output events carry no state change and are delivered at
        once (``committed=True``).
        """
        if committed:
            self._deliver([self._stamp(event, task, sub)])
            return
        stamped = self._stamp(event, task, sub)
        self._tap(event, task)
        generation = self.committer.generation_id
        if self._events_generation != generation:
            pending: list[tuple[Event, Snapshots]] = []
            self._events_generation, self._pending_events = generation, pending
            self.committer.after_commit(lambda: self._deliver(pending))
        self._pending_events.append(stamped)

    def publish_written(self, events: list[tuple[Event, Task]]) -> None:
        """Deliver events whose changes are committed already, at once and as one group (one stream
        entry, one NOTIFY), after the taps (what they mark joins the next commit)."""
        group = []
        for event, task in events:
            group.append(self._stamp(event, task, None))
            self._tap(event, task)
        if group:
            self._deliver(group)

    def _stamp(self, event: Event, task: Task, sub: Subtask | None) -> tuple[Event, Snapshots]:
        """Number the event, and snapshot its task for the task's watchers here (if any)."""
        self._event_seq += 1
        event.id = self._event_seq
        event.owner = task.owner
        snapshots = None
        if task.id in self._watchers:
            snapshots = (copy.copy(task), copy.copy(sub) if sub else None)
        return event, snapshots

    def _tap(self, event: Event, task: Task) -> None:
        for tap in self.event_taps:
            try:
                tap(event, task)
            except Exception:  # a failing tap must not stop the transition
                log.exception("event tap failed")

    def _deliver(self, events: list[tuple[Event, Snapshots]]) -> None:
        if self.stream is not None:  # every replica's watchers hear it from the stream, this one's too
            self.stream.send(events)
            return
        for event, snapshots in events:
            self._fan_out(event, snapshots)
        if self.relay is not None:
            self.relay.send([event for event, _ in events])

    def _fan_out(self, event: Event, snapshots: Snapshots, *, remote: bool = False) -> None:
        """Hand one delivered event to the task's watchers and to the listeners."""
        if self.stream is None:
            self.recent_events.append(event)
        # Locally a task watched when the event was published has its snapshots; another replica's
        # event has none (the watcher reads the task).
        if snapshots is not None or remote or self.stream is not None:
            for watch in self._watchers.get(event.task_id, ()):
                if event.type in _PROGRESS and not watch.include_progress:
                    continue
                watch.queue.put_nowait((event, snapshots))
        for listener in list(self.event_listeners):
            try:
                listener(event)
            except Exception:  # one broken watcher must not stop the others (or the agent reporting)
                log.exception("event listener failed")

    def _sever(self, error: MaosError) -> None:
        """End every watcher with ``error`` (events stopped arriving; they resume after their last one)."""
        for watches in self._watchers.values():
            for watch in watches:
                watch.queue.put_nowait(error)
        for broken in list(self.event_breaks):
            broken(error)
