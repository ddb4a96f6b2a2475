"""``maos mcp`` through the ``mcp`` package's own client, against a real control plane with access control.

Over stdio the test spawns the real ``maos mcp`` process; over streamable HTTP it serves
:class:`maos_mcp.server.HttpTransport` with uvicorn on an ephemeral port. The control plane
requires API keys (``security.auth: required``); an echo agent runs the tasks.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from agent_sdk.builtin import EchoAgent
from agent_sdk.client import Client, build_task
from agent_sdk.worker import Worker
from controlplane.app import App
from maos_mcp.server import HttpTransport
from tests.controlplane.access.test_access import task_count, user_key
from tests.harness.server import admin_key, wait_for

REPO = Path(__file__).resolve().parents[2]
TOOL_NAMES = {"submit_task", "get_task", "wait_task", "list_tasks", "cancel_task", "get_task_results"}


@pytest.fixture
async def echo_agent(secured: App) -> AsyncIterator[Worker]:
    """A real echo agent (with an admin key) connected to ``secured``."""
    worker = Worker(EchoAgent(), secured.address, token=await admin_key(secured), max_backoff=0.5)
    runner = asyncio.get_running_loop().create_task(worker.run())
    try:
        await asyncio.wait_for(worker.registered.wait(), 15)
        yield worker
    finally:
        await worker.shutdown(grace=1.0)
        await asyncio.wait_for(runner, 15)


@asynccontextmanager
async def stdio_session(app: App, home: Path, token: str) -> AsyncIterator[ClientSession]:
    """An MCP session with a spawned ``maos mcp`` process using ``token`` (as MAOS_TOKEN)."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "maos_cli.main", "--addr", app.address, "mcp"],
        cwd=str(REPO),
        env={
            "MAOS_TOKEN": token,
            "MAOS_HOME": str(home),
            "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO)),
        },
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await asyncio.wait_for(session.initialize(), 30)
        yield session


@pytest.fixture
async def mcp_url(secured: App) -> AsyncIterator[str]:
    """The URL of MCP over streamable HTTP (uvicorn on an ephemeral port) for ``secured``."""
    client = Client(secured.address)
    transport = HttpTransport(client)
    server = uvicorn.Server(uvicorn.Config(transport.app(), host="127.0.0.1", port=0, log_level="warning"))
    serving = asyncio.get_running_loop().create_task(server.serve())
    try:
        await wait_for(lambda: server.started or serving.done(), 15, message="uvicorn to start")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 15)
        await client.close()


