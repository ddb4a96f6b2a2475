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

class CreateBatchRequest(_message.Message):
    __slots__ = ("batch_id", "display_name", "request_id")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    display_name: str
    request_id: str
    def __init__(self, batch_id: _Optional[str] = ..., display_name: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateBatchResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: _messages_pb2.Batch
    def __init__(self, batch: _Optional[_Union[_messages_pb2.Batch, _Mapping]] = ...) -> None: ...

class GetBatchRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetBatchResponse(_message.Message):
    __slots__ = ("batch", "tasks")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    batch: _messages_pb2.Batch
    tasks: _containers.RepeatedCompositeFieldContainer[_messages_pb2.Task]
    def __init__(self, batch: _Optional[_Union[_messages_pb2.Batch, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[_messages_pb2.Task, _Mapping]]] = ...) -> None: ...

class ListBatchesRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListBatchesResponse(_message.Message):
    __slots__ = ("batches", "next_page_token")
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    batches: _containers.RepeatedCompositeFieldContainer[_messages_pb2.Batch]
    next_page_token: str
    def __init__(self, batches: _Optional[_Iterable[_Union[_messages_pb2.Batch, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AddBatchTaskRequest(_message.Message):
    __slots__ = ("batch", "task", "request_id")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    batch: str
    task: _messages_pb2.Task
    request_id: str
    def __init__(self, batch: _Optional[str] = ..., task: _Optional[_Union[_messages_pb2.Task, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class AddBatchTaskResponse(_message.Message):
    __slots__ = ("batch",)
    BATCH_FIELD_NUMBER: _ClassVar[int]
    batch: _messages_pb2.Batch
    def __init__(self, batch: _Optional[_Union[_messages_pb2.Batch, _Mapping]] = ...) -> None: ...

class SubmitBatchRequest(_message.Message):
    __slots__ = ("name", "request_id", "schedule")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_id: str
    schedule: _enums_pb2.BatchSchedule
    def __init__(self, name: _Optional[str] = ..., request_id: _Optional[str] = ..., schedule: _Optional[_Union[_enums_pb2.BatchSchedule, str]] = ...) -> None: ...

class SubmitBatchResponse(_message.Message):
    __slots__ = ("batch", "tasks")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    batch: _messages_pb2.Batch
    tasks: _containers.RepeatedCompositeFieldContainer[_messages_pb2.Task]
    def __init__(self, batch: _Optional[_Union[_messages_pb2.Batch, _Mapping]] = ..., tasks: _Optional[_Iterable[_Union[_messages_pb2.Task, _Mapping]]] = ...) -> None: ...

class GetBatchResultsRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetBatchResultsResponse(_message.Message):
    __slots__ = ("batch", "results")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    batch: _messages_pb2.Batch
    results: _containers.RepeatedCompositeFieldContainer[_messages_pb2.TaskResult]
    def __init__(self, batch: _Optional[_Union[_messages_pb2.Batch, _Mapping]] = ..., results: _Optional[_Iterable[_Union[_messages_pb2.TaskResult, _Mapping]]] = ...) -> None: ...

class DeleteBatchRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteBatchResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
