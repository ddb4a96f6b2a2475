"""Errors an agent raises, and errors the SDK client raises for failed calls.

An agent handler raises :class:`RetryableError` for failures another attempt
may fix (rate limits, transient outages; ``retry_after`` honours the cause)
and :class:`PermanentError` (or any other exception) for the rest.
"""

from __future__ import annotations

from typing import Any


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


class BudgetExhausted(PermanentError):
    """The assignment's share of the task's budget cannot cover the work.

    The task fails with ERROR_REASON_BUDGET_EXCEEDED, keeping its completed parts.
    """


# --- client-side errors: a failed call to the control plane -------------------

import grpc  # noqa: E402  (client errors only; agent errors above need no gRPC)


class MaosRpcError(Exception):
    """A call to the control plane failed.

    Attributes:
        code: The gRPC status code (``grpc.StatusCode``).
        reason: The ``google.rpc.ErrorInfo`` reason, a ``maos.v1.ErrorReason``
            name such as ``"ERROR_REASON_TASK_NOT_FOUND"``; empty when the
            server sent none (for example when it could not be reached).
        message: The server's message, for developers.
        field_violations: ``(field, description)`` pairs of a ``BadRequest``.
        retry_delay: Seconds after which retrying may succeed (``RetryInfo``), or None.
        metadata: The ``ErrorInfo`` metadata.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        field_violations: list[tuple[str, str]] | None = None,
        retry_delay: float | None = None,
        metadata: dict[str, str] | None = None,
    ):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.reason = reason
        self.field_violations = list(field_violations or [])
        self.retry_delay = retry_delay
        self.metadata = dict(metadata or {})

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}" + (f" ({self.reason})" if self.reason else "")


class InvalidArgumentError(MaosRpcError):
    """INVALID_ARGUMENT: fix the request (``field_violations`` names the fields)."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(MaosRpcError):
    """NOT_FOUND: the resource does not exist or is not visible to the caller."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(MaosRpcError):
    """ALREADY_EXISTS: a resource with that id exists."""

    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(MaosRpcError):
    """FAILED_PRECONDITION: the resource's state does not allow the call; do not retry as is."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class AbortedError(MaosRpcError):
    """ABORTED: a concurrency conflict; retry at a higher level."""

    code = grpc.StatusCode.ABORTED


class ResourceExhaustedError(MaosRpcError):
    """RESOURCE_EXHAUSTED: a limit or rate was hit; see ``retry_delay``."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnauthenticatedError(MaosRpcError):
    """UNAUTHENTICATED: missing, unknown, expired or revoked credentials."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(MaosRpcError):
    """PERMISSION_DENIED: the caller lacks the permission the call requires."""

    code = grpc.StatusCode.PERMISSION_DENIED


class UnavailableError(MaosRpcError):
    """UNAVAILABLE: the control plane cannot be reached or is shutting down; retry later."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceededError(MaosRpcError):
    """DEADLINE_EXCEEDED: the call did not finish within its timeout."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


_ERROR_FOR_CODE: dict[grpc.StatusCode, type[MaosRpcError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        AbortedError,
        ResourceExhaustedError,
        UnauthenticatedError,
        PermissionDeniedError,
        UnavailableError,
        DeadlineExceededError,
    )
}
_CODE_FOR_NAME = {cls.__name__.removesuffix("Error"): code for code, cls in _ERROR_FOR_CODE.items()}


def error_class(code: grpc.StatusCode) -> type[MaosRpcError]:
    """The :class:`MaosRpcError` subclass of a status code (``MaosRpcError`` itself for the others).

    The SDK's one table of statuses: each subclass is named after the server's domain error of
    the same status (``InvalidArgumentError`` for ``InvalidArgument``), which the CLI relies on.
    """
    return _ERROR_FOR_CODE.get(code, MaosRpcError)


def status_of_error_name(name: str) -> grpc.StatusCode | None:
    """The status of an error class named ``name`` (``"InvalidArgument"`` or ``"InvalidArgumentError"``)."""
    return _CODE_FOR_NAME.get(name.removesuffix("Error"))


def from_rpc_error(exc: grpc.aio.AioRpcError | grpc.RpcError) -> MaosRpcError:
    """Translate a failed gRPC call into the matching :class:`MaosRpcError` subclass.

    Reads the ``google.rpc.Status`` of the ``grpc-status-details-bin`` trailer
    (via ``grpc_status.rpc_status.from_call``) for the ErrorInfo reason, the
    BadRequest field violations and the RetryInfo delay. The only place that
    turns gRPC errors into SDK errors.
    """
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    code = exc.code() if callable(getattr(exc, "code", None)) else grpc.StatusCode.UNKNOWN
    message = (exc.details() if callable(getattr(exc, "details", None)) else "") or code.name
    reason, retry_delay, metadata = "", None, {}
    violations: list[tuple[str, str]] = []
    try:
        status = rpc_status.from_call(exc)
    except (ValueError, TypeError, AttributeError):  # an inconsistent or foreign trailer
        status = None
    if status is not None:
        message = status.message or message
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations.extend((v.field, v.description) for v in bad.field_violations)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info_retry = error_details_pb2.RetryInfo()
                detail.Unpack(info_retry)
                retry_delay = info_retry.retry_delay.seconds + info_retry.retry_delay.nanos / 1e9
    cls = error_class(code)
    return cls(
        message,
        code=code,
        reason=reason,
        field_violations=violations,
        retry_delay=retry_delay,
        metadata=metadata,
    )


def from_submit_error(error: Any) -> MaosRpcError:
    """The :class:`MaosRpcError` subclass of a refused request on a submit stream (``maos.v1.SubmitError``)."""
    from agent_sdk.proto.maos.v1 import errors_pb2

    code = next((c for c in grpc.StatusCode if c.value[0] == error.code), grpc.StatusCode.UNKNOWN)
    reason = (
        errors_pb2.ErrorReason.Name(error.reason) if error.reason in errors_pb2.ErrorReason.values() else ""
    )
    cls = error_class(code)
    retry_delay = (
        error.retry_delay.seconds + error.retry_delay.nanos / 1e9 if error.HasField("retry_delay") else None
    )
    return cls(
        error.message or code.name,
        code=code,
        reason="" if error.reason == 0 else reason,
        field_violations=[(v.field, v.description) for v in error.field_violations],
        retry_delay=retry_delay,
        metadata=dict(error.metadata),
    )