@asynccontextmanager
async def http_session(url: str, token: str | None) -> AsyncIterator[ClientSession]:
    """An MCP session over streamable HTTP sending ``token`` as ``Authorization: Bearer``."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await asyncio.wait_for(session.initialize(), 30)
        yield session


def text(result: Any) -> str:
    """The text content of a tool result."""
    return "\n".join(c.text for c in result.content if c.type == "text")


async def call(session: ClientSession, name: str, arguments: dict[str, Any], **kwargs: Any) -> Any:
    """A tool call that must succeed; returns its structured content."""
    result = await asyncio.wait_for(session.call_tool(name, arguments, **kwargs), 60)
    assert not result.is_error, text(result)
    assert result.structured_content is not None and text(result)
    return result.structured_content


async def refused(session: ClientSession, name: str, arguments: dict[str, Any], code: str) -> str:
    """A tool call that must be a tool error with ``code``; returns its text."""
    result = await asyncio.wait_for(session.call_tool(name, arguments), 60)
    assert result.is_error, result
    assert result.structured_content["error"]["code"] == code, result.structured_content
    assert text(result).startswith(code), text(result)
    return text(result)


# --- stdio: the real `maos mcp` process ------------------------------------------------------------


async def test_stdio_submits_waits_with_progress_and_reads_the_result(
    secured: App, maos_home: Path, echo_agent: Worker
) -> None:
    dev = await user_key(secured, "dev@example.com", "developer")
    async with stdio_session(secured, maos_home, dev) as session:
        submitted = await call(
            session,
            "submit_task",
            {
                "description": "Summarize the benefits of renewable energy",
                "task_type": "analysis",
                "priority": "HIGH",
                "max_agents": 2,
                "metadata": {"team": "docs"},
                "max_retries": 1,
                "initial_backoff": 0.1,
                "backoff_multiplier": 2,
                "max_backoff": 1,
                "timeout": 120,
                "context": "for a newsletter",
                "constraints": "three sentences",
            },
        )
        task_id = submitted["task_id"]
        assert submitted["task"]["priority"] == "HIGH" and submitted["task"]["metadata"] == {"team": "docs"}
        assert submitted["task"]["retry_policy"]["max_retries"] == 1

        progress: list[tuple[float, float | None, str | None]] = []

        async def on_progress(value: float, total: float | None, note: str | None) -> None:
            progress.append((value, total, note))

        waited = await call(
            session, "wait_task", {"task_id": task_id, "timeout": 60}, progress_callback=on_progress
        )
        assert waited["finished"] and waited["status"] == "COMPLETED", waited
        assert waited["result"]["output"], waited
        assert progress and all(total == 1.0 and task_id in note for _, total, note in progress), progress

        results = await call(session, "get_task_results", {"task_id": task_id})
        assert results["status"] == "COMPLETED" and results["output"] == waited["result"]["output"]
        shown = await call(session, "get_task", {"task_id": f"tasks/{task_id}"})
        assert shown["task"]["status"] == "COMPLETED" and shown["subtasks"] and "plan" in shown
        listed = await call(session, "list_tasks", {"statuses": ["COMPLETED"], "page_size": 5})
        assert [t["task_id"] for t in listed["tasks"]] == [task_id]


async def test_tools_are_listed_with_schemas_mirroring_the_requests(secured: App, maos_home: Path) -> None:
    async with stdio_session(secured, maos_home, await admin_key(secured)) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
    assert set(tools) == TOOL_NAMES
    submit = tools["submit_task"].input_schema
    # Every option of `maos task submit`: each keyword of build_task, and the idempotency key.
    assert set(submit["properties"]) == set(inspect.signature(build_task).parameters) | {"request_id"}
    assert submit["required"] == ["description"] and submit["additionalProperties"] is False
    assert submit["properties"]["priority"]["enum"] == ["LOW", "NORMAL", "MEDIUM", "HIGH", "CRITICAL"]
    assert submit["properties"]["max_agents"] == {
        **submit["properties"]["max_agents"],
        "type": "integer",
        "minimum": 1,
    }
    for name in TOOL_NAMES - {"submit_task", "list_tasks"}:
        assert tools[name].input_schema["required"] == ["task_id"], name
    assert tools["wait_task"].input_schema["properties"]["timeout"]["maximum"] == 600
    assert tools["list_tasks"].input_schema["properties"]["page_size"]["maximum"] == 100
    assert tools["get_task"].annotations.read_only_hint
    assert not tools["submit_task"].annotations.read_only_hint
    assert all(t.description for t in tools.values())


async def test_bad_input_is_a_tool_error_naming_the_field_and_changes_nothing(
    secured: App, maos_home: Path
) -> None:
    dev = await user_key(secured, "dev@example.com", "developer")
    async with stdio_session(secured, maos_home, dev) as s:
        before = await task_count(secured)
        wrong_type = await refused(
            s, "submit_task", {"description": "x", "max_agents": "many"}, "INVALID_ARGUMENT"
        )
        assert "max_agents" in wrong_type and "integer" in wrong_type
        unknown = await refused(s, "submit_task", {"description": "x", "maxAgents": 2}, "INVALID_ARGUMENT")
        assert "maxAgents" in unknown and "max_agents" in unknown  # says which arguments exist
        missing = await refused(s, "submit_task", {}, "INVALID_ARGUMENT")
        assert "description" in missing
        # Checks only the server makes come back with its message and the field it named.
        too_many = await refused(
            s, "submit_task", {"description": "x", "max_agents": 10_001}, "INVALID_ARGUMENT"
        )
        assert "task.max_agents" in too_many, too_many
        backoff = await refused(
            s,
            "submit_task",
            {"description": "x", "initial_backoff": 10, "max_backoff": 1},
            "INVALID_ARGUMENT",
        )
        assert "max_backoff" in backoff, backoff
        assert "since" in await refused(s, "list_tasks", {"since": "yesterday"}, "INVALID_ARGUMENT")
        assert await task_count(secured) == before
        await refused(s, "get_task", {"task_id": "t0123456789abcdef"}, "NOT_FOUND")


# --- streamable HTTP: the ASGI app, one key per MCP client ----------------------------------------


async def test_http_submits_waits_and_reads_the_result_with_the_clients_key(
    secured: App, mcp_url: str, echo_agent: Worker
) -> None:
    dev = await user_key(secured, "dev@example.com", "developer")
    async with http_session(mcp_url, dev) as session:
        assert {t.name for t in (await session.list_tools()).tools} == TOOL_NAMES
        submitted = await call(session, "submit_task", {"description": "List three uses of graphene"})
        task_id = submitted["task_id"]
        notes: list[str | None] = []

        async def on_progress(value: float, total: float | None, note: str | None) -> None:
            notes.append(note)

        waited = await call(
            session, "wait_task", {"task_id": task_id, "timeout": 60}, progress_callback=on_progress
        )
        assert waited["status"] == "COMPLETED" and waited["result"]["output"]
        # Progress came over the request's SSE stream.
        assert notes and all(task_id in (note or "") for note in notes), notes
        results = await call(session, "get_task_results", {"task_id": task_id})
        assert results["output"] == waited["result"]["output"]


async def test_http_another_users_task_is_not_found_and_running_tasks_are_resources(
    secured: App, mcp_url: str
) -> None:
    a = await user_key(secured, "dev-a@example.com", "developer")
    b = await user_key(secured, "dev-b@example.com", "developer")
    async with http_session(mcp_url, a) as dev_a, http_session(mcp_url, b) as dev_b:
        # No agent of this type: the task stays unfinished, so it is a running-task resource.
        theirs = await call(dev_b, "submit_task", {"description": "dev-b's plans", "agent_type": "nobody"})
        mine = await call(dev_a, "submit_task", {"description": "dev-a's work", "agent_type": "nobody"})
        for tool in ("get_task", "get_task_results", "cancel_task"):
            message = await refused(dev_a, tool, {"task_id": theirs["task_id"]}, "NOT_FOUND")
            assert "dev-b's plans" not in message
        listed = await call(dev_a, "list_tasks", {})
        assert [t["task_id"] for t in listed["tasks"]] == [mine["task_id"]]
        others = await call(dev_a, "list_tasks", {"owner": "users/dev-b", "statuses": ["PENDING", "QUEUED"]})
        assert theirs["task_id"] not in [t["task_id"] for t in others["tasks"]]  # a filter never widens

        uris = {str(r.uri) for r in (await dev_a.list_resources()).resources}
        assert uris == {"maos://tasks/running", f"maos://tasks/{mine['task_id']}"}
        templates = (await dev_a.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["maos://tasks/{task_id}"]
        running = json.loads((await dev_a.read_resource("maos://tasks/running")).contents[0].text)
        assert [t["task_id"] for t in running["tasks"]] == [mine["task_id"]]
        one = json.loads((await dev_a.read_resource(f"maos://tasks/{mine['task_id']}")).contents[0].text)
        assert one["task"]["description"] == "dev-a's work"
        with pytest.raises(MCPError) as info:
            await dev_a.read_resource(f"maos://tasks/{theirs['task_id']}")
        assert "dev-b's plans" not in str(info.value)

        # A wait that runs out is no error: the model is told the task still runs.
        waited = await call(dev_a, "wait_task", {"task_id": mine["task_id"], "timeout": 0.3})
        assert not waited["finished"] and waited["status"] in ("PENDING", "QUEUED"), waited
        cancelled = await call(dev_a, "cancel_task", {"task_id": mine["task_id"], "reason": "not needed"})
        assert cancelled["status"] == "CANCELLED"
        still = await call(dev_b, "get_task", {"task_id": theirs["task_id"]})
        assert still["task"]["status"] != "CANCELLED"


async def test_http_viewer_cannot_submit_and_a_missing_or_bad_key_is_refused(
    secured: App, mcp_url: str
) -> None:
    viewer = await user_key(secured, "viewer@example.com", "viewer")
    before = await task_count(secured)
    async with http_session(mcp_url, viewer) as session:
        assert "PERMISSION_DENIED" in await refused(
            session, "submit_task", {"description": "x"}, "PERMISSION_DENIED"
        )
        assert (await call(session, "list_tasks", {}))["tasks"] == []  # reading is what a viewer may do
    async with http_session(mcp_url, None) as anonymous:
        await refused(anonymous, "list_tasks", {}, "UNAUTHENTICATED")
    async with http_session(mcp_url, "maos_key_not_a_real_key") as forged:
        await refused(forged, "submit_task", {"description": "x"}, "UNAUTHENTICATED")
    async with (
        create_mcp_http_client(headers={"Authorization": f"Basic {viewer}"}) as http,
        streamable_http_client(mcp_url, http_client=http) as (read, write),
        ClientSession(read, write) as basic,
    ):
        await asyncio.wait_for(basic.initialize(), 30)
        assert "Bearer <API key>" in await refused(basic, "list_tasks", {}, "UNAUTHENTICATED")
    assert await task_count(secured) == before


def test_mcp_without_the_package_says_what_to_install() -> None:
    blocked = (
        "import sys; sys.modules['mcp'] = None; sys.argv = ['maos', 'mcp']; "  # as if not installed
        "from maos_cli.main import main; main()"
    )
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO))}
    done = subprocess.run(
        [sys.executable, "-c", blocked],
        cwd=str(REPO),
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert 'pip install "maos[mcp]"' in done.stderr


async def test_maos_mcp_http_serves_each_client_with_its_own_key(secured: App, maos_home: Path) -> None:
    dev = await user_key(secured, "dev@example.com", "developer")
    env = {**os.environ, "MAOS_HOME": str(maos_home), "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO))}
    env.pop("MAOS_TOKEN", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "maos_cli.main",
        "--addr",
        secured.address,
        "mcp",
        "--http",
        "--port",
        "0",
        cwd=str(REPO),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
        assert line.startswith("MCP over streamable HTTP at http://127.0.0.1:"), line
        url = line.split(" at ", 1)[1].split()[0]
        async with http_session(url, dev) as session:
            submitted = await call(session, "submit_task", {"description": "served over HTTP"})
            assert submitted["task"]["description"] == "served over HTTP"
        async with http_session(url, None) as anonymous:  # the process has no key to lend
            await refused(anonymous, "list_tasks", {}, "UNAUTHENTICATED")
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 15)
