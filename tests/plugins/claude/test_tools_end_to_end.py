"""Tools end to end: a real control plane, the real CLI, Claude agents (in this process and as a real
``maos-agent`` process) and the Messages API test server.

What the user sees: sources in ``maos task results``, tool calls in ``maos task show``, files through
``maos task results ID --artifacts DIR``, and a clear reason when a loop hits its turn limit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent_sdk.agent import Agent
from agent_sdk.context import Artifact, Context, Result
from controlplane.app import App
from maos_plugins.claude.agents import CoderAgent, ResearcherAgent
from tests.cli.conftest import Maos
from tests.harness.messages_api import (
    MessageReply,
    MessagesAPIServer,
    cited_text,
    server_tool_use,
    web_search_result,
)
from tests.harness.server import make_settings, wait_for_agents
from tests.plugins.claude.conftest import API_KEY, params
from tests.plugins.claude.test_context_flows import agents

PAGE = "https://example.com/trends"


def task_id_of(output: str) -> str:
    return json.loads(output)["task_id"]


async def test_a_researchers_citations_and_tool_calls_reach_the_cli(
    control_plane: App, maos_home: Path, api: MessagesAPIServer
) -> None:
    search = server_tool_use("web_search", {"query": "cloud trends 2025"})
    api.push(
        MessageReply(
            [search, web_search_result(search["id"], [(PAGE, "Trends 2025")])],
            stop_reason="pause_turn",
            usage={"server_tool_use": {"web_search_requests": 1}},
        )
    )
    api.push(
        MessageReply([cited_text("FinOps matters most in 2025.", [(PAGE, "Trends 2025", "FinOps matters")])])
    )
    maos = Maos(control_plane.address, maos_home)
    async with agents(control_plane.address, ResearcherAgent(params(api))):
        submitted = await maos(
            "task",
            "submit",
            "Research the top cloud trend of 2025",
            "--agent-type",
            "researcher",
            "--wait",
            "-o",
            "json",
        )
    assert submitted.exit_code == 0, submitted.output
    task_id = task_id_of(submitted.stdout)

    shown = await maos("task", "results", task_id)
    assert shown.exit_code == 0, shown.output
    assert "FinOps matters most in 2025." in shown.stdout
    assert re.search(
        r"Sources:\n\[1\] Trends 2025\n +https://example.com/trends\n +\"FinOps matters\"", shown.stdout
    )
    assert re.search(r"2 model calls, \$[\d.]+, 1 tool calls \(1 web searches\)", shown.stdout), shown.stdout
    as_json = json.loads((await maos("task", "results", task_id, "-o", "json")).stdout)
    assert as_json["sources"] == [{"url": PAGE, "title": "Trends 2025", "cited_text": "FinOps matters"}]
    assert as_json["usage"]["web_search_requests"] == 1 and as_json["usage"]["tool_calls"] == 1

    show = await maos("task", "show", task_id)
    assert re.search(
        r"Tool calls:\nSUBTASK +TURN +TOOL +RAN ON +TIME +OUTCOME +SUMMARY\n\S+ +1 +web_search +api +"
        r"\S+ +ok +\{\"query\": \"cloud trends 2025\"\}",
        show.stdout,
    ), show.stdout
    (sub,) = json.loads((await maos("task", "show", task_id, "-o", "json")).stdout)["subtasks"]
    (call,) = sub["tool_calls"]
    assert call["name"] == "web_search" and call["server"] and call["turn"] == 1


async def test_a_coder_process_writes_a_file_that_task_results_hands_back(
    control_plane: App,
    maos_home: Path,
    api: MessagesAPIServer,
    agent_processes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api.push_tool_use("write_file", {"path": "app/main.py", "content": "print('made by the coder')\n"})
    api.push_tool_use("run_command", {"command": "python3 app/main.py"})
    api.push_text("app/main.py is written and runs.")
    monkeypatch.setenv("MAOS_CLAUDE_API_KEY", API_KEY)
    monkeypatch.setenv("MAOS_CLAUDE_BASE_URL", api.base_url)
    monkeypatch.setenv("MAOS_AGENTS_ALLOW_EXEC", "true")
    agent_processes(control_plane.address, "coder", home=maos_home)
    await wait_for_agents(control_plane, 1, timeout=30)
    maos = Maos(control_plane.address, maos_home)
    submitted = await maos(
        "task",
        "submit",
        "Write app/main.py that prints a greeting",
        "--agent-type",
        "coder",
        "--wait",
        "--wait-timeout",
        "60",
        "-o",
        "json",
    )
    assert submitted.exit_code == 0, submitted.output
    task_id = task_id_of(submitted.stdout)
    assert "run_command" in str(api.requests[2].body["messages"][-2]["content"])
    assert "made by the coder" in str(api.requests[2].body["messages"][-1]["content"])

    out = tmp_path / "out"
    shown = await maos("task", "results", task_id, "--artifacts", str(out))
    assert shown.exit_code == 0, shown.output
    assert (out / "app" / "main.py").read_text() == "print('made by the coder')\n"
    assert "1 artifact(s) written" in shown.stderr
    assert "Artifacts:" in shown.stdout and "app/main.py" in shown.stdout
    show = await maos("task", "show", task_id)
    assert re.search(r"\S+ +1 +write_file +agent +\S+ +ok", show.stdout), show.stdout
    assert re.search(r"\S+ +2 +run_command +agent +\S+ +ok", show.stdout), show.stdout


class Planter(Agent):
    """An agent whose result carries artifacts with hostile names."""

    agent_type = "planter"
    capabilities = ["*"]

    async def handle(self, ctx: Context) -> Result:
        return Result(
            output="planted",
            artifacts=[
                Artifact("../escaped.txt", b"x"),
                Artifact("/tmp/absolute.txt", b"x"),
                Artifact("ok/../../up.txt", b"x"),
                Artifact("fine/report.md", b"# report\n"),
                Artifact("fine/report.md", b"# report, second version\n"),
            ],
        )


async def test_artifact_names_cannot_lead_out_of_the_folder(
    control_plane: App, maos_home: Path, tmp_path: Path
) -> None:
    maos = Maos(control_plane.address, maos_home)
    async with agents(control_plane.address, Planter()):
        submitted = await maos("task", "submit", "plant files", "--wait", "-o", "json")
    task_id = task_id_of(submitted.stdout)
    work = tmp_path / "work"
    out = work / "deep" / "out"
    shown = await maos("task", "results", task_id, "--artifacts", str(out))
    assert shown.exit_code == 0, shown.output
    written = sorted(str(p.relative_to(work)) for p in work.rglob("*") if p.is_file())
    assert written == ["deep/out/fine/report.md"]
    assert (out / "fine" / "report.md").read_text() == "# report, second version\n"
    for name in ("../escaped.txt", "/tmp/absolute.txt", "ok/../../up.txt"):
        assert f"artifact {name!r} not written: not a safe relative file name" in shown.stderr
    assert not Path("/tmp/absolute.txt").exists() or Path("/tmp/absolute.txt").read_bytes() != b"x"


async def test_a_loop_at_its_turn_limit_fails_its_task_with_the_reason(
    tmp_path: Path, api: MessagesAPIServer
) -> None:
    from tests.harness.server import start_app

    api.responder = lambda body: MessageReply(
        [{"type": "tool_use", "id": f"toolu_{len(body['messages'])}", "name": "list_files", "input": {}}],
        stop_reason="tool_use",
    )
    home = tmp_path / "home"
    settings = make_settings(home, **{"agents.allow_exec": True, "claude.tools.max_turns": 4})
    app = await start_app(settings)
    try:
        maos = Maos(app.address, home)
        async with agents(app.address, CoderAgent(params(api), settings=settings)):
            submitted = await maos(
                "task",
                "submit",
                "Loop forever",
                "--agent-type",
                "coder",
                "--max-retries",
                "0",
                "--wait",
                "-o",
                "json",
            )
        assert submitted.exit_code == 10, submitted.output
        task_id = task_id_of(submitted.stdout)
        show = await maos("task", "show", task_id)
        assert "limit of 4 model turns" in show.stdout and "list_files" in show.stdout, show.stdout
        assert len(api.requests) == 4
        data = json.loads((await maos("task", "show", task_id, "-o", "json")).stdout)
        assert data["task"]["failure"]["error_type"] == "ToolLoopLimit"
        assert int(data["task"]["usage"]["model_calls"]) == 4  # the failed loop's calls are charged
    finally:
        await app.stop(grace=0.5)
