"""Every RPC of every service in protos/maos/v1 is served: none answers UNIMPLEMENTED.

A client generated in any language sees every service of the contract as real, so the
server must implement all of them. Each method is called through the real server with an
empty request (or an empty stream) and the administrator's key; whatever it answers
(OK, INVALID_ARGUMENT, NOT_FOUND, a first streamed message, a deadline) is fine except
UNIMPLEMENTED.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor

import agent_sdk.proto.maos.v1 as proto_package
from controlplane.app import App
from tests.harness.server import admin_key

#: How long a streaming call may stay open before it counts as served.
STREAM_WAIT_S = 1.0
CALL_TIMEOUT_S = 10.0


def _methods() -> list[MethodDescriptor]:
    methods = []
    for info in pkgutil.iter_modules(proto_package.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"{proto_package.__name__}.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            methods.extend(service.methods)
    return sorted(methods, key=lambda m: m.full_name)


METHODS = _methods()


def test_the_contract_has_services() -> None:
    services = {m.containing_service.full_name for m in METHODS}
    assert {
        "maos.v1.TaskService",
        "maos.v1.BatchService",
        "maos.v1.TemplateService",
        "maos.v1.WebhookService",
        "maos.v1.AgentGateway",
    } <= services


async def _empty_requests(request: bytes) -> AsyncIterator[bytes]:
    yield request


async def _call(channel: grpc.aio.Channel, method: MethodDescriptor, key: str) -> grpc.StatusCode:
    path = f"/{method.containing_service.full_name}/{method.name}"
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    metadata = (("authorization", f"Bearer {key}"),)
    kwargs = {
        "request_serializer": request_class.SerializeToString,
        "response_deserializer": response_class.FromString,
    }
    empty = request_class()
    try:
        if not method.client_streaming and not method.server_streaming:
            await channel.unary_unary(path, **kwargs)(empty, metadata=metadata, timeout=CALL_TIMEOUT_S)
        elif method.client_streaming and not method.server_streaming:
            await channel.stream_unary(path, **kwargs)(
                _empty_requests(empty), metadata=metadata, timeout=CALL_TIMEOUT_S
            )
        else:
            if method.client_streaming:
                call = channel.stream_stream(path, **kwargs)(
                    _empty_requests(empty), metadata=metadata, timeout=STREAM_WAIT_S
                )
            else:
                call = channel.unary_stream(path, **kwargs)(empty, metadata=metadata, timeout=STREAM_WAIT_S)
            async for _ in call:
                break
            call.cancel()
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_no_rpc_answers_unimplemented(secured: App) -> None:
    key = await admin_key(secured)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.port}") as channel:
        codes = {m.full_name: await _call(channel, m, key) for m in METHODS}
    unimplemented = sorted(name for name, code in codes.items() if code == grpc.StatusCode.UNIMPLEMENTED)
    assert not unimplemented, f"RPCs answering UNIMPLEMENTED: {unimplemented}"
    # The harness does not hide failures as successes: an unknown method is UNIMPLEMENTED.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{secured.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await channel.unary_unary("/maos.v1.TaskService/NoSuchMethod")(
                b"", metadata=(("authorization", f"Bearer {key}"),), timeout=CALL_TIMEOUT_S
            )
    assert raised.value.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.PERMISSION_DENIED)
