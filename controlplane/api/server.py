"""The grpc.aio server: servicers, interceptors, health, reflection, keepalive."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from controlplane.api.pb import (
    access_grpc,
    agents_grpc,
    audit_grpc,
    batches_grpc,
    gateway_grpc,
    system_grpc,
    tasks_grpc,
    templates_grpc,
)
from controlplane.errors import InvalidArgument

#: Accept agent keepalive pings every 10 s or slower (agents ping every 30 s).
SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 2),
    ("grpc.max_concurrent_streams", 100_000),  # many agent streams may share one connection
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]

SERVICE_NAMES = [
    "maos.v1.TaskService",
    "maos.v1.AgentService",
    "maos.v1.SystemService",
    "maos.v1.CheckpointService",
    "maos.v1.AgentGateway",
    "maos.v1.AccessService",
    "maos.v1.AuditService",
    "maos.v1.WebhookService",
    "maos.v1.BatchService",
    "maos.v1.TemplateService",
]

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def check_bind_address(address: str, allow_insecure_remote: bool, tls: bool = False) -> None:
    """Refuse a plaintext port reachable beyond this machine unless explicitly allowed (TLS ports may bind anywhere).

    Also refuse a list of addresses: clients take one (``MAOS_SERVER_ADDRESS=a:7100,b:7100``, to move to a
    live control plane), but a control plane listens on exactly one.
    """
    if "," in address:
        raise InvalidArgument(
            f"a control plane listens on one address, not the list {address[:120]!r}: a list is for clients "
            "(maos --addr, maos-agent --server); start each control plane with its own --address "
            "(or server.address)",
            field="server.address",
        )
    host = address.rsplit(":", 1)[0] if ":" in address else address
    if host not in _LOCAL_HOSTS and not tls and not allow_insecure_remote:
        raise InvalidArgument(
            f"refusing to serve plaintext gRPC on {address}: bind 127.0.0.1, configure TLS, or set "
            "server.allow_insecure_remote (MAOS_SERVER_ALLOW_INSECURE_REMOTE=true) if you mean it",
            field="server.address",
        )


def check_metrics_address(host: str, allow_insecure_remote: bool) -> None:
    """Refuse to serve /metrics (plaintext HTTP, no key) beyond this machine unless explicitly allowed.

    The same rule as the gRPC port's (:func:`check_bind_address`) without its TLS way out:
    /metrics has no TLS, so only ``server.allow_insecure_remote`` lets it listen beyond localhost.
    """
    host = host.strip()
    if host not in _LOCAL_HOSTS and not allow_insecure_remote:
        where = host or "every address"
        raise InvalidArgument(
            f"refusing to serve /metrics (plaintext HTTP, readable without a key) on {where}: "
            "set server.metrics_address to 127.0.0.1 (and scrape through a proxy or tunnel), "
            "turn it off with server.metrics_port: 0, or set server.allow_insecure_remote "
            "(MAOS_SERVER_ALLOW_INSECURE_REMOTE=true) if you mean it",
            field="server.metrics_address",
        )


def build_server(
    servicers: dict[str, object], interceptors: list[grpc.aio.ServerInterceptor], reflection_level: str
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """A server with every servicer added (not yet bound or started); reflection unless ``off``."""
    server = grpc.aio.server(interceptors=interceptors, options=SERVER_OPTIONS)
    tasks_grpc.add_TaskServiceServicer_to_server(servicers["tasks"], server)
    agents_grpc.add_AgentServiceServicer_to_server(servicers["agents"], server)
    system_grpc.add_SystemServiceServicer_to_server(servicers["system"], server)
    gateway_grpc.add_AgentGatewayServicer_to_server(servicers["gateway"], server)
    access_grpc.add_AccessServiceServicer_to_server(servicers["access"], server)
    audit_grpc.add_AuditServiceServicer_to_server(servicers["audit"], server)
    batches_grpc.add_BatchServiceServicer_to_server(servicers["batches"], server)
    templates_grpc.add_TemplateServiceServicer_to_server(servicers["templates"], server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if reflection_level != "off":
        names = [
            *SERVICE_NAMES,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ]
        reflection.enable_server_reflection(names, server)
    return server, health_servicer


async def set_serving(health_servicer: health.aio.HealthServicer, serving: bool) -> None:
    """Mark the overall and every MAOS service SERVING or NOT_SERVING."""
    status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
    for name in ["", *SERVICE_NAMES]:
        await health_servicer.set(name, status)
