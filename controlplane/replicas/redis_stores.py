"""State that replicas share through Redis, each behind the seam its in-process form already has.

* :class:`RedisTokenBuckets`: the rate-limit buckets of :mod:`controlplane.access.rate_limit`
  (``take(key)``), one Redis hash per bucket updated by a Lua script on Redis' clock, so a
  principal's rate holds across every replica. A replica takes tokens from Redis a *lease* at a
  time and spends them locally (issue 17: one synchronous round trip per call was a good part of
  a busy replica's CPU): a key's lease starts at one token and doubles while the calls spend it
  within :data:`LEASE_TTL`, up to :func:`lease_limit` (at most :data:`MAX_LEASE` tokens and a
  hundredth of the burst; a burst under 200 leases one token at a time, exactly as before);
  tokens left when a lease lapses are dropped, and the next lease is halved. Tokens are taken
  from the shared bucket before they are spent, so across N replicas a principal makes at most
  N x ``lease_limit`` calls more than one bucket allows (the tokens leased and not yet spent), and
  a replica may refuse while another holds up to ``lease_limit`` unspent tokens for at most
  :data:`LEASE_TTL` seconds. When Redis does not answer within ``SYNC_TIMEOUT``, the replica's
  own buckets decide meanwhile (each replica then allows the rate on its own, and Redis is tried
  again after :data:`~controlplane.replicas.redis_conn.AWAY` seconds), and a warning says so
  once a minute.
* :class:`RedisSharedState`: the shared state of agents (``state_get`` / ``state_put`` /
  ``state_delete`` of :class:`~controlplane.storage.base.StorageBackend`), with the same
  versions and compare-and-set, atomic in Lua.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controlplane.errors import Aborted
from controlplane.replicas.redis_conn import AWAY
from controlplane.storage.base import StateValue

log = logging.getLogger(__name__)

#: Seconds between two warnings that Redis is away (rate limits fall back to local buckets).
WARN_EVERY = 60.0
#: Longest bucket key kept (a principal or a peer address).
MAX_KEY = 256
#: Most tokens one lease takes from Redis.
MAX_LEASE = 64
#: Seconds a leased token stays spendable; what is left then is dropped.
LEASE_TTL = 1.0
#: Keys whose lease a replica keeps at most (those whose lease was taken from Redis longest ago go first).
MAX_LEASES = 10_000

# Takes up to ARGV[3] tokens: {tokens taken, seconds until one is available when none was}.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then
  tokens = burst
  ts = now
end
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local got = 0
local delay = 0
if tokens >= 1 then
  got = math.min(want, math.floor(tokens))
  tokens = tokens - got
else
  delay = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {got, tostring(delay)}
"""


