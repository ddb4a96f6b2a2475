"""The Messages API client the plugin uses, and how its errors become agent errors.

* 429 (rate limit), 529 (overloaded), 408/409/5xx and connection failures are
  retryable. The SDK retries them itself ``max_retries`` times, sleeping what
  the server's ``retry-after-ms`` / ``retry-after`` asks; once those retries are
  used up (or the server asks for more than ``max_retry_wait`` seconds, which
  is not worth holding an agent slot for) the agent raises
  :class:`agent_sdk.errors.RetryableError` with ``retry_after`` set from the
  same headers, so the control plane retries later.
* 400, 401, 402, 403, 404, 413, 422 and other client errors are permanent:
  another attempt sends the same request.
"""

from __future__ import annotations

import email.utils
import json
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agent_sdk.errors import AgentError, PermanentError, RetryableError
from plugins.claude.config import ClaudeConfig

if TYPE_CHECKING:
    import anthropic

_RETRYABLE_TYPES = {"rate_limit_error", "overloaded_error", "api_error", "timeout_error"}


#: What to do when no key is set (used by errors and by the agent types' precondition).
NO_KEY_MESSAGE = ("no Anthropic API key: set ANTHROPIC_API_KEY (or CLAUDE_API_KEY) in the environment of "
                  "`maos start`, or claude.api_key in $MAOS_HOME/config.yml")


class NoApiKeyError(PermanentError):
    """No Anthropic API key is configured."""

    def __init__(self) -> None:
        super().__init__(NO_KEY_MESSAGE, error_type="NoApiKey")


class DeferredRetry(Exception):
    """The server asked to wait longer than ``max_retry_wait``: give up now, retry later.

    Raised by :class:`DeferLongWaits` inside the SDK's retry loop; it is not an
    SDK error type, so the SDK does not retry it.
    """

    def __init__(self, status: int, retry_after: float, message: str):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.message = message


class DeferLongWaits:
    """SDK middleware: a 429/529/503 asking for more than ``limit`` seconds raises :class:`DeferredRetry`."""

    def __init__(self, limit: float):
        self.limit = limit

    async def __call__(self, request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        http = getattr(response, "http_response", None)
        if http is None or http.status_code not in (429, 503, 529):
            return response
        wait = retry_after_seconds(http.headers)
        if wait is None or wait <= self.limit:
            return response
        try:
            await http.aread()
            message = _body_message(http.json()) or http.text
        except Exception:  # noqa: BLE001 - the body is only used for the message
            message = ""
        finally:
            await http.aclose()
        raise DeferredRetry(http.status_code, wait, message or f"HTTP {http.status_code}")


def _body_message(body: Any) -> str:
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        return str(body["error"].get("message") or "")
    return ""


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
        max_retries=config.max_retries,
        timeout=config.timeout,
        middleware=[DeferLongWaits(config.max_retry_wait)],
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
    if isinstance(exc, DeferredRetry):
        kind, what = ("RateLimited", "rate limit") if exc.status == 429 else ("Overloaded", "overloaded")
        return RetryableError(f"Messages API {what} ({exc.status}), retry after {exc.retry_after:g} s: "
                              f"{exc.message}", retry_after=exc.retry_after, error_type=kind)
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        error_type = getattr(exc, "type", None) or ""
        message = getattr(exc, "api_message", None) or exc.message
        wait = retry_after_seconds(exc.response.headers) if exc.response is not None else None
        if status == 429 or error_type == "rate_limit_error":
            return RetryableError(f"Messages API rate limit (429): {message}", retry_after=wait or 0.0,
                                  error_type="RateLimited")
        if status == 529 or error_type == "overloaded_error":
            return RetryableError(f"Messages API overloaded (529): {message}", retry_after=wait or 0.0,
                                  error_type="Overloaded")
        if status in (408, 409) or status >= 500 or (status < 400 and error_type in _RETRYABLE_TYPES):
            return RetryableError(f"Messages API {status}: {message}", retry_after=wait or 0.0,
                                  error_type="ApiUnavailable")
        return PermanentError(f"Messages API {status} ({error_type or 'error'}): {message}",
                              error_type=_permanent_type(status))
    if isinstance(exc, anthropic.APITimeoutError):
        return RetryableError("the Messages API did not answer in time", error_type="ApiTimeout")
    if isinstance(exc, anthropic.APIConnectionError):
        return RetryableError(f"could not reach the Messages API: {exc.message}", error_type="ApiConnection")
    if isinstance(exc, anthropic.APIResponseValidationError):
        return RetryableError(f"the Messages API sent an unexpected response: {exc.message}",
                              error_type="ApiBadResponse")
    if _is_transport_error(exc):  # e.g. the connection dropped in the middle of a streamed answer
        return RetryableError(f"the connection to the Messages API broke: {exc}", error_type="ApiConnection")
    if isinstance(exc, json.JSONDecodeError):
        return RetryableError(f"the Messages API sent a body that is not JSON: {exc}", error_type="ApiBadResponse")
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
    return {400: "InvalidRequest", 401: "AuthenticationFailed", 402: "BillingError", 403: "PermissionDenied",
            404: "NotFound", 413: "RequestTooLarge", 422: "InvalidRequest"}.get(status, f"Http{status}")
