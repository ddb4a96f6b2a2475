"""``maos agent``: against a real control plane with a real echo agent."""

from __future__ import annotations

import json

from agent_sdk.worker import Worker
from maos_cli._errors import EXIT_INVALID_ARGUMENT, EXIT_NOT_FOUND, EXIT_USAGE
from tests.cli.conftest import Maos, stdout_lines


def bare(name: str) -> str:
    return name.rsplit("/", 1)[-1]


async def test_agent_list(maos: Maos, echo_agent: Worker) -> None:
    agent_id = bare(echo_agent.agent_name)
    result = await maos("agent", "list")
    assert result.exit_code == 0, result.output
    header, *rows = stdout_lines(result)
    assert header.split()[:3] == ["ID", "TYPE", "STATUS"]
    assert [row.split()[:3] for row in rows] == [[agent_id, "echo", "IDLE"]]

    data = json.loads(
        (await maos("-o", "json", "agent", "list", "--status", "idle", "--type", "echo")).stdout
    )
    assert [a["name"] for a in data["agents"]] == [f"agents/{agent_id}"]
    data = json.loads((await maos("-o", "json", "agent", "list", "--status", "BUSY")).stdout)
    assert data["agents"] == []
    result = await maos("agent", "list", "--type", "researcher")
    assert result.exit_code == 0 and "No agents." in result.stdout

    result = await maos("agent", "list", "--details")
    assert "Capabilities:" in result.stdout and "Last heartbeat:" in result.stdout

    assert (await maos("agent", "list", "--status", "sleepy")).exit_code == EXIT_USAGE


async def test_agent_status_pause_resume(maos: Maos, echo_agent: Worker) -> None:
    agent_id = bare(echo_agent.agent_name)
    for given in (agent_id, f"agents/{agent_id}"):
        result = await maos("agent", "status", given)
        assert result.exit_code == 0, result.output
        assert "ID:" in result.stdout and agent_id in result.stdout and "IDLE" in result.stdout

    result = await maos("agent", "pause", agent_id)
    assert result.exit_code == 0, result.output
    assert "PAUSED" in result.stdout
    data = json.loads((await maos("-o", "json", "agent", "status", agent_id)).stdout)
    assert data["status"] == "PAUSED"
    result = await maos("agent", "resume", agent_id)
    assert result.exit_code == 0 and "IDLE" in result.stdout


async def test_agent_errors(maos: Maos) -> None:
    result = await maos("agent", "status", "nobody")
    assert result.exit_code == EXIT_NOT_FOUND and "does not exist" in result.stderr
    result = await maos("agent", "kill", "nobody", "--grace", "1")
    assert result.exit_code == EXIT_NOT_FOUND
    result = await maos("agent", "terminate", "nobody", "--force")  # the alias
    assert result.exit_code == EXIT_NOT_FOUND
    result = await maos("agent", "spawn", "no-such-type")
    assert result.exit_code == EXIT_INVALID_ARGUMENT
    assert "unknown agent type" in result.stderr and "agent_type" in result.stderr


async def test_agent_types(maos: Maos) -> None:
    result = await maos("agent", "types")
    assert result.exit_code == 0, result.output
    names = [line.split()[0] for line in stdout_lines(result)[1:]]
    assert {"echo", "noop", "sleep"} <= set(names)
    data = json.loads((await maos("-o", "json", "agent", "types")).stdout)
    assert any(t["name"] == "echo" for t in data["agent_types"])
