# Generated from protos/ by protos/generate.py. DO NOT EDIT.
import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from . import enums_pb2 as _enums_pb2
from . import messages_pb2 as _messages_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatusRequest(_message.Message):
    __slots__ = ("detailed",)
    DETAILED_FIELD_NUMBER: _ClassVar[int]
    detailed: bool
    def __init__(self, detailed: _Optional[bool] = ...) -> None: ...

class StateCount(_message.Message):
    __slots__ = ("state", "count")
    STATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    state: str
    count: int
    def __init__(self, state: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class GetStatusResponse(_message.Message):
    __slots__ = ("version", "replica", "start_time", "uptime", "storage_backend", "tasks", "subtasks", "agents", "queue", "connected_agents", "free_slots", "replicas", "model_pacing", "tasks_awaiting_approval", "scaling", "replica_status", "unclaimed_tasks", "unclaimed_oldest_wait")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    STORAGE_BACKEND_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    SUBTASKS_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_AGENTS_FIELD_NUMBER: _ClassVar[int]
    FREE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MODEL_PACING_FIELD_NUMBER: _ClassVar[int]
    TASKS_AWAITING_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    SCALING_FIELD_NUMBER: _ClassVar[int]
    REPLICA_STATUS_FIELD_NUMBER: _ClassVar[int]
    UNCLAIMED_TASKS_FIELD_NUMBER: _ClassVar[int]
    UNCLAIMED_OLDEST_WAIT_FIELD_NUMBER: _ClassVar[int]
    version: str
    replica: str
    start_time: _timestamp_pb2.Timestamp
    uptime: _duration_pb2.Duration
    storage_backend: str
    tasks: _containers.RepeatedCompositeFieldContainer[StateCount]
    subtasks: _containers.RepeatedCompositeFieldContainer[StateCount]
    agents: _containers.RepeatedCompositeFieldContainer[StateCount]
    queue: _containers.RepeatedCompositeFieldContainer[StateCount]
    connected_agents: int
    free_slots: int
    replicas: _containers.RepeatedScalarFieldContainer[str]
    model_pacing: _containers.RepeatedCompositeFieldContainer[ModelPacing]
    tasks_awaiting_approval: int
    scaling: _containers.RepeatedCompositeFieldContainer[TypeScaling]
    replica_status: _containers.RepeatedCompositeFieldContainer[ReplicaStatus]
    unclaimed_tasks: int
    unclaimed_oldest_wait: _duration_pb2.Duration
    def __init__(self, version: _Optional[str] = ..., replica: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., storage_backend: _Optional[str] = ..., tasks: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., subtasks: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., agents: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., queue: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., connected_agents: _Optional[int] = ..., free_slots: _Optional[int] = ..., replicas: _Optional[_Iterable[str]] = ..., model_pacing: _Optional[_Iterable[_Union[ModelPacing, _Mapping]]] = ..., tasks_awaiting_approval: _Optional[int] = ..., scaling: _Optional[_Iterable[_Union[TypeScaling, _Mapping]]] = ..., replica_status: _Optional[_Iterable[_Union[ReplicaStatus, _Mapping]]] = ..., unclaimed_tasks: _Optional[int] = ..., unclaimed_oldest_wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ReplicaStatus(_message.Message):
    __slots__ = ("id", "address", "version", "start_time", "heartbeat_time", "lost", "connected_agents", "leases_held", "jobs", "current")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIME_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_AGENTS_FIELD_NUMBER: _ClassVar[int]
    LEASES_HELD_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    version: str
    start_time: _timestamp_pb2.Timestamp
    heartbeat_time: _timestamp_pb2.Timestamp
    lost: bool
    connected_agents: int
    leases_held: int
    jobs: _containers.RepeatedScalarFieldContainer[str]
    current: bool
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., version: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., heartbeat_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lost: _Optional[bool] = ..., connected_agents: _Optional[int] = ..., leases_held: _Optional[int] = ..., jobs: _Optional[_Iterable[str]] = ..., current: _Optional[bool] = ...) -> None: ...

class ModelPacing(_message.Message):
    __slots__ = ("model", "breaker", "reopens_in", "in_flight", "in_flight_cap", "held", "requests_per_minute", "input_tokens_per_minute", "output_tokens_per_minute", "requests_used", "input_tokens_used", "output_tokens_used", "granted", "overloaded_answers", "last_problem")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    REOPENS_IN_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_CAP_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_PER_MINUTE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_USED_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_USED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_USED_FIELD_NUMBER: _ClassVar[int]
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    OVERLOADED_ANSWERS_FIELD_NUMBER: _ClassVar[int]
    LAST_PROBLEM_FIELD_NUMBER: _ClassVar[int]
    model: str
    breaker: _enums_pb2.BreakerState
    reopens_in: _duration_pb2.Duration
    in_flight: int
    in_flight_cap: int
    held: int
    requests_per_minute: int
    input_tokens_per_minute: int
    output_tokens_per_minute: int
    requests_used: float
    input_tokens_used: float
    output_tokens_used: float
    granted: int
    overloaded_answers: int
    last_problem: str
    def __init__(self, model: _Optional[str] = ..., breaker: _Optional[_Union[_enums_pb2.BreakerState, str]] = ..., reopens_in: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., in_flight: _Optional[int] = ..., in_flight_cap: _Optional[int] = ..., held: _Optional[int] = ..., requests_per_minute: _Optional[int] = ..., input_tokens_per_minute: _Optional[int] = ..., output_tokens_per_minute: _Optional[int] = ..., requests_used: _Optional[float] = ..., input_tokens_used: _Optional[float] = ..., output_tokens_used: _Optional[float] = ..., granted: _Optional[int] = ..., overloaded_answers: _Optional[int] = ..., last_problem: _Optional[str] = ...) -> None: ...

class TypeScaling(_message.Message):
    __slots__ = ("agent_type", "min", "max", "current", "desired", "queued", "oldest_wait", "reason", "decided_at", "unclaimed", "unclaimed_share")
    AGENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    OLDEST_WAIT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    UNCLAIMED_FIELD_NUMBER: _ClassVar[int]
    UNCLAIMED_SHARE_FIELD_NUMBER: _ClassVar[int]
    agent_type: str
    min: int
    max: int
    current: int
    desired: int
    queued: int
    oldest_wait: _duration_pb2.Duration
    reason: str
    decided_at: _timestamp_pb2.Timestamp
    unclaimed: int
    unclaimed_share: int
    def __init__(self, agent_type: _Optional[str] = ..., min: _Optional[int] = ..., max: _Optional[int] = ..., current: _Optional[int] = ..., desired: _Optional[int] = ..., queued: _Optional[int] = ..., oldest_wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., reason: _Optional[str] = ..., decided_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., unclaimed: _Optional[int] = ..., unclaimed_share: _Optional[int] = ...) -> None: ...

class GetHealthRequest(_message.Message):
    __slots__ = ("components",)
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    components: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, components: _Optional[_Iterable[str]] = ...) -> None: ...

