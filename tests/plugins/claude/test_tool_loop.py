"""The tool loop of Claude agents against the Messages API test server: what each request carries,
how tool calls are answered, and where the loop stops.

Agents run their real ``handle`` over the official SDK; the server records every request, so the
assertions read what the model was sent.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from agent_sdk.errors import BudgetExhausted, PermanentError
from maos_plugins.claude.agents import AnalystAgent, CoderAgent, ResearcherAgent
from maos_plugins.claude.agents import TesterAgent as QaAgent  # (a Test* name pytest would try to collect)
from maos_plugins.claude.config import DEFAULT_MODEL
from maos_plugins.claude.pricing import WEB_SEARCH_MICROS, cost_micros
from maos_plugins.claude.tools.base import ToolOutput
from tests.harness.messages_api import (
    MessageReply,
    MessagesAPIServer,
    cited_text,
    server_tool_use,
    web_fetch_result,
    web_search_error,
    web_search_result,
)
from tests.harness.server import make_settings, wait_for
from tests.plugins.claude.conftest import assignment, context, params

PAGE = "https://example.com/cloud-2025"
OTHER = "https://news.example.org/edge"


def tool_names(body: dict[str, Any]) -> list[str]:
    return [t["name"] for t in body.get("tools", [])]


def results_in(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tool_result blocks of a request's last message, by tool name of the call they answer."""
    calls = {b["id"]: b["name"] for b in body["messages"][-2]["content"] if b.get("type") == "tool_use"}
    return {
        calls[b["tool_use_id"]]: b for b in body["messages"][-1]["content"] if b.get("type") == "tool_result"
    }


def exec_settings(home: Path, **more: Any) -> Any:
    return make_settings(home, **{"agents.allow_exec": True, **more})


# --- researcher: server-side web search and fetch -------------------------------------------------


async def test_a_researcher_offers_web_search_and_fetch_and_keeps_what_it_cites(
    api: MessagesAPIServer, tmp_path: Path
) -> None:
    search = server_tool_use("web_search", {"query": "cloud trends 2025"})
    fetch = server_tool_use("web_fetch", {"url": OTHER})
    api.push(
        MessageReply(
            [
                {"type": "text", "text": "Let me look that up."},
                search,
                web_search_result(
                    search["id"], [(PAGE, "Cloud in 2025"), ("https://x.example/un", "Uncited")]
                ),
                fetch,
                web_fetch_result(fetch["id"], OTHER, "Edge news", "Edge computing grows."),
                cited_text(
                    "Sovereign clouds lead the 2025 trends.",
                    [(PAGE, "Cloud in 2025", "sovereign clouds lead")],
                ),
                {"type": "text", "text": " Edge grows too."},
            ],
            usage={
                "input_tokens": 500,
                "output_tokens": 40,
                "server_tool_use": {"web_search_requests": 1, "web_fetch_requests": 1},
            },
        )
    )
    settings = make_settings(
        tmp_path,
        **{"claude.web_search.max_uses": 3, "claude.web.allowed_domains": ["example.com", "example.org"]},
    )
    agent = ResearcherAgent(params(api), settings=settings)
    ctx, sink = context(assignment())
    result = await agent.handle(ctx)

    (request,) = api.requests
    tools = {t["name"]: t for t in request.body["tools"]}
    assert tools["web_search"] == {
        "type": "web_search_20250305",
        "name": "web_search",
        "max_uses": 3,
        "allowed_domains": ["example.com", "example.org"],
    }
    assert tools["web_fetch"]["type"] == "web_fetch_20250910" and tools["web_fetch"]["max_uses"] == 5
    assert tools["web_fetch"]["citations"] == {"enabled": True}
    assert "web-fetch-2025-09-10" in request.headers["anthropic-beta"]
    assert "web_search tool" in request.body["system"][0]["text"]  # the role prompt says it can search

    assert result.output == "Let me look that up.Sovereign clouds lead the 2025 trends. Edge grows too."
    assert [(s.url, s.title, s.cited_text) for s in result.sources] == [
        (OTHER, "Edge news", ""),
        (PAGE, "Cloud in 2025", "sovereign clouds lead"),
    ]
    assert [(c.name, c.server, c.is_error, c.turn) for c in result.tool_calls] == [
        ("web_search", True, False, 1),
        ("web_fetch", True, False, 1),
    ]
    assert "cloud trends 2025" in result.tool_calls[0].summary
    u = result.usage
    assert (u.web_search_requests, u.web_fetch_requests, u.tool_calls, u.model_calls) == (1, 1, 2, 1)
    assert u.cost_micros == cost_micros(DEFAULT_MODEL, 500, 40) + WEB_SEARCH_MICROS
    assert any("web_search" in f["message"] for k, f in sink.events if k == "progress")


