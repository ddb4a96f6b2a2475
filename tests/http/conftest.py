"""A real control plane with its HTTP port on an ephemeral port, and a small blocking-client wrapper."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import requests

from controlplane.app import App
from tests.harness.server import admin_key, make_settings, start_app


class Http:
    """``requests`` against one control plane's HTTP port, run in a thread (the server shares the loop)."""

    def __init__(self, app: App, key: str = ""):
        self.app = app
        self.base = f"http://127.0.0.1:{app.http_port}"
        self.key = key

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The bearer header (if a key is set) and ``extra``."""
        out = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        return {**out, **(extra or {})}

    async def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request; ``headers`` add to the bearer header."""
        kwargs["headers"] = self.headers(kwargs.get("headers"))
        kwargs.setdefault("timeout", 30)
        return await asyncio.to_thread(requests.request, method, self.base + path, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> requests.Response:
        """GET."""
        return await self.call("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST."""
        return await self.call("POST", path, **kwargs)


async def _plane(home: Path, **overrides: Any) -> App:
    return await start_app(make_settings(home, **overrides), http=True)


@pytest.fixture
async def http_plane(maos_home: Path) -> AsyncIterator[App]:
    """A control plane with access control off and its HTTP port up."""
    app = await _plane(maos_home)
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


@pytest.fixture
async def secured_http(maos_home: Path) -> AsyncIterator[App]:
    """A control plane that requires API keys, with its HTTP port up."""
    app = await _plane(maos_home, **{"security.auth": "required"})
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


@pytest.fixture
async def http(http_plane: App) -> Http:
    """A client of ``http_plane``."""
    return Http(http_plane)


@pytest.fixture
async def admin_http(secured_http: App) -> Http:
    """An admin's client of ``secured_http``."""
    return Http(secured_http, await admin_key(secured_http))


def error_of(response: requests.Response) -> tuple[int, str, list[str]]:
    """(gRPC code, ErrorInfo reason, BadRequest fields) of a google.rpc.Status JSON answer."""
    body = response.json()
    reason, fields = "", []
    for detail in body.get("details", []):
        if detail["@type"].endswith("google.rpc.ErrorInfo"):
            reason = detail["reason"]
        if detail["@type"].endswith("google.rpc.BadRequest"):
            fields += [v["field"] for v in detail.get("fieldViolations", [])]
    return body["code"], reason, fields