class ComponentHealth(_message.Message):
    __slots__ = ("component", "state", "message", "latency", "details")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    component: str
    state: _enums_pb2.ComponentState
    message: str
    latency: _duration_pb2.Duration
    details: _containers.ScalarMap[str, str]
    def __init__(self, component: _Optional[str] = ..., state: _Optional[_Union[_enums_pb2.ComponentState, str]] = ..., message: _Optional[str] = ..., latency: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., details: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetHealthResponse(_message.Message):
    __slots__ = ("state", "components")
    STATE_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    state: _enums_pb2.ComponentState
    components: _containers.RepeatedCompositeFieldContainer[ComponentHealth]
    def __init__(self, state: _Optional[_Union[_enums_pb2.ComponentState, str]] = ..., components: _Optional[_Iterable[_Union[ComponentHealth, _Mapping]]] = ...) -> None: ...

class GetMetricsSummaryRequest(_message.Message):
    __slots__ = ("category", "include_exposition")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_EXPOSITION_FIELD_NUMBER: _ClassVar[int]
    category: str
    include_exposition: bool
    def __init__(self, category: _Optional[str] = ..., include_exposition: _Optional[bool] = ...) -> None: ...

class MetricSample(_message.Message):
    __slots__ = ("name", "labels", "value", "help", "category")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    HELP_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    value: float
    help: str
    category: str
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., value: _Optional[float] = ..., help: _Optional[str] = ..., category: _Optional[str] = ...) -> None: ...

class GetMetricsSummaryResponse(_message.Message):
    __slots__ = ("samples", "exposition")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    EXPOSITION_FIELD_NUMBER: _ClassVar[int]
    samples: _containers.RepeatedCompositeFieldContainer[MetricSample]
    exposition: str
    def __init__(self, samples: _Optional[_Iterable[_Union[MetricSample, _Mapping]]] = ..., exposition: _Optional[str] = ...) -> None: ...

class ListLogsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "min_level", "component", "since", "contains", "task", "agent", "order_by")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MIN_LEVEL_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    CONTAINS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    min_level: _enums_pb2.LogLevel
    component: str
    since: _timestamp_pb2.Timestamp
    contains: str
    task: str
    agent: str
    order_by: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., min_level: _Optional[_Union[_enums_pb2.LogLevel, str]] = ..., component: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., contains: _Optional[str] = ..., task: _Optional[str] = ..., agent: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListLogsResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[_messages_pb2.LogRecord]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[_messages_pb2.LogRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class TailLogsRequest(_message.Message):
    __slots__ = ("min_level", "component", "contains", "task", "agent", "tail", "after_record_id")
    MIN_LEVEL_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    CONTAINS_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    AFTER_RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    min_level: _enums_pb2.LogLevel
    component: str
    contains: str
    task: str
    agent: str
    tail: int
    after_record_id: str
    def __init__(self, min_level: _Optional[_Union[_enums_pb2.LogLevel, str]] = ..., component: _Optional[str] = ..., contains: _Optional[str] = ..., task: _Optional[str] = ..., agent: _Optional[str] = ..., tail: _Optional[int] = ..., after_record_id: _Optional[str] = ...) -> None: ...

class TailLogsResponse(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: _messages_pb2.LogRecord
    def __init__(self, record: _Optional[_Union[_messages_pb2.LogRecord, _Mapping]] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("event_types", "after_event_id", "task")
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    event_types: _containers.RepeatedScalarFieldContainer[_enums_pb2.EventType]
    after_event_id: str
    task: str
    def __init__(self, event_types: _Optional[_Iterable[_Union[_enums_pb2.EventType, str]]] = ..., after_event_id: _Optional[str] = ..., task: _Optional[str] = ...) -> None: ...

class WatchEventsResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _messages_pb2.Event
    def __init__(self, event: _Optional[_Union[_messages_pb2.Event, _Mapping]] = ...) -> None: ...

class GetConfigRequest(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, keys: _Optional[_Iterable[str]] = ...) -> None: ...

class ConfigValue(_message.Message):
    __slots__ = ("key", "value", "description", "source")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    description: str
    source: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ..., description: _Optional[str] = ..., source: _Optional[str] = ...) -> None: ...

class GetConfigResponse(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedCompositeFieldContainer[ConfigValue]
    def __init__(self, values: _Optional[_Iterable[_Union[ConfigValue, _Mapping]]] = ...) -> None: ...

class SetConfigRequest(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...

class SetConfigResponse(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: ConfigValue
    def __init__(self, value: _Optional[_Union[ConfigValue, _Mapping]] = ...) -> None: ...

class GetMetricsHistoryRequest(_message.Message):
    __slots__ = ("category", "timeframe", "max_points")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    TIMEFRAME_FIELD_NUMBER: _ClassVar[int]
    MAX_POINTS_FIELD_NUMBER: _ClassVar[int]
    category: str
    timeframe: _duration_pb2.Duration
    max_points: int
    def __init__(self, category: _Optional[str] = ..., timeframe: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_points: _Optional[int] = ...) -> None: ...

class MetricPoint(_message.Message):
    __slots__ = ("time", "value")
    TIME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    time: _timestamp_pb2.Timestamp
    value: float
    def __init__(self, time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., value: _Optional[float] = ...) -> None: ...

class MetricSeries(_message.Message):
    __slots__ = ("name", "category", "help", "type", "points")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    HELP_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    category: str
    help: str
    type: str
    points: _containers.RepeatedCompositeFieldContainer[MetricPoint]
    def __init__(self, name: _Optional[str] = ..., category: _Optional[str] = ..., help: _Optional[str] = ..., type: _Optional[str] = ..., points: _Optional[_Iterable[_Union[MetricPoint, _Mapping]]] = ...) -> None: ...

class GetMetricsHistoryResponse(_message.Message):
    __slots__ = ("series", "interval", "retention", "samples")
    SERIES_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    RETENTION_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    series: _containers.RepeatedCompositeFieldContainer[MetricSeries]
    interval: _duration_pb2.Duration
    retention: _duration_pb2.Duration
    samples: int
    def __init__(self, series: _Optional[_Iterable[_Union[MetricSeries, _Mapping]]] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retention: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., samples: _Optional[int] = ...) -> None: ...

class GetResourcesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HostResources(_message.Message):
    __slots__ = ("cpu_count", "memory_total_bytes", "memory_available_bytes", "load_average")
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOAD_AVERAGE_FIELD_NUMBER: _ClassVar[int]
    cpu_count: int
    memory_total_bytes: int
    memory_available_bytes: int
    load_average: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, cpu_count: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., memory_available_bytes: _Optional[int] = ..., load_average: _Optional[_Iterable[float]] = ...) -> None: ...

class GetResourcesResponse(_message.Message):
    __slots__ = ("control_plane", "agents", "host", "agent_streams", "database_size_bytes", "queue", "unfinished_tasks")
    CONTROL_PLANE_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    AGENT_STREAMS_FIELD_NUMBER: _ClassVar[int]
    DATABASE_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    QUEUE_FIELD_NUMBER: _ClassVar[int]
    UNFINISHED_TASKS_FIELD_NUMBER: _ClassVar[int]
    control_plane: _messages_pb2.ProcessResources
    agents: _containers.RepeatedCompositeFieldContainer[_messages_pb2.ProcessResources]
    host: HostResources
    agent_streams: int
    database_size_bytes: int
    queue: _containers.RepeatedCompositeFieldContainer[StateCount]
    unfinished_tasks: int
    def __init__(self, control_plane: _Optional[_Union[_messages_pb2.ProcessResources, _Mapping]] = ..., agents: _Optional[_Iterable[_Union[_messages_pb2.ProcessResources, _Mapping]]] = ..., host: _Optional[_Union[HostResources, _Mapping]] = ..., agent_streams: _Optional[int] = ..., database_size_bytes: _Optional[int] = ..., queue: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., unfinished_tasks: _Optional[int] = ...) -> None: ...
