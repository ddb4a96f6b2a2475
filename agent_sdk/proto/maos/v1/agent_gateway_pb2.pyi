# Generated from protos/ by protos/generate.py. DO NOT EDIT.
import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from . import enums_pb2 as _enums_pb2
from . import errors_pb2 as _errors_pb2
from . import messages_pb2 as _messages_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConnectRequest(_message.Message):
    __slots__ = ("register", "heartbeat", "progress", "output", "result", "failure", "vote", "logs", "state", "results", "permit_request", "model_outcome")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    VOTE_FIELD_NUMBER: _ClassVar[int]
    LOGS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    PERMIT_REQUEST_FIELD_NUMBER: _ClassVar[int]
    MODEL_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    register: Register
    heartbeat: Heartbeat
    progress: Progress
    output: OutputChunk
    result: SubtaskResult
    failure: SubtaskFailure
    vote: CastVote
    logs: AgentLogs
    state: SharedStateRequest
    results: SubtaskResults
    permit_request: ModelPermitRequest
    model_outcome: ModelCallOutcome
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., output: _Optional[_Union[OutputChunk, _Mapping]] = ..., result: _Optional[_Union[SubtaskResult, _Mapping]] = ..., failure: _Optional[_Union[SubtaskFailure, _Mapping]] = ..., vote: _Optional[_Union[CastVote, _Mapping]] = ..., logs: _Optional[_Union[AgentLogs, _Mapping]] = ..., state: _Optional[_Union[SharedStateRequest, _Mapping]] = ..., results: _Optional[_Union[SubtaskResults, _Mapping]] = ..., permit_request: _Optional[_Union[ModelPermitRequest, _Mapping]] = ..., model_outcome: _Optional[_Union[ModelCallOutcome, _Mapping]] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("registered", "assignment", "cancel", "vote_request", "drain", "pause", "resume", "ack", "state", "committed", "assignments", "permit")
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    VOTE_REQUEST_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    PAUSE_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    PERMIT_FIELD_NUMBER: _ClassVar[int]
    registered: Registered
    assignment: Assignment
    cancel: Cancel
    vote_request: VoteRequest
    drain: Drain
    pause: Pause
    resume: Resume
    ack: ReportAck
    state: SharedStateResponse
    committed: Committed
    assignments: Assignments
    permit: ModelPermit
    def __init__(self, registered: _Optional[_Union[Registered, _Mapping]] = ..., assignment: _Optional[_Union[Assignment, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., vote_request: _Optional[_Union[VoteRequest, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ..., pause: _Optional[_Union[Pause, _Mapping]] = ..., resume: _Optional[_Union[Resume, _Mapping]] = ..., ack: _Optional[_Union[ReportAck, _Mapping]] = ..., state: _Optional[_Union[SharedStateResponse, _Mapping]] = ..., committed: _Optional[_Union[Committed, _Mapping]] = ..., assignments: _Optional[_Union[Assignments, _Mapping]] = ..., permit: _Optional[_Union[ModelPermit, _Mapping]] = ...) -> None: ...

class AssignmentRef(_message.Message):
    __slots__ = ("subtask", "attempt", "lease_epoch")
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LEASE_EPOCH_FIELD_NUMBER: _ClassVar[int]
    subtask: str
    attempt: int
    lease_epoch: int
    def __init__(self, subtask: _Optional[str] = ..., attempt: _Optional[int] = ..., lease_epoch: _Optional[int] = ...) -> None: ...

class Register(_message.Message):
    __slots__ = ("agent_type", "capabilities", "max_concurrency", "labels", "language", "sdk_version", "hostname", "pid", "resume", "join_token", "launch_id", "accepts_assignment_batches", "backing")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    SDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    JOIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_ASSIGNMENT_BATCHES_FIELD_NUMBER: _ClassVar[int]
    BACKING_FIELD_NUMBER: _ClassVar[int]
    agent_type: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    max_concurrency: int
    labels: _containers.ScalarMap[str, str]
    language: str
    sdk_version: str
    hostname: str
    pid: int
    resume: ResumeSession
    join_token: str
    launch_id: str
    accepts_assignment_batches: bool
    backing: _enums_pb2.AgentBacking
    def __init__(self, agent_type: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., max_concurrency: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., language: _Optional[str] = ..., sdk_version: _Optional[str] = ..., hostname: _Optional[str] = ..., pid: _Optional[int] = ..., resume: _Optional[_Union[ResumeSession, _Mapping]] = ..., join_token: _Optional[str] = ..., launch_id: _Optional[str] = ..., accepts_assignment_batches: _Optional[bool] = ..., backing: _Optional[_Union[_enums_pb2.AgentBacking, str]] = ...) -> None: ...

class ResumeSession(_message.Message):
    __slots__ = ("agent", "session_id", "assignments")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    agent: str
    session_id: str
    assignments: _containers.RepeatedCompositeFieldContainer[AssignmentRef]
    def __init__(self, agent: _Optional[str] = ..., session_id: _Optional[str] = ..., assignments: _Optional[_Iterable[_Union[AssignmentRef, _Mapping]]] = ...) -> None: ...

class Registered(_message.Message):
    __slots__ = ("agent", "session_id", "heartbeat_interval", "lease_ttl", "credential", "resumed", "revoked", "server_version", "replica", "accepts_result_batches", "paces_model_calls", "idle_heartbeat_interval")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    ACCEPTS_RESULT_BATCHES_FIELD_NUMBER: _ClassVar[int]
    PACES_MODEL_CALLS_FIELD_NUMBER: _ClassVar[int]
    IDLE_HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    agent: str
    session_id: str
    heartbeat_interval: _duration_pb2.Duration
    lease_ttl: _duration_pb2.Duration
    credential: str
    resumed: _containers.RepeatedCompositeFieldContainer[AssignmentRef]
    revoked: _containers.RepeatedCompositeFieldContainer[AssignmentRef]
    server_version: str
    replica: str
    accepts_result_batches: bool
    paces_model_calls: bool
    idle_heartbeat_interval: _duration_pb2.Duration
    def __init__(self, agent: _Optional[str] = ..., session_id: _Optional[str] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., lease_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., credential: _Optional[str] = ..., resumed: _Optional[_Iterable[_Union[AssignmentRef, _Mapping]]] = ..., revoked: _Optional[_Iterable[_Union[AssignmentRef, _Mapping]]] = ..., server_version: _Optional[str] = ..., replica: _Optional[str] = ..., accepts_result_batches: _Optional[bool] = ..., paces_model_calls: _Optional[bool] = ..., idle_heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("running", "free_slots", "draining")
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    FREE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    running: _containers.RepeatedCompositeFieldContainer[AssignmentRef]
    free_slots: int
    draining: bool
    def __init__(self, running: _Optional[_Iterable[_Union[AssignmentRef, _Mapping]]] = ..., free_slots: _Optional[int] = ..., draining: _Optional[bool] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("ref", "fraction", "message", "checkpoint")
    REF_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    ref: AssignmentRef
    fraction: float
    message: str
    checkpoint: bytes
    def __init__(self, ref: _Optional[_Union[AssignmentRef, _Mapping]] = ..., fraction: _Optional[float] = ..., message: _Optional[str] = ..., checkpoint: _Optional[bytes] = ...) -> None: ...

class OutputChunk(_message.Message):
    __slots__ = ("ref", "text", "sequence")
    REF_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ref: AssignmentRef
    text: str
    sequence: int
    def __init__(self, ref: _Optional[_Union[AssignmentRef, _Mapping]] = ..., text: _Optional[str] = ..., sequence: _Optional[int] = ...) -> None: ...

class SubtaskResult(_message.Message):
    __slots__ = ("ref", "output", "artifacts", "usage", "request_id", "tool_calls", "sources")
    REF_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    ref: AssignmentRef
    output: str
    artifacts: _containers.RepeatedCompositeFieldContainer[_messages_pb2.Artifact]
    usage: _messages_pb2.TokenUsage
    request_id: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[_messages_pb2.ToolCall]
    sources: _containers.RepeatedCompositeFieldContainer[_messages_pb2.Source]
    def __init__(self, ref: _Optional[_Union[AssignmentRef, _Mapping]] = ..., output: _Optional[str] = ..., artifacts: _Optional[_Iterable[_Union[_messages_pb2.Artifact, _Mapping]]] = ..., usage: _Optional[_Union[_messages_pb2.TokenUsage, _Mapping]] = ..., request_id: _Optional[str] = ..., tool_calls: _Optional[_Iterable[_Union[_messages_pb2.ToolCall, _Mapping]]] = ..., sources: _Optional[_Iterable[_Union[_messages_pb2.Source, _Mapping]]] = ...) -> None: ...

class SubtaskResults(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SubtaskResult]
    def __init__(self, results: _Optional[_Iterable[_Union[SubtaskResult, _Mapping]]] = ...) -> None: ...

class SubtaskFailure(_message.Message):
    __slots__ = ("ref", "message", "retryable", "retry_after", "error_type", "usage", "reason")
    REF_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ref: AssignmentRef
    message: str
    retryable: bool
    retry_after: _duration_pb2.Duration
    error_type: str
    usage: _messages_pb2.TokenUsage
    reason: _errors_pb2.ErrorReason
    def __init__(self, ref: _Optional[_Union[AssignmentRef, _Mapping]] = ..., message: _Optional[str] = ..., retryable: _Optional[bool] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., error_type: _Optional[str] = ..., usage: _Optional[_Union[_messages_pb2.TokenUsage, _Mapping]] = ..., reason: _Optional[_Union[_errors_pb2.ErrorReason, str]] = ...) -> None: ...

class CastVote(_message.Message):
    __slots__ = ("proposal", "candidate_id", "confidence", "rationale", "round", "request_id", "usage", "abstain")
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ABSTAIN_FIELD_NUMBER: _ClassVar[int]
    proposal: str
    candidate_id: str
    confidence: float
    rationale: str
    round: int
    request_id: str
    usage: _messages_pb2.TokenUsage
    abstain: bool
    def __init__(self, proposal: _Optional[str] = ..., candidate_id: _Optional[str] = ..., confidence: _Optional[float] = ..., rationale: _Optional[str] = ..., round: _Optional[int] = ..., request_id: _Optional[str] = ..., usage: _Optional[_Union[_messages_pb2.TokenUsage, _Mapping]] = ..., abstain: _Optional[bool] = ...) -> None: ...

class AgentLogs(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[_messages_pb2.LogRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[_messages_pb2.LogRecord, _Mapping]]] = ...) -> None: ...

class SharedStateRequest(_message.Message):
    __slots__ = ("request_id", "ref", "key", "get", "put", "delete")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    GET_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    ref: AssignmentRef
    key: str
    get: SharedStateGet
    put: SharedStatePut
    delete: SharedStateDelete
    def __init__(self, request_id: _Optional[int] = ..., ref: _Optional[_Union[AssignmentRef, _Mapping]] = ..., key: _Optional[str] = ..., get: _Optional[_Union[SharedStateGet, _Mapping]] = ..., put: _Optional[_Union[SharedStatePut, _Mapping]] = ..., delete: _Optional[_Union[SharedStateDelete, _Mapping]] = ...) -> None: ...

class SharedStateGet(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SharedStatePut(_message.Message):
    __slots__ = ("value", "expected_version", "force")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    expected_version: int
    force: bool
    def __init__(self, value: _Optional[bytes] = ..., expected_version: _Optional[int] = ..., force: _Optional[bool] = ...) -> None: ...

class SharedStateDelete(_message.Message):
    __slots__ = ("expected_version", "force")
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    expected_version: int
    force: bool
    def __init__(self, expected_version: _Optional[int] = ..., force: _Optional[bool] = ...) -> None: ...

class SharedStateResponse(_message.Message):
    __slots__ = ("request_id", "found", "value", "version", "error", "error_message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    found: bool
    value: bytes
    version: int
    error: _errors_pb2.ErrorReason
    error_message: str
    def __init__(self, request_id: _Optional[int] = ..., found: _Optional[bool] = ..., value: _Optional[bytes] = ..., version: _Optional[int] = ..., error: _Optional[_Union[_errors_pb2.ErrorReason, str]] = ..., error_message: _Optional[str] = ...) -> None: ...

class Assignments(_message.Message):
    __slots__ = ("assignments",)
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[Assignment]
    def __init__(self, assignments: _Optional[_Iterable[_Union[Assignment, _Mapping]]] = ...) -> None: ...

class Assignment(_message.Message):
    __slots__ = ("ref", "task", "title", "instructions", "capability", "kind", "task_description", "context", "constraints", "metadata", "inputs", "resume_checkpoint", "deadline", "lease_ttl", "remaining_budget", "priority", "dependency_results", "plan")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class InputsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REF_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TASK_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    RESUME_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    LEASE_TTL_FIELD_NUMBER: _ClassVar[int]
    REMAINING_BUDGET_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCY_RESULTS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    ref: AssignmentRef
    task: str
    title: str
    instructions: str
    capability: str
    kind: _enums_pb2.SubtaskKind
    task_description: str
    context: str
    constraints: str
    metadata: _containers.ScalarMap[str, str]
    inputs: _containers.ScalarMap[str, str]
    resume_checkpoint: bytes
    deadline: _timestamp_pb2.Timestamp
    lease_ttl: _duration_pb2.Duration
    remaining_budget: _messages_pb2.Budget
    priority: _enums_pb2.Priority
    dependency_results: _containers.RepeatedCompositeFieldContainer[_messages_pb2.DependencyResult]
    plan: str
    def __init__(self, ref: _Optional[_Union[AssignmentRef, _Mapping]] = ..., task: _Optional[str] = ..., title: _Optional[str] = ..., instructions: _Optional[str] = ..., capability: _Optional[str] = ..., kind: _Optional[_Union[_enums_pb2.SubtaskKind, str]] = ..., task_description: _Optional[str] = ..., context: _Optional[str] = ..., constraints: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., inputs: _Optional[_Mapping[str, str]] = ..., resume_checkpoint: _Optional[bytes] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lease_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., remaining_budget: _Optional[_Union[_messages_pb2.Budget, _Mapping]] = ..., priority: _Optional[_Union[_enums_pb2.Priority, str]] = ..., dependency_results: _Optional[_Iterable[_Union[_messages_pb2.DependencyResult, _Mapping]]] = ..., plan: _Optional[str] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ("ref", "reason")
    REF_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ref: AssignmentRef
    reason: str
    def __init__(self, ref: _Optional[_Union[AssignmentRef, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class VoteRequest(_message.Message):
    __slots__ = ("proposal", "task", "question", "candidates", "round", "deadline", "previous_votes", "context", "constraints", "remaining_budget")
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    QUESTION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VOTES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_BUDGET_FIELD_NUMBER: _ClassVar[int]
    proposal: str
    task: str
    question: str
    candidates: _containers.RepeatedCompositeFieldContainer[_messages_pb2.Candidate]
    round: int
    deadline: _timestamp_pb2.Timestamp
    previous_votes: _containers.RepeatedCompositeFieldContainer[_messages_pb2.Vote]
    context: str
    constraints: str
    remaining_budget: _messages_pb2.Budget
    def __init__(self, proposal: _Optional[str] = ..., task: _Optional[str] = ..., question: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[_messages_pb2.Candidate, _Mapping]]] = ..., round: _Optional[int] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., previous_votes: _Optional[_Iterable[_Union[_messages_pb2.Vote, _Mapping]]] = ..., context: _Optional[str] = ..., constraints: _Optional[str] = ..., remaining_budget: _Optional[_Union[_messages_pb2.Budget, _Mapping]] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ("grace", "reason", "exit")
    GRACE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    grace: _duration_pb2.Duration
    reason: str
    exit: bool
    def __init__(self, grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., reason: _Optional[str] = ..., exit: _Optional[bool] = ...) -> None: ...

class Pause(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Resume(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Committed(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedCompositeFieldContainer[AssignmentRef]
    def __init__(self, refs: _Optional[_Iterable[_Union[AssignmentRef, _Mapping]]] = ...) -> None: ...

class ReportAck(_message.Message):
    __slots__ = ("ref", "proposal", "accepted", "reason", "message")
    REF_FIELD_NUMBER: _ClassVar[int]
    PROPOSAL_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ref: AssignmentRef
    proposal: str
    accepted: bool
    reason: _errors_pb2.ErrorReason
    message: str
    def __init__(self, ref: _Optional[_Union[AssignmentRef, _Mapping]] = ..., proposal: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[_Union[_errors_pb2.ErrorReason, str]] = ..., message: _Optional[str] = ...) -> None: ...

class ModelPermitRequest(_message.Message):
    __slots__ = ("request_id", "model", "input_tokens", "output_tokens", "max_wait", "ref")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    model: str
    input_tokens: int
    output_tokens: int
    max_wait: _duration_pb2.Duration
    ref: AssignmentRef
    def __init__(self, request_id: _Optional[int] = ..., model: _Optional[str] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., max_wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., ref: _Optional[_Union[AssignmentRef, _Mapping]] = ...) -> None: ...

class ModelPermit(_message.Message):
    __slots__ = ("request_id", "granted", "permit_id", "waited", "retry_after", "reason")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    PERMIT_ID_FIELD_NUMBER: _ClassVar[int]
    WAITED_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    granted: bool
    permit_id: str
    waited: _duration_pb2.Duration
    retry_after: _duration_pb2.Duration
    reason: str
    def __init__(self, request_id: _Optional[int] = ..., granted: _Optional[bool] = ..., permit_id: _Optional[str] = ..., waited: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ModelCallOutcome(_message.Message):
    __slots__ = ("permit_id", "status_code", "retry_after", "headers", "input_tokens", "output_tokens", "abandoned", "model")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PERMIT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ABANDONED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    permit_id: str
    status_code: int
    retry_after: _duration_pb2.Duration
    headers: _containers.ScalarMap[str, str]
    input_tokens: int
    output_tokens: int
    abandoned: bool
    model: str
    def __init__(self, permit_id: _Optional[str] = ..., status_code: _Optional[int] = ..., retry_after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., headers: _Optional[_Mapping[str, str]] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., abandoned: _Optional[bool] = ..., model: _Optional[str] = ...) -> None: ...
