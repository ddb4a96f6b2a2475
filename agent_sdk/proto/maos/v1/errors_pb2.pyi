# Generated from protos/ by protos/generate.py. DO NOT EDIT.
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_REASON_UNSPECIFIED: _ClassVar[ErrorReason]
    ERROR_REASON_INVALID_FIELD: _ClassVar[ErrorReason]
    ERROR_REASON_INVALID_PAGE_TOKEN: _ClassVar[ErrorReason]
    ERROR_REASON_REQUEST_ID_REUSED: _ClassVar[ErrorReason]
    ERROR_REASON_DEPENDENCY_CYCLE: _ClassVar[ErrorReason]
    ERROR_REASON_UNKNOWN_AGENT_TYPE: _ClassVar[ErrorReason]
    ERROR_REASON_TASK_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_AGENT_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_CHECKPOINT_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_BATCH_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_TEMPLATE_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_USER_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_ROLE_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_API_KEY_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_WEBHOOK_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_JOIN_TOKEN_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_DEPENDENCY_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_SUBTASK_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_CONFIG_KEY_NOT_FOUND: _ClassVar[ErrorReason]
    ERROR_REASON_ALREADY_EXISTS: _ClassVar[ErrorReason]
    ERROR_REASON_TASK_FINISHED: _ClassVar[ErrorReason]
    ERROR_REASON_TASK_NOT_RETRYABLE: _ClassVar[ErrorReason]
    ERROR_REASON_RESULT_NOT_READY: _ClassVar[ErrorReason]
    ERROR_REASON_AGENT_STATE: _ClassVar[ErrorReason]
    ERROR_REASON_PROPOSAL_CLOSED: _ClassVar[ErrorReason]
    ERROR_REASON_BATCH_SUBMITTED: _ClassVar[ErrorReason]
    ERROR_REASON_NOT_REGISTERED: _ClassVar[ErrorReason]
    ERROR_REASON_CHECKPOINT_CORRUPT: _ClassVar[ErrorReason]
    ERROR_REASON_NOT_AWAITING_APPROVAL: _ClassVar[ErrorReason]
    ERROR_REASON_NOT_SUPPORTED: _ClassVar[ErrorReason]
    ERROR_REASON_AGENT_TYPE_UNAVAILABLE: _ClassVar[ErrorReason]
    ERROR_REASON_RESUME_POINT_LOST: _ClassVar[ErrorReason]
    ERROR_REASON_STALE_ATTEMPT: _ClassVar[ErrorReason]
    ERROR_REASON_VERSION_CONFLICT: _ClassVar[ErrorReason]
    ERROR_REASON_REQUEST_IN_FLIGHT: _ClassVar[ErrorReason]
    ERROR_REASON_RATE_LIMITED: _ClassVar[ErrorReason]
    ERROR_REASON_LIMIT_EXCEEDED: _ClassVar[ErrorReason]
    ERROR_REASON_BUDGET_EXCEEDED: _ClassVar[ErrorReason]
    ERROR_REASON_UNAUTHENTICATED: _ClassVar[ErrorReason]
    ERROR_REASON_CREDENTIAL_EXPIRED: _ClassVar[ErrorReason]
    ERROR_REASON_CREDENTIAL_REVOKED: _ClassVar[ErrorReason]
    ERROR_REASON_PERMISSION_DENIED: _ClassVar[ErrorReason]
    ERROR_REASON_NOT_LEASE_HOLDER: _ClassVar[ErrorReason]
    ERROR_REASON_SHUTTING_DOWN: _ClassVar[ErrorReason]
    ERROR_REASON_STORAGE_UNAVAILABLE: _ClassVar[ErrorReason]
    ERROR_REASON_DEPENDENCY_FAILED: _ClassVar[ErrorReason]
    ERROR_REASON_TIMED_OUT: _ClassVar[ErrorReason]
    ERROR_REASON_AGENT_FAILED: _ClassVar[ErrorReason]
    ERROR_REASON_NO_CONSENSUS: _ClassVar[ErrorReason]
    ERROR_REASON_CANCELLED: _ClassVar[ErrorReason]
    ERROR_REASON_LEASE_EXPIRED: _ClassVar[ErrorReason]
    ERROR_REASON_NO_ELIGIBLE_AGENTS: _ClassVar[ErrorReason]
    ERROR_REASON_INTERNAL: _ClassVar[ErrorReason]
