"""The harness talks to a real control plane over gRPC, on SQLite and on PostgreSQL."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from controlplane.app import App
from tests.harness.server import Stubs


async def test_real_server_answers_status_and_health(control_plane: App, stubs: Stubs) -> None:
    status = await stubs.system.GetStatus(system_pb.GetStatusRequest(), timeout=5)
    assert status.storage_backend == "sqlite"
    assert status.replica == control_plane.engine.replica
    health = health_pb2_grpc.HealthStub(stubs.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="maos.v1.TaskService"), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_unknown_health_service_is_not_found(stubs: Stubs) -> None:
    health = health_pb2_grpc.HealthStub(stubs.channel)
    try:
        await health.Check(health_pb2.HealthCheckRequest(service="maos.v1.Nope"), timeout=5)
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.NOT_FOUND
    else:
        raise AssertionError("an unknown service must be NOT_FOUND")


async def test_real_server_on_postgresql(pg_control_plane: App) -> None:
    stubs = Stubs(pg_control_plane.address)
    try:
        status = await stubs.system.GetStatus(system_pb.GetStatusRequest(), timeout=5)
        assert status.storage_backend == "postgresql"
    finally:
        await stubs.close()
