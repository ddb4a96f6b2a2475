"""MCP servers as tool sources: parsing, a real stdio and HTTP server, bounds, failures, cleanup, probes."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agent_sdk import PermanentError
from maos_plugins.claude.agents import ResearcherAgent
from maos_plugins.claude.tools import ClientTool, ToolSource
from maos_plugins.claude.tools import mcp as mcp_tools
from maos_plugins.claude.tools.mcp import McpServerSpec, McpToolSource, McpUnavailable, parse_servers
from maos_plugins.claude.tools.sources import (
    PROBES,
    AgentTools,
    tool_sources_from_params,
    tool_warnings,
    tools_unavailable,
)
from tests.harness.server import alive, wait_for
from tests.plugins.claude.conftest import API_KEY

ROOT = Path(__file__).resolve().parents[3]
FACTS = [sys.executable, "-m", "tests.harness.mcp_facts"]


def facts(name: str = "facts", *extra: str, **fields: Any) -> dict[str, Any]:
    """An ``mcp_servers`` entry running the test server (stdio)."""
    return {
        "name": name,
        "command": [*FACTS, *extra],
        "env": {"PYTHONPATH": str(ROOT)},
        "cwd": str(ROOT),
        **fields,
    }


def source(entry: dict[str, Any], allowed: list[str] | None = None) -> McpToolSource:
    [spec] = parse_servers([entry])
    return McpToolSource(spec, allowed)


# --- the YAML entries ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("facts", "`mcp_servers` must be a list of servers"),
        ([{"name": "x", "command": ["a"]}] * 9, "names 9 servers; the limit is 8"),
        (["facts"], "mcp_servers[0] must be a mapping with `name` and `command` or `url`, not str"),
        ([{"command": ["a"]}], "mcp_servers[0]: `name` must start with a letter"),
        ([{"name": "has space", "command": ["a"]}], "`name` must start with a letter"),
        (
            [{"name": "f", "comand": ["a"]}],
            "mcp_servers[0]: unknown field(s) comand; allowed: name, command, env",
        ),
        ([{"name": "f"}], "mcp_servers[0] (f): give either `command` (a stdio server) or `url`"),
        (
            [{"name": "f", "command": ["a"], "url": "http://127.0.0.1:1/mcp"}],
            "or `url` (streamable HTTP), not both",
        ),
        ([{"name": "f", "command": "python server.py"}], "`command` must be a non-empty list"),
        ([{"name": "f", "command": []}], "`command` must be a non-empty list"),
        ([{"name": "f", "command": [""]}], "`command[0]` must not be empty"),
        ([{"name": "f", "command": ["a", {"b": 1}]}], "`command[1]` must be a string, not dict"),
        ([{"name": "f", "command": ["a"] * 65}], "`command` has 65 items; the limit is 64"),
        ([{"name": "f", "command": ["a"], "env": ["X=1"]}], "`env` must be a mapping"),
        (
            [{"name": "f", "command": ["a"], "env": {"1X": "y"}}],
            "`env` name '1X' is not a valid variable name",
        ),
        ([{"name": "f", "url": "ftp://host/mcp"}], "`url` must be an http:// or https:// URL with a host"),
        (
            [{"name": "f", "url": "http://127.0.0.1:9/mcp", "cwd": "."}],
            "`cwd` applies to a `command` server only",
        ),
        ([{"name": "f", "command": ["a"], "call_timeout": 0}], "`call_timeout` must be between 0.1 and 3600"),
        ([{"name": "f", "command": ["a"], "startup_timeout": "soon"}], "`startup_timeout` must be a number"),
        (
            [{"name": "f", "command": ["a"]}, {"name": "f", "url": "http://127.0.0.1:9/mcp"}],
            "mcp_servers[1]: the name 'f' is used twice",
        ),
    ],
)
def test_bad_entries_are_refused_precisely(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_servers(value)
    assert message in str(caught.value)


def test_entries_parse_with_defaults_and_a_relative_cwd(tmp_path: Path) -> None:
    stdio, http = parse_servers(
        [
            {
                "name": "facts",
                "command": ["python", "facts_server.py"],
                "env": {"B": 2, "A": "x"},
                "cwd": "srv",
            },
            {"name": "search", "url": "http://127.0.0.1:8123/mcp", "call_timeout": 5},
        ],
        base_dir=tmp_path,
    )
    assert stdio == McpServerSpec(
        "facts", ("python", "facts_server.py"), (("A", "x"), ("B", "2")), str(tmp_path / "srv")
    )
    assert (stdio.transport, stdio.startup_timeout, stdio.call_timeout) == ("stdio", 20.0, 60.0)
    assert (http.transport, http.url, http.call_timeout) == ("http", "http://127.0.0.1:8123/mcp", 5.0)
    # Without `cwd`, the base directory when it exists (where the YAML lives), else the agent's own.
    [here] = parse_servers([{"name": "f", "command": ["a"]}], base_dir=tmp_path)
    [nowhere] = parse_servers([{"name": "f", "command": ["a"]}], base_dir=tmp_path / "missing")
    assert (here.cwd, nowhere.cwd) == (str(tmp_path), "")


def test_exposed_names_are_valid_for_the_messages_api_and_unique() -> None:
    assert mcp_tools.exposed_name("facts", "lookup_fact") == "facts_lookup_fact"
    odd = mcp_tools.exposed_name("facts", "look up/fact.v2")
    assert odd == "facts_look_up_fact_v2"
    long = mcp_tools.exposed_name("facts", "x" * 80)
    taken = mcp_tools.exposed_name("facts", "look_up_fact_v2", taken=[odd])
    for name in (odd, long, taken):
        assert mcp_tools.TOOL_NAME.fullmatch(name), name
    assert len(long) == 64 and taken != odd


# --- a real stdio server ------------------------------------------------------------------------


async def test_a_stdio_servers_tools_are_listed_filtered_and_called() -> None:
    server = source(facts(), allowed=["lookup_fact", "facts_add", "not_offered"])
    assert isinstance(server, ToolSource)
    await server.open()
    try:
        assert {t.remote_name for t in server.listed} >= {"lookup_fact", "add", "slow", "big", "where"}
        tools = {t.name: t for t in server.tools()}
        assert sorted(tools) == ["facts_add", "facts_lookup_fact"]  # by own or exposed name
        lookup = tools["facts_lookup_fact"]
        assert isinstance(lookup, ClientTool)
        assert lookup.input_schema["type"] == "object" and "topic" in lookup.input_schema["properties"]
        assert "Look up a fact" in lookup.description and "MCP server 'facts'" in lookup.description

        found = await lookup.call({"topic": "everest"})
        assert (found.content, found.is_error) == ("Mount Everest is 8,849 metres high.", False)
        missing = await lookup.call({"topic": "atlantis"})
        assert missing.is_error and "no fact about 'atlantis'" in missing.content
        wrong = await tools["facts_add"].call({"a": 1, "b": "two"})
        assert wrong.is_error and "valid integer" in wrong.content
        assert (await tools["facts_add"].call({"a": 2, "b": 3})).content == "5"
    finally:
        await server.close()


async def test_call_timeouts_and_result_bounds() -> None:
    server = source(facts(call_timeout=0.5))
    await server.open()
    try:
        tools = {t.remote_name: t for t in server.tools()}
        started = time.monotonic()
        slow = await tools["slow"].call({"seconds": 30})
        assert slow.is_error and "did not answer within 0.5 s (call_timeout)" in slow.content, slow
        assert time.monotonic() - started < 5
        big = await tools["big"].call({"chars": mcp_tools.MAX_RESULT_CHARS + 500})
        assert not big.is_error
        assert big.content.startswith("x" * 100) and big.content.endswith(
            f"the first {mcp_tools.MAX_RESULT_CHARS} are shown]"
        )
        assert len(big.content) < mcp_tools.MAX_RESULT_CHARS + 200
        # The session survives a timed-out call.
        assert (await tools["add"].call({"a": 1, "b": 1})).content == "2"
    finally:
        await server.close()


async def test_at_most_max_tools_are_taken_from_one_server() -> None:
    server = source(facts(env={"PYTHONPATH": str(ROOT), "FACTS_EXTRA_TOOLS": "80"}))
    await server.open()
    try:
        assert len(server.tools()) == mcp_tools.MAX_TOOLS
        assert len({t.name for t in server.tools()}) == mcp_tools.MAX_TOOLS
    finally:
        await server.close()


async def test_the_server_gets_a_minimal_environment_and_its_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-secret")
    (tmp_path / "work").mkdir()
    [spec] = parse_servers(
        [{**facts(), "cwd": "work", "env": {"PYTHONPATH": str(ROOT), "FACTS_MODE": "demo"}}],
        base_dir=tmp_path,
    )
    server = McpToolSource(spec)
    await server.open()
    try:
        tools = {t.remote_name: t for t in server.tools()}
        assert (await tools["environment"].call({"name": "ANTHROPIC_API_KEY"})).content == "(no output)"
        assert (await tools["environment"].call({"name": "FACTS_MODE"})).content == "demo"
        assert (await tools["where"].call({})).content == str(tmp_path / "work")
    finally:
        await server.close()


async def test_closing_ends_the_server_and_what_it_started() -> None:
    server = source(facts())
    await server.open()
    tools = {t.remote_name: t for t in server.tools()}
    pid = int((await tools["my_pid"].call({})).content)
    child = int((await tools["spawn_child"].call({})).content)
    assert alive(pid) and alive(child)
    await server.close()
    assert not alive(pid) and not alive(child)
    gone = await tools["add"].call({"a": 1, "b": 1})
    assert gone.is_error and "is not running" in gone.content


async def test_a_server_that_dies_gives_error_results_and_opens_again() -> None:
    server = source(facts())
    agent_tools = AgentTools({"mcp_servers": [facts()]})
    agent_tools.sources = [server]
    await agent_tools.open()
    try:
        tools = {t.remote_name: t for t in server.tools()}
        pid = int((await tools["my_pid"].call({})).content)
        os.kill(pid, 9)
        await wait_for(lambda: not alive(pid), 10, message="the server to die")
        dead = await tools["add"].call({"a": 1, "b": 1})
        assert dead.is_error and "exited or closed the connection" in dead.content, dead
        assert not server.is_open
        await agent_tools.ready(logging.getLogger("test"))  # the next assignment starts it again
        again = {t.remote_name: t for t in server.tools()}
        assert int((await again["my_pid"].call({})).content) != pid
    finally:
        await agent_tools.close()


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {"name": "nope", "command": ["/nonexistent/mcp-server"]},
            "MCP server 'nope' (/nonexistent/mcp-server) cannot be started: No such file or directory",
        ),
        (
            facts("crashy", "--crash"),
            "exited or closed the connection (Connection closed); its stderr: facts: cannot "
            "open the facts database",
        ),
        (
            {
                "name": "mute",
                "command": [sys.executable, "-c", "import time; time.sleep(60)"],
                "startup_timeout": 1,
            },
            "did not start and list its tools within 1 s (startup_timeout)",
        ),
    ],
)
async def test_servers_that_cannot_start_say_why(entry: dict[str, Any], expected: str) -> None:
    server = source(entry)
    started = time.monotonic()
    with pytest.raises(McpUnavailable) as caught:
        await server.open()
    assert expected in str(caught.value)
    assert time.monotonic() - started < 15
    assert not server.is_open and server.tools() == []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_streamable_http_server_on_loopback() -> None:
    port = _free_port()
    process = subprocess.Popen(
        [*FACTS, "--http", str(port)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        await wait_for(listening, 20, interval=0.05, message="the HTTP MCP server")
        server = source({"name": "remote", "url": f"http://127.0.0.1:{port}/mcp"}, allowed=["lookup_fact"])
        await server.open()
        try:
            [tool] = server.tools()
            assert tool.name == "remote_lookup_fact"
            assert (await tool.call({"topic": "light"})).content.startswith("Light travels")
        finally:
            await server.close()
        assert process.poll() is None  # a URL server is not ours to stop
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_an_unreachable_url_says_so() -> None:
    server = source({"name": "remote", "url": f"http://127.0.0.1:{_free_port()}/mcp", "startup_timeout": 5})
    with pytest.raises(McpUnavailable, match=r"MCP server 'remote' \(http://127\.0\.0\.1:\d+/mcp\) "):
        await server.open()


# --- the agent ----------------------------------------------------------------------------------


async def test_a_claude_agent_opens_its_sources_at_warm_up_and_ends_them_at_close() -> None:
    agent = ResearcherAgent(
        {"api_key": API_KEY, "mcp_servers": [facts()], "specialized_tools": ["lookup_fact"]}
    )
    [server] = agent.tool_sources
    assert server.name == "facts" and not server.is_open
    await agent.warm_up()
    try:
        assert [t.name for t in server.tools()] == ["facts_lookup_fact"]
        pid = int((await server.call("my_pid", {})).content)
    finally:
        await agent.close()
    assert not alive(pid)


async def test_an_agent_whose_server_cannot_start_fails_its_assignments() -> None:
    from tests.plugins.claude.conftest import context

    agent = ResearcherAgent(
        {"api_key": API_KEY, "mcp_servers": [{"name": "nope", "command": ["/nonexistent/x"]}]}
    )
    with pytest.raises(PermanentError, match="the agent's tools are unavailable: MCP server 'nope'"):
        await agent.warm_up()
    ctx, _ = context()
    with pytest.raises(PermanentError) as caught:  # tried again, and the assignment fails with the reason
        await agent.handle(ctx)
    assert caught.value.error_type == "ToolSourceUnavailable"
    assert "No such file or directory" in str(caught.value)
    await agent.close()


async def test_allow_listed_names_nothing_offers_are_a_warning_of_each_assignment(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tools = AgentTools(
        {"mcp_servers": [facts()], "specialized_tools": ["lookup_fact", "web_search", "pubmed"]}
    )
    try:
        with caplog.at_level(logging.WARNING, logger="test.tools"):
            await tools.ready(logging.getLogger("test.tools"))
            await tools.ready(logging.getLogger("test.tools"))
        warnings = [r.getMessage() for r in caplog.records if r.name == "test.tools"]
        assert (
            warnings
            == [
                "specialized_tools: no built-in tool or MCP server of this type offers pubmed; "
                "its agents run without them"
            ]
            * 2
        )
    finally:
        await tools.close()


def test_sources_from_params_and_bad_params() -> None:
    assert tool_sources_from_params({}) == []
    [one] = tool_sources_from_params({"mcp_servers": [facts()], "specialized_tools": ["add"]})
    assert (one.name, one.allowed) == ("facts", frozenset({"add"}))
    with pytest.raises(ValueError, match="`specialized_tools` must be a list of tool names"):
        tool_sources_from_params({"specialized_tools": "pubmed_search"})
    with pytest.raises(ValueError, match="mcp_servers"):
        ResearcherAgent({"api_key": API_KEY, "mcp_servers": [{"name": "x"}]})


# --- probes at load -----------------------------------------------------------------------------


def test_probes_report_a_server_that_cannot_start_and_names_nothing_offers() -> None:
    PROBES.clear()
    bad = {"mcp_servers": [{"name": "nope", "command": ["/nonexistent/probe-me"]}]}
    assert tools_unavailable(bad).startswith("MCP server 'nope' (/nonexistent/probe-me) cannot be started")
    good = {"mcp_servers": [facts()], "specialized_tools": ["lookup_fact", "pubmed_search", "web_fetch"]}
    [spec] = parse_servers(good["mcp_servers"])
    assert (
        PROBES.get(spec, wait=30) is not None
    )  # a caller waits only a few seconds; a busy machine is slower
    assert tools_unavailable(good) == ""
    assert tool_warnings(good) == [
        "specialized_tools: no built-in tool or MCP server of this type offers "
        "pubmed_search; its agents run without them"
    ]
    # The guide's example: no servers, names nothing offers; nothing is started to tell.
    guide = {"specialized_tools": ["pubmed_search", "arxiv_search", "patent_db_access"]}
    started = PROBES.started
    assert tools_unavailable(guide) == ""
    assert "offers pubmed_search, arxiv_search, patent_db_access;" in tool_warnings(guide)[0]
    # Answers are kept per server definition: asking again starts nothing.
    for _ in range(3):
        assert tools_unavailable(good) == "" and tool_warnings(good)
        assert tools_unavailable(bad)
    assert PROBES.started == started


async def test_on_an_event_loop_probes_never_block() -> None:
    PROBES.clear()
    params = {"mcp_servers": [facts("unhurried")]}
    started = time.monotonic()
    assert tools_unavailable(params) == ""  # not known yet: counted as available
    assert time.monotonic() - started < 0.5
    [spec] = parse_servers(params["mcp_servers"])
    await wait_for(
        lambda: PROBES.get(spec, wait=0) is not None, 30, interval=0.05, message="the probe to answer"
    )
    assert PROBES.get(spec, wait=0).error == ""
    await asyncio.sleep(0)


def test_a_slow_server_is_reported_as_being_checked_then_with_its_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from maos_plugins.claude.tools import sources

    PROBES.clear()
    monkeypatch.setattr(sources, "PROBE_WAIT", 0.3)
    params = {
        "mcp_servers": [
            {
                "name": "mute",
                "command": [sys.executable, "-c", "import time; time.sleep(60)"],
                "startup_timeout": 2,
            }
        ],
        "specialized_tools": ["lookup_fact"],
    }
    started = time.monotonic()
    assert tools_unavailable(params) == ""  # not known yet: a caller waits only so long
    assert tool_warnings(params) == [
        "MCP server(s) mute still being checked (starting and listing the tools "
        "takes longer than 0.3 s); ask again to see the outcome"
    ]
    assert time.monotonic() - started < 1.5
    [spec] = parse_servers(params["mcp_servers"])
    assert PROBES.get(spec, wait=10) is not None
    assert "did not start and list its tools within 2 s" in tools_unavailable(params)
    assert tool_warnings(params) == []  # the failure is what is reported


async def test_without_the_mcp_package_the_reason_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # as if it were not installed
    assert tools_unavailable({"mcp_servers": [facts()]}) == mcp_tools.MCP_MISSING
    with pytest.raises(
        McpUnavailable,
        match=r"cannot be used: MCP servers need the mcp package: "
        r"pip install 'maos\[mcp\]'",
    ):
        await source(facts()).open()


def test_without_a_key_both_reasons_are_given(tmp_path: Path) -> None:
    from maos_plugins.claude.agents import cannot_run
    from tests.harness.server import make_settings

    PROBES.clear()
    settings = make_settings(tmp_path)
    why = cannot_run(settings, {"mcp_servers": [{"name": "nope", "command": ["/nonexistent/x"]}]})
    assert (
        why.startswith("no Anthropic API key")
        and "; MCP server 'nope' (/nonexistent/x) cannot be started" in why
    )
    assert cannot_run(settings, {"api_key": API_KEY}) == ""