ERROR_REASON_UNSPECIFIED: ErrorReason
ERROR_REASON_INVALID_FIELD: ErrorReason
ERROR_REASON_INVALID_PAGE_TOKEN: ErrorReason
ERROR_REASON_REQUEST_ID_REUSED: ErrorReason
ERROR_REASON_DEPENDENCY_CYCLE: ErrorReason
ERROR_REASON_UNKNOWN_AGENT_TYPE: ErrorReason
ERROR_REASON_TASK_NOT_FOUND: ErrorReason
ERROR_REASON_AGENT_NOT_FOUND: ErrorReason
ERROR_REASON_CHECKPOINT_NOT_FOUND: ErrorReason
ERROR_REASON_BATCH_NOT_FOUND: ErrorReason
ERROR_REASON_TEMPLATE_NOT_FOUND: ErrorReason
ERROR_REASON_USER_NOT_FOUND: ErrorReason
ERROR_REASON_ROLE_NOT_FOUND: ErrorReason
ERROR_REASON_API_KEY_NOT_FOUND: ErrorReason
ERROR_REASON_WEBHOOK_NOT_FOUND: ErrorReason
ERROR_REASON_JOIN_TOKEN_NOT_FOUND: ErrorReason
ERROR_REASON_DEPENDENCY_NOT_FOUND: ErrorReason
ERROR_REASON_SUBTASK_NOT_FOUND: ErrorReason
ERROR_REASON_CONFIG_KEY_NOT_FOUND: ErrorReason
ERROR_REASON_ALREADY_EXISTS: ErrorReason
ERROR_REASON_TASK_FINISHED: ErrorReason
ERROR_REASON_TASK_NOT_RETRYABLE: ErrorReason
ERROR_REASON_RESULT_NOT_READY: ErrorReason
ERROR_REASON_AGENT_STATE: ErrorReason
ERROR_REASON_PROPOSAL_CLOSED: ErrorReason
ERROR_REASON_BATCH_SUBMITTED: ErrorReason
ERROR_REASON_NOT_REGISTERED: ErrorReason
ERROR_REASON_CHECKPOINT_CORRUPT: ErrorReason
ERROR_REASON_NOT_AWAITING_APPROVAL: ErrorReason
ERROR_REASON_NOT_SUPPORTED: ErrorReason
ERROR_REASON_AGENT_TYPE_UNAVAILABLE: ErrorReason
ERROR_REASON_RESUME_POINT_LOST: ErrorReason
ERROR_REASON_STALE_ATTEMPT: ErrorReason
ERROR_REASON_VERSION_CONFLICT: ErrorReason
ERROR_REASON_REQUEST_IN_FLIGHT: ErrorReason
ERROR_REASON_RATE_LIMITED: ErrorReason
ERROR_REASON_LIMIT_EXCEEDED: ErrorReason
ERROR_REASON_BUDGET_EXCEEDED: ErrorReason
ERROR_REASON_UNAUTHENTICATED: ErrorReason
ERROR_REASON_CREDENTIAL_EXPIRED: ErrorReason
ERROR_REASON_CREDENTIAL_REVOKED: ErrorReason
ERROR_REASON_PERMISSION_DENIED: ErrorReason
ERROR_REASON_NOT_LEASE_HOLDER: ErrorReason
ERROR_REASON_SHUTTING_DOWN: ErrorReason
ERROR_REASON_STORAGE_UNAVAILABLE: ErrorReason
ERROR_REASON_DEPENDENCY_FAILED: ErrorReason
ERROR_REASON_TIMED_OUT: ErrorReason
ERROR_REASON_AGENT_FAILED: ErrorReason
ERROR_REASON_NO_CONSENSUS: ErrorReason
ERROR_REASON_CANCELLED: ErrorReason
ERROR_REASON_LEASE_EXPIRED: ErrorReason
ERROR_REASON_NO_ELIGIBLE_AGENTS: ErrorReason
ERROR_REASON_INTERNAL: ErrorReason

class StaleAttemptDetail(_message.Message):
    __slots__ = ("subtask", "current_attempt", "current_lease_epoch")
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    CURRENT_ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    subtask: str
    current_attempt: int
    current_lease_epoch: int
    def __init__(self, subtask: _Optional[str] = ..., current_attempt: _Optional[int] = ..., current_lease_epoch: _Optional[int] = ...) -> None: ...

class VersionConflictDetail(_message.Message):
    __slots__ = ("key", "expected_version", "actual_version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_VERSION_FIELD_NUMBER: _ClassVar[int]
    key: str
    expected_version: int
    actual_version: int
    def __init__(self, key: _Optional[str] = ..., expected_version: _Optional[int] = ..., actual_version: _Optional[int] = ...) -> None: ...
