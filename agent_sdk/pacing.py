"""Model pacing for agents: take a permit before each model call, report how it went.

The model API's limits are shared by every agent of a pool, so the control plane paces model calls
(per-model rates and a circuit breaker; see "Model pacing" in ``agent_gateway.proto``). A
model-backed agent wraps each call::

    async with self.pacer.call("claude-sonnet-4-6", input_tokens=900, output_tokens=4096) as permit:
        try:
            answer = await call_the_model()
        except ApiError as exc:
            permit.report(exc.status, retry_after=exc.retry_after, headers=exc.headers)
            raise
        permit.report(200, headers=answer.headers, input_tokens=..., output_tokens=...)

``call`` waits for the permit at most ``max_wait`` seconds; past that it raises
:class:`ModelCallDeferred`, a :class:`~agent_sdk.errors.RetryableError` with ``retry_after``: let it
end the assignment, and the control plane queues the work again after that time without spending
a retry. A block left without a report (an exception, a cancellation) reports the call abandoned,
which only frees the permit. Do not retry 429/529 answers yourself: report them and take a new
permit, which waits for the breaker.

The worker gives each agent a :class:`ModelPacer` over its stream (``Agent.pacer``, also
``Context.pacer``); an agent run without a control plane gets :data:`UNPACED`, which grants every
permit at once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

from agent_sdk.errors import RetryableError

#: The ``error_type`` of :class:`ModelCallDeferred` (the control plane re-queues it without spending a retry).
DEFERRED_ERROR_TYPE = "ModelPaced"
#: How long :meth:`ModelPacer.call` waits for a permit by default.
DEFAULT_MAX_WAIT = 10.0
#: Header names an outcome carries to the control plane (others are dropped).
RATE_LIMIT_HEADER_PREFIX = "anthropic-ratelimit-"


class ModelCallDeferred(RetryableError):
    """No permit for a model call within ``max_wait``: hand the work back (``retry_after`` says when)."""

    def __init__(self, model: str, retry_after: float, reason: str):
        super().__init__(
            f"model {model}: no permit within the wait allowed ({reason}); try again in {retry_after:.1f} s",
            retry_after=retry_after,
            error_type=DEFERRED_ERROR_TYPE,
        )
        self.model = model
        self.reason = reason


@dataclass(frozen=True)
class PermitAnswer:
    """What the control plane answered to a permit request."""

    granted: bool
    permit_id: str = ""
    waited: float = 0.0
    retry_after: float = 0.0
    reason: str = ""


@dataclass(frozen=True)
class Outcome:
    """How one model call ended (see ``ModelCallOutcome`` in the protos)."""

    permit_id: str
    model: str
    status: int = 200
    retry_after: float | None = None
    headers: Mapping[str, str] | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    abandoned: bool = False


class Permit:
    """A permit for one model call; :meth:`report` its outcome once."""

    def __init__(self, model: str, answer: PermitAnswer, send: Callable[[Outcome], None]):
        self.model = model
        self.permit_id = answer.permit_id
        #: Seconds the call waited for its permit.
        self.waited = answer.waited
        self._send = send
        self.reported = False

    def report(
        self,
        status: int,
        *,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        """Report how the call ended.

        Args:
            status: The HTTP status of the answer; 0 when none came (connection failed, timed out).
            retry_after: Seconds the answer asked to wait (``retry-after-ms`` / ``retry-after``).
            headers: The answer's headers; only ``anthropic-ratelimit-*`` ones are sent.
            input_tokens: Input tokens used (uncached input plus cache writes).
            output_tokens: Output tokens produced.
        """
        if self.reported:
            return
        self.reported = True
        kept = {
            str(k).lower(): str(v)
            for k, v in (headers or {}).items()
            if str(k).lower().startswith(RATE_LIMIT_HEADER_PREFIX)
        }
        self._send(
            Outcome(
                self.permit_id,
                self.model,
                status,
                retry_after,
                kept,
                max(0, input_tokens),
                max(0, output_tokens),
            )
        )

    def abandon(self) -> None:
        """The call was not made or was cancelled before an answer: only free the permit."""
        if not self.reported:
            self.reported = True
            self._send(Outcome(self.permit_id, self.model, status=0, abandoned=True))


class ModelPacer:
    """Takes permits for model calls from a control plane.

    Args:
        ask: Sends a permit request (model, input tokens, output tokens, max wait) and returns the answer.
        send: Sends an outcome.
        paced: False for :data:`UNPACED` (nothing holds calls back: callers back off on their own).
    """

    def __init__(
        self,
        ask: Callable[[str, int, int, float], Awaitable[PermitAnswer]],
        send: Callable[[Outcome], None],
        paced: bool = True,
    ):
        self._ask = ask
        self._send = send
        self.paced = paced

    async def permit(
        self, model: str, input_tokens: int = 0, output_tokens: int = 0, max_wait: float = DEFAULT_MAX_WAIT
    ) -> Permit:
        """A permit for one call (report it with :meth:`Permit.report`).

        Raises:
            ModelCallDeferred: None was granted within ``max_wait``.
        """
        answer = await self._ask(
            model, max(0, int(input_tokens)), max(0, int(output_tokens)), max(0.0, max_wait)
        )
        if not answer.granted:
            raise ModelCallDeferred(model, answer.retry_after, answer.reason or "not granted")
        return Permit(model, answer, self._send)

    @contextlib.asynccontextmanager
    async def call(
        self, model: str, input_tokens: int = 0, output_tokens: int = 0, max_wait: float = DEFAULT_MAX_WAIT
    ) -> AsyncIterator[Permit]:
        """:meth:`permit` for the block; a block left without a report reports the call abandoned."""
        permit = await self.permit(model, input_tokens, output_tokens, max_wait)
        try:
            yield permit
        finally:
            permit.abandon()


async def _grant_at_once(model: str, input_tokens: int, output_tokens: int, max_wait: float) -> PermitAnswer:
    return PermitAnswer(True, f"unpaced-{time.monotonic_ns()}")


def _drop(outcome: Outcome) -> None:
    return None


#: The pacer of an agent without a control plane (tests, scripts): every permit at once.
UNPACED = ModelPacer(_grant_at_once, _drop, paced=False)
