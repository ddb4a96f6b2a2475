"""``maos agent restart`` and ``maos agent metrics`` with real supervised agent processes."""

from __future__ import annotations

import json

from agent_sdk.worker import Worker
from controlplane.app import App
from maos_cli._errors import EXIT_FAILED_PRECONDITION, EXIT_NOT_FOUND
from tests.cli.conftest import Maos, stdout_lines
from tests.harness.server import alive, wait_for


async def _spawn(maos: Maos) -> dict:
    result = await maos("-o", "json", "agent", "spawn", "echo")
    assert result.exit_code == 0, result.output
    (agent,) = json.loads(result.stdout)["agents"]
    assert agent["name"], "the spawned agent registered"
    return agent


async def test_restart_a_supervised_agent(control_plane: App, maos: Maos) -> None:
    old = await _spawn(maos)
    old_id = old["name"].removeprefix("agents/")

    result = await maos("agent", "restart", old_id, "--grace", "5")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"restarted {old_id} as echo-") and "IDLE" in result.stdout

    data = json.loads((await maos("-o", "json", "agent", "restart", result.stdout.split()[3])).stdout)
    newest = data["agent"]
    assert data["previous"]["status"] == "TERMINATED"
    assert newest["status"] == "IDLE" and newest["agent_type"] == "echo" and newest["managed"]
    assert not alive(int(old["pid"])) and alive(int(newest["pid"])) and newest["pid"] != old["pid"]
    await wait_for(
        lambda: len([s for s in control_plane.engine.sessions.values() if s.info.managed]) == 1,
        message="one supervised agent connected",
    )
    assert len(control_plane.launcher.launches) == 1  # replaced, not added

    again = await maos("agent", "restart", old_id)
    assert again.exit_code == EXIT_FAILED_PRECONDITION
    assert f"agent agents/{old_id} is TERMINATED (stopped or restarted already)" in again.stderr

    listed = json.loads((await maos("-o", "json", "agent", "list")).stdout)["agents"]
    assert newest["name"] in {a["name"] for a in listed} and old["name"] not in {a["name"] for a in listed}
    done = await maos("task", "submit", "Echo after the restart", "--wait")
    assert done.exit_code == 0, done.output

    forced = await maos("-o", "json", "agent", "restart", newest["name"], "--force")
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.stdout)["agent"]["pid"] != newest["pid"]


async def test_agents_that_are_not_supervised_cannot_be_restarted(maos: Maos, echo_agent: Worker) -> None:
    own = echo_agent.agent_name.removeprefix("agents/")
    result = await maos("agent", "restart", own)
    assert result.exit_code == EXIT_FAILED_PRECONDITION
    assert (
        f"agent agents/{own} was not launched by this control plane (it connected on its own)"
        in result.stderr
    )
    assert "restart its process where it runs" in result.stderr
    assert (await maos("-o", "json", "agent", "status", own)).exit_code == 0  # untouched
    assert json.loads((await maos("-o", "json", "agent", "status", own)).stdout)["status"] == "IDLE"

    unknown = await maos("agent", "restart", "echo-0000000000000000")
    assert unknown.exit_code == EXIT_NOT_FOUND and "does not exist" in unknown.stderr


async def test_agent_metrics(maos: Maos, echo_agent: Worker) -> None:
    supervised = await _spawn(maos)
    result = await maos("agent", "metrics", supervised["name"].removeprefix("agents/"))  # Agent performance
    assert result.exit_code == 0, result.output
    lines = dict(line.split(":", 1) for line in stdout_lines(result))
    assert lines["Type"].strip() == "echo" and lines["Completed"].strip() == "0"
    assert lines["Process"].strip().startswith(f"pid {supervised['pid']}: CPU ")
    data = json.loads((await maos("-o", "json", "agent", "metrics", supervised["name"])).stdout)
    assert data["process"]["measured"] and int(data["process"]["memory_bytes"]) > 1_000_000
    assert data["connected_seconds"] > 0

    own = echo_agent.agent_name
    assert (await maos("task", "submit", "Echo", "--metadata", "echo_log=counted", "--wait")).exit_code == 0
    elsewhere = json.loads((await maos("-o", "json", "agent", "metrics", own)).stdout)
    assert "process" not in elsewhere or not elsewhere["process"]["measured"]
    text = stdout_lines(await maos("agent", "metrics", own))
    assert any(line.startswith("Process:") and "not supervised" in line for line in text)
    theirs = json.loads((await maos("-o", "json", "agent", "metrics", supervised["name"])).stdout)
    assert int(elsewhere["agent"]["completed_subtasks"]) + int(theirs["agent"]["completed_subtasks"]) == 1
    logged = [m["log_records"] for m in (elsewhere, theirs) if m["log_records"]]
    assert [{k: int(v) for k, v in counts.items()} for counts in logged] == [
        {"INFO": 1}
    ]  # who ran it logged it

    unknown = await maos("agent", "metrics", "echo-0000000000000000")
    assert unknown.exit_code == EXIT_NOT_FOUND
