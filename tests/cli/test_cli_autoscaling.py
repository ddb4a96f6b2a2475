"""Autoscaling through a real ``maos start``: sleep agents are launched under a queue and stopped when idle.

The control plane runs as a foreground process with ``scaling.*`` from the environment; the agents are
real ``maos-agent`` processes it supervises; the tasks are submitted with the real CLI.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_cli_foreground import Foreground
from tests.harness.exposition import without_replica
from tests.harness.server import free_port, wait_for

pytestmark = pytest.mark.slow

LIVE = {"IDLE", "BUSY", "STARTING", "PAUSED"}


@pytest.fixture
def scaled(tmp_path: Path) -> Iterator[Foreground]:
    fg = Foreground(tmp_path / "home")
    assert fg.run("init").returncode == 0
    fg.env.update(
        {
            "MAOS_SCALING_ENABLED": "true",
            "MAOS_SCALING_TYPES": "sleep=0:3",
            "MAOS_SCALING_INTERVAL": "0.2",
            "MAOS_SCALING_QUEUE_DEPTH_THRESHOLD": "2",
            "MAOS_SCALING_WAIT_THRESHOLD": "1",
            "MAOS_SCALING_IDLE_SECONDS": "1",
            "MAOS_SCALING_COOLDOWN": "0.5",
            "MAOS_SYSTEM_MAX_AGENTS": "4",
        }
    )
    try:
        yield fg
    finally:
        fg.cleanup()


async def sleep_agents(fg: Foreground) -> list[dict]:
    return [a for a in await fg.agents() if a["agent_type"] == "sleep" and a["status"] in LIVE]


async def test_scales_up_under_a_queue_and_back_down_when_idle(scaled: Foreground) -> None:
    fg = scaled
    port = free_port()
    fg.start("--agents", "echo=1", "--metrics-port", str(port))
    await fg.wait_serving({"echo": 1})
    assert await sleep_agents(fg) == []  # min 0: none before there is work

    ids = []
    for n in range(6):
        submitted = await fg.cli(
            "-o",
            "json",
            "task",
            "submit",
            f"nap {n}",
            "--agent-type",
            "sleep",
            "--metadata",
            "sleep_seconds=2",
        )
        assert submitted.exit_code == 0, submitted.output
        ids.append(json.loads(submitted.stdout)["task_id"])

    async def scaled_up() -> list[dict] | None:
        found = await sleep_agents(fg)
        return found if len(found) >= 2 else None

    def scrape() -> str:
        return without_replica(
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        )

    up = await wait_for(scaled_up, 60, interval=0.2, message="sleep agents to be launched")
    assert all(a["managed"] for a in up)
    shown = json.loads((await fg.cli("-o", "json", "status")).stdout)["status"]["scaling"]
    assert [row["agent_type"] for row in shown] == ["sleep"]
    assert shown[0]["max"] == 3 and shown[0]["desired"] >= 1 and shown[0]["reason"]
    body = await asyncio.to_thread(scrape)
    assert 'maos_scaling_events_total{agent_type="sleep",direction="up"}' in body
    assert 'maos_scaling_queue_depth{agent_type="sleep"}' in body
    assert 'maos_scaling_desired_agents{agent_type="sleep"}' in body
    peak = len(up)

    async def most_launched() -> int | None:
        nonlocal peak
        peak = max(peak, len(await sleep_agents(fg)))
        done = await fg.cli("-o", "json", "task", "list", "--all")
        tasks = [t for t in json.loads(done.stdout)["tasks"] if t["name"].rpartition("/")[2] in ids]
        return peak if tasks and all(t["status"] == "COMPLETED" for t in tasks) else None

    await wait_for(most_launched, 90, interval=0.2, message="the tasks to complete")
    assert 2 <= peak <= 3  # scaling.types sleep max 3 (and system.max_agents 4 with the echo agent)

    async def scaled_down() -> bool:
        return await sleep_agents(fg) == []

    await wait_for(scaled_down, 60, interval=0.2, message="idle sleep agents to be stopped")
    status = await fg.cli("status")
    assert status.exit_code == 0, status.output
    assert "Autoscaling:" in status.stdout and "sleep" in status.stdout, status.stdout
    body = await asyncio.to_thread(scrape)
    assert 'maos_scaling_events_total{agent_type="sleep",direction="down"}' in body
    assert 'maos_scaling_desired_agents{agent_type="sleep"} 0.0' in body
    echo = [a for a in await fg.agents() if a["agent_type"] == "echo" and a["status"] in LIVE]
    assert len(echo) == 1  # a type that is not autoscaled is left alone