async def test_a_paused_turn_is_continued_with_what_the_model_said_so_far(api: MessagesAPIServer) -> None:
    first = server_tool_use("web_search", {"query": "edge market size"})
    api.push(
        MessageReply(
            [
                {"type": "text", "text": "Searching. "},
                first,
                web_search_result(first["id"], [(PAGE, "Market")]),
            ],
            stop_reason="pause_turn",
            usage={"server_tool_use": {"web_search_requests": 1}},
        )
    )
    second = server_tool_use("web_search", {"query": "edge market growth"})
    api.push(
        MessageReply(
            [
                second,
                web_search_error(second["id"], "too_many_requests"),
                cited_text("The edge market is large.", [(PAGE, "Market", "large")]),
            ],
            usage={"server_tool_use": {"web_search_requests": 1}},
        )
    )
    agent = ResearcherAgent(params(api))
    result = await agent.handle(context()[0])

    assert len(api.requests) == 2
    resent = api.requests[1].body["messages"]
    assert resent[-1]["role"] == "assistant"  # the paused turn goes back as it is, for the model to go on
    assert [b["type"] for b in resent[-1]["content"]] == ["text", "server_tool_use", "web_search_tool_result"]
    assert result.output == "Searching. The edge market is large."
    assert [(c.turn, c.is_error) for c in result.tool_calls] == [(1, False), (2, True)]
    assert "too_many_requests" in result.tool_calls[1].summary
    assert result.usage.model_calls == 2 and result.usage.web_search_requests == 2
    assert [s.url for s in result.sources] == [PAGE]


async def test_web_tools_are_off_by_settings_or_by_a_custom_types_parameters(
    api: MessagesAPIServer, tmp_path: Path
) -> None:
    api.push_text("a")
    api.push_text("b")
    api.push_text("c")
    await ResearcherAgent(
        params(api), settings=make_settings(tmp_path, **{"claude.web_search.enabled": False})
    ).handle(context()[0])
    await ResearcherAgent(params(api, web_fetch=False, blocked_domains=["spam.example"])).handle(context()[0])
    await AnalystAgent(params(api)).handle(context()[0])
    first, second, third = (r.body for r in api.requests)
    assert tool_names(first) == ["web_fetch"]
    assert tool_names(second) == ["web_search"] and second["tools"][0]["blocked_domains"] == ["spam.example"]
    assert "tools" not in third  # an analyst has no built-in tools
    with pytest.raises(ValueError, match="parameters.web_search must be true or false"):
        ResearcherAgent(params(api, web_search="yes"))


# --- coder and tester: code execution, and a local workspace with allow_exec ------------------------


async def test_without_allow_exec_a_coder_gets_code_execution_and_no_local_tools(
    api: MessagesAPIServer, tmp_path: Path
) -> None:
    api.push_text("def f(): pass")
    api.push_text("def g(): pass")
    await CoderAgent(params(api), settings=make_settings(tmp_path)).handle(context()[0])
    # a type's parameters cannot turn the workspace on: agents.allow_exec alone can
    await CoderAgent(params(api, workspace=True), settings=make_settings(tmp_path)).handle(context()[0])
    for request in api.requests:
        assert request.body["tools"] == [{"type": "code_execution_20250825", "name": "code_execution"}]
        assert "code-execution-2025-08-25" in request.headers["anthropic-beta"]
        assert "workspace" not in request.body["system"][0]["text"]
    assert not (tmp_path / "workspaces").exists()


