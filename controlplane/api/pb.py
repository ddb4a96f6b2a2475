"""The generated ``maos.v1`` modules, imported once under short names."""

from agent_sdk.proto.maos.v1 import (  # noqa: F401
    access_service_pb2 as access_pb,
    access_service_pb2_grpc as access_grpc,
    audit_service_pb2 as audit_pb,
    audit_service_pb2_grpc as audit_grpc,
    batch_service_pb2 as batches_pb,
    batch_service_pb2_grpc as batches_grpc,
    agent_gateway_pb2 as gateway_pb,
    agent_gateway_pb2_grpc as gateway_grpc,
    agent_service_pb2 as agents_pb,
    agent_service_pb2_grpc as agents_grpc,
    enums_pb2 as enums_pb,
    errors_pb2 as errors_pb,
    messages_pb2 as messages_pb,
    system_service_pb2 as system_pb,
    system_service_pb2_grpc as system_grpc,
    task_service_pb2 as tasks_pb,
    task_service_pb2_grpc as tasks_grpc,
    template_service_pb2 as templates_pb,
    template_service_pb2_grpc as templates_grpc,
)
