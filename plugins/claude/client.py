"""The Messages API client the plugin uses, its paced retries, and how its errors become agent errors.

* Every call takes a permit from the control plane's pacer first (:func:`paced_call`,
  :mod:`agent_sdk.pacing`), and reports how it went: status, ``retry-after`` and the
  ``anthropic-ratelimit-*`` headers, tokens used. The SDK's own retries are off (``max_retries=0``):
  the plugin retries instead, ``max_retries`` times, each retry under a new permit, so a 429 or 529
  holds every agent's calls to the model (the breaker) rather than each agent retrying on its own.
* 429 (rate limit), 529 (overloaded), 408/409/5xx and connection failures are retryable. Without a
  pacing control plane (:data:`agent_sdk.pacing.UNPACED`) a retry sleeps what the server's
  ``retry-after-ms`` / ``retry-after`` asks, else an exponential backoff. A wait longer than
  ``max_retry_wait`` seconds (not worth holding an agent slot for) ends the attempt with
  :class:`agent_sdk.errors.RetryableError` carrying ``retry_after``, so the control plane retries
  later; under a pacer, a permit not granted within ``max_retry_wait`` does the same
  (:class:`agent_sdk.pacing.ModelCallDeferred`, which does not spend one of the task's retries).
* 400, 401, 402, 403, 404, 413, 422 and other client errors are permanent:
  another attempt sends the same request.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from agent_sdk.errors import AgentError, PermanentError, RetryableError
from agent_sdk.pacing import ModelPacer, Permit
from maos_plugins.claude.config import ClaudeConfig

if TYPE_CHECKING:
    import anthropic

_RETRYABLE_TYPES = {"rate_limit_error", "overloaded_error", "api_error", "timeout_error"}
T = TypeVar("T")


#: What to do when no key is set (used by errors and by the agent types' precondition).
NO_KEY_MESSAGE = (
    "no Anthropic API key: set ANTHROPIC_API_KEY (or CLAUDE_API_KEY) in the environment of "
    "`maos start`, or claude.api_key in $MAOS_HOME/config.yml"
)


class NoApiKeyError(PermanentError):
    """No Anthropic API key is configured."""

    def __init__(self) -> None:
        super().__init__(NO_KEY_MESSAGE, error_type="NoApiKey")


def make_client(config: ClaudeConfig) -> anthropic.AsyncAnthropic:
    """An ``AsyncAnthropic`` for ``config`` (use it as ``async with``).

    ``anthropic`` is imported on first use: it weighs about 40 MiB, which a
    control plane that never calls the Messages API should not carry.
    """
    import anthropic

    if not config.api_key:
        raise NoApiKeyError()
    return anthropic.AsyncAnthropic(
        api_key=config.api_key,
        base_url=config.base_url or None,
        max_retries=0,  # retries are paced by paced_call
        timeout=config.timeout,
    )


def answer_facts(exc: BaseException) -> tuple[int, float | None, Mapping[str, str]] | None:
    """The HTTP status (0: no answer), retry-after and headers of a failed call; None if it was no API failure."""
    import anthropic

    if isinstance(exc, anthropic.APIStatusError):
        headers = exc.response.headers if exc.response is not None else {}
        status = exc.status_code
        if status < 400:  # an error event in a streamed answer: the status its type stands for
            status = {"overloaded_error": 529, "rate_limit_error": 429}.get(
                getattr(exc, "type", None) or "", 500
            )
        return status, retry_after_seconds(headers), headers
    if isinstance(exc, anthropic.APIConnectionError) or _is_transport_error(exc):  # timeouts included
        return 0, None, {}
    return None


async def paced_call(
    pacer: ModelPacer,
    config: ClaudeConfig,
    input_tokens: int,
    output_tokens: int,
    attempt: Callable[[Permit], Awaitable[T]],
    *,
    may_retry: Callable[[], bool] = lambda: True,
) -> T:
    """Run ``attempt`` (one Messages API call) under a permit, retrying retryable failures (module docstring).

    ``attempt`` reports its own success (``permit.report(200, headers=..., ...)``: it alone has the
    answer's headers and usage); failures are reported here. ``may_retry`` says whether another
    attempt may be made after a failure (not once a streamed answer was partly delivered).

    Raises:
        AgentError: The call failed (translated by :func:`translate_error`), or no permit came in time.
    """
    retries = 0
    while True:
        async with pacer.call(
            config.model, input_tokens, output_tokens, max_wait=config.max_retry_wait
        ) as permit:
            try:
                return await attempt(permit)
            except Exception as exc:
                facts = answer_facts(exc)
                if facts is None:
                    raise
                status, retry_after, headers = facts
                permit.report(status, retry_after=retry_after, headers=headers)
                error, cause = translate_error(exc), exc
                if not error.retryable or retries >= config.max_retries or not may_retry():
                    raise
        retries += 1
        if pacer.paced and status in (429, 529):
            continue  # the next permit waits for the model's breaker
        wait = retry_after if retry_after is not None else min(8.0, 0.5 * 2 ** (retries - 1))
        if wait > config.max_retry_wait:
            raise error from cause
        await asyncio.sleep(wait)


def report_success(permit: Permit, headers: Mapping[str, str], message: Any) -> None:
    """Report a call that answered: its headers, and the input (uncached plus cache writes) and output tokens."""
    usage = getattr(message, "usage", None)
    input_tokens = int(getattr(usage, "input_tokens", 0) or 0) + int(
        getattr(usage, "cache_creation_input_tokens", 0) or 0
    )
    permit.report(
        200,
        headers=headers,
        input_tokens=input_tokens,
        output_tokens=int(getattr(usage, "output_tokens", 0) or 0),
    )


def request_options(config: ClaudeConfig) -> dict[str, Any]:
    """Keyword arguments every request carries (sampling parameters the SDK no longer names)."""
    if config.temperature is None:
        return {}
    return {"extra_body": {"temperature": config.temperature}}


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from ``retry-after-ms``, else ``retry-after`` (seconds or an HTTP date); None if absent."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        return max(0.0, email.utils.mktime_tz(parsed) - time.time()) if parsed else None


def translate_error(exc: BaseException) -> AgentError:
    """The agent error for a failed Messages API call."""
    import anthropic

    if isinstance(exc, AgentError):
        return exc
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        error_type = getattr(exc, "type", None) or ""
        message = getattr(exc, "api_message", None) or exc.message
        wait = retry_after_seconds(exc.response.headers) if exc.response is not None else None
        if status == 429 or error_type == "rate_limit_error":
            return RetryableError(
                f"Messages API rate limit (429): {message}", retry_after=wait or 0.0, error_type="RateLimited"
            )
        if status == 529 or error_type == "overloaded_error":
            return RetryableError(
                f"Messages API overloaded (529): {message}", retry_after=wait or 0.0, error_type="Overloaded"
            )
        if status in (408, 409) or status >= 500 or (status < 400 and error_type in _RETRYABLE_TYPES):
            return RetryableError(
                f"Messages API {status}: {message}", retry_after=wait or 0.0, error_type="ApiUnavailable"
            )
        return PermanentError(
            f"Messages API {status} ({error_type or 'error'}): {message}", error_type=_permanent_type(status)
        )
    if isinstance(exc, anthropic.APITimeoutError):
        return RetryableError("the Messages API did not answer in time", error_type="ApiTimeout")
    if isinstance(exc, anthropic.APIConnectionError):
        return RetryableError(f"could not reach the Messages API: {exc.message}", error_type="ApiConnection")
    if isinstance(exc, anthropic.APIResponseValidationError):
        return RetryableError(
            f"the Messages API sent an unexpected response: {exc.message}", error_type="ApiBadResponse"
        )
    if _is_transport_error(exc):  # e.g. the connection dropped in the middle of a streamed answer
        return RetryableError(f"the connection to the Messages API broke: {exc}", error_type="ApiConnection")
    if isinstance(exc, json.JSONDecodeError):
        return RetryableError(
            f"the Messages API sent a body that is not JSON: {exc}", error_type="ApiBadResponse"
        )
    if isinstance(exc, anthropic.AnthropicError):
        return PermanentError(f"Messages API client error: {exc}", error_type=type(exc).__name__)
    return PermanentError(f"{type(exc).__name__}: {exc}", error_type=type(exc).__name__)


def _is_transport_error(exc: BaseException) -> bool:
    """An HTTP transport failure the SDK did not wrap (it wraps only those before the response starts)."""
    if isinstance(exc, OSError):
        return True
    for module_name in ("httpx2", "httpx"):
        module = sys.modules.get(module_name)
        transport = getattr(module, "TransportError", None) if module is not None else None
        if transport is not None and isinstance(exc, transport):
            return True
    return False


def _permanent_type(status: int) -> str:
    return {
        400: "InvalidRequest",
        401: "AuthenticationFailed",
        402: "BillingError",
        403: "PermissionDenied",
        404: "NotFound",
        413: "RequestTooLarge",
        422: "InvalidRequest",
    }.get(status, f"Http{status}")
