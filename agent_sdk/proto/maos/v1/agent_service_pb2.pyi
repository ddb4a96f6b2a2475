# Generated from protos/ by protos/generate.py. DO NOT EDIT.
import datetime

from google.api import annotations_pb2 as _annotations_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from . import enums_pb2 as _enums_pb2
from . import messages_pb2 as _messages_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListAgentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "statuses", "agent_types", "include_terminated")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    AGENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TERMINATED_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    statuses: _containers.RepeatedScalarFieldContainer[_enums_pb2.AgentStatus]
    agent_types: _containers.RepeatedScalarFieldContainer[str]
    include_terminated: bool
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[_enums_pb2.AgentStatus, str]]] = ..., agent_types: _Optional[_Iterable[str]] = ..., include_terminated: _Optional[bool] = ...) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents", "next_page_token")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[_messages_pb2.Agent]
    next_page_token: str
    def __init__(self, agents: _Optional[_Iterable[_Union[_messages_pb2.Agent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetAgentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: _messages_pb2.Agent
    def __init__(self, agent: _Optional[_Union[_messages_pb2.Agent, _Mapping]] = ...) -> None: ...

class SpawnAgentsRequest(_message.Message):
    __slots__ = ("agent_type", "count", "capabilities", "max_concurrency", "labels", "request_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    agent_type: str
    count: int
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    max_concurrency: int
    labels: _containers.ScalarMap[str, str]
    request_id: str
    def __init__(self, agent_type: _Optional[str] = ..., count: _Optional[int] = ..., capabilities: _Optional[_Iterable[str]] = ..., max_concurrency: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class SpawnAgentsResponse(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[_messages_pb2.Agent]
    def __init__(self, agents: _Optional[_Iterable[_Union[_messages_pb2.Agent, _Mapping]]] = ...) -> None: ...

class TerminateAgentRequest(_message.Message):
    __slots__ = ("name", "force", "grace", "request_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    GRACE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    force: bool
    grace: _duration_pb2.Duration
    request_id: str
    def __init__(self, name: _Optional[str] = ..., force: _Optional[bool] = ..., grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class TerminateAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: _messages_pb2.Agent
    def __init__(self, agent: _Optional[_Union[_messages_pb2.Agent, _Mapping]] = ...) -> None: ...

class PauseAgentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class PauseAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: _messages_pb2.Agent
    def __init__(self, agent: _Optional[_Union[_messages_pb2.Agent, _Mapping]] = ...) -> None: ...

class ResumeAgentRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ResumeAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: _messages_pb2.Agent
    def __init__(self, agent: _Optional[_Union[_messages_pb2.Agent, _Mapping]] = ...) -> None: ...

class DrainAgentRequest(_message.Message):
    __slots__ = ("name", "grace")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GRACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    grace: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class DrainAgentResponse(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: _messages_pb2.Agent
    def __init__(self, agent: _Optional[_Union[_messages_pb2.Agent, _Mapping]] = ...) -> None: ...

class ListAgentTypesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentType(_message.Message):
    __slots__ = ("name", "base_type", "capabilities", "description", "source", "spawnable", "backing", "unavailable_reason", "warnings")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BASE_TYPE_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SPAWNABLE_FIELD_NUMBER: _ClassVar[int]
    BACKING_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_REASON_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    base_type: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    description: str
    source: str
    spawnable: bool
    backing: _enums_pb2.AgentBacking
    unavailable_reason: str
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., base_type: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., source: _Optional[str] = ..., spawnable: _Optional[bool] = ..., backing: _Optional[_Union[_enums_pb2.AgentBacking, str]] = ..., unavailable_reason: _Optional[str] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class ListAgentTypesResponse(_message.Message):
    __slots__ = ("agent_types", "problems")
    AGENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    agent_types: _containers.RepeatedCompositeFieldContainer[AgentType]
    problems: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, agent_types: _Optional[_Iterable[_Union[AgentType, _Mapping]]] = ..., problems: _Optional[_Iterable[str]] = ...) -> None: ...

class RestartAgentRequest(_message.Message):
    __slots__ = ("name", "force", "grace")
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    GRACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    force: bool
    grace: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., force: _Optional[bool] = ..., grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RestartAgentResponse(_message.Message):
    __slots__ = ("previous", "agent")
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    previous: _messages_pb2.Agent
    agent: _messages_pb2.Agent
    def __init__(self, previous: _Optional[_Union[_messages_pb2.Agent, _Mapping]] = ..., agent: _Optional[_Union[_messages_pb2.Agent, _Mapping]] = ...) -> None: ...

class GetAgentMetricsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetAgentMetricsResponse(_message.Message):
    __slots__ = ("agent", "process", "log_records", "connected_seconds")
    class LogRecordsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    AGENT_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    LOG_RECORDS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    agent: _messages_pb2.Agent
    process: _messages_pb2.ProcessResources
    log_records: _containers.ScalarMap[str, int]
    connected_seconds: float
    def __init__(self, agent: _Optional[_Union[_messages_pb2.Agent, _Mapping]] = ..., process: _Optional[_Union[_messages_pb2.ProcessResources, _Mapping]] = ..., log_records: _Optional[_Mapping[str, int]] = ..., connected_seconds: _Optional[float] = ...) -> None: ...
