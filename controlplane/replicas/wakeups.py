"""Wake-ups between replicas: publish on one, a callback runs on every subscriber, in milliseconds.

A wake-up is a hint ("work was submitted", "look at the queue"), never the work itself: a
subscriber that misses one (a connection drop, a restart) still finds the work by polling the
database, only later. Two implementations behind one interface (:class:`WakeupBus`):

* :class:`RedisWakeupBus`: Redis pub/sub on ``<redis.key_prefix>wake:<topic>``;
* :class:`PostgresWakeupBus`: PostgreSQL ``LISTEN``/``NOTIFY`` on ``<prefix>wake_<topic>``, for
  systems without Redis (a notification is delivered at commit, never replayed, under 8000 bytes).

The claims between replicas (:mod:`controlplane.scheduler.claims`) use it: the Redis bus with
``redis.url``, else LISTEN/NOTIFY. The latency of both is measured by
``benchmarks/replicas.py --wakeups``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: Topics are short names: letters, digits and underscores.
TOPIC = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
#: Longest payload (bytes, UTF-8): NOTIFY carries under 8000.
MAX_PAYLOAD = 4000
#: Seconds between reconnection attempts of a subscriber whose connection broke.
RECONNECT_DELAY = 0.5

Callback = Callable[[str], Any]


def _check(topic: str, payload: str = "", limit: int = MAX_PAYLOAD) -> None:
    if not TOPIC.match(topic):
        raise ValueError(
            f"topic {topic[:64]!r}: lower-case letters, digits and _, at most 40, a letter first"
        )
    if len(payload.encode()) > limit:
        raise ValueError(f"payload is {len(payload.encode())} bytes; the limit is {limit}")


class WakeupBus(Protocol):
    """Publish a wake-up on a topic; every subscriber's callback gets its payload."""

    async def start(self) -> None:
        """Connect the subscriber (callbacks run from here on)."""

    def subscribe(self, topic: str, callback: Callback) -> None:
        """Call ``callback(payload)`` (on the event loop) for each wake-up published on ``topic``."""

    async def publish(self, topic: str, payload: str = "") -> None:
        """Wake every subscriber of ``topic`` (this process's included)."""

    async def close(self) -> None:
        """Stop receiving and close the connections."""


class _Subscribers:
    """Topics and their callbacks, and the loop that re-subscribes after a broken connection."""

    def __init__(self) -> None:
        self.callbacks: dict[str, list[Callback]] = {}
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    def add(self, topic: str, callback: Callback) -> bool:
        _check(topic)
        new = topic not in self.callbacks
        self.callbacks.setdefault(topic, []).append(callback)
        return new

    def deliver(self, topic: str, payload: str) -> None:
        for callback in self.callbacks.get(topic, ()):
            try:
                result = callback(payload)
                if asyncio.iscoroutine(result):
                    asyncio.get_running_loop().create_task(result)
            except Exception:
                log.exception("wake-up callback of %s failed", topic)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None


class RedisWakeupBus:
    """Wake-ups over Redis pub/sub.

    Args:
        client: A ``redis.asyncio.Redis`` client (``RedisConnection.client``).
        prefix: The key prefix (``redis.key_prefix``); channels are ``<prefix>wake:<topic>``.
    """

    def __init__(self, client: Any, prefix: str = "maos:", max_payload: int = MAX_PAYLOAD):
        self.client = client
        self.prefix = prefix
        #: Longest payload :meth:`publish` sends (bytes); longer ones raise ValueError.
        self.max_payload = max_payload
        self._subs = _Subscribers()
        self._pubsub: Any = None
        self._subscribed = False

    @property
    def listening(self) -> bool:
        """Whether the subscription is up (False while Redis is away and it reconnects)."""
        return self._subscribed

    def channel(self, topic: str) -> str:
        return f"{self.prefix}wake:{topic}"

    async def start(self) -> None:
        if self._subs.task is None:
            self._subs.task = asyncio.get_running_loop().create_task(self._listen(), name="maos-wakeups")
        await self._subs.ready.wait()

    def subscribe(self, topic: str, callback: Callback) -> None:
        if self._subs.add(topic, callback) and self._pubsub is not None:
            asyncio.get_running_loop().create_task(self._pubsub.subscribe(self.channel(topic)))

    async def publish(self, topic: str, payload: str = "") -> None:
        _check(topic, payload, self.max_payload)
        await self.client.publish(self.channel(topic), payload)

    def publish_after(self, events: Any, topic: str, payload: str = "") -> asyncio.Future[None] | None:
        """Publish right behind the events ``events`` (the replicas' event stream, on this Redis) has still
        to write, in the same round trip: a subscriber woken finds them in the stream.

        Returns:
            A future done once sent, or None when no event waits to be written (call :meth:`publish`).
        """
        _check(topic, payload, self.max_payload)
        queued: asyncio.Future[None] | None = events.publish_after(self.channel(topic), payload)
        return queued

    async def _listen(self) -> None:
        strip = len(self.prefix) + len("wake:")
        while True:
            try:
                self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
                channels = [self.channel(t) for t in self._subs.callbacks] or [self.channel("_")]
                await self._pubsub.subscribe(*channels)
                self._subscribed = True
                self._subs.ready.set()
                async for message in self._pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    channel = message["channel"]
                    channel = channel.decode() if isinstance(channel, bytes) else channel
                    data = message["data"]
                    self._subs.deliver(
                        channel[strip:], data.decode() if isinstance(data, bytes) else str(data)
                    )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis went away: wake-ups pause, polling goes on
                log.warning("wake-ups: Redis subscription broke (%s); reconnecting", exc)
                self._subs.ready.set()
                await asyncio.sleep(RECONNECT_DELAY)
            finally:
                self._subscribed = False
                if self._pubsub is not None:
                    with contextlib.suppress(Exception):
                        await self._pubsub.aclose()
                    self._pubsub = None

    async def close(self) -> None:
        await self._subs.stop()