def lease_limit(burst: float) -> int:
    """Most tokens one lease takes for a bucket of ``burst``: a hundredth of it, 1 to MAX_LEASE."""
    return max(1, min(MAX_LEASE, int(burst // 100)))


@dataclass
class _Lease:
    """Tokens of one key taken from Redis and not spent yet."""

    tokens: int
    expires: float
    #: How many the lease asked for (the next one doubles or halves it).
    size: int


class RedisTokenBuckets:
    """:class:`~controlplane.access.rate_limit.TokenBuckets` shared by every replica through Redis.

    Args:
        client: A synchronous ``redis.Redis`` (``RedisConnection.sync``: short timeouts).
        prefix: The key prefix; buckets are ``<prefix>rate:<name>:<key>``.
        name: Which limit (``principal``, ``failed_auth``).
        local: This replica's own buckets (rate and burst are theirs), used while Redis is away.
        clock: Seconds from a monotonic clock, for the leases' lifetime (injectable for tests).
    """

    def __init__(
        self, client: Any, prefix: str, name: str, local: Any, clock: Callable[[], float] = time.monotonic
    ):
        self.client = client
        self.local = local
        self.rate = local.rate
        self.burst = local.burst
        #: Most tokens one lease takes (see the module docstring for the bound it sets).
        self.max_lease = lease_limit(self.burst)
        self._key = f"{prefix}rate:{name}:"
        self._script = client.register_script(_TAKE)
        self._clock = clock
        self._leases: OrderedDict[str, _Lease] = OrderedDict()
        self._warned = 0.0
        self._away_until = 0.0

    def __len__(self) -> int:
        return len(self.local)

    def take(self, key: str) -> float:
        """Take one token of ``key``'s bucket; 0.0, or the seconds until one is available."""
        import redis

        now = self._clock()
        lease = self._leases.get(key)
        if lease is not None and lease.tokens > 0 and now < lease.expires:
            lease.tokens -= 1
            return 0.0
        if now < self._away_until:  # Redis failed a moment ago: not on every call
            return float(self.local.take(key))
        if lease is None:
            size = 1
        elif lease.tokens > 0:  # lapsed unspent: this replica needs fewer
            size = max(1, lease.size // 2)
        else:
            size = min(self.max_lease, lease.size * 2)
        try:
            got, delay = self._script(keys=[self._key + key[:MAX_KEY]], args=[self.rate, self.burst, size])
        except redis.RedisError as exc:
            self._away_until = now + AWAY
            if now - self._warned >= WARN_EVERY:
                self._warned = now
                log.warning("rate limits: Redis does not answer (%s); this replica's own buckets decide", exc)
            return float(self.local.take(key))
        got = int(got)
        # The next lease doubles what this one got (a partial grant: the bucket ran low);
        # refused, it asks for as many again (twice half).
        self._leases[key] = _Lease(max(0, got - 1), now + LEASE_TTL, got if got else max(1, size // 2))
        self._leases.move_to_end(key)
        if len(self._leases) > MAX_LEASES:
            self._leases.popitem(last=False)
        return 0.0 if got > 0 else float(delay)


def share_limits(limits: Any, redis: Any) -> None:
    """Put the buckets of a :class:`~controlplane.access.rate_limit.CallLimits` in Redis (``redis``
    a :class:`~controlplane.replicas.redis_conn.RedisConnection`)."""
    if limits is None or redis is None:
        return
    if limits.per_principal is not None:
        limits.per_principal = RedisTokenBuckets(redis.sync, redis.prefix, "principal", limits.per_principal)
    if limits.failed_auth is not None:
        limits.failed_auth = RedisTokenBuckets(redis.sync, redis.prefix, "failed_auth", limits.failed_auth)


_PUT = """
local current = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= current then
  return {'conflict', current}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], current + 1)
return {'ok', current + 1}
"""

_DELETE = """
local current = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= current then
  return {'conflict', current}
end
if current == 0 then
  return {'ok', 0}
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return {'ok', 1}
"""


class RedisSharedState:
    """A task's shared state in Redis: values and versions in two hashes per task.

    The same contract as the SQL backend's: the first write is version 1, each write adds one,
    a given ``expected_version`` that is not the current one (0 for a missing key) is refused
    with ABORTED (``ERROR_REASON_VERSION_CONFLICT``, ``actual_version`` in the metadata).

    Args:
        client: A synchronous ``redis.Redis``.
        prefix: The key prefix; a task's hashes are ``<prefix>state:<task>:values`` / ``:versions``.
    """

    def __init__(self, client: Any, prefix: str):
        self.client = client
        self.prefix = prefix
        self._put = client.register_script(_PUT)
        self._delete = client.register_script(_DELETE)

    def _keys(self, task_id: str) -> list[str]:
        return [f"{self.prefix}state:{task_id}:values", f"{self.prefix}state:{task_id}:versions"]

    def state_get(self, task_id: str, key: str) -> StateValue | None:
        """The value and version of a key, or None."""
        values, versions = self._keys(task_id)
        with self.client.pipeline(transaction=True) as pipe:
            value, version = pipe.hget(values, key).hget(versions, key).execute()
        return None if value is None or version is None else StateValue(bytes(value), int(version))

    def state_put(self, task_id: str, key: str, value: bytes, expected_version: int | None) -> int:
        """Write a key (compare-and-set when ``expected_version`` is given); the new version."""
        status, version = self._put(
            keys=self._keys(task_id), args=[key, value, "" if expected_version is None else expected_version]
        )
        if status == b"conflict":
            raise _conflict(key, expected_version, int(version))
        return int(version)

    def state_delete(self, task_id: str, key: str, expected_version: int | None) -> bool:
        """Delete a key (compare-and-set like :meth:`state_put`); whether it existed."""
        status, existed = self._delete(
            keys=self._keys(task_id), args=[key, "" if expected_version is None else expected_version]
        )
        if status == b"conflict":
            raise _conflict(key, expected_version, int(existed))
        return bool(int(existed))

    def drop_task(self, task_id: str) -> None:
        """Delete a task's whole state."""
        self.client.delete(*self._keys(task_id))


def _conflict(key: str, expected: int | None, actual: int) -> Aborted:
    return Aborted(
        f"shared state {key!r} is at version {actual}, not {expected}; read it again and retry",
        reason="ERROR_REASON_VERSION_CONFLICT",
        metadata={"key": key, "expected_version": str(expected), "actual_version": str(actual)},
    )
