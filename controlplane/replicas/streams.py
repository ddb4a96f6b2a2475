"""One Redis stream shared by every replica: each appends what it committed, each reads everything.

A :class:`SharedStream` is the transport under :mod:`controlplane.replicas.event_stream`:

* **Appending** is cheap on the hot path: :meth:`SharedStream.append` only puts entries in an
  outbox (no await, callable from any thread); one writer task sends everything waiting in one pipeline of
  ``XADD … MAXLEN ~ N`` (one round trip per commit group, not per entry), in order. While Redis is away the
  outbox keeps up to :data:`MAX_OUTBOX` entries and sends them when it answers again; past that the oldest are
  dropped and a *gap* entry is written in their place, so a reader resuming from before it is told that events
  were lost instead of missing them. ``SharedStream.failing`` says whether writing fails now (from the first
  failed write until one succeeds). A PUBLISH can ride behind the entries appended so far
  (:meth:`SharedStream.publish_after`): it goes in the round trip of the last of them, in a script that
  PUBLISHes only once every XADD before it succeeded, so a subscriber it wakes finds them in the stream, and
  it costs no round trip of its own (a ``work`` wake-up naming tasks handed over). When Redis did not answer
  at start, the reader's starting point (the newest entry) is read before the writer's first write, so the
  reader never starts after this replica's own first entries.
* **Reading**: one ``XREAD BLOCK`` loop per replica hands every entry (this replica's included,
  so that every replica sees one order: the stream's) to ``on_entry``. When the connection
  breaks, ``on_break`` is called (watchers end with an error they can resume from) and the loop
  continues from the last entry it read once Redis answers again. A stream read *on demand*
  (``on_demand=True``: the events, issue 17) reads only while someone here wants its entries
  (:meth:`SharedStream.want` / :meth:`SharedStream.unwant`, a watcher on this replica): reading
  starts after the newest entry at the moment :meth:`~SharedStream.want` returns, and stops
  :data:`LINGER` seconds after the last one left. Without watchers a replica then neither reads
  nor decodes the other replicas' entries (each of N replicas reading everything cost N times).
* **Resuming**: :meth:`SharedStream.after` reads the entries after a stream id with ``XRANGE``,
  or says precisely why it cannot (an id never issued, or one no longer in the stream: trimmed,
  or lost with a Redis that restarted without its data).

Stream ids (``<milliseconds>-<sequence>``) are global, ordered, and the same on every replica:
the ids clients see are made from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from controlplane.errors import FailedPrecondition, InvalidArgument, Unavailable

log = logging.getLogger(__name__)

#: Entries waiting for Redis at most (while it is away); past this the oldest are dropped.
MAX_OUTBOX = 100_000
#: Entries in one pipeline at most.
MAX_BATCH = 2_000
#: Milliseconds an XREAD waits for new entries before it asks again.
BLOCK_MS = 1_000
#: Seconds the reader waits for an XREAD's answer before Redis counts as away (a busy event loop
#: must not count as an outage: every watcher would be ended for nothing).
READ_TIMEOUT = 6.0
#: Seconds between attempts while Redis does not answer.
RETRY_DELAY = 0.5
#: Entries read by one XREAD / XRANGE at most.
READ_COUNT = 1_000
#: Most entries a resume replays (more: RESUME_POINT_LOST), so one caller's memory stays bounded.
MAX_REPLAY = 10_000
#: The field marking a gap: entries that were never written (the outbox overflowed).
GAP = b"gap"
#: Seconds an on-demand stream keeps reading after its last reader left (a watcher reconnecting,
#: or watches opened one after another, do not restart it each time).
LINGER = 5.0

Fields = dict[str | bytes, str | bytes]

#: XADD each entry (ARGV: maxlen, the entry count, then per entry its field count and fields), then
#: PUBLISH each (channel, payload) pair after them. ``redis.call`` raises on a refused XADD: the
#: script ends there, before any PUBLISH.
_APPEND_THEN_PUBLISH = """
local at = 3
for _ = 1, tonumber(ARGV[2]) do
  local count = tonumber(ARGV[at])
  local command = {'XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*'}
  for i = 1, count do
    command[6 + i] = ARGV[at + i]
  end
  redis.call(unpack(command))
  at = at + count + 1