async def test_a_coder_with_allow_exec_writes_runs_and_returns_its_files(
    api: MessagesAPIServer, tmp_path: Path
) -> None:
    api.push(
        MessageReply(
            [
                {"type": "text", "text": "Writing it."},
                {
                    "type": "tool_use",
                    "id": "toolu_w",
                    "name": "write_file",
                    "input": {"path": "src/hello.py", "content": "print('hello from the workspace')\n"},
                },
                {"type": "tool_use", "id": "toolu_l", "name": "list_files", "input": {}},
            ],
            stop_reason="tool_use",
        )
    )
    api.push_tool_use("run_command", {"command": 'python3 src/hello.py && echo "$MAOS_WORKSPACE" | wc -l'})
    api.push_text("Done: src/hello.py prints a greeting.")
    agent = QaAgent(params(api), settings=exec_settings(tmp_path))
    ctx, sink = context(assignment(task="tasks/t0123456789abcdef"))
    result = await agent.handle(ctx)

    names = tool_names(api.requests[0].body)
    assert names == ["code_execution", "list_files", "read_file", "write_file", "run_command"]
    assert "workspace folder" in api.requests[0].body["system"][0]["text"]
    answered = results_in(api.requests[1].body)
    assert (
        answered["write_file"]["content"] == "wrote 34 bytes to src/hello.py"
        and "is_error" not in answered["write_file"]
    )
    ran = results_in(api.requests[2].body)["run_command"]["content"]
    assert ran.startswith("exit status 0") and "hello from the workspace" in ran

    assert result.output == "Done: src/hello.py prints a greeting."
    (artifact,) = result.artifacts
    assert (artifact.name, artifact.content) == ("src/hello.py", b"print('hello from the workspace')\n")
    assert artifact.media_type == "text/x-python"
    workspace = tmp_path / "workspaces" / "t0123456789abcdef"
    assert (workspace / "src" / "hello.py").exists()
    assert [c.name for c in result.tool_calls] == ["write_file", "list_files", "run_command"]
    assert [c.turn for c in result.tool_calls] == [1, 1, 2]
    assert all(c.duration > 0 and not c.server for c in result.tool_calls)
    assert result.usage.model_calls == 3 and result.usage.tool_calls == 3
    assert any("run_command done" in f["message"] for k, f in sink.events if k == "progress")


