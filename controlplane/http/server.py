"""Serving the HTTP door with uvicorn beside the gRPC port, on the same TLS files."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import ssl
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import grpc
import uvicorn
from starlette.types import ASGIApp

from controlplane.api.server import SERVICE_NAMES
from controlplane.api.tls import ServerTls
from controlplane.errors import InvalidArgument
from controlplane.http.gateway import Gateway
from controlplane.http.rules import routes_of

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
log = logging.getLogger(__name__)


def check_http_address(
    host: str, allow_insecure_remote: bool, tls: bool, setting: str = "server.http"
) -> None:
    """The gRPC port's rule for the HTTP port: beyond localhost only with TLS or ``allow_insecure_remote``.

    ``setting`` names the port's settings (``server.http``: ``server.http_address``, ``server.http_port``).
    """
    if host.strip() not in _LOCAL_HOSTS and not tls and not allow_insecure_remote:
        raise InvalidArgument(
            f"refusing to serve plaintext HTTP on {host.strip() or 'every address'}: set {setting}_address "
            "to 127.0.0.1, configure TLS (server.tls.cert_file, server.tls.key_file), turn it off with "
            f"{setting}_port: 0, or set server.allow_insecure_remote "
            "(MAOS_SERVER_ALLOW_INSECURE_REMOTE=true) if you mean it",
            field=f"{setting}_address",
        )


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the control plane handles SIGTERM and SIGINT itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """The HTTP/JSON, SSE and gRPC-Web port: a :class:`Gateway` on a private channel to the gRPC server.

    Extra ASGI applications (the MCP server's streamable-HTTP transport, for instance) are
    mounted with :meth:`mount` before :meth:`start`. A subclass serves more around the API by
    overriding :meth:`application` (the dashboard does); ``setting`` names its port's settings.
    """

    setting = "server.http"

    def __init__(self, settings: Any, tls: ServerTls | None, service_names: list[str] | None = None):
        self.settings = settings
        self.tls = tls
        self.service_names = list(service_names or SERVICE_NAMES)
        self.mounts: dict[str, ASGIApp] = {}
        self.lifespans: list[Callable[[], AbstractAsyncContextManager[Any]]] = []
        self.gateway: Gateway | None = None
        self._lifespan_task: asyncio.Task[None] | None = None
        self._lifespan_end: asyncio.Event | None = None
        self.port = 0
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket_dir = ""

    def mount(
        self, path: str, app: ASGIApp, lifespan: Callable[[], AbstractAsyncContextManager[Any]] | None = None
    ) -> None:
        """Serve ``app`` under ``path`` (``/mcp``) on the HTTP port; call before :meth:`start`.

        ``lifespan`` (the app's own, as an async context manager factory) is entered before the
        port opens and left after it closes, in a task of its own (anyio task groups must be left
        by the task that entered them).
        """
        if self.gateway is not None:
            raise RuntimeError("mount ASGI applications before the HTTP port starts")
        self.mounts[path.rstrip("/") or "/"] = app
        if lifespan is not None:
            self.lifespans.append(lifespan)

    async def _run_lifespans(self, ready: asyncio.Future[None], end: asyncio.Event) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                for lifespan in self.lifespans:
                    await stack.enter_async_context(lifespan())
                ready.set_result(None)
                await end.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.exception("an application mounted on the HTTP port failed")

    def grpc_socket(self) -> str:
        """A private Unix socket address for the gRPC server to add (a fresh 0700 directory)."""
        if not self._socket_dir:
            self._socket_dir = tempfile.mkdtemp(prefix="maos-http-")
        return f"unix:{os.path.join(self._socket_dir, 'grpc.sock')}"

    def _ssl(self) -> dict[str, Any]:
        if self.tls is None:
            return {}
        options: dict[str, Any] = {"ssl_certfile": self.tls.cert_file, "ssl_keyfile": self.tls.key_file}
        if self.tls.client_ca_file:
            options["ssl_ca_certs"] = self.tls.client_ca_file
            options["ssl_cert_reqs"] = (
                ssl.CERT_REQUIRED if self.tls.require_client_auth else ssl.CERT_OPTIONAL
            )
        return options

    async def start(self, host: str, port: int) -> int:
        """Bind ``host:port`` (0: any free port), connect to the gRPC server's socket and serve; the port."""
        check_http_address(
            host, self.settings["server.allow_insecure_remote"], self.tls is not None, self.setting
        )
        if self.lifespans:
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._lifespan_end = asyncio.Event()
            self._lifespan_task = asyncio.create_task(self._run_lifespans(ready, self._lifespan_end))
            await ready
        self.gateway = Gateway(
            routes_of(self.service_names),
            self.service_names,
            max_body=self.settings["server.http_max_body_bytes"],
            timeout=self.settings["server.http_timeout"],
            cors_origins=self.settings["server.http_cors_origins"],
            mounts=self.mounts,
            reflection=self.settings["server.reflection"],
        )
        self.gateway.channel = grpc.aio.insecure_channel(
            self.grpc_socket(),
            options=[
                ("grpc.max_receive_message_length", 16 * 1024 * 1024),
                ("grpc.max_send_message_length", 16 * 1024 * 1024),
            ],
        )
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small answers leave at once
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            sock.close()
            raise InvalidArgument(
                f"cannot listen on {host}:{port} for HTTP: {exc.strerror}", field=f"{self.setting}_port"
            ) from None
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.application(),
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=5,
            proxy_headers=False,
            server_header=False,
            **self._ssl(),
        )
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise InvalidArgument(
                    f"the HTTP port {host}:{self.port} did not start", field=f"{self.setting}_port"
                )
            await asyncio.sleep(0.01)
        return self.port

    def application(self) -> ASGIApp:
        """What the port serves: the gateway (a subclass may serve more around it)."""
        assert self.gateway is not None
        return self.gateway.asgi

    async def stop(self, grace: float = 5.0) -> None:
        """Stop serving: open streams end (their calls are cancelled), then the port closes."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            if self.gateway is not None and self.gateway.channel is not None:
                await self.gateway.channel.close(grace=None)
            try:
                await asyncio.wait_for(self._task, max(grace, 1.0) + 5)
            except TimeoutError:
                self._server.force_exit = True
        if self._lifespan_task is not None and self._lifespan_end is not None:
            self._lifespan_end.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._lifespan_task, max(grace, 1.0) + 5)
            self._lifespan_task = self._lifespan_end = None
        if self._socket_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = ""
        self._server = self._task = None
