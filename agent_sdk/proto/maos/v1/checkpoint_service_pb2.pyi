# Generated from protos/ by protos/generate.py. DO NOT EDIT.
from google.api import annotations_pb2 as _annotations_pb2
from . import enums_pb2 as _enums_pb2
from . import messages_pb2 as _messages_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateCheckpointRequest(_message.Message):
    __slots__ = ("display_name", "description", "request_id")
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    display_name: str
    description: str
    request_id: str
    def __init__(self, display_name: _Optional[str] = ..., description: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint",)
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: _messages_pb2.Checkpoint
    def __init__(self, checkpoint: _Optional[_Union[_messages_pb2.Checkpoint, _Mapping]] = ...) -> None: ...

class ListCheckpointsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCheckpointsResponse(_message.Message):
    __slots__ = ("checkpoints", "next_page_token")
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    checkpoints: _containers.RepeatedCompositeFieldContainer[_messages_pb2.Checkpoint]
    next_page_token: str
    def __init__(self, checkpoints: _Optional[_Iterable[_Union[_messages_pb2.Checkpoint, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint",)
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: _messages_pb2.Checkpoint
    def __init__(self, checkpoint: _Optional[_Union[_messages_pb2.Checkpoint, _Mapping]] = ...) -> None: ...

class ExportCheckpointRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ExportCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint", "chunk")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    checkpoint: _messages_pb2.Checkpoint
    chunk: bytes
    def __init__(self, checkpoint: _Optional[_Union[_messages_pb2.Checkpoint, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class ImportCheckpointRequest(_message.Message):
    __slots__ = ("checkpoint", "chunk")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    checkpoint: _messages_pb2.Checkpoint
    chunk: bytes
    def __init__(self, checkpoint: _Optional[_Union[_messages_pb2.Checkpoint, _Mapping]] = ..., chunk: _Optional[bytes] = ...) -> None: ...

class ImportCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint",)
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: _messages_pb2.Checkpoint
    def __init__(self, checkpoint: _Optional[_Union[_messages_pb2.Checkpoint, _Mapping]] = ...) -> None: ...

class DeleteCheckpointRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteCheckpointResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RecoverRequest(_message.Message):
    __slots__ = ("checkpoint", "verify_only", "components", "later_work", "request_id")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    VERIFY_ONLY_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    LATER_WORK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    checkpoint: str
    verify_only: bool
    components: _containers.RepeatedScalarFieldContainer[str]
    later_work: _enums_pb2.LaterWorkPolicy
    request_id: str
    def __init__(self, checkpoint: _Optional[str] = ..., verify_only: _Optional[bool] = ..., components: _Optional[_Iterable[str]] = ..., later_work: _Optional[_Union[_enums_pb2.LaterWorkPolicy, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class ComponentChange(_message.Message):
    __slots__ = ("component", "restored", "changed", "unchanged")
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    RESTORED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    component: str
    restored: int
    changed: int
    unchanged: int
    def __init__(self, component: _Optional[str] = ..., restored: _Optional[int] = ..., changed: _Optional[int] = ..., unchanged: _Optional[int] = ...) -> None: ...

class RecoverResponse(_message.Message):
    __slots__ = ("checkpoint", "integrity_ok", "applied", "changes", "later_tasks", "warnings")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    INTEGRITY_OK_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    LATER_TASKS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    checkpoint: _messages_pb2.Checkpoint
    integrity_ok: bool
    applied: bool
    changes: _containers.RepeatedCompositeFieldContainer[ComponentChange]
    later_tasks: _containers.RepeatedScalarFieldContainer[str]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, checkpoint: _Optional[_Union[_messages_pb2.Checkpoint, _Mapping]] = ..., integrity_ok: _Optional[bool] = ..., applied: _Optional[bool] = ..., changes: _Optional[_Iterable[_Union[ComponentChange, _Mapping]]] = ..., later_tasks: _Optional[_Iterable[str]] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...
