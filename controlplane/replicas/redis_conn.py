"""The Redis connection of a control plane (``redis.url``), with what needs it.

With ``redis.url`` set the control plane checks Redis before anything starts and refuses to
start when it cannot reach it (a wrong URL or password is a mistake to say at once, not a
degradation to discover later); the message names the setting and how to run without Redis.
Once running, an outage is reported by GetHealth (component ``redis`` UNHEALTHY) and what uses
Redis degrades as each part says; nothing is lost, since the database remains the source of truth.

What Redis carries today: the API rate-limit buckets (while Redis is away, this replica's own
buckets decide), the model pacer's state (while away, this replica paces on its own copy) and the
wake-ups of claims between replicas (:mod:`controlplane.replicas.wakeups`; while away, claim
passes run on the poll interval). Events and log records cross replicas through two streams
(:mod:`controlplane.replicas.event_stream`). Agents' shared state
(:mod:`controlplane.replicas.redis_stores`) has a Redis implementation that is not wired in yet.

Clients: :attr:`RedisConnection.client` (``redis.asyncio``) for the event loop (the health
check), and :attr:`RedisConnection.sync` (``redis.Redis``, short timeouts) for the synchronous
seams (the rate-limit buckets, the model pacer). Every key starts with ``redis.key_prefix``.
"""

from __future__ import annotations

import logging
from typing import Any

from controlplane.errors import FailedPrecondition, Unavailable
from controlplane.redaction import redact_url

log = logging.getLogger(__name__)

#: Seconds to connect, and to wait for an answer, before Redis counts as unreachable.
CONNECT_TIMEOUT = 2.0
#: Seconds a synchronous call (on the event loop or the storage thread) may wait for Redis.
SYNC_TIMEOUT = 0.25
#: After a synchronous call failed, seconds its user works without Redis before trying it again
#: (so an unreachable Redis costs one timeout every few seconds, not one per call).
AWAY = 5.0


def _redis_module() -> Any:
    try:
        import redis
    except ImportError:
        raise FailedPrecondition(
            "redis.url is set but the redis package is not installed: pip install 'maos[redis]' "
            "(or unset redis.url)",
            reason="ERROR_REASON_NOT_SUPPORTED",
            metadata={"setting": "redis.url"},
        ) from None
    return redis


class RedisConnection:
    """The clients of one Redis URL (no connection is made until used; :meth:`check` makes one).

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``).
        prefix: The prefix of every key and channel (``redis.key_prefix``).
    """

    def __init__(self, url: str, prefix: str = "maos:"):
        redis = _redis_module()
        self.url = url
        self.prefix = prefix
        self.shown = redact_url(url)
        try:
            self.sync = redis.Redis.from_url(
                url, socket_connect_timeout=SYNC_TIMEOUT, socket_timeout=SYNC_TIMEOUT
            )
        except ValueError as exc:
            raise FailedPrecondition(
                f"redis.url {self.shown} is not a Redis URL ({exc}): use redis://host:6379/0, "
                "rediss:// for TLS, or unset it to run without Redis",
                reason="ERROR_REASON_INVALID_FIELD",
                metadata={"setting": "redis.url"},
            ) from None
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The ``redis.asyncio`` client (made on first use, on the running loop)."""
        if self._client is None:
            import redis.asyncio as aioredis

            self._client = aioredis.Redis.from_url(
                self.url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
            )
        return self._client

    def blocking_client(self, read_timeout: float) -> Any:
        """A ``redis.asyncio`` client of its own for blocking reads (``XREAD BLOCK``), on the running loop.

        Args:
            read_timeout: Seconds to wait for an answer (longer than the longest block).
        """
        import redis.asyncio as aioredis

        return aioredis.Redis.from_url(
            self.url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=read_timeout
        )

    def key(self, *parts: str) -> str:
        """A key (or channel) under the prefix: ``key("wake", "submit")`` -> ``maos:wake:submit``."""
        return self.prefix + ":".join(parts)

    def check(self) -> None:
        """PING now (synchronously, before the control plane starts).

        Raises:
            Unavailable: Redis cannot be reached or refuses us, with what to do.
        """
        redis = _redis_module()
        try:
            probe = redis.Redis.from_url(
                self.url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
            )
            try:
                probe.ping()
            finally:
                probe.close()
        except redis.RedisError as exc:
            raise Unavailable(
                f"cannot reach Redis at redis.url {self.shown}: {exc}. Start Redis or fix redis.url "
                "(and its password); to run without Redis (one control plane), leave redis.url empty",
                metadata={"setting": "redis.url"},
            ) from None

    async def ping(self) -> None:
        """PING on the event loop (GetHealth's ``redis`` component); raises when unreachable."""
        await self.client.ping()

    async def close(self) -> None:
        """Close both clients."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self.sync.close()
