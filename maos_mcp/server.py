"""The MCP server of MAOS over stdio or streamable HTTP, a client of the control plane.

Every tool call and resource read is made with an API key: over stdio the one the process was
started with (``--token``, ``MAOS_TOKEN`` or the credentials file), over HTTP the
``Authorization: Bearer`` header of each request of the MCP client (never a key in a URL), so
each MCP session sees exactly what its key may see on the control plane.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator, Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp

from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError, UnauthenticatedError
from maos_mcp import resources
from maos_mcp.tools import TOOLS, Call, call_tool, rpc_error_result

INSTRUCTIONS = (
    "MAOS runs plain-language work on a cluster of agents in parallel. Hand work over with submit_task, "
    "then wait_task (repeat while it still runs) and get_task_results; get_task shows subtasks and the plan; "
    "list_tasks and the maos://tasks/running resource show what runs."
)

ClientFor = Callable[[ServerRequestContext[Any, Any]], Client]


def _version() -> str:
    try:
        return version("maos")
    except PackageNotFoundError:  # a source checkout without an installed distribution
        return "0"


def build_server(client_for: ClientFor) -> Server[Any]:
    """The MCP server: tools and resources, each call made with ``client_for(ctx)``.

    Args:
        client_for: The control-plane client of a request (its API key); it may raise
            :class:`UnauthenticatedError` for a request whose credentials are malformed.
    """

    async def list_tools(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[spec.tool for spec in TOOLS.values()])

    async def on_call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            client = client_for(ctx)
        except MaosRpcError as exc:
            return rpc_error_result(exc)
        return await call_tool(Call(client, ctx.session.report_progress), params.name, params.arguments)

    async def list_resources(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListResourcesResult:
        return await resources.list_resources(_resource_client(ctx))

    async def list_templates(
        ctx: ServerRequestContext[Any, Any], params: Any
    ) -> types.ListResourceTemplatesResult:
        return resources.list_templates()

    async def read_resource(
        ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        return await resources.read_resource(_resource_client(ctx), str(params.uri))

    def _resource_client(ctx: ServerRequestContext[Any, Any]) -> Client:
        try:
            return client_for(ctx)
        except MaosRpcError as exc:
            raise MCPError(types.INVALID_REQUEST, str(exc)) from None

    return Server(
        "maos",
        version=_version(),
        title="MAOS",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=on_call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
    )


async def serve_stdio(client: Client) -> None:
    """Serve MCP on stdin/stdout until the MCP client closes them; every call uses ``client``'s key."""
    server = build_server(lambda ctx: client)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def bearer_token(ctx: ServerRequestContext[Any, Any]) -> str | None:
    """The API key of an HTTP request's ``Authorization: Bearer`` header (None without the header).

    Raises:
        UnauthenticatedError: The header is there but is not ``Bearer <key>``.
    """
    request = ctx.request
    header = request.headers.get("authorization", "") if request is not None else ""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnauthenticatedError("the Authorization header must be 'Bearer <API key>' (maos_key_...)")
    return token.strip()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def transport_security(host: str, allowed_hosts: Sequence[str] = ()) -> TransportSecuritySettings:
    """DNS-rebinding protection: the Host (and any Origin) header must name this server.

    Args:
        host: The address the server listens on; on a loopback address only local names are allowed.
        allowed_hosts: More ``host:port`` values (``*`` for any port) the server answers to.
    """
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*"] if _is_loopback(host) else [f"{host}:*"]
    hosts += list(allowed_hosts)
    origins = [f"{scheme}://{h}" for h in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


class HttpTransport:
    """MCP over streamable HTTP, as an ASGI app to serve alone or mount in another one.

    Each request's ``Authorization: Bearer`` key is sent with the calls it makes, over
    ``client``'s channel (``client`` itself should carry no key). To mount it in a Starlette
    app, route the MCP path to :attr:`asgi` and run :meth:`lifespan` in the host's lifespan::

        mcp = HttpTransport(Client(address), host="127.0.0.1")
        app = Starlette(routes=[Route("/mcp", endpoint=mcp.asgi, methods=["GET", "POST", "DELETE"])],
                        lifespan=lambda app: mcp.lifespan())

    Args:
        client: The control-plane client whose channel the calls use.
        host: The address the HTTP server listens on (for the Host header check).
        allowed_hosts: More ``host:port`` names the server answers to (``*`` for any port).
        security: Host/Origin checks replacing the ones derived from ``host``.
        metadata: More gRPC metadata for the calls of one HTTP request (the control plane's own
            HTTP port passes on the HTTP client's address this way).
    """

    def __init__(
        self,
        client: Client,
        *,
        host: str = "127.0.0.1",
        allowed_hosts: Sequence[str] = (),
        security: TransportSecuritySettings | None = None,
        metadata: Callable[[Request], Sequence[tuple[str, str]]] | None = None,
    ):
        self.client = client

        def client_for(ctx: ServerRequestContext[Any, Any]) -> Client:
            token = bearer_token(ctx)
            extra = metadata(ctx.request) if metadata is not None and ctx.request is not None else ()
            return client.with_token(token, extra)

        self.server = build_server(client_for)
        self.manager = StreamableHTTPSessionManager(
            app=self.server, security_settings=security or transport_security(host, allowed_hosts)
        )
        self.asgi: ASGIApp = StreamableHTTPASGIApp(self.manager)

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Run the MCP sessions (enter once, for the life of the HTTP server)."""
        async with self.manager.run():
            yield

    def app(self, path: str = "/mcp") -> Starlette:
        """A Starlette app serving MCP at ``path`` alone, with its lifespan."""
        return Starlette(
            routes=[Route(path, endpoint=self.asgi, methods=["GET", "POST", "DELETE"])],
            lifespan=lambda app: self.lifespan(),
        )
