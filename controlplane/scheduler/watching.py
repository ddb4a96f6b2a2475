"""Watching tasks: snapshots and committed changes, for WatchTask and WatchEvents.

A component of :class:`~controlplane.scheduler.engine.Engine`: it owns the
watchers, the event numbering and the recent events. Events are delivered
only once the change they describe is committed (progress and output chunks,
which change nothing durable, are delivered at once).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from controlplane.domain.events import Event, EventType
from controlplane.domain.model import Subtask, Task
from controlplane.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from controlplane.scheduler.committer import Committer

log = logging.getLogger(__name__)

RECENT_EVENTS = 10_000
MAX_PENDING = 10_000  # changes a WatchTask reader may fall behind before it is cut off
#: The reason of a resume id the server no longer keeps (errors.proto).
RESUME_POINT_LOST = "ERROR_REASON_RESUME_POINT_LOST"
_PROGRESS = (EventType.SUBTASK_PROGRESS, EventType.SUBTASK_OUTPUT)


@dataclass(eq=False)
class Watch:
    """One WatchTask subscriber."""

    queue: asyncio.Queue[tuple[Event, Task, Subtask | None]]
    include_progress: bool


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
        self._event_seq = 0
        self._events_generation = -1
        self._pending_events: list[tuple[Event, tuple[Task, Subtask | None] | None]] = []

    def watched(self, task_id: str) -> bool:
        """Whether someone watches the task (it stays in memory while they do)."""
        return bool(self._watchers.get(task_id))

    # --- watching -----------------------------------------------------------

    async def watch(
        self, task_id: str, include_progress: bool = False, after: int | None = None
    ) -> AsyncIterator[tuple[Event | None, Task, Subtask | None]]:
        """The task now, then every committed change until it finishes.

        With ``after`` (an event sequence number) there is no snapshot first: the kept changes
        of the task delivered after that event come first (with the task as it is now), then
        the live ones, none twice (see :meth:`events_after` for the errors).
        """
        task = await self.get_task(task_id)
        watch = Watch(asyncio.Queue(), include_progress)
        self._watchers[task_id].add(watch)
        try:
            # Show only committed state: what is in memory now is durable once this resolves
            # (changes after it arrive through the queue).
            await self.committer.durable()
            task = self.tasks.get(task_id, task)
            snapshot = copy.copy(task)
            replayed: set[int] = set()
            if after is None:
                yield None, snapshot, None
            else:
                # Everything published before the watch was added was delivered by now (after-commit
                # callbacks run before durable() resolves); what was delivered since is also queued.
                for event in self.events_after(after):
                    if event.task_id == task_id and (include_progress or event.type not in _PROGRESS):
                        replayed.add(event.id)
                        yield event, snapshot, None
            if snapshot.status.finished:
                return
            while True:
                if watch.queue.qsize() > MAX_PENDING:
                    raise ResourceExhausted(
                        f"the watcher fell more than {MAX_PENDING} changes behind; watch again"
                    )
                event, snapshot, sub = await watch.queue.get()
                if event.id in replayed:
                    continue
                yield event, snapshot, sub
                if event.type == EventType.TASK_STATUS_CHANGED and snapshot.status.finished:
                    return
        finally:
            watchers = self._watchers.get(task_id)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self._watchers[task_id]
                    # Only a committed final state may leave memory.
                    self.committer.after_commit(lambda: self._evict(task_id))

    def events_after(self, sequence: int) -> list[Event]:
        """The kept events delivered after event ``sequence``, in the order they were delivered.

        Events are numbered when they happen but delivered once committed, so the order of
        delivery (what streams sent) is the one followed, not the numbers'.

        Raises:
            InvalidArgument: No event with that number has happened yet on this control plane.
            FailedPrecondition: The event is no longer kept (reason ERROR_REASON_RESUME_POINT_LOST).
        """
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
        self, event: Event, task: Task, sub: Subtask | None = None, *, committed: bool = False
    ) -> None:
        """Deliver an event to task watchers and event listeners once it is durable.

        Progress and output events carry no state change and are delivered at
        once (``committed=True``).
        """
        self._event_seq += 1
        event.id = self._event_seq
        event.owner = task.owner
        snapshots = None
        if task.id in self._watchers:
            snapshots = (copy.copy(task), copy.copy(sub) if sub else None)
        if committed:
            self._deliver([(event, snapshots)])
            return
        for tap in self.event_taps:
            try:
                tap(event, task)
            except Exception:  # a failing tap must not stop the transition
                log.exception("event tap failed")
        generation = self.committer.generation_id
        if self._events_generation != generation:
            pending: list[tuple[Event, tuple[Task, Subtask | None] | None]] = []
            self._events_generation, self._pending_events = generation, pending
            self.committer.after_commit(lambda: self._deliver(pending))
        self._pending_events.append((event, snapshots))

    def _deliver(self, events: list[tuple[Event, tuple[Task, Subtask | None] | None]]) -> None:
        for event, snapshots in events:
            self.recent_events.append(event)
            if snapshots is not None:
                for watch in self._watchers.get(event.task_id, ()):
                    if event.type in _PROGRESS and not watch.include_progress:
                        continue
                    watch.queue.put_nowait((event, *snapshots))
            for listener in list(self.event_listeners):
                try:
                    listener(event)
                except Exception:  # one broken watcher must not stop the others (or the agent reporting)
                    log.exception("event listener failed")