async def test_paths_that_leave_the_workspace_get_error_results(
    api: MessagesAPIServer, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("do not read")
    workspace = tmp_path / "workspaces" / "tesc"
    workspace.mkdir(parents=True)
    os.symlink(outside, workspace / "door")
    attempts = {
        "toolu_1": ("write_file", {"path": "../escaped.txt", "content": "x"}),
        "toolu_2": ("write_file", {"path": str(outside / "abs.txt"), "content": "x"}),
        "toolu_3": ("read_file", {"path": "door/secret.txt"}),
        "toolu_4": ("write_file", {"path": "door/planted.txt", "content": "x"}),
        "toolu_5": ("list_files", {"path": "../.."}),
        "toolu_6": ("read_file", {"path": 42}),
        "toolu_7": ("no_such_tool", {}),
    }
    api.push(
        MessageReply(
            [{"type": "tool_use", "id": i, "name": n, "input": a} for i, (n, a) in attempts.items()],
            stop_reason="tool_use",
        )
    )
    api.push_text("I could not write outside.")
    agent = CoderAgent(params(api), settings=exec_settings(tmp_path))
    result = await agent.handle(context(assignment(task="tasks/tesc"))[0])

    blocks = {b["tool_use_id"]: b for b in api.requests[1].body["messages"][-1]["content"]}
    assert all(b.get("is_error") for b in blocks.values()), blocks
    assert "contains '..'" in blocks["toolu_1"]["content"]
    assert "is absolute" in blocks["toolu_2"]["content"]
    assert "outside the workspace" in blocks["toolu_3"]["content"]
    assert "outside the workspace" in blocks["toolu_4"]["content"]
    assert "non-empty relative path" in blocks["toolu_6"]["content"]
    assert "no tool named 'no_such_tool'" in blocks["toolu_7"]["content"]
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert not (tmp_path / "escaped.txt").exists()
    assert result.output == "I could not write outside." and result.artifacts == []
    assert all(c.is_error for c in result.tool_calls) and len(result.tool_calls) == 7


async def test_a_command_is_killed_at_its_time_limit_and_its_output_is_bounded(
    api: MessagesAPIServer, tmp_path: Path
) -> None:
    api.push_tool_use("run_command", {"command": "sleep 30"})
    api.push_tool_use("run_command", {"argv": ["/bin/sh", "-c", "head -c 5000 /dev/zero | tr '\\0' y"]})
    api.push_tool_use("run_command", {"command": "exit 3"})
    api.push_text("ok")
    settings = exec_settings(
        tmp_path, **{"agents.workspace.command_timeout": 1.0, "agents.workspace.max_output_bytes": 100}
    )
    result = await CoderAgent(params(api), settings=settings).handle(context()[0])
    killed = results_in(api.requests[1].body)["run_command"]
    assert killed["is_error"] and "killed after 1 s (agents.workspace.command_timeout)" in killed["content"]
    cut = results_in(api.requests[2].body)["run_command"]["content"]
    assert "output cut at 100 bytes" in cut and cut.splitlines()[2] == "y" * 100
    failed = results_in(api.requests[3].body)["run_command"]
    assert failed["content"].startswith("exit status 3") and "is_error" not in failed
    assert result.output == "ok"


async def test_old_workspaces_are_swept_when_a_new_one_opens(api: MessagesAPIServer, tmp_path: Path) -> None:
    stale = tmp_path / "workspaces" / "tstale"
    stale.mkdir(parents=True)
    os.utime(stale, (1, 1))
    fresh = tmp_path / "workspaces" / "tfresh"
    fresh.mkdir()
    api.push_text("ok")
    await CoderAgent(params(api), settings=exec_settings(tmp_path)).handle(
        context(assignment(task="tasks/tnew"))[0]
    )
    assert sorted(p.name for p in (tmp_path / "workspaces").iterdir()) == ["tfresh", "tnew"]


# --- tool sources, failures and limits ------------------------------------------------------------


class Flaky:
    """A tool that fails when asked to."""

    name = "lookup"
    description = "Look a fact up."
    input_schema = {"type": "object", "properties": {"key": {"type": "string"}}}

    async def call(self, arguments: dict[str, Any]) -> ToolOutput:
        if arguments.get("key") == "boom":
            raise RuntimeError("the fact store is down")
        return ToolOutput(f"fact {arguments.get('key')}")


class Facts:
    """A tool source with one tool, recording its life."""

    name = "facts"

    def __init__(self) -> None:
        self.events: list[str] = []

    async def open(self) -> None:
        self.events.append("open")

    def tools(self) -> list[Any]:
        return [Flaky()]

    async def close(self) -> None:
        self.events.append("close")


async def test_a_failing_tool_answers_with_an_error_and_the_step_completes(api: MessagesAPIServer) -> None:
    agent = AnalystAgent(params(api))
    source = Facts()
    agent.tool_sources.append(source)
    await agent.warm_up()
    assert source.events == ["open"]
    api.push(
        MessageReply(
            [
                {"type": "tool_use", "id": "toolu_a", "name": "lookup", "input": {"key": "boom"}},
                {"type": "tool_use", "id": "toolu_b", "name": "lookup", "input": {"key": "pi"}},
            ],
            stop_reason="tool_use",
        )
    )
    api.push_text("Pi is known; the other fact is not.")
    try:
        result = await agent.handle(context()[0])
    finally:
        await agent.close()
    assert source.events == ["open", "close"]
    assert tool_names(api.requests[0].body) == ["lookup"]
    blocks = {b["tool_use_id"]: b for b in api.requests[1].body["messages"][-1]["content"]}
    assert blocks["toolu_a"]["is_error"] is True
    assert blocks["toolu_a"]["content"] == "lookup failed: RuntimeError: the fact store is down"
    assert blocks["toolu_b"]["content"] == "fact pi" and "is_error" not in blocks["toolu_b"]
    assert result.output == "Pi is known; the other fact is not."
    assert [c.is_error for c in result.tool_calls] == [True, False]
    assert "the fact store is down" in result.tool_calls[0].summary


async def test_a_loop_that_never_ends_stops_at_its_turn_limit(api: MessagesAPIServer, tmp_path: Path) -> None:
    api.responder = lambda body: MessageReply(
        [{"type": "tool_use", "id": f"toolu_{len(body['messages'])}", "name": "list_files", "input": {}}],
        stop_reason="tool_use",
    )
    agent = CoderAgent(params(api, max_turns=3), settings=exec_settings(tmp_path))
    ctx, _ = context()
    with pytest.raises(
        PermanentError, match=r"limit of 3 model turns .*still calling tools \(list_files\)"
    ) as err:
        await agent.handle(ctx)
    assert err.value.error_type == "ToolLoopLimit"
    assert len(api.requests) == 3
    assert ctx.spent.model_calls == 3  # every turn is charged


async def test_a_budget_stops_the_loop_and_what_was_spent_is_charged(
    api: MessagesAPIServer, tmp_path: Path
) -> None:
    api.responder = lambda body: MessageReply(
        [{"type": "tool_use", "id": f"toolu_{len(body['messages'])}", "name": "list_files", "input": {}}],
        stop_reason="tool_use",
        usage={"input_tokens": 1000, "output_tokens": 100},
    )
    agent = CoderAgent(params(api), settings=exec_settings(tmp_path))
    ctx, _ = context(assignment(remaining_tokens=2500))
    with pytest.raises(BudgetExhausted, match="budget exhausted: 300 tokens left"):
        await agent.handle(ctx)
    assert len(api.requests) == 2  # 2 x 1,100 tokens spent; a third call cannot fit in the 300 left
    assert ctx.spent.model_calls == 2 and ctx.spent.input_tokens == 2000
    # each call's max_tokens fits what the calls before it left
    assert 0 < api.requests[1].body["max_tokens"] <= api.requests[0].body["max_tokens"] - 1100


async def test_a_cancelled_loop_charges_its_calls_and_stops_its_command(
    api: MessagesAPIServer, tmp_path: Path
) -> None:
    marker = tmp_path / "workspaces" / "tcancel" / "started"
    api.push_tool_use(
        "run_command",
        {"command": "touch started && sleep 30 && touch finished"},
        usage={"input_tokens": 300, "output_tokens": 20},
    )
    agent = CoderAgent(params(api), settings=exec_settings(tmp_path))
    ctx, _ = context(assignment(task="tasks/tcancel"))
    running = asyncio.get_running_loop().create_task(agent.handle(ctx))
    await wait_for(marker.exists, 10, message="the command to start")
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert (ctx.spent.model_calls, ctx.spent.input_tokens, ctx.spent.output_tokens) == (1, 300, 20)
    assert not (marker.parent / "finished").exists()
    assert len(api.requests) == 1


async def test_the_loop_stops_at_its_wall_time(api: MessagesAPIServer, tmp_path: Path) -> None:
    api.responder = lambda body: MessageReply(
        [
            {
                "type": "tool_use",
                "id": f"toolu_{len(body['messages'])}",
                "name": "run_command",
                "input": {"command": "sleep 0.2"},
            }
        ],
        stop_reason="tool_use",
    )
    agent = CoderAgent(params(api, max_seconds=0.5), settings=exec_settings(tmp_path))
    with pytest.raises(PermanentError, match="ran out of time") as err:
        await agent.handle(context()[0])
    assert err.value.error_type == "ToolLoopTimeout"
