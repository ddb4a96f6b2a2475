# Generated from protos/ by protos/generate.py. DO NOT EDIT.
import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from . import enums_pb2 as _enums_pb2
from . import errors_pb2 as _errors_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RetryPolicy(_message.Message):
    __slots__ = ("max_retries", "initial_backoff", "backoff_multiplier", "max_backoff")
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    max_retries: int
    initial_backoff: _duration_pb2.Duration
    backoff_multiplier: float
    max_backoff: _duration_pb2.Duration
    def __init__(self, max_retries: _Optional[int] = ..., initial_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., backoff_multiplier: _Optional[float] = ..., max_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ConsensusPolicy(_message.Message):
    __slots__ = ("required", "threshold", "strategy", "candidates", "max_rounds", "round_timeout")
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    MAX_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    ROUND_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    required: bool
    threshold: float
    strategy: _enums_pb2.VotingStrategy
    candidates: int
    max_rounds: int
    round_timeout: _duration_pb2.Duration
    def __init__(self, required: _Optional[bool] = ..., threshold: _Optional[float] = ..., strategy: _Optional[_Union[_enums_pb2.VotingStrategy, str]] = ..., candidates: _Optional[int] = ..., max_rounds: _Optional[int] = ..., round_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("max_total_tokens", "max_cost_micros")
    MAX_TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    max_total_tokens: int
    max_cost_micros: int
    def __init__(self, max_total_tokens: _Optional[int] = ..., max_cost_micros: _Optional[int] = ...) -> None: ...

class TokenUsage(_message.Message):
    __slots__ = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "cost_micros", "model_calls", "web_search_requests", "web_fetch_requests", "tool_calls")
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_CREATION_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    MODEL_CALLS_FIELD_NUMBER: _ClassVar[int]
    WEB_SEARCH_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    WEB_FETCH_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    cost_micros: int
    model_calls: int
    web_search_requests: int
    web_fetch_requests: int
    tool_calls: int
    def __init__(self, input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cache_read_input_tokens: _Optional[int] = ..., cache_creation_input_tokens: _Optional[int] = ..., cost_micros: _Optional[int] = ..., model_calls: _Optional[int] = ..., web_search_requests: _Optional[int] = ..., web_fetch_requests: _Optional[int] = ..., tool_calls: _Optional[int] = ...) -> None: ...

class Failure(_message.Message):
    __slots__ = ("reason", "message", "subtask", "error_type")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    reason: _errors_pb2.ErrorReason
    message: str
    subtask: str
    error_type: str
    def __init__(self, reason: _Optional[_Union[_errors_pb2.ErrorReason, str]] = ..., message: _Optional[str] = ..., subtask: _Optional[str] = ..., error_type: _Optional[str] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("name", "media_type", "content", "uri", "size_bytes", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    media_type: str
    content: bytes
    uri: str
    size_bytes: int
    sha256: str
    def __init__(self, name: _Optional[str] = ..., media_type: _Optional[str] = ..., content: _Optional[bytes] = ..., uri: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class ToolCall(_message.Message):
    __slots__ = ("name", "server", "duration", "is_error", "summary", "turn")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    TURN_FIELD_NUMBER: _ClassVar[int]
    name: str
    server: bool
    duration: _duration_pb2.Duration
    is_error: bool
    summary: str
    turn: int
    def __init__(self, name: _Optional[str] = ..., server: _Optional[bool] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., is_error: _Optional[bool] = ..., summary: _Optional[str] = ..., turn: _Optional[int] = ...) -> None: ...

class Source(_message.Message):
    __slots__ = ("url", "title", "cited_text")
    URL_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CITED_TEXT_FIELD_NUMBER: _ClassVar[int]
    url: str
    title: str
    cited_text: str
    def __init__(self, url: _Optional[str] = ..., title: _Optional[str] = ..., cited_text: _Optional[str] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("name", "description", "task_type", "priority", "max_agents", "depends_on", "consensus", "timeout", "context", "constraints", "metadata", "retry_policy", "budget", "agent_type", "review_rounds", "approve_plan", "status", "status_reason", "failure", "owner", "create_time", "start_time", "end_time", "update_time", "progress", "subtasks_total", "subtasks_completed", "subtasks_running", "usage", "warnings", "retries", "batch", "template", "approval")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MAX_AGENTS_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    AGENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    REVIEW_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    APPROVE_PLAN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASON_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SUBTASKS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SUBTASKS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    SUBTASKS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    task_type: str
    priority: _enums_pb2.Priority
    max_agents: int
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    consensus: ConsensusPolicy
    timeout: _duration_pb2.Duration
    context: str
    constraints: str
    metadata: _containers.ScalarMap[str, str]
    retry_policy: RetryPolicy
    budget: Budget
    agent_type: str
    review_rounds: int
    approve_plan: bool
    status: _enums_pb2.TaskStatus
    status_reason: str
    failure: Failure
    owner: str
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    progress: float
    subtasks_total: int
    subtasks_completed: int
    subtasks_running: int
    usage: TokenUsage
    warnings: _containers.RepeatedScalarFieldContainer[str]
    retries: int
    batch: str
    template: str
    approval: PlanApproval
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., task_type: _Optional[str] = ..., priority: _Optional[_Union[_enums_pb2.Priority, str]] = ..., max_agents: _Optional[int] = ..., depends_on: _Optional[_Iterable[str]] = ..., consensus: _Optional[_Union[ConsensusPolicy, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., context: _Optional[str] = ..., constraints: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ..., budget: _Optional[_Union[Budget, _Mapping]] = ..., agent_type: _Optional[str] = ..., review_rounds: _Optional[int] = ..., approve_plan: _Optional[bool] = ..., status: _Optional[_Union[_enums_pb2.TaskStatus, str]] = ..., status_reason: _Optional[str] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., owner: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., progress: _Optional[float] = ..., subtasks_total: _Optional[int] = ..., subtasks_completed: _Optional[int] = ..., subtasks_running: _Optional[int] = ..., usage: _Optional[_Union[TokenUsage, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., retries: _Optional[int] = ..., batch: _Optional[str] = ..., template: _Optional[str] = ..., approval: _Optional[_Union[PlanApproval, _Mapping]] = ...) -> None: ...

class PlanApproval(_message.Message):
    __slots__ = ("state", "request_time", "principal", "decide_time", "reason")
    STATE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TIME_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    state: _enums_pb2.PlanApprovalState
    request_time: _timestamp_pb2.Timestamp
    principal: str
    decide_time: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, state: _Optional[_Union[_enums_pb2.PlanApprovalState, str]] = ..., request_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., principal: _Optional[str] = ..., decide_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ReviewVerdict(_message.Message):
    __slots__ = ("approved", "changes", "summary")
    APPROVED_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    approved: bool
    changes: _containers.RepeatedScalarFieldContainer[str]
    summary: str
    def __init__(self, approved: _Optional[bool] = ..., changes: _Optional[_Iterable[str]] = ..., summary: _Optional[str] = ...) -> None: ...

class ReviewRound(_message.Message):
    __slots__ = ("round", "review_subtask", "reviewer", "verdict", "revision_subtask", "usage", "note")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    REVIEW_SUBTASK_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REVISION_SUBTASK_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    round: int
    review_subtask: str
    reviewer: str
    verdict: ReviewVerdict
    revision_subtask: str
    usage: TokenUsage
    note: str
    def __init__(self, round: _Optional[int] = ..., review_subtask: _Optional[str] = ..., reviewer: _Optional[str] = ..., verdict: _Optional[_Union[ReviewVerdict, _Mapping]] = ..., revision_subtask: _Optional[str] = ..., usage: _Optional[_Union[TokenUsage, _Mapping]] = ..., note: _Optional[str] = ...) -> None: ...

class ReviewRecord(_message.Message):
    __slots__ = ("outcome", "max_rounds", "rounds")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    MAX_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    outcome: _enums_pb2.ReviewOutcome
    max_rounds: int
    rounds: _containers.RepeatedCompositeFieldContainer[ReviewRound]
    def __init__(self, outcome: _Optional[_Union[_enums_pb2.ReviewOutcome, str]] = ..., max_rounds: _Optional[int] = ..., rounds: _Optional[_Iterable[_Union[ReviewRound, _Mapping]]] = ...) -> None: ...

class Subtask(_message.Message):
    __slots__ = ("name", "title", "instructions", "capability", "agent_type", "kind", "depends_on", "status", "attempt", "agent", "progress", "progress_message", "output", "artifacts", "failure", "usage", "has_checkpoint", "queue_time", "start_time", "end_time", "status_reason", "tool_calls", "sources")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    AGENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    HAS_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    QUEUE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASON_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    name: str
    title: str
    instructions: str
    capability: str
    agent_type: str
    kind: _enums_pb2.SubtaskKind
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    status: _enums_pb2.SubtaskStatus
    attempt: int
    agent: str
    progress: float
    progress_message: str
    output: str
    artifacts: _containers.RepeatedCompositeFieldContainer[Artifact]
    failure: Failure
    usage: TokenUsage
    has_checkpoint: bool
    queue_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    status_reason: str
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    sources: _containers.RepeatedCompositeFieldContainer[Source]
    def __init__(self, name: _Optional[str] = ..., title: _Optional[str] = ..., instructions: _Optional[str] = ..., capability: _Optional[str] = ..., agent_type: _Optional[str] = ..., kind: _Optional[_Union[_enums_pb2.SubtaskKind, str]] = ..., depends_on: _Optional[_Iterable[str]] = ..., status: _Optional[_Union[_enums_pb2.SubtaskStatus, str]] = ..., attempt: _Optional[int] = ..., agent: _Optional[str] = ..., progress: _Optional[float] = ..., progress_message: _Optional[str] = ..., output: _Optional[str] = ..., artifacts: _Optional[_Iterable[_Union[Artifact, _Mapping]]] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., usage: _Optional[_Union[TokenUsage, _Mapping]] = ..., has_checkpoint: _Optional[bool] = ..., queue_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status_reason: _Optional[str] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ..., sources: _Optional[_Iterable[_Union[Source, _Mapping]]] = ...) -> None: ...

class PlannedSubtask(_message.Message):
    __slots__ = ("key", "title", "instructions", "capability", "agent_type", "kind", "depends_on")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITY_FIELD_NUMBER: _ClassVar[int]
    AGENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    key: str
    title: str
    instructions: str
    capability: str
    agent_type: str
    kind: _enums_pb2.SubtaskKind
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., title: _Optional[str] = ..., instructions: _Optional[str] = ..., capability: _Optional[str] = ..., agent_type: _Optional[str] = ..., kind: _Optional[_Union[_enums_pb2.SubtaskKind, str]] = ..., depends_on: _Optional[_Iterable[str]] = ...) -> None: ...

class ExecutionPlan(_message.Message):
    __slots__ = ("subtasks", "planner", "warnings", "complexity", "recommended_agents", "estimated_parallel_efficiency", "critical_path_length")
    SUBTASKS_FIELD_NUMBER: _ClassVar[int]
    PLANNER_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    COMPLEXITY_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDED_AGENTS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_PARALLEL_EFFICIENCY_FIELD_NUMBER: _ClassVar[int]
    CRITICAL_PATH_LENGTH_FIELD_NUMBER: _ClassVar[int]
    subtasks: _containers.RepeatedCompositeFieldContainer[PlannedSubtask]
    planner: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    complexity: str
    recommended_agents: int
    estimated_parallel_efficiency: float
    critical_path_length: int
    def __init__(self, subtasks: _Optional[_Iterable[_Union[PlannedSubtask, _Mapping]]] = ..., planner: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ..., complexity: _Optional[str] = ..., recommended_agents: _Optional[int] = ..., estimated_parallel_efficiency: _Optional[float] = ..., critical_path_length: _Optional[int] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("id", "agent", "content")
    ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    agent: str
    content: str
    def __init__(self, id: _Optional[str] = ..., agent: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class Vote(_message.Message):
    __slots__ = ("voter", "candidate_id", "confidence", "rationale", "round", "weight", "usage", "abstained")
    VOTER_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    RATIONALE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ABSTAINED_FIELD_NUMBER: _ClassVar[int]
    voter: str
    candidate_id: str
    confidence: float
    rationale: str
    round: int
    weight: float
    usage: TokenUsage
    abstained: bool
    def __init__(self, voter: _Optional[str] = ..., candidate_id: _Optional[str] = ..., confidence: _Optional[float] = ..., rationale: _Optional[str] = ..., round: _Optional[int] = ..., weight: _Optional[float] = ..., usage: _Optional[_Union[TokenUsage, _Mapping]] = ..., abstained: _Optional[bool] = ...) -> None: ...

class DependencyResult(_message.Message):
    __slots__ = ("task", "description", "output", "omitted_chars")
    TASK_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    OMITTED_CHARS_FIELD_NUMBER: _ClassVar[int]
    task: str
    description: str
    output: str
    omitted_chars: int
    def __init__(self, task: _Optional[str] = ..., description: _Optional[str] = ..., output: _Optional[str] = ..., omitted_chars: _Optional[int] = ...) -> None: ...

class ConsensusRecord(_message.Message):
    __slots__ = ("outcome", "strategy", "threshold", "rounds", "candidates", "votes", "winning_candidate_id", "agreement")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    WINNING_CANDIDATE_ID_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    outcome: _enums_pb2.ConsensusOutcome
    strategy: _enums_pb2.VotingStrategy
    threshold: float
    rounds: int
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    votes: _containers.RepeatedCompositeFieldContainer[Vote]
    winning_candidate_id: str
    agreement: float
    def __init__(self, outcome: _Optional[_Union[_enums_pb2.ConsensusOutcome, str]] = ..., strategy: _Optional[_Union[_enums_pb2.VotingStrategy, str]] = ..., threshold: _Optional[float] = ..., rounds: _Optional[int] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., votes: _Optional[_Iterable[_Union[Vote, _Mapping]]] = ..., winning_candidate_id: _Optional[str] = ..., agreement: _Optional[float] = ...) -> None: ...

class TaskResult(_message.Message):
    __slots__ = ("task", "status", "output", "artifacts", "usage", "subtasks", "consensus", "failure", "sources", "review")
    TASK_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    SUBTASKS_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    task: str
    status: _enums_pb2.TaskStatus
    output: str
    artifacts: _containers.RepeatedCompositeFieldContainer[Artifact]
    usage: TokenUsage
    subtasks: _containers.RepeatedCompositeFieldContainer[Subtask]
    consensus: ConsensusRecord
    failure: Failure
    sources: _containers.RepeatedCompositeFieldContainer[Source]
    review: ReviewRecord
    def __init__(self, task: _Optional[str] = ..., status: _Optional[_Union[_enums_pb2.TaskStatus, str]] = ..., output: _Optional[str] = ..., artifacts: _Optional[_Iterable[_Union[Artifact, _Mapping]]] = ..., usage: _Optional[_Union[TokenUsage, _Mapping]] = ..., subtasks: _Optional[_Iterable[_Union[Subtask, _Mapping]]] = ..., consensus: _Optional[_Union[ConsensusRecord, _Mapping]] = ..., failure: _Optional[_Union[Failure, _Mapping]] = ..., sources: _Optional[_Iterable[_Union[Source, _Mapping]]] = ..., review: _Optional[_Union[ReviewRecord, _Mapping]] = ...) -> None: ...

class Agent(_message.Message):
    __slots__ = ("name", "agent_type", "capabilities", "max_concurrency", "labels", "language", "sdk_version", "status", "assignments", "free_slots", "hostname", "pid", "replica", "managed", "completed_subtasks", "failed_subtasks", "reliability", "usage", "connect_time", "last_heartbeat_time", "disconnect_time", "owner", "backing")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    SDK_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    FREE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    MANAGED_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_SUBTASKS_FIELD_NUMBER: _ClassVar[int]
    FAILED_SUBTASKS_FIELD_NUMBER: _ClassVar[int]
    RELIABILITY_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CONNECT_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_TIME_FIELD_NUMBER: _ClassVar[int]
    DISCONNECT_TIME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    BACKING_FIELD_NUMBER: _ClassVar[int]
    name: str
    agent_type: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    max_concurrency: int
    labels: _containers.ScalarMap[str, str]
    language: str
    sdk_version: str
    status: _enums_pb2.AgentStatus
    assignments: _containers.RepeatedScalarFieldContainer[str]
    free_slots: int
    hostname: str
    pid: int
    replica: str
    managed: bool
    completed_subtasks: int
    failed_subtasks: int
    reliability: float
    usage: TokenUsage
    connect_time: _timestamp_pb2.Timestamp
    last_heartbeat_time: _timestamp_pb2.Timestamp
    disconnect_time: _timestamp_pb2.Timestamp
    owner: str
    backing: _enums_pb2.AgentBacking
    def __init__(self, name: _Optional[str] = ..., agent_type: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., max_concurrency: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., language: _Optional[str] = ..., sdk_version: _Optional[str] = ..., status: _Optional[_Union[_enums_pb2.AgentStatus, str]] = ..., assignments: _Optional[_Iterable[str]] = ..., free_slots: _Optional[int] = ..., hostname: _Optional[str] = ..., pid: _Optional[int] = ..., replica: _Optional[str] = ..., managed: _Optional[bool] = ..., completed_subtasks: _Optional[int] = ..., failed_subtasks: _Optional[int] = ..., reliability: _Optional[float] = ..., usage: _Optional[_Union[TokenUsage, _Mapping]] = ..., connect_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_heartbeat_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., disconnect_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner: _Optional[str] = ..., backing: _Optional[_Union[_enums_pb2.AgentBacking, str]] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("name", "display_name", "description", "create_time", "automatic", "size_bytes", "compressed_size_bytes", "sha256", "components", "task_count", "format_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    AUTOMATIC_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    COMPRESSED_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    TASK_COUNT_FIELD_NUMBER: _ClassVar[int]
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    description: str
    create_time: _timestamp_pb2.Timestamp
    automatic: bool
    size_bytes: int
    compressed_size_bytes: int
    sha256: str
    components: _containers.RepeatedScalarFieldContainer[str]
    task_count: int
    format_version: str
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., description: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., automatic: _Optional[bool] = ..., size_bytes: _Optional[int] = ..., compressed_size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., components: _Optional[_Iterable[str]] = ..., task_count: _Optional[int] = ..., format_version: _Optional[str] = ...) -> None: ...

class Batch(_message.Message):
    __slots__ = ("name", "display_name", "status", "pending_tasks", "tasks", "tasks_completed", "tasks_failed", "owner", "create_time", "submit_time", "schedule", "tasks_pending", "tasks_queued", "tasks_running", "tasks_cancelled", "task_count", "progress")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PENDING_TASKS_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    TASKS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    TASKS_FAILED_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SUBMIT_TIME_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    TASKS_PENDING_FIELD_NUMBER: _ClassVar[int]
    TASKS_QUEUED_FIELD_NUMBER: _ClassVar[int]
    TASKS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    TASKS_CANCELLED_FIELD_NUMBER: _ClassVar[int]
    TASK_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    status: _enums_pb2.BatchStatus
    pending_tasks: _containers.RepeatedCompositeFieldContainer[Task]
    tasks: _containers.RepeatedScalarFieldContainer[str]
    tasks_completed: int
    tasks_failed: int
    owner: str
    create_time: _timestamp_pb2.Timestamp
    submit_time: _timestamp_pb2.Timestamp
    schedule: _enums_pb2.BatchSchedule
    tasks_pending: int
    tasks_queued: int
    tasks_running: int
    tasks_cancelled: int
    task_count: int
    progress: float
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., status: _Optional[_Union[_enums_pb2.BatchStatus, str]] = ..., pending_tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ..., tasks: _Optional[_Iterable[str]] = ..., tasks_completed: _Optional[int] = ..., tasks_failed: _Optional[int] = ..., owner: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., submit_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., schedule: _Optional[_Union[_enums_pb2.BatchSchedule, str]] = ..., tasks_pending: _Optional[int] = ..., tasks_queued: _Optional[int] = ..., tasks_running: _Optional[int] = ..., tasks_cancelled: _Optional[int] = ..., task_count: _Optional[int] = ..., progress: _Optional[float] = ...) -> None: ...

class TemplateParameter(_message.Message):
    __slots__ = ("name", "description", "default_value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    default_value: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., default_value: _Optional[str] = ...) -> None: ...

class Template(_message.Message):
    __slots__ = ("name", "description", "task", "parameters", "owner", "create_time", "source_task", "display_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_TASK_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    task: Task
    parameters: _containers.RepeatedCompositeFieldContainer[TemplateParameter]
    owner: str
    create_time: _timestamp_pb2.Timestamp
    source_task: str
    display_name: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., task: _Optional[_Union[Task, _Mapping]] = ..., parameters: _Optional[_Iterable[_Union[TemplateParameter, _Mapping]]] = ..., owner: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source_task: _Optional[str] = ..., display_name: _Optional[str] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("name", "email", "roles", "disabled", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    email: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    disabled: bool
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., email: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., disabled: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Role(_message.Message):
    __slots__ = ("name", "description", "permissions", "builtin")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    BUILTIN_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    permissions: _containers.RepeatedScalarFieldContainer[str]
    builtin: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., permissions: _Optional[_Iterable[str]] = ..., builtin: _Optional[bool] = ...) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("name", "display_name", "user", "permissions", "create_time", "expire_time", "last_used_time", "revoke_time", "prefix")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    PERMISSIONS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_TIME_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TIME_FIELD_NUMBER: _ClassVar[int]
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    user: str
    permissions: _containers.RepeatedScalarFieldContainer[str]
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    last_used_time: _timestamp_pb2.Timestamp
    revoke_time: _timestamp_pb2.Timestamp
    prefix: str
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., user: _Optional[str] = ..., permissions: _Optional[_Iterable[str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_used_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoke_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., prefix: _Optional[str] = ...) -> None: ...

class JoinToken(_message.Message):
    __slots__ = ("name", "agent_types", "expire_time", "max_uses", "uses", "create_time", "revoke_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AGENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    agent_types: _containers.RepeatedScalarFieldContainer[str]
    expire_time: _timestamp_pb2.Timestamp
    max_uses: int
    uses: int
    create_time: _timestamp_pb2.Timestamp
    revoke_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., agent_types: _Optional[_Iterable[str]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_uses: _Optional[int] = ..., uses: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revoke_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("id", "time", "principal", "key_id", "peer", "method", "resource", "decision", "status_code", "request_id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    time: _timestamp_pb2.Timestamp
    principal: str
    key_id: str
    peer: str
    method: str
    resource: str
    decision: _enums_pb2.AuditDecision
    status_code: str
    request_id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., principal: _Optional[str] = ..., key_id: _Optional[str] = ..., peer: _Optional[str] = ..., method: _Optional[str] = ..., resource: _Optional[str] = ..., decision: _Optional[_Union[_enums_pb2.AuditDecision, str]] = ..., status_code: _Optional[str] = ..., request_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class Webhook(_message.Message):
    __slots__ = ("name", "url", "event_types", "secret", "disabled", "create_time", "owner", "events", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    url: str
    event_types: _containers.RepeatedScalarFieldContainer[_enums_pb2.EventType]
    secret: str
    disabled: bool
    create_time: _timestamp_pb2.Timestamp
    owner: str
    events: _containers.RepeatedScalarFieldContainer[str]
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., url: _Optional[str] = ..., event_types: _Optional[_Iterable[_Union[_enums_pb2.EventType, str]]] = ..., secret: _Optional[str] = ..., disabled: _Optional[bool] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner: _Optional[str] = ..., events: _Optional[_Iterable[str]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("id", "type", "time", "task", "subtask", "agent", "from_status", "to_status", "message", "data")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: _enums_pb2.EventType
    time: _timestamp_pb2.Timestamp
    task: str
    subtask: str
    agent: str
    from_status: str
    to_status: str
    message: str
    data: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., type: _Optional[_Union[_enums_pb2.EventType, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., task: _Optional[str] = ..., subtask: _Optional[str] = ..., agent: _Optional[str] = ..., from_status: _Optional[str] = ..., to_status: _Optional[str] = ..., message: _Optional[str] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class LogRecord(_message.Message):
    __slots__ = ("time", "level", "component", "message", "task", "subtask", "agent", "fields", "id")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TIME_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    level: _enums_pb2.LogLevel
    component: str
    message: str
    task: str
    subtask: str
    agent: str
    fields: _containers.ScalarMap[str, str]
    id: str
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., level: _Optional[_Union[_enums_pb2.LogLevel, str]] = ..., component: _Optional[str] = ..., message: _Optional[str] = ..., task: _Optional[str] = ..., subtask: _Optional[str] = ..., agent: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ..., id: _Optional[str] = ...) -> None: ...

class ProcessResources(_message.Message):
    __slots__ = ("pid", "agent", "agent_type", "cpu_percent", "cpu_seconds", "memory_bytes", "memory_percent", "threads", "open_files", "connections", "measured")
    PID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    AGENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CPU_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FILES_FIELD_NUMBER: _ClassVar[int]
    CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    MEASURED_FIELD_NUMBER: _ClassVar[int]
    pid: int
    agent: str
    agent_type: str
    cpu_percent: float
    cpu_seconds: float
    memory_bytes: int
    memory_percent: float
    threads: int
    open_files: int
    connections: int
    measured: bool
    def __init__(self, pid: _Optional[int] = ..., agent: _Optional[str] = ..., agent_type: _Optional[str] = ..., cpu_percent: _Optional[float] = ..., cpu_seconds: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., memory_percent: _Optional[float] = ..., threads: _Optional[int] = ..., open_files: _Optional[int] = ..., connections: _Optional[int] = ..., measured: _Optional[bool] = ...) -> None: ...
