"""MCP at ``/mcp`` on the control plane's own HTTP port (``server.http_mcp``), through the ``mcp`` client.

Each MCP request acts with its own ``Authorization: Bearer`` key: a developer sees only their
tasks, another user's task is NOT_FOUND, a request without a valid key is refused with 401, and
the audit log names the key's user. It works with mutual TLS on both ports (the MCP server
reaches the gRPC server over the HTTP port's private socket, which needs no client certificate).
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from agent_sdk.builtin import EchoAgent
from agent_sdk.client import Client
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.worker import Worker
from controlplane.app import App
from tests.controlplane.access.test_access import task_count, user_key
from tests.harness.server import admin_key, make_settings, start_app
from tests.mcp.test_mcp_server import call, refused

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "1"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture
async def plane(maos_home: Path) -> AsyncIterator[App]:
    """A control plane requiring API keys, with its HTTP port (and so /mcp) up."""
    app = await start_app(make_settings(maos_home, **{"security.auth": "required"}), http=True)
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


@asynccontextmanager
async def session_at(url: str, token: str, **client: Any) -> AsyncIterator[ClientSession]:
    """An MCP session over streamable HTTP with ``Authorization: Bearer token``."""
    async with (
        httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60, **client) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await asyncio.wait_for(session.initialize(), 30)
        yield session


async def test_mcp_on_the_http_port_acts_with_each_callers_key(plane: App) -> None:
    url = f"http://127.0.0.1:{plane.http_port}/mcp"
    admin = await admin_key(plane)
    worker = Worker(EchoAgent(), plane.address, token=admin, max_backoff=0.5)
    runner = asyncio.get_running_loop().create_task(worker.run())
    try:
        await asyncio.wait_for(worker.registered.wait(), 15)
        a = await user_key(plane, "dev-a@example.com", "developer")
        b = await user_key(plane, "dev-b@example.com", "developer")
        async with Client(plane.address, token=b) as dev_b:
            theirs = await dev_b.submit_task(description="dev-b's plans", agent_type="nobody")
        async with session_at(url, a) as session:
            submitted = await call(session, "submit_task", {"description": "List three uses of graphene"})
            task_id = submitted["task_id"]
            waited = await call(session, "wait_task", {"task_id": task_id, "timeout": 60})
            assert waited["status"] == "COMPLETED" and waited["result"]["output"], waited
            results = await call(session, "get_task_results", {"task_id": task_id})
            assert results["output"] == waited["result"]["output"]
            listed = await call(session, "list_tasks", {})
            assert [t["task_id"] for t in listed["tasks"]] == [task_id]  # dev-b's task is not listed
            other = theirs.name.removeprefix("tasks/")
            for tool in ("get_task", "get_task_results", "cancel_task"):
                assert "dev-b's plans" not in await refused(session, tool, {"task_id": other}, "NOT_FOUND")
        async with Client(plane.address, token=admin) as root:
            records = await root.list_audit_records(action="SubmitTask")
            assert (
                await root.get_task(other)
            ).task.status != enums.TASK_STATUS_CANCELLED  # dev-a's attempt did nothing
        # The submit was made as dev-a, with dev-a's key, from the MCP client's address.
        assert sorted(r.principal for r in records) == ["users/dev-a", "users/dev-b"], records
        mine = next(r for r in records if r.principal == "users/dev-a")
        assert mine.peer.startswith("ipv4:127.0.0.1:"), mine.peer
    finally:
        await worker.shutdown(grace=1.0)
        await asyncio.wait_for(runner, 15)


async def test_mcp_without_a_valid_key_is_refused_with_401(plane: App) -> None:
    url = f"http://127.0.0.1:{plane.http_port}/mcp"
    before = await task_count(plane)
    async with httpx.AsyncClient(timeout=30) as http:
        for headers in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer maos_key_forged"}):
            answer = await http.post(url, json=INITIALIZE, headers={**MCP_HEADERS, **headers})
            assert answer.status_code == 401, (headers, answer.text)
            assert answer.headers["www-authenticate"].startswith("Bearer")
            body = answer.json()
            assert body["code"] == 16 and body["message"], body  # google.rpc.Status, UNAUTHENTICATED
        # With a key the same request starts an MCP session.
        key = await admin_key(plane)
        opened = await http.post(
            url, json=INITIALIZE, headers={**MCP_HEADERS, "Authorization": f"Bearer {key}"}
        )
        assert opened.status_code == 200 and opened.headers.get("mcp-session-id"), opened.text
    assert await task_count(plane) == before


async def test_mcp_works_with_mutual_tls_on_both_ports(maos_home: Path, pki: Any) -> None:
    settings = make_settings(maos_home, **{"security.auth": "required", **pki.server_settings(mutual=True)})
    app = await start_app(settings, http=True)
    try:
        key = await admin_key(app)
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.load_cert_chain(str(pki.client.cert), str(pki.client.key))
        async with session_at(f"https://localhost:{app.http_port}/mcp", key, verify=context) as session:
            submitted = await call(
                session, "submit_task", {"description": "over TLS", "agent_type": "nobody"}
            )
            shown = await call(session, "get_task", {"task_id": submitted["task_id"]})
            assert shown["task"]["description"] == "over TLS"
        # Without a client certificate the HTTP port refuses the connection itself.
        plain = ssl.create_default_context(cafile=str(pki.ca))
        async with httpx.AsyncClient(verify=plain, timeout=10) as http:
            with pytest.raises(httpx.HTTPError):
                await http.post(
                    f"https://localhost:{app.http_port}/mcp", json=INITIALIZE, headers=MCP_HEADERS
                )
    finally:
        await app.stop(grace=1.0)


async def test_mcp_can_be_turned_off(maos_home: Path) -> None:
    app = await start_app(make_settings(maos_home, **{"server.http_mcp": False}), http=True)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(
                f"http://127.0.0.1:{app.http_port}/mcp", json=INITIALIZE, headers=MCP_HEADERS
            )
        assert answer.status_code == 404 and answer.json()["code"] == 5
    finally:
        await app.stop(grace=1.0)


PROBE = """
import asyncio, sys, tempfile
from pathlib import Path
sys.modules['mcp'] = None  # as if the mcp package were not installed
from controlplane.app import build_app
from tests.harness.server import make_settings

async def main(explicit):
    overrides = {'server.http_mcp': True} if explicit else {}
    app = build_app(make_settings(Path(tempfile.mkdtemp()), **overrides))
    try:
        await app.start('127.0.0.1:0', http_address='127.0.0.1:0')
    except Exception as exc:
        print(type(exc).__name__, exc)
        return
    print('started', sorted(app.http.mounts))
    await app.stop(grace=0.5)

asyncio.run(main(sys.argv[1] == 'explicit'))
"""


@pytest.mark.parametrize("setting", ["default", "explicit"])
def test_without_the_mcp_package(setting: str) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(root))}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, setting],
        cwd=str(root),
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    if setting == "default":  # left at its default, the endpoint is skipped (and the server starts)
        assert done.stdout.strip() == "started []", done.stdout
    else:  # asked for explicitly, the start is refused, saying what to install
        assert done.stdout.startswith("FailedPrecondition server.http_mcp is on but the mcp package"), (
            done.stdout
        )
        assert 'pip install "maos[mcp]"' in done.stdout
