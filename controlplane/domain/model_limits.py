"""Pacing of model calls: per-model rates and a circuit breaker, shared by every agent.

The model API's limits belong to the whole pool, not to one agent: when each agent retries
429/529 answers on its own, a storm multiplies itself. So every model call first takes a
*permit* from the control plane, and reports its *outcome* afterwards. This module holds the
decisions, free of I/O: the caller passes the clock.

Per model (:class:`ModelPacing`):

* **Rates.** Token buckets for requests, input tokens and output tokens per minute, each
  refilled continuously up to one minute's allowance (as the Messages API measures them). The
  limit of a bucket is the lower of the configured one (``models.rate_limits``) and the one the
  API announces in its ``anthropic-ratelimit-*-limit`` headers; a ``-remaining`` header lowers the
  bucket's level (never raises it). A permit reserves the request, the estimated input tokens and
  ``max_tokens`` of output; the outcome gives back what the call did not use.
* **Circuit breaker** (CLOSED → OPEN → HALF_OPEN → CLOSED). A 429 or 529 answer opens it at once
  for the API's ``retry-after`` (or the current cool-down when the answer names none); other
  failures (5xx, no answer) open it after ``failure_threshold`` in a row. While OPEN no permit is
  granted. Then HALF_OPEN lets one call through; its success closes the breaker, with a ramp:
  the number of calls in flight is capped at 2, then doubles with each success until the cap
  reaches :data:`RAMP_END` (slow start), so work comes back gradually. A failure while
  HALF_OPEN or ramping opens the breaker again, with the cool-down doubled (up to
  ``max_cooldown``) when the API named no retry-after.

Decisions are made by :meth:`ModelPacing.decide` (may a call start now, or how long to wait) and
recorded by :meth:`ModelPacing.grant` and :meth:`ModelPacing.report`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

#: The in-flight cap after a recovery starts at 2 and doubles per success; at this cap the ramp ends.
RAMP_END = 64
#: A granted permit whose outcome never comes (the agent died mid-call) is freed after this long.
PERMIT_TTL = 900.0
#: Response headers an outcome may carry (others are ignored): the rate-limit family and retry-after.
HEADER_PREFIX = "anthropic-ratelimit-"
_BUCKETS = ("requests", "input_tokens", "output_tokens")
#: The ``error_type`` of a retryable failure whose model call the pacer held past the agent's
#: ``max_wait``: no call was made, so the subtask is queued again after its retry-after without
#: spending a retry.
DEFERRED_ERROR_TYPE = "ModelPaced"


class BreakerState(enum.IntEnum):
    """The breaker of one model (values match ``maos.v1.BreakerState``)."""

    CLOSED = 1
    OPEN = 2
    HALF_OPEN = 3


@dataclass(frozen=True)
class RateLimits:
    """Per-minute limits of one model; 0 means none known."""

    requests_per_minute: int = 0
    input_tokens_per_minute: int = 0
    output_tokens_per_minute: int = 0

    def of(self, bucket: str) -> int:
        """The limit of ``bucket`` (``requests``, ``input_tokens`` or ``output_tokens``)."""
        return {
            "requests": self.requests_per_minute,
            "input_tokens": self.input_tokens_per_minute,
            "output_tokens": self.output_tokens_per_minute,
        }[bucket]


@dataclass(frozen=True)
class BreakerPolicy:
    """When the breaker opens and for how long.

    Attributes:
        failure_threshold: Failures in a row (5xx, no answer) that open it; 429 and 529 open it at once.
        cooldown: Seconds it stays open when the API names no retry-after (first time).
        max_cooldown: The longest cool-down (it doubles each time the breaker opens again without a success).
    """

    failure_threshold: int = 3
    cooldown: float = 5.0
    max_cooldown: float = 60.0


@dataclass(frozen=True)
class Decision:
    """Whether a call may start now; if not, how long to wait (None: until a call in flight ends)."""

    granted: bool
    wait: float | None = 0.0
    reason: str = ""


@dataclass(frozen=True)
class CallOutcome:
    """How one model call ended, as its agent reports it.

    Attributes:
        status: The HTTP status; 0 when no HTTP answer came (connection failed, timed out).
        retry_after: Seconds the API asked to wait (``retry-after-ms`` / ``retry-after``), if it did.
        headers: The answer's ``anthropic-ratelimit-*`` headers (names in lower case).
        input_tokens: Input tokens the call used (uncached input plus cache writes).
        output_tokens: Output tokens it produced.
        abandoned: No call was made, or it was cancelled before an answer: only frees the permit.
    """

    status: int = 200
    retry_after: float | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    input_tokens: int | None = None
    output_tokens: int | None = None
    abandoned: bool = False

    @property
    def overloaded(self) -> bool:
        """A 429 (rate limited) or 529 (overloaded): the API asks everyone to hold off."""
        return self.status in (429, 529)

    @property
    def failed(self) -> bool:
        """A server-side failure that counts towards ``failure_threshold``."""
        return self.status == 0 or self.status == 408 or (self.status >= 500 and self.status != 529)


class _Bucket:
    """A token bucket of one minute's allowance, refilled continuously."""

    __slots__ = ("level", "updated")

    def __init__(self, now: float):
        self.level: float | None = None  # None: full (set on first use, when the limit is known)
        self.updated = now

    def refill(self, limit: int, now: float) -> float:
        if self.level is None:
            self.level = float(limit)
        else:
            self.level = min(float(limit), self.level + (now - self.updated) * limit / 60.0)
        self.updated = now
        return self.level

    def wait_for(self, amount: float, limit: int, now: float) -> float:
        """Seconds until ``amount`` (at most one minute's allowance) is available."""
        level = self.refill(limit, now)
        need = min(amount, float(limit))
        return 0.0 if level >= need else (need - level) * 60.0 / limit


