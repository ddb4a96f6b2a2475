"""The pacer: hands out permits for model calls, one queue per model, over the domain's decisions.

Agents ask through their stream (``ModelPermitRequest``, answered by ``ModelPermit``) and the
control plane's own model calls (the Claude planner) call :meth:`Pacer.acquire` directly; both
report how the call went (:meth:`Pacer.report`). The rules are in
:mod:`controlplane.domain.model_limits`; this module adds the waiting: requests for one model
wait in arrival order (FIFO), the first one until the decision says yes, an outcome arrives or
its ``max_wait`` is up. A request that cannot be granted within its ``max_wait`` is answered
with a :class:`Deferred` saying how long to wait (the agent then hands its work back to be
retried later, rather than holding its slot).

The state lives behind :class:`PacingStore`: :class:`MemoryPacingStore` keeps it in this process,
:class:`controlplane.replicas.redis_pacing.RedisPacingStore` in Redis for every replica (with
``redis.url``). Every change goes through :meth:`PacingStore.transact`, which a shared store makes
atomic across replicas (it may run the change again on fresher state).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from agent_sdk.pacing import ModelPacer, Outcome, PermitAnswer
from controlplane.domain.model_limits import (
    HEADER_PREFIX,
    BreakerPolicy,
    BreakerState,
    CallOutcome,
    Decision,
    ModelPacing,
    PacingStatus,
    RateLimits,
)

log = logging.getLogger(__name__)

#: Models paced separately; calls to further models are granted without pacing (names are chosen by
#: agents: this bounds the state and the metrics' ``model`` label).
MAX_MODELS = 32
#: Longest name of a model (bytes) and what it may contain.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/\-]{0,99}$")
#: The longest a permit request may wait (``max_wait`` is capped to it).
MAX_WAIT = 300.0
#: Permit requests one holder (an agent session) may have waiting at once; more are deferred at once.
MAX_WAITING_PER_HOLDER = 256
#: Most headers an outcome carries into the pacer, and the longest value kept.
MAX_HEADERS = 32
MAX_HEADER_VALUE = 128
#: A waiter re-checks at least this often (expired permits, a replica's changes).
_POLL = 1.0


_R = TypeVar("_R")


class PacingStore(Protocol):
    """Where the pacing state of each model lives (this process, or Redis for every replica)."""

    #: Whether other processes share the state (then the pacer's clock is the wall clock).
    shared: bool

    def get(self, model: str) -> ModelPacing | None:
        """The state of ``model``, or None."""

    def put(self, model: str, pacing: ModelPacing) -> None:
        """Store the state of a new model (a shared store keeps a state another replica stored first)."""

    def models(self) -> list[str]:
        """The models that have state."""

    def transact(self, model: str, change: Callable[[ModelPacing], _R]) -> _R:
        """Apply ``change`` to the state of ``model`` (which exists) and store it; its result.

        A shared store runs it on the latest state and may run it again if another replica changed
        that state meanwhile, so ``change`` must only act on its argument.
        """


class MemoryPacingStore:
    """The pacing state in this process."""

    shared = False

    def __init__(self) -> None:
        self._models: dict[str, ModelPacing] = {}

    def get(self, model: str) -> ModelPacing | None:
        """The state of ``model``, or None."""
        return self._models.get(model)

    def put(self, model: str, pacing: ModelPacing) -> None:
        """Store the state of ``model``."""
        self._models[model] = pacing

    def models(self) -> list[str]:
        """The models that have state."""
        return sorted(self._models)

    def transact(self, model: str, change: Callable[[ModelPacing], _R]) -> _R:
        """Apply ``change`` to the state of ``model``."""
        return change(self._models[model])


@dataclass(frozen=True)
class Grant:
    """A permit: make the call, then report its outcome with ``permit_id``."""

    permit_id: str
    model: str
    waited: float


@dataclass(frozen=True)
class Deferred:
    """No permit within ``max_wait``: wait ``retry_after`` seconds (or hand the work back)."""

    model: str
    retry_after: float
    reason: str


def clean_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers the pacer reads (``anthropic-ratelimit-*``), names in lower case, bounded."""
    kept: dict[str, str] = {}
    for name, value in headers.items():
        lowered = str(name).lower()
        if lowered.startswith(HEADER_PREFIX) and len(kept) < MAX_HEADERS:
            kept[lowered] = str(value)[:MAX_HEADER_VALUE]
    return kept