end
while at < #ARGV do
  redis.call('PUBLISH', ARGV[at], ARGV[at + 1])
  at = at + 2
end
return 0
"""


def position(stream_id: str) -> tuple[int, int]:
    """A stream id as a comparable pair (``"17-3"`` -> ``(17, 3)``)."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SharedStream:
    """The outbox, writer and reader of one Redis stream.

    Args:
        client: A ``redis.asyncio.Redis`` client.
        key: The stream's key (``<redis.key_prefix>events``).
        maxlen: Entries the stream keeps, approximately (``XADD MAXLEN ~``).
        what: What the entries are, for messages (``events``, ``log records``).
        on_demand: Read only while :meth:`want` holds (see the module docstring); else always.
    """

    def __init__(self, client: Any, key: str, maxlen: int, what: str, *, on_demand: bool = False):
        self.client = client
        #: The reader's client (a blocking XREAD holds its connection): the same unless set apart.
        self.reader: Any = client
        self.key = key
        self.maxlen = maxlen
        self.what = what
        self.on_entry: Callable[[str, dict[bytes, bytes]], None] = lambda stream_id, fields: None
        self.on_break: Callable[[Exception], None] = lambda error: None
        self._outbox: deque[Fields] = deque()
        self._lock = threading.Lock()  # append() may be called from the storage thread (logging)
        self._dropped = 0
        #: Entries appended since the start, and those written (or dropped) since: see :meth:`flushed`.
        self._appended = self._done = 0
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        #: PUBLISHes to send right behind entries (see :meth:`publish_after`): the entries appended
        #: before each, its channel, payload and the future done once it is sent.
        self._publishes: deque[tuple[int, str, str, asyncio.Future[None]]] = deque()
        self._script: Any = None  # (the XADD-then-PUBLISH script, registered on first use)
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reader_up = False
        #: The id of the last entry read (where reading goes on after a broken connection); None
        #: while unknown (Redis did not answer at start): then the newest entry once it answers,
        #: resolved before this replica writes any (see :meth:`_position`).
        self.last_read: str | None = "0-0"
        #: Whether writing to Redis fails now (the entries wait in the outbox meanwhile).
        self.failing = False
        self.on_demand = on_demand
        #: Called when an on-demand stream stops reading (what waited for entries to come back goes).
        self.on_idle: Callable[[], None] = lambda: None
        self._reader: asyncio.Task[None] | None = None
        self._wanted = 0
        self._starting: asyncio.Lock | None = None
        self._idle_timer: asyncio.TimerHandle | None = None

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Start writing the outbox, and reading after the newest entry now in the stream (an
        on-demand stream: once :meth:`want` is called)."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._starting = asyncio.Lock()
        if not self.on_demand:
            await self._read_from_newest()
        # Only now: what the outbox holds (written while Redis was away) is read back.
        self._tasks.append(self._loop.create_task(self._write(), name=f"maos-{self.what}-stream-writer"))

    async def _newest(self) -> str:
        """The id of the newest entry now in the stream ("0-0": none)."""
        newest = await self.client.xrevrange(self.key, "+", "-", count=1)
        return _text(newest[0][0]) if newest else "0-0"

    async def _read_from_newest(self) -> None:
        try:
            self.last_read = await self._newest()
            self._reader_up = True
        except Exception as exc:  # Redis answered PING at start; if it is gone already, read from now on
            log.warning("%s stream: Redis does not answer (%s); reading when it does", self.what, exc)
            self.last_read = None
        self._start_reader()

    async def _position(self) -> str:
        """Where reading goes on. When Redis did not answer at start, the newest entry once it
        answers: the writer asks this before its first write too, so the reader starts before any
        entry of this replica (an ``XREAD $`` issued after the writer's first flush would miss it)."""
        if self.last_read is None:
            newest = await self._newest()
            if self.last_read is None:  # the reader or the writer may have asked at the same time
                self.last_read = newest
        return self.last_read

    def _start_reader(self) -> None:
        assert self._loop is not None
        self._reader = self._loop.create_task(self._read(), name=f"maos-{self.what}-stream-reader")
        self._tasks.append(self._reader)

    async def close(self) -> None:
        """Send what the outbox holds (briefly), then stop."""
        if (self._outbox or self._publishes) and self._wake is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush_once(), timeout=2.0)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._reader = None

    # --- reading on demand ----------------------------------------------------

    async def want(self) -> None:
        """Read from now on (an on-demand stream; nothing to do for another): returns once reading
        goes on after the newest entry now in the stream, so every entry written after this call
        is handed to ``on_entry``. Each call is matched by one :meth:`unwant`.

        Raises:
            Unavailable: Reading is not on and Redis does not answer (nothing is wanted then).
        """
        if not self.on_demand:
            return
        self._wanted += 1
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._reader is not None and not self._reader.done():
            return
        assert self._starting is not None, "want() before start()"
        try:
            async with self._starting:
                if self._reader is not None and not self._reader.done():
                    return  # started while this call waited
                try:
                    newest = await self._newest()
                except Exception as exc:
                    raise Unavailable(
                        f"cannot read the {self.what} of the replicas: Redis does not answer ({exc}); "
                        "try again shortly",
                        metadata={"component": "redis"},
                    ) from None
                self.last_read = newest
                self._reader_up = True
                self._start_reader()
        except BaseException:
            self.unwant()
            raise

    def unwant(self) -> None:
        """The end of one :meth:`want`: reading stops :data:`LINGER` seconds after the last one."""
        if not self.on_demand:
            return
        self._wanted -= 1
        if self._wanted > 0 or self._loop is None or self._reader is None:
            return
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._idle_timer = self._loop.call_later(LINGER, self._stop_reading)

    @property
    def reading(self) -> bool:
        """Whether entries are being read now."""
        return self._reader is not None and not self._reader.done()

    def _stop_reading(self) -> None:
        self._idle_timer = None
        if self._wanted > 0 or self._reader is None:
            return
        self._reader.cancel()
        with contextlib.suppress(ValueError):
            self._tasks.remove(self._reader)
        self._reader = None
        self.on_idle()

    # --- writing --------------------------------------------------------------

    def append(self, entries: list[Fields]) -> None:
        """Queue entries for the stream, in order (no I/O here; any thread)."""
        if not entries:
            return
        with self._lock:
            was_empty = not self._outbox
            self._outbox.extend(entries)
            self._appended += len(entries)
            excess = len(self._outbox) - MAX_OUTBOX
            for _ in range(max(0, excess)):
                self._outbox.popleft()
                self._dropped += 1
                self._done += 1  # (its gap marker tells the readers)
        if was_empty and self._loop is not None and self._wake is not None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self._loop:
                self._wake.set()
            else:
                self._loop.call_soon_threadsafe(self._wake.set)

    def publish_after(self, channel: str, payload: str) -> asyncio.Future[None] | None:
        """Publish ``payload`` on ``channel`` right behind the entries appended so far, in the round trip
        of the last of them: one script XADDs them and then PUBLISHes, and a refused XADD ends it before
        the PUBLISH, so a subscriber woken by it reads those entries in the stream. On the loop.

        Returns:
            A future done once the PUBLISH is sent (after a failed write it is sent again with its
            entries; cancelling the future drops it if not sent yet), or None when no entry appended
            so far waits to be written (publish it on its own).
        """
        with self._lock:
            target, done = self._appended, self._done
        if done >= target or self._loop is None or self._wake is None:
            return None
        future: asyncio.Future[None] = self._loop.create_future()
        self._publishes.append((target, channel, payload, future))
        self._wake.set()
        return future

    async def _flush_once(self) -> None:
        await self._position()
        with self._lock:
            batch = [self._outbox[i] for i in range(min(len(self._outbox), MAX_BATCH))]
            dropped = self._dropped
            through = self._done + len(batch)  # (the outbox holds the entries after those done)
        while self._publishes and self._publishes[0][3].done():  # (given up by their callers)
            self._publishes.popleft()
        publishes = list(itertools.takewhile(lambda p: p[0] <= through, self._publishes))
        if len(batch) == 1 and not dropped and not publishes:  # one commit group, one round trip
            await self.client.xadd(self.key, batch[0], maxlen=self.maxlen, approximate=True)
        elif publishes:  # PUBLISH only once every XADD before it is done: one script
            await self._append_then_publish(self._gap(dropped) + batch, publishes)
        elif batch or dropped:
            pipe = self.client.pipeline(transaction=False)
            for fields in self._gap(dropped) + batch:
                pipe.xadd(self.key, fields, maxlen=self.maxlen, approximate=True)
            await pipe.execute()
        for published in publishes:
            if self._publishes and self._publishes[0] is published:
                self._publishes.popleft()
            if not published[3].done():
                published[3].set_result(None)
        with self._lock:
            self._dropped -= dropped
            for fields in batch:  # the oldest may have been dropped meanwhile: pop by identity
                if self._outbox and self._outbox[0] is fields:
                    self._outbox.popleft()
                    self._done += 1
            done = self._done
        waiting = []
        for target, future in self._flush_waiters:
            if target > done:
                waiting.append((target, future))
            elif not future.done():
                future.set_result(None)
        self._flush_waiters = waiting

    @staticmethod
    def _gap(dropped: int) -> list[Fields]:
        """The gap marker standing for ``dropped`` entries never written (none: no marker)."""
        return [{GAP: str(dropped)}] if dropped else []

    async def _append_then_publish(
        self, entries: list[Fields], publishes: list[tuple[int, str, str, asyncio.Future[None]]]
    ) -> None:
        """XADD ``entries`` then PUBLISH, in one script (one round trip): an XADD Redis refuses (out
        of memory, MISCONF, READONLY, the key not a stream) ends the script before any PUBLISH, so no
        subscriber is woken to look for entries that are not there (a pipeline, even MULTI/EXEC for a
        key of the wrong type, would run the PUBLISH all the same)."""
        if self._script is None:
            self._script = self.client.register_script(_APPEND_THEN_PUBLISH)
        args: list[Any] = [self.maxlen, len(entries)]
        for fields in entries:
            args.append(2 * len(fields))
            for name, value in fields.items():
                args += (name, value)
        for _, channel, payload, _ in publishes:  # behind the entries they follow
            args += (channel, payload)
        await self._script(keys=[self.key], args=args)

    async def flushed(self) -> None:
        """Return once every entry appended before this call is in the stream (or dropped, which the
        stream's gap marker tells): waits as long as Redis does not answer."""
        with self._lock:
            target, done = self._appended, self._done
        if done >= target or self._loop is None:
            return
        future = self._loop.create_future()
        self._flush_waiters.append((target, future))
        await future

    async def _write(self) -> None:
        assert self._wake is not None
        while True:
            if not self._outbox and not self._publishes:
                await self._wake.wait()
                self._wake.clear()
                continue
            try:
                await self._flush_once()
                if self.failing:
                    self.failing = False
                    log.warning("%s stream: Redis answers again; the waiting entries were sent", self.what)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self.failing:
                    self.failing = True  # first: this warning is a log record written while it fails
                    log.warning(
                        "%s stream: cannot write to Redis (%s); keeping up to %d entries until it answers",
                        self.what,
                        exc,
                        MAX_OUTBOX,
                    )
                await asyncio.sleep(RETRY_DELAY)

    # --- reading --------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            try:
                reply = await self.reader.xread(
                    {self.key: await self._position()}, count=READ_COUNT, block=BLOCK_MS
                )
                if not self._reader_up:
                    self._reader_up = True
                    log.warning("%s stream: reading from Redis again", self.what)
                for _key, entries in reply or ():
                    for stream_id, fields in entries:
                        self.last_read = read = _text(stream_id)
                        try:
                            self.on_entry(read, fields)
                        except Exception:
                            log.exception("%s stream: entry %s could not be delivered", self.what, read)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._reader_up:
                    log.warning("%s stream: cannot read from Redis (%s); watchers are told", self.what, exc)
                    self._reader_up = False
                    self.on_break(exc)
                await asyncio.sleep(RETRY_DELAY)

    # --- resuming -------------------------------------------------------------

    async def after(self, stream_id: str, field: str) -> list[tuple[str, dict[bytes, bytes]]]:
        """Entry ``stream_id`` then the entries after it, oldest first.

        Raises:
            InvalidArgument: No entry with that id was written yet.
            FailedPrecondition: Entries after it are no longer kept, or were never written (a
                gap while Redis was away): reason ERROR_REASON_RESUME_POINT_LOST.
            Unavailable: Redis does not answer.
        """
        import redis

        start = position(stream_id)
        try:
            try:
                info = await self.client.xinfo_stream(self.key)
            except redis.ResponseError:  # no such key: nothing was ever written
                info = {"last-generated-id": b"0-0", "length": 0, "first-entry": None}
            newest = _text(info.get("last-generated-id", b"0-0"))
            first = info.get("first-entry")
            oldest = _text(first[0]) if first else newest
            if start > position(newest) and info.get("length"):
                raise InvalidArgument(
                    f"{field} {stream_id} names no {self.what[:-1]} sent yet (the latest is {newest})",
                    field=field,
                )
            # Ids handed out are ids of entries: one not in the stream was trimmed (or Redis lost it).
            found: list[tuple[str, dict[bytes, bytes]]] = [
                (_text(entry_id), fields)
                for entry_id, fields in await self.client.xrange(self.key, stream_id, stream_id)
            ]
            if not found:
                raise FailedPrecondition(
                    f"{self.what[:-1]} {stream_id} is no longer kept: the system keeps about its last "
                    f"{self.maxlen} {self.what} (the oldest now is {oldest}); open the stream again "
                    "without a resume id",
                    reason="ERROR_REASON_RESUME_POINT_LOST",
                    metadata={"oldest_kept": oldest},
                )
            cursor = "(" + stream_id
            while True:
                page = await self.client.xrange(self.key, cursor, "+", count=READ_COUNT)
                for entry_id, fields in page:
                    if GAP in fields:
                        raise FailedPrecondition(
                            f"{_text(fields[GAP])} {self.what} written after {stream_id} were lost while "
                            "Redis was away; open the stream again without a resume id",
                            reason="ERROR_REASON_RESUME_POINT_LOST",
                            metadata={"oldest_kept": _text(entry_id)},
                        )
                    found.append((_text(entry_id), fields))
                if len(found) > MAX_REPLAY:  # bounded memory per resuming caller
                    raise FailedPrecondition(
                        f"more than {MAX_REPLAY} entries of {self.what} were written after {stream_id}: "
                        "too far back to resume from; open the stream again without a resume id",
                        reason="ERROR_REASON_RESUME_POINT_LOST",
                        metadata={"max_replay": str(MAX_REPLAY)},
                    )
                if len(page) < READ_COUNT:
                    return found
                cursor = "(" + _text(page[-1][0])
        except redis.RedisError as exc:
            raise Unavailable(
                f"cannot resume the {self.what}: Redis does not answer ({exc}); try again",
                metadata={"component": "redis"},
            ) from None
