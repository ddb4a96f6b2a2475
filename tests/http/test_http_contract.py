"""The OpenAPI document lists every route the HTTP port serves; docs/http.md's table is current; settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from controlplane.api.server import SERVICE_NAMES
from controlplane.app import App, build_app
from controlplane.errors import InvalidArgument
from controlplane.http.aliases import ALIASES, Alias
from controlplane.http.openapi import routes_table
from controlplane.http.rules import Route, routes_of
from tests.harness.server import admin_key, make_settings, start_app
from tests.http.conftest import Http

DOC = Path(__file__).resolve().parents[2] / "docs" / "http.md"


async def test_openapi_lists_every_route_the_server_serves(http_plane: App, http: Http) -> None:
    response = await http.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    listed = {(verb.upper(), path) for path, item in document["paths"].items() for verb in item}
    gateway = http_plane.http.gateway
    served = {(r.verb, r.openapi_path) for r in gateway.routes} | {(a.verb, a.path) for a in ALIASES}
    assert listed == served
    # Every served RPC of every annotated service has a route, and every documented path reaches it.
    annotated = {r.rpc for r in routes_of(SERVICE_NAMES)}
    assert {r.rpc for r in gateway.routes} == annotated
    assert {
        "maos.v1.TaskService.SubmitTask",
        "maos.v1.TaskService.WatchTask",
        "maos.v1.SystemService.WatchEvents",
        "maos.v1.SystemService.TailLogs",
    } <= annotated
    for verb, path in listed:
        concrete = re.sub(r"\{[^}]+\}", "x1", path)
        target, _ = gateway.resolve(verb, concrete)
        assert isinstance(target, Route | Alias), (verb, path)
        expected = document["paths"][path][verb.lower()]
        if isinstance(target, Route):
            assert expected["operationId"].endswith(target.method.name)
    schemas = document["components"]["schemas"]
    assert "maos.v1.Task" in schemas and "google.rpc.Status" in schemas
    assert schemas["maos.v1.Task"]["properties"]["maxAgents"]["type"] == "integer"
    assert schemas["maos.v1.Task"]["properties"]["priority"]["enum"][0] == "PRIORITY_UNSPECIFIED"


def test_docs_route_table_is_current() -> None:
    text = DOC.read_text()
    table = text.split("<!-- routes:begin -->\n", 1)[1].split("<!-- routes:end -->", 1)[0]
    assert table == routes_table(routes_of(SERVICE_NAMES)), (
        "docs/http.md is stale: paste `python -m controlplane.http.openapi --markdown` between the markers"
    )


async def test_http_port_zero_serves_no_http(maos_home: Path) -> None:
    app = build_app(make_settings(maos_home, **{"server.http_port": 0}))
    await app.start("127.0.0.1:0")
    try:
        assert app.http_port == 0 and app.http.gateway is None
    finally:
        await app.stop(grace=1.0)


@pytest.mark.parametrize("address", ["0.0.0.0", "10.1.2.3"])
async def test_plaintext_http_beyond_localhost_is_refused(maos_home: Path, address: str) -> None:
    app = build_app(make_settings(maos_home, **{"server.http_address": address, "server.http_port": 8000}))
    with pytest.raises(InvalidArgument) as refused:
        await app.start("127.0.0.1:0")
    assert refused.value.violations[0].field == "server.http_address"
    assert "TLS" in refused.value.message
    await app.stop(grace=1.0)


def test_cors_origins_are_checked(maos_home: Path) -> None:
    settings = make_settings(maos_home, **{"server.http_cors_origins": "https://a.example, http://b:8080/"})
    assert settings["server.http_cors_origins"] == ["https://a.example", "http://b:8080"]
    with pytest.raises(InvalidArgument):
        make_settings(maos_home, **{"server.http_cors_origins": ["ops.example.com"]})


async def test_https_with_the_grpc_ports_certificate(maos_home: Path, pki) -> None:
    import asyncio

    import requests

    settings = make_settings(maos_home, **pki.server_settings())
    app = await start_app(settings, http=True)
    try:
        reply = await asyncio.to_thread(
            requests.get, f"https://localhost:{app.http_port}/health", verify=str(pki.ca), timeout=10
        )
        assert reply.status_code == 200 and reply.json() == {"status": "SERVING"}
    finally:
        await app.stop(grace=1.0)


async def test_extra_asgi_apps_mount_beside_the_api(maos_home: Path) -> None:
    import asyncio

    import requests

    async def hello(scope, receive, send) -> None:  # a minimal ASGI app, as the MCP transport would be
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        await send({"type": "http.response.body", "body": f"mounted at {scope['root_path']}".encode()})

    app = build_app(make_settings(maos_home))
    app.http.mount("/mcp", hello)
    await app.start("127.0.0.1:0", http_address="127.0.0.1:0")
    try:
        base = f"http://127.0.0.1:{app.http_port}"
        reply = await asyncio.to_thread(requests.get, f"{base}/mcp/", timeout=10)
        assert reply.status_code == 200 and reply.text == "mounted at /mcp"
        assert (await asyncio.to_thread(requests.get, f"{base}/health", timeout=10)).status_code == 200
        with pytest.raises(RuntimeError):
            app.http.mount("/late", hello)
    finally:
        await app.stop(grace=1.0)


async def test_the_openapi_document_follows_server_reflection(secured_http: App, admin_http: Http) -> None:
    import asyncio

    import requests

    bare = await asyncio.to_thread(requests.get, f"{admin_http.base}/openapi.json", timeout=10)
    assert bare.status_code == 401  # authenticated (the default): any valid key, like gRPC reflection
    viewer = await secured_http.access.create_user("vera@example.com", ["viewer"])
    _, key = await secured_http.storage.call(secured_http.access.issue_key_sync, viewer["id"], "vera")
    assert (await Http(secured_http, key).get("/openapi.json")).status_code == 200
    assert (await admin_http.get("/openapi.json")).status_code == 200


@pytest.mark.parametrize(
    ("level", "bare", "viewer"), [("off", 404, 404), ("admin", 401, 403), ("public", 200, 200)]
)
async def test_openapi_levels(maos_home: Path, level: str, bare: int, viewer: int) -> None:
    import asyncio

    import requests

    app = await start_app(
        make_settings(maos_home, **{"security.auth": "required", "server.reflection": level}), http=True
    )
    try:
        url = f"http://127.0.0.1:{app.http_port}/openapi.json"
        assert (await asyncio.to_thread(requests.get, url, timeout=10)).status_code == bare
        user = await app.access.create_user("vic@example.com", ["viewer"])
        _, key = await app.storage.call(app.access.issue_key_sync, user["id"], "vic")
        assert (await Http(app, key).get("/openapi.json")).status_code == viewer
        admin = Http(app, await admin_key(app))
        assert (await admin.get("/openapi.json")).status_code == (404 if level == "off" else 200)
    finally:
        await app.stop(grace=1.0)


async def test_mutual_tls_on_the_http_port(maos_home: Path, pki) -> None:
    import asyncio

    import requests

    app = await start_app(make_settings(maos_home, **pki.server_settings(mutual=True)), http=True)
    try:
        url = f"https://localhost:{app.http_port}/health"
        with_cert = await asyncio.to_thread(
            requests.get,
            url,
            verify=str(pki.ca),
            timeout=10,
            cert=(str(pki.client.cert), str(pki.client.key)),
        )
        assert with_cert.status_code == 200
        with pytest.raises(requests.exceptions.RequestException):
            await asyncio.to_thread(requests.get, url, verify=str(pki.ca), timeout=10)
        with pytest.raises(requests.exceptions.RequestException):
            await asyncio.to_thread(
                requests.get,
                url,
                verify=str(pki.ca),
                timeout=10,
                cert=(str(pki.stranger.cert), str(pki.stranger.key)),
            )
    finally:
        await app.stop(grace=1.0)
