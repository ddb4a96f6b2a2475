"""gRPC server reflection against a real control plane: what grpcurl and Postman see."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from agent_sdk.proto.maos.v1 import system_service_pb2, system_service_pb2_grpc, task_service_pb2
from controlplane.api.server import SERVICE_NAMES
from controlplane.app import App
from controlplane.errors import InvalidArgument
from tests.controlplane.access.test_access import user_key
from tests.harness.server import admin_key, make_settings, start_app

#: What the control plane serves; the reflection listing must name each of them.
SERVED = {*SERVICE_NAMES, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


async def reflect(
    address: str, *requests: reflection_pb2.ServerReflectionRequest
) -> list[reflection_pb2.ServerReflectionResponse]:
    """Send ``requests`` on one ServerReflectionInfo stream; one response each."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        call = stub.ServerReflectionInfo(iter(requests), timeout=10)
        return [response async for response in call]


def build_pool(files: list[bytes]) -> descriptor_pool.DescriptorPool:
    """A fresh pool holding the serialized files (in any order): fails if a dependency is missing."""
    protos = [descriptor_pb2.FileDescriptorProto.FromString(data) for data in files]
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()
    while len(added) < len(protos):
        ready = [p for p in protos if p.name not in added and set(p.dependency) <= added]
        missing = [(p.name, list(p.dependency)) for p in protos if p.name not in added]
        assert ready, f"unresolvable dependencies: {missing}"
        for proto in ready:
            pool.Add(proto)
            added.add(proto.name)
    return pool


async def test_reflection_lists_every_maos_service(control_plane: App) -> None:
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    [response] = await reflect(control_plane.address, request)
    assert response.WhichOneof("message_response") == "list_services_response", response
    listed = {s.name for s in response.list_services_response.service}
    assert "maos.v1.TaskService" in listed
    assert listed == SERVED


async def test_reflection_resolves_the_file_of_task_service(control_plane: App) -> None:
    [response] = await reflect(
        control_plane.address,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="maos.v1.TaskService"),
    )
    assert response.WhichOneof("message_response") == "file_descriptor_response", response
    files = list(response.file_descriptor_response.file_descriptor_proto)
    names = [descriptor_pb2.FileDescriptorProto.FromString(f).name for f in files]
    assert names[0] == "maos/v1/task_service.proto", names

    # Everything the file imports came along: a client can build the service from the answer alone.
    pool = build_pool(files)
    service = pool.FindServiceByName("maos.v1.TaskService")
    ours = task_service_pb2.DESCRIPTOR.services_by_name["TaskService"]
    assert [m.name for m in service.methods] == [m.name for m in ours.methods]
    submit = service.methods_by_name["SubmitTask"]
    assert submit.input_type.full_name == "maos.v1.SubmitTaskRequest"
    assert submit.output_type.full_name == "maos.v1.SubmitTaskResponse"
    assert "task" in submit.input_type.fields_by_name


async def test_reflection_answers_an_unknown_symbol_with_not_found(control_plane: App) -> None:
    [response] = await reflect(
        control_plane.address,
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="maos.v1.NoSuchService"),
    )
    assert response.WhichOneof("message_response") == "error_response", response
    assert response.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


@pytest.fixture
async def without_reflection(tmp_path: Path) -> AsyncIterator[App]:
    """A control plane with ``server.reflection: false``."""
    app = await start_app(make_settings(tmp_path / "home", **{"server.reflection": False}))
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


async def test_reflection_can_be_turned_off(without_reflection: App) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await reflect(without_reflection.address, reflection_pb2.ServerReflectionRequest(list_services=""))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def _reflect_as(app: App, token: str | None) -> set[str]:
    """The services a reflection listing names, calling with ``token`` (or no key)."""
    listing = reflection_pb2.ServerReflectionRequest(list_services="")
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    async with grpc.aio.insecure_channel(app.address) as channel:
        call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([listing]), metadata=metadata, timeout=10
        )
        [response] = [r async for r in call]
    return {s.name for s in response.list_services_response.service}


async def test_reflection_answers_any_valid_key_by_default(secured: App) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await _reflect_as(secured, None)
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await _reflect_as(secured, "maos_key_not-a-key")
    assert wrong.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert await _reflect_as(secured, await user_key(secured, "viewer@example.com", "viewer")) >= SERVED
    assert await _reflect_as(secured, await admin_key(secured)) >= SERVED


@pytest.mark.parametrize("level", ["admin", "public"])
async def test_reflection_level_is_a_setting(tmp_path: Path, level: str) -> None:
    app = await start_app(
        make_settings(tmp_path / "home", **{"security.auth": "required", "server.reflection": level})
    )
    try:
        viewer = await user_key(app, "viewer@example.com", "viewer")
        if level == "admin":
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _reflect_as(app, viewer)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert await _reflect_as(app, await admin_key(app)) >= SERVED
        else:
            assert await _reflect_as(app, None) >= SERVED
            assert await _reflect_as(app, viewer) >= SERVED
        # The level concerns reflection only: the MAOS services still need a key.
        async with grpc.aio.insecure_channel(app.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as keyless:
                await system_service_pb2_grpc.SystemServiceStub(channel).GetStatus(
                    system_service_pb2.GetStatusRequest(), timeout=10
                )
        assert keyless.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await app.stop(grace=1.0)


@pytest.mark.parametrize(
    ("written", "level"),
    [(True, "authenticated"), (False, "off"), ("off", "off"), ("PUBLIC", "public"), ("admin", "admin")],
)
def test_reflection_setting_values(tmp_path: Path, written: object, level: str) -> None:
    assert make_settings(tmp_path, **{"server.reflection": written})["server.reflection"] == level


def test_an_unknown_reflection_level_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="server.reflection"):
        make_settings(tmp_path, **{"server.reflection": "everyone"})
