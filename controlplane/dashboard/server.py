"""The dashboard port: the dashboard's page and assets, and the HTTP API on the same origin.

The page is a small front end (ES modules, no build step) in ``static/``, shipped as package
data. It calls the HTTP API with the user's own key, so every permission, limit and audit
record applies exactly as on the HTTP port. The API is served on the dashboard's port as well
(the same :class:`~controlplane.http.gateway.Gateway`, on its own private channel to the gRPC
server): the page's calls are same-origin, so no CORS setting is needed and the HTTP port may
even be off.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from controlplane.http.server import HttpServer

STATIC = Path(__file__).resolve().parent / "static"

#: Everything the page loads comes from this origin; nothing is inlined, framed or sent elsewhere.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",
}


def _is_page(path: str) -> bool:
    return path == "/" or path.startswith("/assets/")


class _PageHeaders:
    """Adds :data:`SECURITY_HEADERS` to the page and assets (the API's answers pass untouched)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_page(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.decode().lower() not in SECURITY_HEADERS
                ]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


def dashboard_app(api: ASGIApp) -> ASGIApp:
    """``/`` is the page, ``/assets/...`` its files; every other path is the HTTP API (``api``)."""
    return _PageHeaders(
        Starlette(
            routes=[
                Route("/", _index, methods=["GET", "HEAD"]),
                Mount("/assets", app=StaticFiles(directory=STATIC, follow_symlink=False)),
                Mount("", app=api),
            ]
        )
    )


class DashboardServer(HttpServer):
    """The dashboard port (``server.dashboard_port``): the HTTP port's server with the page around its API."""

    setting = "server.dashboard"

    def application(self) -> ASGIApp:
        """The page and its assets, then the gateway for everything else."""
        return dashboard_app(super().application())
