"""The generated ``maos.v1`` modules, imported once under short names."""

from typing import TypeVar, cast

from agent_sdk.proto.maos.v1 import access_service_pb2 as access_pb
from agent_sdk.proto.maos.v1 import access_service_pb2_grpc as access_grpc
from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gateway_pb
from agent_sdk.proto.maos.v1 import agent_gateway_pb2_grpc as gateway_grpc
from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import agent_service_pb2_grpc as agents_grpc
from agent_sdk.proto.maos.v1 import audit_service_pb2 as audit_pb
from agent_sdk.proto.maos.v1 import audit_service_pb2_grpc as audit_grpc
from agent_sdk.proto.maos.v1 import batch_service_pb2 as batches_pb
from agent_sdk.proto.maos.v1 import batch_service_pb2_grpc as batches_grpc
from agent_sdk.proto.maos.v1 import enums_pb2 as enums_pb
from agent_sdk.proto.maos.v1 import errors_pb2 as errors_pb
from agent_sdk.proto.maos.v1 import messages_pb2 as messages_pb
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import system_service_pb2_grpc as system_grpc
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from agent_sdk.proto.maos.v1 import task_service_pb2_grpc as tasks_grpc
from agent_sdk.proto.maos.v1 import template_service_pb2 as templates_pb
from agent_sdk.proto.maos.v1 import template_service_pb2_grpc as templates_grpc

_E = TypeVar("_E", bound=int)


def proto_enum(kind: type[_E], value: int) -> _E:
    """``value`` for a field of enum ``kind``: ``proto_enum(enums_pb.TaskStatus, task.status)``.

    At run time a proto enum value is a plain int (``kind`` is not even a class); the generated
    stubs name each enum by its class, so this converts to int and tells the type checker which.
    """
    return cast(_E, int(value))


__all__ = [
    "access_grpc",
    "access_pb",
    "agents_grpc",
    "agents_pb",
    "audit_grpc",
    "audit_pb",
    "batches_grpc",
    "batches_pb",
    "enums_pb",
    "errors_pb",
    "gateway_grpc",
    "gateway_pb",
    "messages_pb",
    "proto_enum",
    "system_grpc",
    "system_pb",
    "tasks_grpc",
    "tasks_pb",
    "templates_grpc",
    "templates_pb",
]
