"""Domain errors. Each carries a stable ``reason`` from ``maos.v1.ErrorReason``.

This module imports no gRPC: ``controlplane.api.errors`` is the one place that
maps these classes to status codes. The hierarchy::

    MaosError
    ├── InvalidArgument        (field violations)
    ├── NotFound
    ├── AlreadyExists
    ├── FailedPrecondition
    ├── Aborted                (stale attempt, version conflict, request in flight)
    ├── ResourceExhausted      (limits, rate, budget; optional retry_after)
    ├── Unauthenticated
    │   └── CredentialRefused  (a genuine credential, revoked or expired, or its user disabled)
    ├── PermissionDenied
    └── Unavailable            (shutting down, storage down)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field: its path in the request and what is wrong with it."""

    field: str
    description: str


class MaosError(Exception):
    """Base of every error the control plane reports to callers."""

    default_reason = "ERROR_REASON_INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = metadata or {}


class InvalidArgument(MaosError):
    """A request field is missing, malformed or out of range."""

    default_reason = "ERROR_REASON_INVALID_FIELD"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        violations: list[FieldViolation] | None = None,
        reason: str | None = None,
    ):
        super().__init__(message, reason=reason)
        self.violations = list(violations or [])
        if field is not None and not self.violations:
            self.violations.append(FieldViolation(field, message))


def request_id_reused(request_id: str) -> InvalidArgument:
    """The error of a request_id sent again with a different request (every idempotent call's)."""
    return InvalidArgument(
        f"request_id {request_id!r} was already used for a different request; use a new request_id",
        field="request_id",
        reason="ERROR_REASON_REQUEST_ID_REUSED",
    )


class NotFound(MaosError):
    """The named resource does not exist or is not visible to the caller."""

    default_reason = "ERROR_REASON_TASK_NOT_FOUND"


class AlreadyExists(MaosError):
    """A resource with that id exists."""

    default_reason = "ERROR_REASON_ALREADY_EXISTS"


class FailedPrecondition(MaosError):
    """The resource is not in a state that allows the call."""

    default_reason = "ERROR_REASON_TASK_FINISHED"


class Aborted(MaosError):
    """A concurrency conflict: retry at a higher level."""

    default_reason = "ERROR_REASON_STALE_ATTEMPT"


class ResourceExhausted(MaosError):
    """A limit was reached; ``retry_after`` (seconds) says when trying again may work."""

    default_reason = "ERROR_REASON_LIMIT_EXCEEDED"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        retry_after: float | None = None,
        metadata: dict[str, str] | None = None,
    ):
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = retry_after


class Unauthenticated(MaosError):
    """No valid credentials."""

    default_reason = "ERROR_REASON_UNAUTHENTICATED"


class CredentialRefused(Unauthenticated):
    """A credential that is on record and whose secret matched, refused anyway.

    Revoked (``CREDENTIAL_REVOKED``), expired (``CREDENTIAL_EXPIRED``), or its
    user disabled or deleted. Not what guessing produces, so the per-address
    failed-authentication throttle neither counts it nor turns it into
    RESOURCE_EXHAUSTED: its holder must be told to stop, not to retry later.
    """


class PermissionDenied(MaosError):
    """The caller lacks the permission the call requires."""

    default_reason = "ERROR_REASON_PERMISSION_DENIED"


class Unavailable(MaosError):
    """Try the same call again later (or on another replica)."""

    default_reason = "ERROR_REASON_STORAGE_UNAVAILABLE"
