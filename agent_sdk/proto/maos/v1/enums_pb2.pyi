# Generated from protos/ by protos/generate.py. DO NOT EDIT.
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor

class TaskStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATUS_UNSPECIFIED: _ClassVar[TaskStatus]
    TASK_STATUS_PENDING: _ClassVar[TaskStatus]
    TASK_STATUS_QUEUED: _ClassVar[TaskStatus]
    TASK_STATUS_RUNNING: _ClassVar[TaskStatus]
    TASK_STATUS_COMPLETED: _ClassVar[TaskStatus]
    TASK_STATUS_FAILED: _ClassVar[TaskStatus]
    TASK_STATUS_CANCELLED: _ClassVar[TaskStatus]

class SubtaskStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUBTASK_STATUS_UNSPECIFIED: _ClassVar[SubtaskStatus]
    SUBTASK_STATUS_BLOCKED: _ClassVar[SubtaskStatus]
    SUBTASK_STATUS_QUEUED: _ClassVar[SubtaskStatus]
    SUBTASK_STATUS_RUNNING: _ClassVar[SubtaskStatus]
    SUBTASK_STATUS_COMPLETED: _ClassVar[SubtaskStatus]
    SUBTASK_STATUS_FAILED: _ClassVar[SubtaskStatus]
    SUBTASK_STATUS_CANCELLED: _ClassVar[SubtaskStatus]

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[Priority]
    PRIORITY_LOW: _ClassVar[Priority]
    PRIORITY_NORMAL: _ClassVar[Priority]
    PRIORITY_HIGH: _ClassVar[Priority]
    PRIORITY_CRITICAL: _ClassVar[Priority]

class SubtaskKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SUBTASK_KIND_UNSPECIFIED: _ClassVar[SubtaskKind]
    SUBTASK_KIND_WORK: _ClassVar[SubtaskKind]
    SUBTASK_KIND_SYNTHESIS: _ClassVar[SubtaskKind]
    SUBTASK_KIND_CANDIDATE: _ClassVar[SubtaskKind]
    SUBTASK_KIND_REVIEW: _ClassVar[SubtaskKind]
    SUBTASK_KIND_REVISION: _ClassVar[SubtaskKind]

