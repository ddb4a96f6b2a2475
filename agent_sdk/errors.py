"""Errors an agent raises, and errors the SDK client raises for failed calls.

An agent handler raises :class:`RetryableError` for failures another attempt
may fix (rate limits, transient outages; ``retry_after`` honours the cause)
and :class:`PermanentError` (or any other exception) for the rest.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of errors raised by agent handlers."""

    retryable = False

    def __init__(self, message: str, *, retry_after: float = 0.0, error_type: str = ""):
        super().__init__(message)
        self.retry_after = retry_after
        self.error_type = error_type or type(self).__name__


class RetryableError(AgentError):
    """Another attempt may succeed."""

    retryable = True


class PermanentError(AgentError):
    """Another attempt will not help: the subtask (and its task) fails."""
