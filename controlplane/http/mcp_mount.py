"""MCP over streamable HTTP at ``/mcp`` on the control plane's HTTP port (``server.http_mcp``).

The MCP server (:mod:`maos_mcp`) is a client of the control plane like any other: each MCP
request's tool calls and resource reads become gRPC calls over the HTTP port's private Unix
socket, with that request's ``Authorization: Bearer`` key and the HTTP client's address, so the
same interceptors authenticate, authorize, rate-limit and audit them, and a key sees exactly
what it may see. No key of the server's own is involved. The Unix socket (rather than the gRPC
TCP port) works whatever the gRPC port's TLS: it needs no client certificate.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.rpc import status_pb2
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from agent_sdk.proto.maos.v1 import access_service_pb2, access_service_pb2_grpc
from controlplane.errors import FailedPrecondition
from controlplane.http.gateway import error_response, peer_metadata
from controlplane.http.server import HttpServer
from controlplane.http.transcode import status_of_rpc_error

log = logging.getLogger(__name__)

#: Where MCP clients connect: ``http(s)://HOST:PORT/mcp``.
MCP_PATH = "/mcp"
INSTALL_HINT = 'pip install "maos[mcp]"'


def _is_loopback(host: str) -> bool:
    host = host.strip().strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class KeyCheck:
    """Refuses an MCP HTTP request whose key the control plane does not accept, with 401 (as MCP wants).

    Each request's ``Authorization`` header is checked with ``AccessService.GetCaller`` (the same
    interceptor as every call) before the MCP transport sees it; the tool calls it carries are
    then authorized one by one with the same key.
    """

    def __init__(self, app: ASGIApp, channel: grpc.aio.Channel, timeout: float | None):
        self.app = app
        self.stub = access_service_pb2_grpc.AccessServiceStub(channel)
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        authorization = request.headers.get("authorization", "")
        status: status_pb2.Status | None = None
        if not authorization.lower().startswith("bearer ") or not authorization[7:].strip():
            status = status_pb2.Status(
                code=grpc.StatusCode.UNAUTHENTICATED.value[0],
                message="MCP on this control plane needs an API key: send 'Authorization: Bearer maos_key_...'",
            )
        else:
            try:
                await self.stub.GetCaller(
                    access_service_pb2.GetCallerRequest(),
                    timeout=self.timeout,
                    metadata=[("authorization", authorization), *peer_metadata(request)],
                )
            except grpc.aio.AioRpcError as exc:
                status = status_of_rpc_error(exc)
        if status is None:
            await self.app(scope, receive, send)
            return
        response = error_response(status)
        if status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]:
            response.headers["WWW-Authenticate"] = 'Bearer realm="maos"'
        await response(scope, receive, send)


def mount_mcp(http: HttpServer, settings: Any, host: str) -> bool:
    """Mount the MCP endpoint on ``http`` (before it starts); False when it is not served.

    Args:
        http: The HTTP port, not started yet.
        settings: The control plane's settings (``server.http_mcp``, ``server.http_cors_origins``).
        host: The address the HTTP port listens on.

    Raises:
        FailedPrecondition: ``server.http_mcp`` was set to true explicitly but the ``mcp``
            package is not installed (left at its default, the endpoint is skipped and logged).
    """
    if not settings["server.http_mcp"]:
        return False
    try:
        from mcp.server.transport_security import TransportSecuritySettings

        from agent_sdk.client import Client
        from maos_mcp.server import HttpTransport, transport_security
    except ModuleNotFoundError as exc:
        if not exc.name or exc.name.split(".")[0] not in ("mcp", "mcp_types"):
            raise
        if settings.source("server.http_mcp") == "default":
            log.info("MCP is not served at %s: the mcp package is not installed (%s)", MCP_PATH, INSTALL_HINT)
            return False
        raise FailedPrecondition(
            f"server.http_mcp is on but the mcp package is not installed: {INSTALL_HINT}, "
            "or set server.http_mcp: false",
            reason="ERROR_REASON_NOT_SUPPORTED",
        ) from None
    if _is_loopback(host):
        # DNS rebinding: a web page whose name resolves to 127.0.0.1 must not reach a local server
        # (it matters most with security.auth: off), so Host and Origin must name this machine or
        # an origin server.http_cors_origins allows.
        security = transport_security(host)
        security.allowed_origins += [o for o in settings["server.http_cors_origins"] if o != "*"]
    else:
        # Beyond loopback the names clients use are not known here; the port has TLS (or
        # server.allow_insecure_remote), and every call needs the caller's own key, which a
        # rebinding page does not have.
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    client = Client(http.grpc_socket())  # no key of its own: each request brings its caller's
    transport = HttpTransport(client, security=security, metadata=peer_metadata)
    app: ASGIApp = transport.asgi
    if settings["security.auth"] == "required":
        app = KeyCheck(app, client.channel, settings["server.http_timeout"] or None)

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        try:
            async with transport.lifespan():
                yield
        finally:
            await client.close()

    http.mount(MCP_PATH, app, lifespan)
    return True
