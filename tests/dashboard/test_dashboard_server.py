"""The dashboard port without a browser: off with 0, the address rule, headers, the API on the same origin."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
import requests

from controlplane.app import build_app
from controlplane.errors import InvalidArgument
from tests.harness.server import admin_key, free_port, make_settings, start_app


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_dashboard_port_zero_listens_nowhere(maos_home: Path) -> None:
    app = build_app(make_settings(maos_home, **{"server.dashboard_port": 0}))
    await app.start("127.0.0.1:0")
    try:
        assert app.dashboard_port == 0 and app.dashboard.gateway is None
        assert not app.dashboard._socket_dir  # not even the private socket to the gRPC server
    finally:
        await app.stop(grace=1.0)


async def test_dashboard_port_setting_serves_there(maos_home: Path) -> None:
    port = free_port()
    app = build_app(make_settings(maos_home, **{"server.dashboard_port": port}))
    await app.start("127.0.0.1:0")
    try:
        assert app.dashboard_port == port and _listening(port)
        page = await asyncio.to_thread(requests.get, f"http://127.0.0.1:{port}/", timeout=10)
        assert page.status_code == 200 and "MAOS dashboard" in page.text
    finally:
        await app.stop(grace=1.0)
    assert not _listening(port)


@pytest.mark.parametrize("address", ["0.0.0.0", "10.1.2.3"])
async def test_plaintext_dashboard_beyond_localhost_is_refused(maos_home: Path, address: str) -> None:
    app = build_app(
        make_settings(maos_home, **{"server.dashboard_address": address, "server.dashboard_port": 3001})
    )
    with pytest.raises(InvalidArgument) as refused:
        await app.start("127.0.0.1:0")
    assert refused.value.violations[0].field == "server.dashboard_address"
    assert "TLS" in refused.value.message and "server.dashboard_port: 0" in refused.value.message
    await app.stop(grace=1.0)


async def test_page_headers_and_the_api_on_the_same_origin(maos_home: Path) -> None:
    app = await start_app(make_settings(maos_home, **{"security.auth": "required"}), dashboard=True)
    try:
        base = f"http://127.0.0.1:{app.dashboard_port}"
        key = await admin_key(app)

        def get(path: str, **headers: str) -> requests.Response:
            return requests.get(base + path, headers=headers, timeout=10)

        page = await asyncio.to_thread(get, "/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = page.headers["content-security-policy"]
        assert (
            "default-src 'none'" in policy
            and "script-src 'self'" in policy
            and "connect-src 'self'" in policy
        )
        assert page.headers["referrer-policy"] == "no-referrer" and page.headers["x-frame-options"] == "DENY"
        script = await asyncio.to_thread(get, "/assets/js/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert (await asyncio.to_thread(get, "/assets/../server.py")).status_code == 404
        assert (await asyncio.to_thread(get, "/assets/nothing.js")).status_code == 404
        # The HTTP API answers on the dashboard's origin, with the same keys and refusals.
        refused = await asyncio.to_thread(get, "/v1/caller")
        assert refused.status_code == 401 and refused.json()["code"] == 16
        caller = await asyncio.to_thread(get, "/v1/caller", Authorization=f"Bearer {key}")
        assert caller.status_code == 200 and caller.json()["principal"] == "users/admin"
        assert "content-security-policy" not in caller.headers  # API answers pass untouched
        assert app.http_port == 0  # the HTTP port is off: the dashboard does not need it
    finally:
        await app.stop(grace=1.0)
