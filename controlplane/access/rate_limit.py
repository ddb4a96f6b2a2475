"""Rate limits: a call rate per principal, and a failed-authentication rate per peer.

Both are token buckets (:class:`TokenBuckets`): each key holds up to
``burst`` tokens, refilled at ``rate`` tokens a second; a call takes one. When
none is left the call is refused with RESOURCE_EXHAUSTED
(``ERROR_REASON_RATE_LIMITED``) and a ``retry_after`` of the time until the
next token. :class:`CallLimits` is what the authentication interceptor
applies (OWASP API2 and API4):

* every failed authentication takes a token from its peer address's
  bucket: a missing, malformed or unknown API key (or wrong secret), and
  likewise an agent stream whose join token is missing, malformed or unknown
  (:mod:`controlplane.api.admission`); once the bucket is empty, such failures
  from that address are answered RESOURCE_EXHAUSTED (with the delay) instead
  of UNAUTHENTICATED, so a client guessing keys or tokens is told to slow
  down, while valid keys and tokens from the same address (other clients
  behind it) keep working. A key or token that is on record but revoked or
  expired is neither counted nor converted: it stays UNAUTHENTICATED so its
  holder stops rather than retrying;
* after authentication, each call takes a token from its principal's bucket
  (a stream counts once, when it opens).

Memory is bounded: a bucket untouched for ``burst / rate`` seconds is full
again, so it is dropped (a new one is the same); beyond ``max_keys`` buckets
the least recently used one is dropped too. This module imports no gRPC.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from controlplane.errors import ResourceExhausted

RATE_LIMITED = "ERROR_REASON_RATE_LIMITED"
#: The ``limit`` of a refusal (its ErrorInfo metadata and the metric label).
PRINCIPAL, FAILED_AUTH = "principal", "failed_auth"
#: Most buckets one limiter keeps (a few hundred bytes each).
MAX_KEYS = 10_000


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens a second, at most ``burst`` held.

    Args:
        rate: Tokens added per second (greater than 0).
        burst: Most tokens a bucket holds, and what a new bucket starts with (at least 1).
        max_keys: Most buckets kept; beyond it the least recently used is dropped,
            which can only make the limiter more lenient toward that key.
        clock: Seconds from a monotonic clock (injectable for tests).
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not (rate > 0 and math.isfinite(rate)) or burst < 1 or max_keys < 1:
            raise ValueError("rate must be a positive number, burst and max_keys at least 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_keys = max_keys
        self._clock = clock
        self._idle = self.burst / self.rate  # untouched this long: full again
        # key -> [tokens, time of the last update]; ordered by that time, oldest first.
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Take one token of ``key``'s bucket.

        Returns:
            0.0 when a token was taken; otherwise the seconds until one is available
            (nothing is taken then).
        """
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            self._evict(now)
            bucket = self._buckets[key] = [self.burst, now]
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return 0.0
        return (1.0 - bucket[0]) / self.rate

    def _evict(self, now: float) -> None:
        """Make room for one bucket: drop the full ones, then the oldest beyond ``max_keys``."""
        buckets = self._buckets
        while buckets:
            key, (_, last) = next(iter(buckets.items()))
            if now - last < self._idle and len(buckets) < self.max_keys:
                return
            del buckets[key]


def _refusal(limit: str, what: str, buckets: TokenBuckets, delay: float) -> ResourceExhausted:
    delay = math.ceil(delay * 1000) / 1000  # whole milliseconds, never 0
    return ResourceExhausted(
        f"{what} (at most {buckets.rate:g}/s, bursts of {buckets.burst:g})",
        reason=RATE_LIMITED,
        retry_after=delay,
        metadata={"limit": limit},
    )


class CallLimits:
    """The per-principal call rate and the per-peer failed-authentication rate; either may be off."""

    def __init__(self, per_principal: TokenBuckets | None = None, failed_auth: TokenBuckets | None = None):
        self.per_principal = per_principal
        self.failed_auth = failed_auth

    @classmethod
    def from_settings(cls, settings: Any) -> CallLimits | None:
        """The limits ``security.rate_limit.*`` configure; None when both are off (a 0)."""

        def buckets(rate_key: str, burst_key: str) -> TokenBuckets | None:
            rate, burst = settings[rate_key], settings[burst_key]
            return TokenBuckets(rate, burst) if rate > 0 and burst > 0 else None

        limits = cls(
            buckets("security.rate_limit.rate", "security.rate_limit.burst"),
            buckets("security.rate_limit.failed_auth_rate", "security.rate_limit.failed_auth_burst"),
        )
        return None if limits.per_principal is None and limits.failed_auth is None else limits

    def failed_authentication(self, peer: str) -> ResourceExhausted | None:
        """Count a failed authentication of ``peer``; the refusal to answer instead, once over the rate."""
        if self.failed_auth is None:
            return None
        delay = self.failed_auth.take(peer)
        if delay <= 0:
            return None
        return _refusal(
            FAILED_AUTH, "too many failed authentications from this address", self.failed_auth, delay
        )

    def admit(self, principal: str) -> None:
        """Take one call of ``principal``'s rate.

        Raises:
            ResourceExhausted: with ``retry_after``; the call must not run.
        """
        if self.per_principal is not None:
            delay = self.per_principal.take(principal)
            if delay > 0:
                raise _refusal(PRINCIPAL, f"{principal} exceeded its call rate", self.per_principal, delay)
