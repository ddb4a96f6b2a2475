"""Events and log records of every replica, through two Redis streams (``redis.url`` set).

* ``<redis.key_prefix>events``: each replica appends the events it committed, one entry per
  commit group (whatever is waiting goes in one round trip), in commit order; a replica with
  watchers (WatchTask, WatchEvents, ``maos monitor --follow``) reads the stream (its own entries
  included) and feeds them. One entry holds one commit group's events; an event's id is
  ``<stream id>-<index in the entry>``, the same on every replica, so a stream broken on one
  replica resumes on any other. A replica reads only while it has watchers (issue 17: with N
  replicas each reading and decoding every entry, the control planes' CPU per task grew with
  N): a watcher's first event is one written after it subscribed (:meth:`EventStream.want`),
  and what came before is in the task it was shown first or in a resume (``after_event_id``).
* ``<redis.key_prefix>logs``: each replica appends the records written to its log book (its own
  and its agents'), and every replica (the writer included) keeps the records it reads back, in
  the stream's order, so ``maos logs`` and TailLogs on any replica show every replica's records.
  A record's id is its stream id (``<milliseconds>-<sequence>``), the same on every replica: a
  TailLogs resumes after it on any replica (:meth:`LogStream.after` reads the stream).
  While the stream cannot be written (Redis away), a record written here is kept in this
  replica's log book at once, under an id of this replica alone (``{incarnation}.{seq}``), and
  still sent when Redis answers again (the other replicas get it then; this one skips it).

Both keep about ``redis.stream_max_len`` entries. See :mod:`controlplane.replicas.streams` for
what happens while Redis is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pluggy

from controlplane.domain.events import Event, EventType
from controlplane.errors import FailedPrecondition, InvalidArgument, MaosError, Unavailable
from controlplane.hookspecs import hookimpl
from controlplane.logbook import LogBook, LogEntry, LogFilter
from controlplane.replicas.redis_conn import RedisConnection
from controlplane.replicas.streams import GAP, MAX_BATCH, MAX_OUTBOX, READ_COUNT, READ_TIMEOUT, SharedStream

log = logging.getLogger(__name__)

#: Snapshots of this replica's events kept until the stream brings the events back.
MAX_SNAPSHOTS = 100_000
#: Stream entries one ListLogs page continued from the stream reads at most (a page not full by
#: then ends early, with a token to go on): one call's time stays bounded however rare its records.
MAX_PAGE_SCAN = 10_000
#: Entries before a ListLogs page's first one read to tell second copies from first ones: a
#: pipeline sent again holds at most MAX_BATCH entries, so a copy comes within that many of its first.
LOOK_BACK = MAX_BATCH

_ORIGIN, _NUMBER, _BODY = b"r", b"n", b"e"


def _row(event: Event) -> list[Any]:
    return [
        int(event.type),
        event.task_id,
        event.subtask_id,
        event.agent_id,
        event.from_status,
        event.to_status,
        event.message,
        event.data,
        event.time,
        event.owner,
    ]


def _event(row: list[Any], event_id: str) -> Event:
    kind, task_id, subtask_id, agent_id, from_status, to_status, message, data, at, owner = row
    return Event(
        EventType(kind),
        task_id=task_id,
        subtask_id=subtask_id,
        agent_id=agent_id,
        from_status=from_status,
        to_status=to_status,
        message=message,
        data=data,
        time=at,
        owner=owner,
        stream_id=event_id,
    )


def encode_event(event: Event) -> bytes:
    """One event as JSON."""
    return json.dumps(_row(event), separators=(",", ":"), default=str).encode()


def decode_event(body: bytes, event_id: str) -> Event:
    """The event of :func:`encode_event`, with ``event_id`` as its id."""
    return _event(json.loads(body), event_id)


def encode_events(events: list[Event]) -> bytes:
    """The events of one commit group as the JSON of one stream entry."""
    return json.dumps([_row(event) for event in events], separators=(",", ":"), default=str).encode()


def decode_events(body: bytes, stream_id: str) -> list[Event]:
    """The events of a stream entry; each one's id is ``<stream id>-<index in the entry>``."""
    return [_event(row, f"{stream_id}-{index}") for index, row in enumerate(json.loads(body))]