class Pacer:
    """Permits for model calls across every agent (see the module docstring).

    Args:
        limits: Configured per-minute limits by model (``models.rate_limits``).
        policy: The breaker's policy (``models.breaker.*``).
        store: Where the state lives (memory by default).
        metrics: The control plane's :class:`~controlplane.metrics.Metrics`, or None.
        clock: Monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        limits: Mapping[str, RateLimits] | None = None,
        policy: BreakerPolicy | None = None,
        store: PacingStore | None = None,
        metrics: Any = None,
        clock: Callable[[], float] | None = None,
        id_prefix: str = "",
    ):
        self.configured = dict(limits or {})
        self.policy = policy or BreakerPolicy()
        self.store: PacingStore = store or MemoryPacingStore()
        if hasattr(self.store, "policy"):  # a shared store makes states from what it holds
            self.store.policy = self.policy
        self.metrics = metrics
        #: Monotonic in one process; the wall clock when replicas share the state (their clocks agree).
        self.clock = clock or (time.time if getattr(self.store, "shared", False) else time.monotonic)
        #: Makes permit ids unique across the replicas sharing a store.
        self.id_prefix = id_prefix
        self._queues: dict[str, asyncio.Lock] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._ids = itertools.count(1)
        #: permit id -> (model, holder); waiting requests per holder.
        self._permits: dict[str, tuple[str, str]] = {}
        self._waiting: dict[str, int] = {}
        self._unpaced_warned = False

    @classmethod
    def from_settings(
        cls, settings: Any, metrics: Any = None, store: PacingStore | None = None, id_prefix: str = ""
    ) -> Pacer:
        """A pacer configured by ``models.rate_limits`` and ``models.breaker.*`` (state in ``store``)."""
        limits = {model: RateLimits(**values) for model, values in settings["models.rate_limits"].items()}
        policy = BreakerPolicy(
            failure_threshold=settings["models.breaker.failure_threshold"],
            cooldown=settings["models.breaker.cooldown"],
            max_cooldown=max(settings["models.breaker.cooldown"], settings["models.breaker.max_cooldown"]),
        )
        return cls(limits, policy, store=store, metrics=metrics, id_prefix=id_prefix)

    # --- state ----------------------------------------------------------------------

    def _pacing(self, model: str) -> ModelPacing | None:
        """The state of ``model``, created on first use (None beyond :data:`MAX_MODELS`)."""
        pacing = self.store.get(model)
        if pacing is None:
            if len(self.store.models()) >= MAX_MODELS:
                if not self._unpaced_warned:
                    log.warning(
                        "more than %d models are called: calls to %r and further models are not paced",
                        MAX_MODELS,
                        model,
                    )
                    self._unpaced_warned = True
                return None
            pacing = ModelPacing(model, self.configured.get(model, RateLimits()), self.policy, self.clock())
            self.store.put(model, pacing)
        return pacing

    def _signal(self, model: str) -> None:
        event = self._changed.get(model)
        if event is not None:
            event.set()
        self._observe(model)

    # --- permits -------------------------------------------------------------------

    def grant_now(
        self, model: str, input_tokens: int = 0, output_tokens: int = 0, holder: str = ""
    ) -> Grant | None:
        """The fast path of :meth:`acquire`, without waiting: a permit if one may be granted at once and
        nobody waits before this call, else None (then call :meth:`acquire`).

        Raises:
            ValueError: The model name is not one.
        """
        if not MODEL_NAME.match(model):
            raise ValueError(
                f"model: {model[:64]!r} is not a model name (letters, digits and ._:@/-, "
                "at most 100 characters)"
            )
        input_tokens, output_tokens = max(0, int(input_tokens)), max(0, int(output_tokens))
        pacing = self._pacing(model)
        if pacing is None:
            return self._grant(model, None, holder, 0.0, input_tokens, output_tokens)
        queue = self._queues.get(model)
        if queue is not None and queue.locked():
            return None
        return self._try_grant(model, holder, 0.0, input_tokens, output_tokens)

    async def acquire(
        self,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        *,
        max_wait: float = 10.0,
        holder: str = "",
    ) -> Grant | Deferred:
        """A permit for one call to ``model``, waiting at most ``max_wait`` seconds for it.

        Args:
            model: The model's name (must match :data:`MODEL_NAME`).
            input_tokens: The call's estimated input tokens.
            output_tokens: Its ``max_tokens``.
            max_wait: How long to wait (capped at :data:`MAX_WAIT`).
            holder: Who holds the permit (an agent session), so that :meth:`release_holder` frees it.

        Raises:
            ValueError: The model name is not one.
        """
        grant = self.grant_now(model, input_tokens, output_tokens, holder)  # the fast path
        if grant is not None:
            return grant
        input_tokens, output_tokens = max(0, int(input_tokens)), max(0, int(output_tokens))
        max_wait = min(max(0.0, max_wait), MAX_WAIT)
        pacing = self.store.get(model)
        if pacing is None:  # not paced (grant_now grants those): only if another replica dropped it
            return self._grant(model, None, holder, 0.0, input_tokens, output_tokens)
        start = self.clock()
        queue = self._queues.setdefault(model, asyncio.Lock())
        decision = self.store.transact(model, lambda p: p.decide(start, input_tokens, output_tokens))
        if self._waiting.get(holder, 0) >= MAX_WAITING_PER_HOLDER:
            return self._defer(pacing, start, decision.wait, "too many permit requests waiting")
        pacing.held += 1
        self._count("held", model)
        self._waiting[holder] = self._waiting.get(holder, 0) + 1
        self._observe(model)
        try:
            return await self._wait_turn(
                model, pacing, queue, start, max_wait, holder, input_tokens, output_tokens
            )
        finally:
            self._waiting[holder] -= 1
            if not self._waiting[holder]:
                del self._waiting[holder]
            pacing.held -= 1
            self._observe(model)

    async def _wait_turn(
        self,
        model: str,
        pacing: ModelPacing,
        queue: asyncio.Lock,
        start: float,
        max_wait: float,
        holder: str,
        input_tokens: int,
        output_tokens: int,
    ) -> Grant | Deferred:
        deadline = start + max_wait
        try:
            await asyncio.wait_for(queue.acquire(), max(0.0, deadline - self.clock()))
        except TimeoutError:
            now = self.clock()
            decision = self.store.transact(model, _decide(now, input_tokens, output_tokens))
            return self._defer(pacing, start, decision.wait, decision.reason or "other calls wait first")
        try:
            changed = self._changed.setdefault(model, asyncio.Event())
            while True:
                now = self.clock()
                grant = self._try_grant(model, holder, now - start, input_tokens, output_tokens)
                if grant is not None:
                    return grant
                decision = self.store.transact(model, _decide(now, input_tokens, output_tokens))
                left = deadline - now
                if left <= 0 or (decision.wait is not None and decision.wait > left):
                    return self._defer(pacing, start, decision.wait, decision.reason)
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), min(left, decision.wait or _POLL, _POLL))
        finally:
            queue.release()

    def _try_grant(
        self, model: str, holder: str, waited: float, input_tokens: int, output_tokens: int
    ) -> Grant | None:
        """A permit if the decision says yes now (decided and recorded in one transaction), else None."""
        permit_id = f"p{self.id_prefix}{next(self._ids)}"
        now = self.clock()

        def attempt(p: ModelPacing) -> bool:
            if not p.decide(now, input_tokens, output_tokens).granted:
                return False
            p.grant(now, permit_id, input_tokens, output_tokens)
            return True

        if not self.store.transact(model, attempt):
            return None
        return self._grant(
            model, self.store.get(model), holder, waited, input_tokens, output_tokens, permit_id
        )

    def _grant(
        self,
        model: str,
        pacing: ModelPacing | None,
        holder: str,
        waited: float,
        input_tokens: int,
        output_tokens: int,
        permit_id: str = "",
    ) -> Grant:
        """Hand out a permit already recorded in ``pacing`` (``permit_id`` given), or an unpaced one."""
        permit_id = permit_id or f"p{self.id_prefix}{next(self._ids)}"
        if pacing is not None:
            self._permits[permit_id] = (model, holder)
            self._count("granted", model)
            if self.metrics is not None:
                self.metrics.model_permit_wait_seconds.observe(waited)
            if waited:
                self._observe(model)
        return Grant(permit_id, model, waited)

    def _defer(self, pacing: ModelPacing, start: float, wait: float | None, reason: str) -> Deferred:
        self._count("deferred", pacing.model)
        if self.metrics is not None:
            self.metrics.model_permit_wait_seconds.observe(self.clock() - start)
        # "until a call ends" has no figure: ask again after a short while
        return Deferred(pacing.model, max(0.05, wait if wait is not None else _POLL), reason)

    def report(
        self, permit_id: str, outcome: CallOutcome, model: str = "", holder: str | None = None
    ) -> None:
        """Apply the outcome of a call; ``model`` is needed only for a permit the pacer does not know
        (one freed when its stream ended: the outcome still counts). With ``holder``, a permit that
        another holder holds is left alone (an agent reports only on its own calls)."""
        known = self._permits.get(permit_id)
        if known is not None and holder is not None and known[1] != holder:
            return
        self._permits.pop(permit_id, None)
        name = known[0] if known is not None else model
        if not name or not MODEL_NAME.match(name):
            return
        pacing = self.store.get(name)
        if pacing is None:
            return
        outcome = CallOutcome(
            outcome.status,
            outcome.retry_after,
            clean_headers(outcome.headers),
            outcome.input_tokens,
            outcome.output_tokens,
            outcome.abandoned,
        )
        before = pacing.state
        now = self.clock()
        self.store.transact(name, lambda p: p.report(now, permit_id, outcome))
        pacing = self.store.get(name) or pacing
        if outcome.overloaded and self.metrics is not None:
            self.metrics.model_overloaded_answers.labels(name, str(outcome.status)).inc()
        if pacing.state != before:
            log.warning(
                "model %s: breaker %s -> %s%s",
                name,
                before.name,
                pacing.state.name,
                f" ({pacing.last_problem})" if pacing.state == BreakerState.OPEN else "",
            )
        self._signal(name)

    def release_holder(self, holder: str) -> None:
        """Free every permit ``holder`` still holds (its agent left without reporting)."""
        for permit_id, (model, who) in list(self._permits.items()):
            if who == holder:
                del self._permits[permit_id]
                if self.store.get(model) is not None:
                    self.store.transact(model, _release(permit_id))
                    self._signal(model)

    @contextlib.asynccontextmanager
    async def call(
        self, model: str, input_tokens: int = 0, output_tokens: int = 0, *, max_wait: float = 10.0
    ) -> AsyncIterator[Grant | Deferred]:
        """``acquire`` for a call made in this process; an outcome not reported is reported abandoned."""
        permit = await self.acquire(model, input_tokens, output_tokens, max_wait=max_wait)
        try:
            yield permit
        finally:
            if isinstance(permit, Grant) and permit.permit_id in self._permits:
                self.report(permit.permit_id, CallOutcome(abandoned=True))

    def model_pacer(self) -> ModelPacer:
        """This pacer as an :class:`agent_sdk.pacing.ModelPacer`, for model calls made in the control plane
        (the Claude planner): the same permits and outcomes as agents', without a stream."""

        async def ask(model: str, input_tokens: int, output_tokens: int, max_wait: float) -> PermitAnswer:
            answer = await self.acquire(
                model, input_tokens, output_tokens, max_wait=max_wait, holder="control-plane"
            )
            if isinstance(answer, Deferred):
                return PermitAnswer(False, retry_after=answer.retry_after, reason=answer.reason)
            return PermitAnswer(True, answer.permit_id, answer.waited)

        def send(outcome: Outcome) -> None:
            self.report(
                outcome.permit_id,
                CallOutcome(
                    outcome.status,
                    outcome.retry_after,
                    outcome.headers or {},
                    outcome.input_tokens,
                    outcome.output_tokens,
                    outcome.abandoned,
                ),
                model=outcome.model,
            )

        return ModelPacer(ask, send)

    # --- visibility -------------------------------------------------------------------

    def status(self) -> list[PacingStatus]:
        """Every paced model's state, by name."""
        now = self.clock()
        found = (self.store.get(m) for m in self.store.models())
        return [p.status(now) for p in found if p is not None]

    def _count(self, outcome: str, model: str) -> None:
        if self.metrics is not None:
            self.metrics.model_permits.labels(model, outcome).inc()

    def _observe(self, model: str) -> None:
        if self.metrics is None:
            return
        pacing = self.store.get(model)
        if pacing is not None:
            self.metrics.model_breaker_state.labels(model).set(int(pacing.state))
            self.metrics.model_calls_held.labels(model).set(pacing.held)


def _decide(now: float, input_tokens: int, output_tokens: int) -> Callable[[ModelPacing], Decision]:
    """The change asking a model's pacing whether a call may start now (for ``transact``)."""
    return lambda pacing: pacing.decide(now, input_tokens, output_tokens)


def _release(permit_id: str) -> Callable[[ModelPacing], None]:
    """The change giving a permit back (for ``transact``)."""
    return lambda pacing: pacing.release(permit_id)
