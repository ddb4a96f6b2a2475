# Generated from protos/ by protos/generate.py. DO NOT EDIT.
import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
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

class SubmitTaskRequest(_message.Message):
    __slots__ = ("task", "request_id")
    TASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    task: _messages_pb2.Task
    request_id: str
    def __init__(self, task: _Optional[_Union[_messages_pb2.Task, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SubmitTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _messages_pb2.Task
    def __init__(self, task: _Optional[_Union[_messages_pb2.Task, _Mapping]] = ...) -> None: ...

class StreamSubmitTasksRequest(_message.Message):
    __slots__ = ("task", "request_id")
    TASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    task: _messages_pb2.Task
    request_id: str
    def __init__(self, task: _Optional[_Union[_messages_pb2.Task, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class StreamSubmitTasksResponse(_message.Message):
    __slots__ = ("task", "error")
    TASK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    task: _messages_pb2.Task
    error: SubmitError
    def __init__(self, task: _Optional[_Union[_messages_pb2.Task, _Mapping]] = ..., error: _Optional[_Union[SubmitError, _Mapping]] = ...) -> None: ...

class SubmitError(_message.Message):
    __slots__ = ("code", "reason", "message", "field_violations", "retry_delay", "metadata")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    RETRY_DELAY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    code: int
    reason: _errors_pb2.ErrorReason
    message: str
    field_violations: _containers.RepeatedCompositeFieldContainer[FieldViolation]
    retry_delay: _duration_pb2.Duration
    metadata: _containers.ScalarMap[str, str]
    def __init__(self, code: _Optional[int] = ..., reason: _Optional[_Union[_errors_pb2.ErrorReason, str]] = ..., message: _Optional[str] = ..., field_violations: _Optional[_Iterable[_Union[FieldViolation, _Mapping]]] = ..., retry_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ...) -> None: ...

class FieldViolation(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class BatchSubmitTasksRequest(_message.Message):
    __slots__ = ("requests", "request_id")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SubmitTaskRequest]
    request_id: str
    def __init__(self, requests: _Optional[_Iterable[_Union[SubmitTaskRequest, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class BatchSubmitTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_messages_pb2.Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[_messages_pb2.Task, _Mapping]]] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("name", "view")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    name: str
    view: _enums_pb2.TaskView
    def __init__(self, name: _Optional[str] = ..., view: _Optional[_Union[_enums_pb2.TaskView, str]] = ...) -> None: ...

class GetTaskResponse(_message.Message):
    __slots__ = ("task", "subtasks", "plan", "consensus", "review")
    TASK_FIELD_NUMBER: _ClassVar[int]
    SUBTASKS_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_FIELD_NUMBER: _ClassVar[int]
    REVIEW_FIELD_NUMBER: _ClassVar[int]
    task: _messages_pb2.Task
    subtasks: _containers.RepeatedCompositeFieldContainer[_messages_pb2.Subtask]
    plan: _messages_pb2.ExecutionPlan
    consensus: _messages_pb2.ConsensusRecord
    review: _messages_pb2.ReviewRecord
    def __init__(self, task: _Optional[_Union[_messages_pb2.Task, _Mapping]] = ..., subtasks: _Optional[_Iterable[_Union[_messages_pb2.Subtask, _Mapping]]] = ..., plan: _Optional[_Union[_messages_pb2.ExecutionPlan, _Mapping]] = ..., consensus: _Optional[_Union[_messages_pb2.ConsensusRecord, _Mapping]] = ..., review: _Optional[_Union[_messages_pb2.ReviewRecord, _Mapping]] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "statuses", "task_types", "priorities", "since", "batch", "owner")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPES_FIELD_NUMBER: _ClassVar[int]
    PRIORITIES_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    statuses: _containers.RepeatedScalarFieldContainer[_enums_pb2.TaskStatus]
    task_types: _containers.RepeatedScalarFieldContainer[str]
    priorities: _containers.RepeatedScalarFieldContainer[_enums_pb2.Priority]
    since: _timestamp_pb2.Timestamp
    batch: str
    owner: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[_enums_pb2.TaskStatus, str]]] = ..., task_types: _Optional[_Iterable[str]] = ..., priorities: _Optional[_Iterable[_Union[_enums_pb2.Priority, str]]] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., batch: _Optional[str] = ..., owner: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks", "next_page_token")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_messages_pb2.Task]
    next_page_token: str
    def __init__(self, tasks: _Optional[_Iterable[_Union[_messages_pb2.Task, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelTaskRequest(_message.Message):
    __slots__ = ("name", "reason", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CancelTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _messages_pb2.Task
    def __init__(self, task: _Optional[_Union[_messages_pb2.Task, _Mapping]] = ...) -> None: ...

class RetryTaskRequest(_message.Message):
    __slots__ = ("name", "request_id", "max_agents", "timeout")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_AGENTS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    max_agents: int
    timeout: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ..., max_agents: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RetryTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _messages_pb2.Task
    def __init__(self, task: _Optional[_Union[_messages_pb2.Task, _Mapping]] = ...) -> None: ...

class UpdateTaskRequest(_message.Message):
    __slots__ = ("task", "update_mask", "request_id")
    TASK_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    task: _messages_pb2.Task
    update_mask: _field_mask_pb2.FieldMask
    request_id: str
    def __init__(self, task: _Optional[_Union[_messages_pb2.Task, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdateTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _messages_pb2.Task
    def __init__(self, task: _Optional[_Union[_messages_pb2.Task, _Mapping]] = ...) -> None: ...

class GetTaskResultsRequest(_message.Message):
    __slots__ = ("name", "output_offset", "max_output_bytes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    output_offset: int
    max_output_bytes: int
    def __init__(self, name: _Optional[str] = ..., output_offset: _Optional[int] = ..., max_output_bytes: _Optional[int] = ...) -> None: ...

class GetTaskResultsResponse(_message.Message):
    __slots__ = ("result", "output_size", "output_offset", "next_output_offset", "truncated")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SIZE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    NEXT_OUTPUT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    result: _messages_pb2.TaskResult
    output_size: int
    output_offset: int
    next_output_offset: int
    truncated: bool
    def __init__(self, result: _Optional[_Union[_messages_pb2.TaskResult, _Mapping]] = ..., output_size: _Optional[int] = ..., output_offset: _Optional[int] = ..., next_output_offset: _Optional[int] = ..., truncated: _Optional[bool] = ...) -> None: ...

class AnalyzeTaskRequest(_message.Message):
    __slots__ = ("task", "name")
    TASK_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    task: _messages_pb2.Task
    name: str
    def __init__(self, task: _Optional[_Union[_messages_pb2.Task, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class AnalyzeTaskResponse(_message.Message):
    __slots__ = ("plan",)
    PLAN_FIELD_NUMBER: _ClassVar[int]
    plan: _messages_pb2.ExecutionPlan
    def __init__(self, plan: _Optional[_Union[_messages_pb2.ExecutionPlan, _Mapping]] = ...) -> None: ...

class WatchTaskRequest(_message.Message):
    __slots__ = ("name", "include_progress", "after_event_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    include_progress: bool
    after_event_id: str
    def __init__(self, name: _Optional[str] = ..., include_progress: _Optional[bool] = ..., after_event_id: _Optional[str] = ...) -> None: ...

class WatchTaskResponse(_message.Message):
    __slots__ = ("task", "event", "subtask")
    TASK_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    task: _messages_pb2.Task
    event: _messages_pb2.Event
    subtask: _messages_pb2.Subtask
    def __init__(self, task: _Optional[_Union[_messages_pb2.Task, _Mapping]] = ..., event: _Optional[_Union[_messages_pb2.Event, _Mapping]] = ..., subtask: _Optional[_Union[_messages_pb2.Subtask, _Mapping]] = ...) -> None: ...

class ApproveTaskRequest(_message.Message):
    __slots__ = ("name", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ApproveTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _messages_pb2.Task
    def __init__(self, task: _Optional[_Union[_messages_pb2.Task, _Mapping]] = ...) -> None: ...

class RejectTaskRequest(_message.Message):
    __slots__ = ("name", "reason", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    request_id: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RejectTaskResponse(_message.Message):
    __slots__ = ("task",)
    TASK_FIELD_NUMBER: _ClassVar[int]
    task: _messages_pb2.Task
    def __init__(self, task: _Optional[_Union[_messages_pb2.Task, _Mapping]] = ...) -> None: ...