def _entry_id(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def split_event_id(event_id: str) -> tuple[str, int]:
    """``"17-3-2"`` -> (``"17-3"``, 2): the stream entry and the event's index in it."""
    stream_id, _, index = event_id.rpartition("-")
    return stream_id, int(index)


async def _first_copies(
    entries: list[tuple[str, dict[bytes, bytes]]],
) -> AsyncIterator[tuple[int, str, dict[bytes, bytes]]]:
    """``(position, entry id, fields)`` of each entry read back for a resume, second copies left out.

    A resume from far back must not hold the event loop: it yields to it every 500 entries.
    """
    seen: dict[bytes, int] = {}
    for position, (entry_id, fields) in enumerate(entries):
        if position % 500 == 499:
            await asyncio.sleep(0)
        if not _again(seen, fields):
            yield position, entry_id, fields


def _again(last_read: dict[bytes, int], fields: dict[bytes, bytes]) -> bool:
    """Whether an entry is a second copy of one read before (and note it as read)."""
    origin, number = fields.get(_ORIGIN), fields.get(_NUMBER)
    if origin is None or number is None:
        return False
    n = int(number)
    if n <= last_read.get(origin, 0):
        return True
    last_read[origin] = n
    return False


class EventStream:
    """This replica's side of the shared event stream (attached to the engine's watchers).

    Args:
        stream: The shared stream of events.
    """

    def __init__(self, stream: SharedStream):
        self.stream = stream
        #: Who wrote an entry: this start of this replica (a restart is another writer).
        self.origin = secrets.token_hex(8).encode()
        self._seq = 0
        #: This replica's watched tasks as they were at each event, by the event's number here.
        self._snapshots: dict[int, Any] = {}
        self.deliver: Callable[[Event, Any], None] = lambda event, snapshots: None
        self.sever: Callable[[MaosError], None] = lambda error: None
        #: The last entry number read of each writer: a pipeline sent again after a timeout that
        #: Redis had in fact applied writes its entries twice, and the second copies are skipped.
        self._last_read: dict[bytes, int] = {}
        stream.on_entry = self._entry
        stream.on_break = self._broken
        stream.on_idle = self._snapshots.clear  # no watcher is left to be given them

    async def want(self) -> None:
        """Read the stream from now on (a watcher subscribed); see :meth:`SharedStream.want`."""
        await self.stream.want()

    def unwant(self) -> None:
        """The end of one :meth:`want` (the watcher left)."""
        self.stream.unwant()

    async def flushed(self) -> None:
        """Return once the events sent so far are in the stream (see :meth:`SharedStream.flushed`)."""
        await self.stream.flushed()

    def publish_after(self, channel: str, payload: str) -> asyncio.Future[None] | None:
        """Publish on ``channel`` right behind the events sent so far, in their round trip (see
        :meth:`SharedStream.publish_after`); None when none waits to be written."""
        return self.stream.publish_after(channel, payload)

    def send(self, events: list[tuple[Event, Any]]) -> None:
        """Append a commit group's events as one entry (the snapshots of watched tasks stay here
        until the entry is read back)."""
        if not events:
            return
        self._seq += 1
        snapshots = [snapshot for _, snapshot in events]
        if any(snapshot is not None for snapshot in snapshots):
            self._snapshots[self._seq] = snapshots
            if len(self._snapshots) > MAX_SNAPSHOTS:
                del self._snapshots[next(iter(self._snapshots))]
        body = encode_events([event for event, _ in events])
        self.stream.append([{_ORIGIN: self.origin, _NUMBER: str(self._seq), _BODY: body}])

    def _entry(self, stream_id: str, fields: dict[bytes, bytes]) -> None:
        if GAP in fields:
            self.sever(
                FailedPrecondition(
                    f"{fields[GAP].decode()} commit groups of events were lost while Redis was away "
                    f"(before {stream_id}); watch again without a resume id",
                    reason="ERROR_REASON_RESUME_POINT_LOST",
                )
            )
            return
        if _again(self._last_read, fields):
            return
        events = decode_events(fields[_BODY], stream_id)
        snapshots: list[Any] = []
        if fields.get(_ORIGIN) == self.origin:
            snapshots = self._snapshots.pop(int(fields[_NUMBER]), [])
        for index, event in enumerate(events):
            self.deliver(event, snapshots[index] if snapshots else None)

    def _broken(self, error: Exception) -> None:
        self.sever(
            Unavailable(
                f"events stopped arriving: the replicas' event stream in Redis cannot be read ({error}); "
                "watch again with after_event_id (the last event's id) to resume",
                metadata={"component": "redis"},
            )
        )

    async def after(self, event_id: str) -> list[Event]:
        """The events after ``event_id`` (see :meth:`SharedStream.after` for the errors).

        Raises:
            InvalidArgument: The entry holds no event with that index.
        """
        stream_id, index = split_event_id(event_id)
        entries = await self.stream.after(stream_id, "after_event_id")  # the named entry first
        found: list[Event] = []
        async for position, entry_id, fields in _first_copies(entries):
            events = decode_events(fields[_BODY], entry_id)
            if position == 0:
                if index >= len(events):
                    raise InvalidArgument(
                        f"after_event_id {event_id} names no event sent (entry {entry_id} holds "
                        f"{len(events)})",
                        field="after_event_id",
                    )
                events = events[index + 1 :]
            found.extend(events)
        return found


_LOG_FIELDS = ("level", "component", "message", "time", "task_id", "subtask_id", "agent_id", "fields")


class LogStream:
    """Log records across replicas: those written here go out, every replica's come back into the
    log book with their stream id (see the module docstring).

    Args:
        stream: The shared stream of log records.
        book: This replica's log book (its records are relayed here from now on).
        replica: This replica's id (it marks the records that came from elsewhere).
    """

    def __init__(self, stream: SharedStream, book: LogBook, replica: str):
        self.stream = stream
        self.book = book
        self.origin = f"{replica}/{secrets.token_hex(4)}".encode()
        self._numbers = itertools.count(1)
        #: Held while a record takes its number and enters the outbox: records are written from
        #: several threads, and the numbers must enter the stream in order (a lower number read
        #: after a higher one is skipped as a resent copy). Reentrant: appending may log.
        self._sending = threading.RLock()
        #: Numbers of records written here and kept at once (the stream could not be written):
        #: skipped when the stream brings them back.
        self._kept_here: dict[int, None] = {}
        #: The last entry number read of each writer (second copies of a resent pipeline are skipped).
        self._last_read: dict[bytes, int] = {}
        self._warned_undecodable = False
        stream.on_entry = self._entry
        book.relay = self._send
        book.shared = self

    def _send(self, entry: LogEntry) -> bool:
        """Append a record to the stream; False when it is to be kept here at once as well (the
        stream cannot be written now)."""
        record = [getattr(entry, name) for name in _LOG_FIELDS] + [entry.task_owner, entry.agent_owner]
        body = json.dumps(record, separators=(",", ":"))
        with self._sending:
            number = next(self._numbers)
            keep_now = self.stream.failing
            if keep_now:
                self._kept_here[number] = None
                if len(self._kept_here) > MAX_OUTBOX:  # those dropped from the outbox never come back
                    del self._kept_here[next(iter(self._kept_here))]
            self.stream.append([{_ORIGIN: self.origin, _NUMBER: str(number), _BODY: body}])
        return not keep_now

    def _decode(self, stream_id: str, fields: dict[bytes, bytes]) -> LogEntry | None:
        """The record of a stream entry, noting who owns its task and agent (None: not one, or
        one this version cannot read: skipped, with one warning)."""
        origin = fields.get(_ORIGIN)
        if GAP in fields or origin is None or _BODY not in fields:
            return None
        try:
            level, component, message, at, task_id, subtask_id, agent_id, extra, task_owner, agent_owner = (
                json.loads(fields[_BODY])
            )
            texts = (component, message, task_id, subtask_id, agent_id, task_owner, agent_owner)
            if (
                not isinstance(level, int)
                or not isinstance(at, int | float)
                or not isinstance(extra, dict)
                or not all(isinstance(text, str) for text in texts)
            ):
                raise ValueError("a field has the wrong type")
            replica = "" if origin == self.origin else origin.decode().rsplit("/", 1)[0]
        except (ValueError, TypeError) as exc:  # (json and unicode errors are ValueErrors)
            if not self._warned_undecodable:
                self._warned_undecodable = True
                log.warning(
                    "log records stream: entry %s is not a log record this version reads (%s); "
                    "such entries are skipped",
                    stream_id,
                    exc,
                )
            return None
        return self.book.enrich(
            LogEntry(
                level=level,
                component=component,
                message=message,
                time=at,
                task_id=task_id,
                subtask_id=subtask_id,
                agent_id=agent_id,
                fields=extra,
                task_owner=task_owner,
                agent_owner=agent_owner,
                replica=replica,
                stream_id=stream_id,
            )
        )

    def _entry(self, stream_id: str, fields: dict[bytes, bytes]) -> None:
        if _again(self._last_read, fields) or self._was_kept_here(fields):
            return
        entry = self._decode(stream_id, fields)
        if entry is not None:
            self.book.add(entry)

    def _was_kept_here(self, fields: dict[bytes, bytes]) -> bool:
        """Whether the entry is a record of this writer kept at once when it was written."""
        if fields.get(_ORIGIN) != self.origin or _NUMBER not in fields:
            return False
        with self._sending:
            return self._kept_here.pop(int(fields[_NUMBER]), 0) is None

    async def after(self, record_id: str) -> list[LogEntry]:
        """The records written after record ``record_id``, oldest first, read from the stream
        (see :meth:`SharedStream.after` for the errors: INVALID_ARGUMENT for an id never issued,
        FAILED_PRECONDITION ERROR_REASON_RESUME_POINT_LOST for one no longer kept)."""
        entries = await self.stream.after(record_id, "after_record_id")  # the named entry first
        found: list[LogEntry] = []
        async for position, entry_id, fields in _first_copies(entries):
            if position == 0:  # the named record itself
                continue
            entry = self._decode(entry_id, fields)
            if entry is not None:
                found.append(entry)
        return found

    async def page(
        self, record_id: str, newest_first: bool, wanted: LogFilter, limit: int
    ) -> tuple[list[LogEntry], str]:
        """A ListLogs page continued on any replica: up to ``limit`` records matching ``wanted``
        after entry ``record_id`` (before it, ``newest_first``), read from the stream, second copies
        left out; and "" or, when :data:`MAX_PAGE_SCAN` entries were read before the page filled,
        the id of the last one read (the next page goes on from there).

        Raises:
            FailedPrecondition: Entry ``record_id`` is no longer in the stream (trimmed past
                ``redis.stream_max_len``, or lost with Redis): ERROR_REASON_RESUME_POINT_LOST.
            Unavailable: Redis does not answer.
        """
        import redis

        client, key = self.stream.client, self.stream.key
        try:
            # The named entry and the LOOK_BACK before it: a resent pipeline's second copies come
            # within that many entries of their first ones, so the look-back tells them apart as
            # the log book did (the later entry of a pair is the copy).
            behind = await client.xrevrange(key, record_id, "-", count=LOOK_BACK + 1)
            if not behind or _entry_id(behind[0][0]) != record_id:
                first = await client.xrange(key, "-", "+", count=1)
                oldest = _entry_id(first[0][0]) if first else "none"
                raise FailedPrecondition(
                    f"page_token continues after log record {record_id}, which is no longer kept: the "
                    f"system keeps about its last {self.stream.maxlen} log records (the oldest now is "
                    f"{oldest}); list again from the first page, or read older records from the log files",
                    reason="ERROR_REASON_RESUME_POINT_LOST",
                    metadata={"oldest_kept": oldest},
                )
            if newest_first:
                return await self._page_back(behind[1:], wanted, limit)
            return await self._page_on(record_id, behind, wanted, limit)
        except redis.RedisError as exc:
            raise Unavailable(
                f"cannot read the log records stream: Redis does not answer ({exc}); try again",
                metadata={"component": "redis"},
            ) from None

    async def _page_on(
        self, record_id: str, behind: list[tuple[Any, dict[bytes, bytes]]], wanted: LogFilter, limit: int
    ) -> tuple[list[LogEntry], str]:
        """:meth:`page` oldest first; ``behind``: the named entry and those before it, newest first."""
        client, key = self.stream.client, self.stream.key
        found: list[LogEntry] = []
        last_read: dict[bytes, int] = {}
        for _, fields in reversed(behind):
            _again(last_read, fields)
        scanned, cursor = 0, "(" + record_id
        while scanned < MAX_PAGE_SCAN:
            count = min(READ_COUNT, MAX_PAGE_SCAN - scanned)
            chunk = await client.xrange(key, cursor, "+", count=count)
            for entry_id, fields in chunk:
                scanned += 1
                cursor = "(" + _entry_id(entry_id)
                if _again(last_read, fields):
                    continue
                if self._add_if_wanted(_entry_id(entry_id), fields, wanted, found) and len(found) == limit:
                    return found, ""
            if len(chunk) < count:
                return found, ""
            await asyncio.sleep(0)  # a long scan does not hold the event loop
        return found, cursor[1:]

    def _add_if_wanted(
        self, entry_id: str, fields: dict[bytes, bytes], wanted: LogFilter, found: list[LogEntry]
    ) -> bool:
        """Add the entry to ``found`` if it decodes and ``wanted`` matches it; whether it was added."""
        entry = self._decode(entry_id, fields)
        if entry is None or not wanted.matches(entry):
            return False
        found.append(entry)
        return True

    async def _page_back(
        self, older: list[tuple[Any, dict[bytes, bytes]]], wanted: LogFilter, limit: int
    ) -> tuple[list[LogEntry], str]:
        """:meth:`page` newest first; ``older``: the entries before the named one, newest first.

        An entry is a second copy when one of its writer with a number as high comes before it;
        each entry is decided once the LOOK_BACK entries before it are read (or the stream's start).
        """
        client, key = self.stream.client, self.stream.key
        found: list[LogEntry] = []
        pending = list(older)  # read, not yet decided; newest first
        exhausted = len(pending) < LOOK_BACK
        scanned = 0
        while scanned < MAX_PAGE_SCAN and pending:
            count = min(READ_COUNT, MAX_PAGE_SCAN - scanned)
            while not exhausted and len(pending) < count + LOOK_BACK:
                want = count + LOOK_BACK - len(pending)
                more = await client.xrevrange(key, "(" + _entry_id(pending[-1][0]), "-", count=want)
                pending.extend(more)
                exhausted = len(more) < want
            window = pending[: count + LOOK_BACK]
            last_read: dict[bytes, int] = {}
            copy = [False] * len(window)
            for index in range(len(window) - 1, -1, -1):  # oldest first, as the log book reads
                copy[index] = _again(last_read, window[index][1])
            decided, pending = pending[:count], pending[count:]
            for index, (entry_id, fields) in enumerate(decided):
                scanned += 1
                if copy[index]:
                    continue
                if self._add_if_wanted(_entry_id(entry_id), fields, wanted, found) and len(found) == limit:
                    return found, ""
            await asyncio.sleep(0)  # a long scan does not hold the event loop
        if not pending and exhausted:
            return found, ""
        return found, _entry_id(decided[-1][0])


class _Lifecycle:
    """A plugin object starting the streams at startup and stopping them at shutdown."""

    def __init__(self, redis: RedisConnection, streams: list[SharedStream]):
        self.redis = redis
        self.streams = streams
        self._reader: Any = None

    @hookimpl
    async def startup(self, app: Any) -> None:
        self._reader = self.redis.blocking_client(READ_TIMEOUT)
        for stream in self.streams:
            stream.client, stream.reader = self.redis.client, self._reader  # made on the running loop
            await stream.start()

    @hookimpl
    async def shutdown(self, app: Any) -> None:
        # What is committed by now reaches the other replicas (the engine's final commit comes
        # after the shutdown hooks: changes made from here on are not sent).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(app.engine.durable(), 2.0)
        for stream in self.streams:
            await stream.close()
        if self._reader is not None:
            await self._reader.aclose()


def install_event_streams(
    pm: pluggy.PluginManager, engine: Any, logbook: LogBook, redis: RedisConnection | None, settings: Any
) -> None:
    """With Redis, carry events and log records across replicas; on PostgreSQL without Redis, events
    over LISTEN/NOTIFY (:mod:`controlplane.replicas.event_notify`); on SQLite nothing changes."""
    if redis is None:
        if settings.database_url.startswith("postgresql"):
            from controlplane.replicas.event_notify import install_notify_relay

            install_notify_relay(pm, engine, settings.database_url)
        return
    maxlen = settings["redis.stream_max_len"]
    events = SharedStream(None, redis.key("events"), maxlen, "events", on_demand=True)
    logs = SharedStream(None, redis.key("logs"), maxlen, "log records")
    engine.watchers.attach(EventStream(events))
    LogStream(logs, logbook, engine.replica)
    pm.register(_Lifecycle(redis, [events, logs]), name="maos-event-streams")