@dataclass
class _Permit:
    input_tokens: int
    output_tokens: int
    expires: float
    #: The breaker's opening count when it was granted: calls from before the last opening do not
    #: count against the recovery's in-flight cap (a long stream must not stall the test call).
    epoch: int = 0


@dataclass(frozen=True)
class PacingStatus:
    """What ``maos status`` shows of one model."""

    model: str
    state: BreakerState
    #: Seconds until an OPEN breaker half-opens (0 otherwise).
    reopens_in: float
    in_flight: int
    #: The in-flight cap while recovering (0: none).
    in_flight_cap: int
    limits: RateLimits
    #: Per bucket, the share of the minute's allowance in use now (0-1), for buckets with a limit.
    usage: dict[str, float]
    granted: int
    held: int
    overloaded_answers: int
    last_problem: str


class ModelPacing:
    """The pacing state of one model (see the module docstring).

    Args:
        model: The model's name.
        configured: Limits from settings (0: none).
        policy: The breaker's policy.
        now: The clock's current reading.
    """

    def __init__(self, model: str, configured: RateLimits, policy: BreakerPolicy, now: float):
        self.model = model
        self.configured = configured
        self.learned = RateLimits()
        self.policy = policy
        self.state = BreakerState.CLOSED
        self.open_until = 0.0
        self.cooldown = policy.cooldown
        self.failures = 0
        #: In-flight cap while recovering (None: no cap).
        self.window: int | None = None
        self.buckets = {name: _Bucket(now) for name in _BUCKETS}
        self.permits: dict[str, _Permit] = {}
        #: How many times the breaker opened (see ``_Permit.epoch``).
        self.openings = 0
        self.granted = 0
        self.held = 0
        self.overloaded_answers = 0
        self.last_problem = ""

    # --- limits -------------------------------------------------------------------

    def limit(self, bucket: str) -> int:
        """The effective per-minute limit of ``bucket``: the lower known one (0: none)."""
        known = [v for v in (self.configured.of(bucket), self.learned.of(bucket)) if v > 0]
        return min(known) if known else 0

    def limits(self) -> RateLimits:
        """The effective limits."""
        return RateLimits(*(self.limit(b) for b in _BUCKETS))

    # --- decisions ------------------------------------------------------------------

    def decide(self, now: float, input_tokens: int, output_tokens: int) -> Decision:
        """May a call with these estimates start now?"""
        self.expire(now)
        if self.state == BreakerState.OPEN:
            if now < self.open_until:
                return Decision(False, self.open_until - now, f"the breaker is open: {self.last_problem}")
            self.state = BreakerState.HALF_OPEN
            self.window = 1
        if self.window is not None and self._recovering_calls() >= self.window:
            what = (
                "testing the API with one call"
                if self.state == BreakerState.HALF_OPEN
                else f"recovering: at most {self.window} calls at once"
            )
            return Decision(False, None, what)
        wait = 0.0
        for bucket, amount in zip(_BUCKETS, (1, input_tokens, output_tokens), strict=True):
            limit = self.limit(bucket)
            if limit and amount > 0:
                wait = max(wait, self.buckets[bucket].wait_for(amount, limit, now))
        if wait > 0:
            return Decision(False, wait, "pacing to the model's rate limits")
        return Decision(True)

    def grant(self, now: float, permit_id: str, input_tokens: int, output_tokens: int) -> None:
        """Record a permit given after :meth:`decide` said yes: reserve its request and tokens."""
        for bucket, amount in zip(_BUCKETS, (1, input_tokens, output_tokens), strict=True):
            limit = self.limit(bucket)
            if limit and amount > 0:
                b = self.buckets[bucket]
                b.refill(limit, now)
                b.level = (b.level or 0.0) - min(amount, limit)
        self.permits[permit_id] = _Permit(
            max(0, input_tokens), max(0, output_tokens), now + PERMIT_TTL, self.openings
        )
        self.granted += 1

    def report(self, now: float, permit_id: str, outcome: CallOutcome) -> None:
        """Apply the outcome of a call made under ``permit_id`` (unknown ids still teach headers)."""
        permit = self.permits.pop(permit_id, None)
        self.observe(now, outcome.headers)
        if outcome.abandoned:
            return
        if permit is not None:  # give back what the call did not use
            for bucket, reserved, used in (
                ("input_tokens", permit.input_tokens, outcome.input_tokens),
                ("output_tokens", permit.output_tokens, outcome.output_tokens),
            ):
                limit = self.limit(bucket)
                if limit and used is not None and used < reserved:
                    b = self.buckets[bucket]
                    b.refill(limit, now)
                    b.level = min(float(limit), (b.level or 0.0) + min(reserved, limit) - used)
        if outcome.overloaded:
            self.overloaded_answers += 1
            what = "rate limited (429)" if outcome.status == 429 else "overloaded (529)"
            self._open(now, outcome.retry_after, f"the API answered {what}")
        elif outcome.failed:
            self.failures += 1
            if (
                self.state != BreakerState.CLOSED
                or self.window is not None
                or self.failures >= self.policy.failure_threshold
            ):
                what = f"HTTP {outcome.status}" if outcome.status else "no answer"
                self._open(now, outcome.retry_after, f"{self.failures} failed calls in a row (last: {what})")
        elif 200 <= outcome.status < 300:
            self.failures = 0
            if self.state == BreakerState.HALF_OPEN:
                self.state = BreakerState.CLOSED
                self.window = 2
            elif self.window is not None:
                self.window *= 2
                if self.window >= RAMP_END:
                    self.window = None
                    self.cooldown = self.policy.cooldown
                    self.last_problem = ""

    def _recovering_calls(self) -> int:
        """Calls in flight that were granted since the breaker last opened."""
        return sum(1 for p in self.permits.values() if p.epoch == self.openings)

    def _open(self, now: float, retry_after: float | None, problem: str) -> None:
        if retry_after is not None and retry_after > 0:
            hold = retry_after
        else:
            hold = self.cooldown
            self.cooldown = min(self.policy.max_cooldown, self.cooldown * 2)
        # calls already in flight may bring more 429s: the latest hold never shortens an earlier one
        self.open_until = max(self.open_until, now + hold) if self.state == BreakerState.OPEN else now + hold
        if self.state != BreakerState.OPEN:
            self.openings += 1
        self.state = BreakerState.OPEN
        self.window = 1
        self.failures = 0
        self.last_problem = problem

    def observe(self, now: float, headers: Mapping[str, str]) -> None:
        """Learn limits from ``anthropic-ratelimit-<bucket>-limit`` / ``-remaining`` headers."""
        if not headers:
            return
        learned = {}
        for bucket in _BUCKETS:
            name = f"{HEADER_PREFIX}{bucket.replace('_', '-')}"
            limit = _int(headers.get(f"{name}-limit"))
            if limit:
                learned[bucket] = limit
            remaining = _int(headers.get(f"{name}-remaining"))
            effective = (
                min(v for v in (limit or 0, self.limit(bucket)) if v > 0)
                if (limit or self.limit(bucket))
                else 0
            )
            if remaining is not None and effective:
                b = self.buckets[bucket]
                b.refill(effective, now)
                b.level = min(b.level or 0.0, float(remaining))
        if learned:
            self.learned = RateLimits(
                learned.get("requests", self.learned.requests_per_minute),
                learned.get("input_tokens", self.learned.input_tokens_per_minute),
                learned.get("output_tokens", self.learned.output_tokens_per_minute),
            )

    def release(self, permit_id: str) -> None:
        """Free a permit whose call will never report (its agent left)."""
        self.permits.pop(permit_id, None)

    def expire(self, now: float) -> None:
        """Free permits past :data:`PERMIT_TTL`."""
        for permit_id in [p for p, permit in self.permits.items() if permit.expires <= now]:
            del self.permits[permit_id]

    def status(self, now: float) -> PacingStatus:
        """A snapshot for ``maos status`` and metrics."""
        usage = {}
        for bucket in _BUCKETS:
            limit = self.limit(bucket)
            if limit:
                level = self.buckets[bucket].refill(limit, now)
                usage[bucket] = round(min(1.0, max(0.0, 1.0 - level / limit)), 3)
        state, reopens = self.state, 0.0
        if state == BreakerState.OPEN:  # past its hold it half-opens at the next request
            reopens = max(0.0, self.open_until - now)
            state = BreakerState.OPEN if reopens > 0 else BreakerState.HALF_OPEN
        return PacingStatus(
            self.model,
            state,
            reopens,
            len(self.permits),
            self.window or 0,
            self.limits(),
            usage,
            self.granted,
            self.held,
            self.overloaded_answers,
            self.last_problem,
        )


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        return None
    return number if number >= 0 else None
