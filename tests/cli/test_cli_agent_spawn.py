"""``maos agent spawn`` and ``maos agent kill`` with real supervised agent processes.

A spawned agent is a ``maos-agent run`` child of the control plane (its
launcher); it connects, is listed as managed, and ``kill`` drains it and ends
its process, leaving it TERMINATED (only ``--include-terminated`` lists it).
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.app import App
from tests.cli.conftest import Maos
from tests.harness.server import alive, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
async def cli(control_plane: App, maos_home: Path) -> AsyncIterator[Maos]:
    """The CLI against a control plane with no agents; launched processes are ended afterwards."""
    pids: set[int] = set()
    yield Maos(control_plane.address, maos_home)
    pids.update(launch.process.pid for launch in control_plane.launcher.launches.values() if launch.process)
    await control_plane.launcher.stop(1.0)
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


async def listed(cli: Maos, *flags: str) -> dict[str, dict]:
    """``maos -o json agent list FLAGS``, by name."""
    result = await cli("-o", "json", "agent", "list", *flags)
    assert result.exit_code == 0, result.output
    return {a["name"]: a for a in json.loads(result.stdout)["agents"]}


async def spawn_one(cli: Maos) -> dict:
    """``maos agent spawn echo``; the agent once it is connected (IDLE)."""
    result = await cli("-o", "json", "agent", "spawn", "echo", "--label", "team=cli")
    assert result.exit_code == 0, result.output
    [launched] = json.loads(result.stdout)["agents"]
    assert launched["agent_type"] == "echo" and launched["managed"]
    pid = int(launched["pid"])
    assert alive(pid)

    async def connected() -> dict | None:
        for agent in (await listed(cli)).values():
            if int(agent.get("pid", 0)) == pid and agent["status"] == "IDLE":
                return agent
        return None

    return await wait_for(connected, 30, interval=0.1, message=f"the spawned agent (pid {pid}) to connect")


async def test_spawn_then_kill(cli: Maos, control_plane: App) -> None:
    agent = await spawn_one(cli)
    name, pid = agent["name"], int(agent["pid"])
    assert agent["managed"] and agent["labels"]["team"] == "cli"
    assert name.removeprefix("agents/") in control_plane.engine.sessions

    table = await cli("agent", "list")
    assert table.exit_code == 0, table.output
    [row] = [line.split() for line in table.stdout.splitlines()[1:] if line.strip()]
    assert row[:3] == [name.removeprefix("agents/"), "echo", "IDLE"] and row[7] == "yes"

    killed = await cli("agent", "kill", name.removeprefix("agents/"), "--grace", "5")
    assert killed.exit_code == 0, killed.output
    assert killed.stdout.split()[0] == name.removeprefix("agents/")

    await wait_for(lambda: not alive(pid), 15, message="the killed agent's process to exit")
    await wait_for(
        lambda: name.removeprefix("agents/") not in control_plane.engine.sessions,
        10,
        message="the killed agent's stream to end",
    )
    assert name not in await listed(cli)
    terminated = (await listed(cli, "--include-terminated"))[name]
    assert terminated["status"] == "TERMINATED"
    assert not control_plane.launcher.by_agent(name.removeprefix("agents/"))  # not restarted
    status = await cli("agent", "status", name)
    assert status.exit_code == 0 and "TERMINATED" in status.stdout, status.output


async def test_kill_force_ends_the_process_at_once(cli: Maos, control_plane: App) -> None:
    agent = await spawn_one(cli)
    name, pid = agent["name"], int(agent["pid"])
    killed = await cli("agent", "kill", name, "--force")
    assert killed.exit_code == 0, killed.output
    assert killed.stdout.split() == [name.removeprefix("agents/"), "TERMINATED"]  # not DRAINING: it is gone
    assert not alive(pid)  # --force waits for the process to end
    await wait_for(
        lambda: name.removeprefix("agents/") not in control_plane.engine.sessions,
        10,
        message="the killed agent's stream to end",
    )
    assert (await listed(cli, "--include-terminated"))[name]["status"] == "TERMINATED"