class PostgresWakeupBus:
    """Wake-ups over PostgreSQL LISTEN/NOTIFY (the fallback without Redis).

    Args:
        conninfo: A libpq URL (``postgresql://...``; a SQLAlchemy ``+psycopg`` URL is accepted).
        prefix: Channel prefix; channels are ``<prefix>wake_<topic>`` (``maos_wake_submit``).
    """

    def __init__(self, conninfo: str, prefix: str = "maos_", max_payload: int = MAX_PAYLOAD):
        self.conninfo = conninfo.replace("postgresql+psycopg://", "postgresql://", 1)
        self.prefix = prefix
        #: Longest payload :meth:`publish` sends (bytes; NOTIFY's own limit is under 8000).
        self.max_payload = max_payload
        self._subs = _Subscribers()
        self._listener: Any = None
        self._publisher: Any = None
        self._publish_lock = asyncio.Lock()

    @property
    def listening(self) -> bool:
        """Whether the LISTEN connection is up (False while it reconnects)."""
        return self._listener is not None

    def channel(self, topic: str) -> str:
        return f"{self.prefix}wake_{topic}"

    async def start(self) -> None:
        if self._subs.task is None:
            self._subs.task = asyncio.get_running_loop().create_task(self._listen(), name="maos-wakeups")
        await self._subs.ready.wait()

    def subscribe(self, topic: str, callback: Callback) -> None:
        if self._subs.add(topic, callback) and self._listener is not None:
            asyncio.get_running_loop().create_task(self._listen_to(self._listener, topic))

    async def _listen_to(self, conn: Any, topic: str) -> None:
        from psycopg import sql

        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel(topic))))

    async def publish(self, topic: str, payload: str = "") -> None:
        _check(topic, payload, self.max_payload)
        import psycopg

        async with self._publish_lock:
            if self._publisher is None or self._publisher.closed:
                self._publisher = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            try:
                await self._publisher.execute("SELECT pg_notify(%s, %s)", (self.channel(topic), payload))
            except psycopg.OperationalError:
                await self._publisher.close()
                self._publisher = None
                raise

    def publish_after(self, events: Any, topic: str, payload: str = "") -> asyncio.Future[None] | None:
        """NOTIFY right behind the events ``events`` (the replicas' relay of events over this database) has
        still to send, in the same transaction: they are delivered first.

        Returns:
            A future done once sent, or None when no event waits to be sent (call :meth:`publish`).
        """
        _check(topic, payload, self.max_payload)
        queued: asyncio.Future[None] | None = events.publish_after(self.channel(topic), payload)
        return queued

    async def _listen(self) -> None:
        import psycopg

        strip = len(self.prefix) + len("wake_")
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                self._listener = conn
                try:
                    for topic in list(self._subs.callbacks):
                        await self._listen_to(conn, topic)
                    self._subs.ready.set()
                    async for note in conn.notifies():
                        self._subs.deliver(note.channel[strip:], note.payload)
                finally:
                    self._listener = None
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: wake-ups pause, polling goes on
                log.warning("wake-ups: LISTEN connection broke (%s); reconnecting", exc)
                self._subs.ready.set()
                await asyncio.sleep(RECONNECT_DELAY)

    async def close(self) -> None:
        await self._subs.stop()
        if self._publisher is not None:
            await self._publisher.close()
            self._publisher = None
