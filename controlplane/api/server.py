"""The grpc.aio server: servicers, interceptors, health, reflection, keepalive."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

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
    # grpc.aio takes new calls from its core one loop turn at a time. When thousands of agents
    # (re)connect at once, the calls not taken yet wait in the core's backlog, which by default
    # starts refusing them past 1,000 (the agent sees CANCELLED or INTERNAL, reconnects, and
    # adds to the storm). Let them wait instead: each is taken in turn within seconds.
    ("grpc.server.max_pending_requests", 50_000),
    ("grpc.server.max_pending_requests_hard_limit", 100_000),
    ("grpc.server_max_unrequested_time_in_server", 300),  # seconds (30 by default)
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


@runtime_checkable
class HandlerWrapper(Protocol):
    """An interceptor that can wrap a method's handler once, when it is registered."""

    def wrap_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """The handler to serve ``method`` (``/package.Service/Method``) with instead of ``handler``."""
        ...


class _GenericHandler(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc ships no types
    """A generic handler whose answers pass through ``wrap`` (once per method and handler)."""

    def __init__(self, inner: grpc.GenericRpcHandler, wrap: Callable[[Any, str], Any]):
        self._inner = inner
        self._wrap = wrap
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


class WrappingServer(grpc.aio.Server):  # type: ignore[misc]  # grpc ships no types
    """A grpc.aio server whose method handlers are wrapped when they are added, not on every call.

    grpc.aio runs its interceptors on every call (a chain of coroutines that
    look the handler up and wrap it); wrapping each handler once at
    registration gives the same handlers without that per-call cost. Every
    servicer added later (checkpoints, webhooks, health, reflection) is
    wrapped the same way.
    """

    def __init__(self, server: grpc.aio.Server, wrappers: list[HandlerWrapper]):
        self._server = server
        self._wrappers = list(reversed(wrappers))  # the first one is the outermost, as with interceptors

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """``handler`` for ``method`` wrapped by every wrapper, the first outermost."""
        for wrapper in self._wrappers:
            handler = wrapper.wrap_handler(handler, method)
        return handler

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers([_GenericHandler(h, self.wrap) for h in generic_rpc_handlers])

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self._server.add_registered_method_handlers(
            service_name,
            {name: self.wrap(h, f"/{service_name}/{name}") for name, h in method_handlers.items()},
        )

    def add_insecure_port(self, address: str) -> int:
        port: int = self._server.add_insecure_port(address)
        return port

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        port: int = self._server.add_secure_port(address, server_credentials)
        return port

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace: float | None) -> None:
        await self._server.stop(grace)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        terminated: bool = await self._server.wait_for_termination(timeout)
        return terminated


def build_server(
    servicers: dict[str, object], interceptors: list[grpc.aio.ServerInterceptor], reflection_level: str
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """A server with every servicer added (not yet bound or started); reflection unless ``off``.

    Interceptors that are :class:`HandlerWrapper` s wrap each handler once, when it is added
    (:class:`WrappingServer`); any other runs per call, as grpc.aio runs interceptors, and
    therefore outside them (so it must come first in ``interceptors``).
    """
    wrappers = [i for i in interceptors if isinstance(i, HandlerWrapper)]
    others = [i for i in interceptors if not isinstance(i, HandlerWrapper)]
    if others and wrappers and interceptors.index(wrappers[0]) < interceptors.index(others[-1]):
        raise ValueError("interceptors running per call must come before the ones that wrap handlers")
    server: grpc.aio.Server = grpc.aio.server(interceptors=others or None, options=SERVER_OPTIONS)
    if wrappers:
        server = WrappingServer(server, wrappers)
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
