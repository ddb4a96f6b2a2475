"""Events across replicas without Redis: PostgreSQL ``LISTEN``/``NOTIFY`` (the fallback).

On PostgreSQL with no ``redis.url``, each replica delivers its own committed events to its
watchers as a single control plane does, and also NOTIFYs them on ``maos_events`` (one
statement per commit group, sent by a writer task off the engine's path); every other replica
LISTENs and delivers them to its watchers, numbered in its own sequence. So WatchTask,
WatchEvents and ``maos monitor --follow`` on any replica see every replica's events, in commit
order per task, but event ids stay per replica: resume on the replica that sent the id (on
another it is ``ERROR_REASON_RESUME_POINT_LOST``, as it always was). Notifications are not kept:
when the LISTEN connection breaks, watchers end with UNAVAILABLE and resuming from an id sent
before the break is refused (events may have been missed). A notification carries under 8000
bytes: an event larger than that goes with its message and data cut (said in its message).
Log records do not cross replicas this way (they need Redis).

Events wait in an outbox while the database cannot be reached. Past :data:`MAX_OUTBOX` waiting
notifications the oldest are dropped, and the next notification sent is a gap marker: every
other replica then ends its watchers with FAILED_PRECONDITION ``ERROR_REASON_RESUME_POINT_LOST``
(watch again without a resume id), as a gap in the Redis stream does, so no watcher misses events
without being told. A replica stopping sends what its final commit produced before it closes
(for at most :data:`FLUSH_TIMEOUT` seconds): the engine closes the relay after that commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

from controlplane.domain.events import Event
from controlplane.errors import FailedPrecondition, MaosError, Unavailable
from controlplane.hookspecs import hookimpl
from controlplane.replicas.event_stream import decode_event, encode_event

log = logging.getLogger(__name__)

CHANNEL = "maos_events"
#: Bytes of one notification at most (PostgreSQL's limit is 8000).
MAX_PAYLOAD = 7_500
#: Events waiting to be sent at most (while the database is away); past it the oldest are dropped.
MAX_OUTBOX = 100_000
RETRY_DELAY = 0.5
#: Seconds a closing relay spends sending what waits in its outbox.
FLUSH_TIMEOUT = 3.0
#: The line of a notification saying that notifications were dropped before it (``!gap <how many>``).
GAP_LINE = "!gap"


def _fitting(event: Event) -> bytes:
    body = encode_event(event)
    if len(body) <= MAX_PAYLOAD - 200:
        return body
    cut = Event(**{**event.__dict__, "data": {}, "message": "(message and data cut: too large to relay)"})
    return encode_event(cut)


def pack(origin: str, events: list[Event]) -> list[str]:
    """Notification payloads (``origin`` then the events' JSON, one per line), each under the limit."""
    payloads: list[str] = []
    lines: list[str] = []
    size = len(origin)
    for event in events:
        line = _fitting(event).decode()
        if lines and size + len(line.encode()) + 1 > MAX_PAYLOAD:
            payloads.append("\n".join([origin, *lines]))
            lines, size = [], len(origin)
        lines.append(line)
        size += len(line.encode()) + 1
    if lines:
        payloads.append("\n".join([origin, *lines]))
    return payloads


class NotifyRelay:
    """This replica's side of the relay (attached to the engine's watchers).

    Args:
        conninfo: The database URL (``database.primary_url``; a SQLAlchemy ``+psycopg`` URL is accepted).
    """

    def __init__(self, conninfo: str, max_outbox: int = MAX_OUTBOX):
        self.conninfo = conninfo.replace("postgresql+psycopg://", "postgresql://", 1)
        self.origin = secrets.token_hex(8)
        self.receive: Callable[[Event], None] = lambda event: None
        self.sever: Callable[[MaosError], None] = lambda error: None
        self.max_outbox = max_outbox
        self._outbox: list[str] = []
        #: Notifications dropped from the outbox and not yet announced by a gap marker.
        self._dropped = 0
        self._sent = asyncio.Event()  # set whenever the outbox empties
        #: Notifications queued since the start, and those sent (or dropped) since: see :meth:`flushed`.
        self._appended = self._done = 0
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        #: NOTIFYs to send right behind notifications (see :meth:`publish_after`): the notifications
        #: queued before each, its channel, payload and the future done once it is sent.
        self._publishes: list[tuple[int, str, str, asyncio.Future[None]]] = []
        self._wake: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = asyncio.Event()

    def send(self, events: list[Event]) -> None:
        """Queue committed events for the other replicas (no I/O here)."""
        payloads = pack(self.origin, events)
        self._outbox.extend(payloads)
        self._appended += len(payloads)
        excess = len(self._outbox) - self.max_outbox
        if excess > 0:
            del self._outbox[:excess]
            self._done += excess  # (the gap marker tells the other replicas)
            if not self._dropped:
                log.error("event relay: outbox full; other replicas' watchers will be told events were lost")
            self._dropped += excess
        self._sent.clear()
        if self._wake is not None:
            self._wake.set()

    def publish_after(self, channel: str, payload: str) -> asyncio.Future[None] | None:
        """NOTIFY ``payload`` on ``channel`` right behind the events queued so far, in the statement of the
        last of them (one transaction: the notifications are delivered in that order, at its commit).

        Returns:
            A future done once sent (cancelling it drops the NOTIFY if not sent yet), or None when no
            event queued so far waits to be sent (notify on its own).
        """
        if self._done >= self._appended or self._wake is None:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._publishes.append((self._appended, channel, payload, future))
        self._wake.set()
        return future

    async def flushed(self) -> None:
        """Return once every event queued before this call was sent (or dropped, which the gap marker
        tells): waits as long as the database does not take them."""
        if self._done >= self._appended:
            return
        future = asyncio.get_running_loop().create_future()
        self._flush_waiters.append((self._appended, future))
        await future

    def _wake_flushed(self) -> None:
        waiting = []
        for target, future in self._flush_waiters:
            if target > self._done:
                waiting.append((target, future))
            elif not future.done():
                future.set_result(None)
        self._flush_waiters = waiting

    async def start(self) -> None:
        """Connect the listener (events of other replicas arrive from here on) and the writer."""
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._tasks = [
            loop.create_task(self._listen(), name="maos-event-relay-listener"),
            loop.create_task(self._write(), name="maos-event-relay-writer"),
        ]
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 10)

    async def close(self) -> None:
        """Send what waits in the outbox (for at most :data:`FLUSH_TIMEOUT` seconds), then stop."""
        if self._tasks and (self._outbox or self._dropped):
            try:
                await asyncio.wait_for(self._sent.wait(), FLUSH_TIMEOUT)
            except TimeoutError:
                log.warning(
                    "event relay: %d notifications not sent at close (the database did not take them)",
                    len(self._outbox),
                )
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _write(self) -> None:
        import psycopg

        assert self._wake is not None
        conn: Any = None
        while True:
            self._publishes = [queued for queued in self._publishes if not queued[3].done()]
            if not self._outbox and not self._dropped and not self._publishes:
                self._sent.set()
                await self._wake.wait()
                self._wake.clear()
                continue
            dropped = self._dropped
            gap = [f"{self.origin}\n{GAP_LINE} {dropped}"] if dropped else []  # before what came after
            batch = self._outbox[: 50 - len(gap)]
            through = self._done + len(batch)  # (the outbox holds the notifications after those done)
            publishes = [queued for queued in self._publishes if queued[0] <= through]
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                notes = [(CHANNEL, payload) for payload in gap + batch]
                notes += [(channel, payload) for _, channel, payload, _ in publishes]  # behind the events
                query = "SELECT " + ", ".join(["pg_notify(%s, %s)"] * len(notes))
                await conn.execute(query, [value for note in notes for value in note])
                for queued in publishes:
                    self._publishes.remove(queued)
                    if not queued[3].done():
                        queued[3].set_result(None)
                self._dropped -= dropped
                # Notifications dropped meanwhile left from the front, where this batch was: those
                # were sent, not lost.
                sent_anyway = min(self._dropped, len(batch))
                self._dropped -= sent_anyway
                del self._outbox[: len(batch) - sent_anyway]
                self._done += len(batch) - sent_anyway
                self._wake_flushed()
            except asyncio.CancelledError:
                if conn is not None:
                    await conn.close()
                raise
            except Exception as exc:
                log.warning("event relay: cannot NOTIFY (%s); retrying", exc)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
                conn = None
                await asyncio.sleep(RETRY_DELAY)

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                try:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    async for note in conn.notifies():
                        origin, _, body = note.payload.partition("\n")
                        if origin == self.origin:
                            continue
                        for line in body.split("\n"):
                            if line.startswith(GAP_LINE):
                                self.sever(_lost(line))
                                continue
                            self.receive(decode_event(line.encode(), ""))
                finally:
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._listening.is_set():
                    log.warning("event relay: LISTEN connection broke (%s); watchers are told", exc)
                    self._listening.clear()
                    self.sever(
                        Unavailable(
                            f"events stopped arriving from the other replicas ({exc}); watch again "
                            "(events sent before this cannot be resumed from)",
                        )
                    )
                await asyncio.sleep(RETRY_DELAY)


def _lost(line: str) -> FailedPrecondition:
    """The error ending watchers when another replica's relay dropped notifications (its gap line)."""
    count = line[len(GAP_LINE) :].strip() or "some"
    return FailedPrecondition(
        f"{count} notifications of events from another replica were lost (its relay's outbox overflowed "
        "while the database could not be reached); watch again without a resume id",
        reason="ERROR_REASON_RESUME_POINT_LOST",
    )


class _Lifecycle:
    """Starts the relay at startup; the engine closes it after its final commit (see the module docstring)."""

    def __init__(self, relay: NotifyRelay):
        self.relay = relay

    @hookimpl
    async def startup(self, app: Any) -> None:
        await self.relay.start()


def install_notify_relay(pm: Any, engine: Any, database_url: str) -> None:
    """Relay events between replicas over PostgreSQL (used when there is no Redis)."""
    relay = NotifyRelay(database_url)
    engine.watchers.attach_relay(relay)
    pm.register(_Lifecycle(relay), name="maos-event-relay")