class AgentBacking(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_BACKING_UNSPECIFIED: _ClassVar[AgentBacking]
    AGENT_BACKING_MODEL: _ClassVar[AgentBacking]
    AGENT_BACKING_OFFLINE: _ClassVar[AgentBacking]

class BreakerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BREAKER_STATE_UNSPECIFIED: _ClassVar[BreakerState]
    BREAKER_STATE_CLOSED: _ClassVar[BreakerState]
    BREAKER_STATE_OPEN: _ClassVar[BreakerState]
    BREAKER_STATE_HALF_OPEN: _ClassVar[BreakerState]

class AgentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_STATUS_UNSPECIFIED: _ClassVar[AgentStatus]
    AGENT_STATUS_IDLE: _ClassVar[AgentStatus]
    AGENT_STATUS_BUSY: _ClassVar[AgentStatus]
    AGENT_STATUS_PAUSED: _ClassVar[AgentStatus]
    AGENT_STATUS_DRAINING: _ClassVar[AgentStatus]
    AGENT_STATUS_DISCONNECTED: _ClassVar[AgentStatus]
    AGENT_STATUS_TERMINATED: _ClassVar[AgentStatus]
    AGENT_STATUS_STARTING: _ClassVar[AgentStatus]

class VotingStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VOTING_STRATEGY_UNSPECIFIED: _ClassVar[VotingStrategy]
    VOTING_STRATEGY_MAJORITY: _ClassVar[VotingStrategy]
    VOTING_STRATEGY_WEIGHTED: _ClassVar[VotingStrategy]
    VOTING_STRATEGY_UNANIMOUS: _ClassVar[VotingStrategy]

class ConsensusOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSENSUS_OUTCOME_UNSPECIFIED: _ClassVar[ConsensusOutcome]
    CONSENSUS_OUTCOME_PENDING: _ClassVar[ConsensusOutcome]
    CONSENSUS_OUTCOME_REACHED: _ClassVar[ConsensusOutcome]
    CONSENSUS_OUTCOME_NO_CONSENSUS: _ClassVar[ConsensusOutcome]

class PlanApprovalState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PLAN_APPROVAL_STATE_UNSPECIFIED: _ClassVar[PlanApprovalState]
    PLAN_APPROVAL_STATE_WAITING: _ClassVar[PlanApprovalState]
    PLAN_APPROVAL_STATE_APPROVED: _ClassVar[PlanApprovalState]
    PLAN_APPROVAL_STATE_REJECTED: _ClassVar[PlanApprovalState]

class ReviewOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVIEW_OUTCOME_UNSPECIFIED: _ClassVar[ReviewOutcome]
    REVIEW_OUTCOME_PENDING: _ClassVar[ReviewOutcome]
    REVIEW_OUTCOME_APPROVED: _ClassVar[ReviewOutcome]
    REVIEW_OUTCOME_EXHAUSTED: _ClassVar[ReviewOutcome]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_TASK_SUBMITTED: _ClassVar[EventType]
    EVENT_TYPE_TASK_STATUS_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_TASK_UPDATED: _ClassVar[EventType]
    EVENT_TYPE_SUBTASK_STATUS_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_SUBTASK_PROGRESS: _ClassVar[EventType]
    EVENT_TYPE_SUBTASK_OUTPUT: _ClassVar[EventType]
    EVENT_TYPE_AGENT_CONNECTED: _ClassVar[EventType]
    EVENT_TYPE_AGENT_DISCONNECTED: _ClassVar[EventType]
    EVENT_TYPE_AGENT_STATUS_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_LEASE_EXPIRED: _ClassVar[EventType]
    EVENT_TYPE_CONSENSUS_ROUND: _ClassVar[EventType]
    EVENT_TYPE_CHECKPOINT_CREATED: _ClassVar[EventType]
    EVENT_TYPE_BATCH_STATUS_CHANGED: _ClassVar[EventType]
    EVENT_TYPE_PLAN_APPROVAL: _ClassVar[EventType]
    EVENT_TYPE_REVIEW_ROUND: _ClassVar[EventType]

class LogLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_LEVEL_UNSPECIFIED: _ClassVar[LogLevel]
    LOG_LEVEL_DEBUG: _ClassVar[LogLevel]
    LOG_LEVEL_INFO: _ClassVar[LogLevel]
    LOG_LEVEL_WARNING: _ClassVar[LogLevel]
    LOG_LEVEL_ERROR: _ClassVar[LogLevel]
    LOG_LEVEL_CRITICAL: _ClassVar[LogLevel]

class TaskView(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_VIEW_UNSPECIFIED: _ClassVar[TaskView]
    TASK_VIEW_BASIC: _ClassVar[TaskView]
    TASK_VIEW_FULL: _ClassVar[TaskView]

class BatchStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_STATUS_UNSPECIFIED: _ClassVar[BatchStatus]
    BATCH_STATUS_OPEN: _ClassVar[BatchStatus]
    BATCH_STATUS_RUNNING: _ClassVar[BatchStatus]
    BATCH_STATUS_COMPLETED: _ClassVar[BatchStatus]
    BATCH_STATUS_FAILED: _ClassVar[BatchStatus]

class BatchSchedule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_SCHEDULE_UNSPECIFIED: _ClassVar[BatchSchedule]
    BATCH_SCHEDULE_PARALLEL: _ClassVar[BatchSchedule]
    BATCH_SCHEDULE_SEQUENTIAL: _ClassVar[BatchSchedule]

class ComponentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPONENT_STATE_UNSPECIFIED: _ClassVar[ComponentState]
    COMPONENT_STATE_HEALTHY: _ClassVar[ComponentState]
    COMPONENT_STATE_DEGRADED: _ClassVar[ComponentState]
    COMPONENT_STATE_UNHEALTHY: _ClassVar[ComponentState]
    COMPONENT_STATE_DISABLED: _ClassVar[ComponentState]

class AuditDecision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIT_DECISION_UNSPECIFIED: _ClassVar[AuditDecision]
    AUDIT_DECISION_ALLOW: _ClassVar[AuditDecision]
    AUDIT_DECISION_DENY: _ClassVar[AuditDecision]

class LaterWorkPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LATER_WORK_POLICY_UNSPECIFIED: _ClassVar[LaterWorkPolicy]
    LATER_WORK_POLICY_KEEP: _ClassVar[LaterWorkPolicy]
    LATER_WORK_POLICY_REQUEUE: _ClassVar[LaterWorkPolicy]
TASK_STATUS_UNSPECIFIED: TaskStatus
TASK_STATUS_PENDING: TaskStatus
TASK_STATUS_QUEUED: TaskStatus
TASK_STATUS_RUNNING: TaskStatus
TASK_STATUS_COMPLETED: TaskStatus
TASK_STATUS_FAILED: TaskStatus
TASK_STATUS_CANCELLED: TaskStatus
SUBTASK_STATUS_UNSPECIFIED: SubtaskStatus
SUBTASK_STATUS_BLOCKED: SubtaskStatus
SUBTASK_STATUS_QUEUED: SubtaskStatus
SUBTASK_STATUS_RUNNING: SubtaskStatus
SUBTASK_STATUS_COMPLETED: SubtaskStatus
SUBTASK_STATUS_FAILED: SubtaskStatus
SUBTASK_STATUS_CANCELLED: SubtaskStatus
PRIORITY_UNSPECIFIED: Priority
PRIORITY_LOW: Priority
PRIORITY_NORMAL: Priority
PRIORITY_HIGH: Priority
PRIORITY_CRITICAL: Priority
SUBTASK_KIND_UNSPECIFIED: SubtaskKind
SUBTASK_KIND_WORK: SubtaskKind
SUBTASK_KIND_SYNTHESIS: SubtaskKind
SUBTASK_KIND_CANDIDATE: SubtaskKind
SUBTASK_KIND_REVIEW: SubtaskKind
SUBTASK_KIND_REVISION: SubtaskKind
AGENT_BACKING_UNSPECIFIED: AgentBacking
AGENT_BACKING_MODEL: AgentBacking
AGENT_BACKING_OFFLINE: AgentBacking
BREAKER_STATE_UNSPECIFIED: BreakerState
BREAKER_STATE_CLOSED: BreakerState
BREAKER_STATE_OPEN: BreakerState
BREAKER_STATE_HALF_OPEN: BreakerState
AGENT_STATUS_UNSPECIFIED: AgentStatus
AGENT_STATUS_IDLE: AgentStatus
AGENT_STATUS_BUSY: AgentStatus
AGENT_STATUS_PAUSED: AgentStatus
AGENT_STATUS_DRAINING: AgentStatus
AGENT_STATUS_DISCONNECTED: AgentStatus
AGENT_STATUS_TERMINATED: AgentStatus
AGENT_STATUS_STARTING: AgentStatus
VOTING_STRATEGY_UNSPECIFIED: VotingStrategy
VOTING_STRATEGY_MAJORITY: VotingStrategy
VOTING_STRATEGY_WEIGHTED: VotingStrategy
VOTING_STRATEGY_UNANIMOUS: VotingStrategy
CONSENSUS_OUTCOME_UNSPECIFIED: ConsensusOutcome
CONSENSUS_OUTCOME_PENDING: ConsensusOutcome
CONSENSUS_OUTCOME_REACHED: ConsensusOutcome
CONSENSUS_OUTCOME_NO_CONSENSUS: ConsensusOutcome
PLAN_APPROVAL_STATE_UNSPECIFIED: PlanApprovalState
PLAN_APPROVAL_STATE_WAITING: PlanApprovalState
PLAN_APPROVAL_STATE_APPROVED: PlanApprovalState
PLAN_APPROVAL_STATE_REJECTED: PlanApprovalState
REVIEW_OUTCOME_UNSPECIFIED: ReviewOutcome
REVIEW_OUTCOME_PENDING: ReviewOutcome
REVIEW_OUTCOME_APPROVED: ReviewOutcome
REVIEW_OUTCOME_EXHAUSTED: ReviewOutcome
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_TASK_SUBMITTED: EventType
EVENT_TYPE_TASK_STATUS_CHANGED: EventType
EVENT_TYPE_TASK_UPDATED: EventType
EVENT_TYPE_SUBTASK_STATUS_CHANGED: EventType
EVENT_TYPE_SUBTASK_PROGRESS: EventType
EVENT_TYPE_SUBTASK_OUTPUT: EventType
EVENT_TYPE_AGENT_CONNECTED: EventType
EVENT_TYPE_AGENT_DISCONNECTED: EventType
EVENT_TYPE_AGENT_STATUS_CHANGED: EventType
EVENT_TYPE_LEASE_EXPIRED: EventType
EVENT_TYPE_CONSENSUS_ROUND: EventType
EVENT_TYPE_CHECKPOINT_CREATED: EventType
EVENT_TYPE_BATCH_STATUS_CHANGED: EventType
EVENT_TYPE_PLAN_APPROVAL: EventType
EVENT_TYPE_REVIEW_ROUND: EventType
LOG_LEVEL_UNSPECIFIED: LogLevel
LOG_LEVEL_DEBUG: LogLevel
LOG_LEVEL_INFO: LogLevel
LOG_LEVEL_WARNING: LogLevel
LOG_LEVEL_ERROR: LogLevel
LOG_LEVEL_CRITICAL: LogLevel
TASK_VIEW_UNSPECIFIED: TaskView
TASK_VIEW_BASIC: TaskView
TASK_VIEW_FULL: TaskView
BATCH_STATUS_UNSPECIFIED: BatchStatus
BATCH_STATUS_OPEN: BatchStatus
BATCH_STATUS_RUNNING: BatchStatus
BATCH_STATUS_COMPLETED: BatchStatus
BATCH_STATUS_FAILED: BatchStatus
BATCH_SCHEDULE_UNSPECIFIED: BatchSchedule
BATCH_SCHEDULE_PARALLEL: BatchSchedule
BATCH_SCHEDULE_SEQUENTIAL: BatchSchedule
COMPONENT_STATE_UNSPECIFIED: ComponentState
COMPONENT_STATE_HEALTHY: ComponentState
COMPONENT_STATE_DEGRADED: ComponentState
COMPONENT_STATE_UNHEALTHY: ComponentState
COMPONENT_STATE_DISABLED: ComponentState
AUDIT_DECISION_UNSPECIFIED: AuditDecision
AUDIT_DECISION_ALLOW: AuditDecision
AUDIT_DECISION_DENY: AuditDecision
LATER_WORK_POLICY_UNSPECIFIED: LaterWorkPolicy
LATER_WORK_POLICY_KEEP: LaterWorkPolicy
LATER_WORK_POLICY_REQUEUE: LaterWorkPolicy
