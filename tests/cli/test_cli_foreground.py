"""``maos start`` in the foreground, as the user guide's quick start runs it.

``maos init``, then ``maos start`` with no flags (a real process: the default
agent pool of the config.yml that init wrote, launched as real agent
processes), then ``maos task submit`` and ``maos task wait`` with the real CLI.
A stop signal must end the process with exit code 0 and take its agents
with it. Only the listen address and the metrics port come from the
environment (MAOS_SERVER_ADDRESS, MAOS_SERVER_METRICS_PORT), so parallel
runs do not collide on 7100 and 9464.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import Maos
from tests.harness.exposition import without_replica
from tests.harness.server import alive, free_port, wait_for

pytestmark = pytest.mark.slow

QUICK_START_TASK = "Research the top 3 cloud computing trends in 2025"


class Foreground:
    """``maos start ARGS`` as a foreground process with its own MAOS_HOME and address."""

    def __init__(self, home: Path):
        self.home = home
        self.address = f"127.0.0.1:{free_port()}"
        # No Anthropic key from the developer's shell: a test that wants Claude agents sets its own.
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("MAOS_")
            and k not in ("NO_COLOR", "ANTHROPIC_API_KEY", "CLAUDE_API_KEY", "ANTHROPIC_BASE_URL")
        }
        self.env.update(
            {
                "MAOS_HOME": str(home),
                "MAOS_SERVER_ADDRESS": self.address,
                "MAOS_SERVER_METRICS_PORT": "0",
                "MAOS_SERVER_HTTP_PORT": "0",
                "MAOS_SERVER_DASHBOARD_PORT": "0",
                "NO_COLOR": "1",
            }
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.agent_pids: list[int] = []
        self.cli = Maos(self.address, home)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``maos ARGS`` as a process (to completion)."""
        return subprocess.run(
            [sys.executable, "-m", "maos_cli.main", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    def start(self, *args: str) -> None:
        """Start ``maos start ARGS``; stdout and stderr go to files (a full pipe would block it)."""
        self.stdout, self.stderr = self.home.parent / "start.out", self.home.parent / "start.err"
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "maos_cli.main", "start", *args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )

    def output(self) -> str:
        return f"stdout:\n{self.stdout.read_text()}\nstderr:\n{self.stderr.read_text()[-3000:]}"

    async def agents(self) -> list[dict]:
        """``maos -o json agent list``."""
        result = await self.cli("-o", "json", "agent", "list")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["agents"]

    async def wait_serving(self, pool: dict[str, int]) -> list[dict]:
        """Wait until ``maos health`` answers HEALTHY and the pool's agents are connected; the agents."""
        assert self.process is not None

        async def healthy() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"maos start exited with {self.process.returncode}\n{self.output()}")
            return (await self.cli("health", "--component", "database")).exit_code == 0

        await wait_for(healthy, 60, interval=0.1, message="`maos health` to answer")

        async def pool_connected() -> list[dict] | None:
            connected = ("IDLE", "BUSY")
            found = [a for a in await self.agents() if a["status"] in connected]
            return found if sum(pool.values()) <= len(found) else None

        found = await wait_for(pool_connected, 60, interval=0.1, message=f"the agents of {pool} to connect")
        self.agent_pids = [int(a["pid"]) for a in found]
        return found

    def signal_and_wait(self, sig: int) -> int:
        """Send ``sig`` and wait for the exit code."""
        assert self.process is not None
        self.process.send_signal(sig)
        return self.process.wait(timeout=60)

    def cleanup(self) -> None:
        """Kill what a failed test left running: the server and the agents it launched (by pid)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        for pid in self.agent_pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def foreground(tmp_path: Path) -> Iterator[Foreground]:
    """A fresh MAOS_HOME and address; ``maos init`` has run."""
    fg = Foreground(tmp_path / "home")
    initialized = fg.run("init")
    assert initialized.returncode == 0, initialized.stderr
    try:
        yield fg
    finally:
        fg.cleanup()


def default_pool(home: Path) -> dict[str, int]:
    """``agents.pool`` of the config.yml ``maos init`` wrote."""
    pool = yaml.safe_load((home / "config.yml").read_text())["agents"]["pool"]
    assert pool and all(count > 0 for count in pool.values()), pool
    return pool


async def test_quick_start_in_the_foreground_with_the_default_pool(foreground: Foreground) -> None:
    pool = default_pool(foreground.home)
    foreground.start()  # no --agents: the pool of config.yml
    agents = await foreground.wait_serving(pool)
    assert collections.Counter(a["agent_type"] for a in agents) == collections.Counter(pool)
    assert all(a["managed"] for a in agents), agents
    assert all(alive(pid) for pid in foreground.agent_pids)
    assert (foreground.home / "maos.pid").read_text().strip() == str(foreground.process.pid)

    status = await foreground.cli("status")
    assert status.exit_code == 0, status.output
    assert "Version:" in status.stdout
    # No key: the offline pool, and the commands say so (with how to get Claude agents).
    assert "the answers come from offline agents (echo)" in foreground.stderr.read_text()

    async def status_notice() -> str | None:
        shown = await foreground.cli("status")
        return shown.stderr if "offline agents (echo)" in shown.stderr else None

    notice = await wait_for(
        status_notice, 15, interval=0.2, message="`maos status` to name the offline agents"
    )
    assert "ANTHROPIC_API_KEY" in notice

    submitted = await foreground.cli("task", "submit", QUICK_START_TASK)
    assert submitted.exit_code == 0, submitted.output
    task_id = submitted.stdout.strip()
    waited = await foreground.cli("task", "wait", task_id, "--timeout", "30")
    assert waited.exit_code == 0, waited.output
    assert "COMPLETED" in waited.stdout
    shown = json.loads((await foreground.cli("-o", "json", "task", "show", task_id)).stdout)
    pool_agents = {a["name"] for a in agents}
    ran_on = {s["agent"] for s in shown["subtasks"]}
    assert ran_on and ran_on <= pool_agents, (ran_on, pool_agents)

    code = foreground.signal_and_wait(signal.SIGINT)  # Ctrl-C
    assert code == 0, foreground.output()
    await wait_for(
        lambda: not any(alive(pid) for pid in foreground.agent_pids),
        15,
        message="the launched agent processes to exit",
    )
    assert not (foreground.home / "maos.pid").exists()
    assert "Traceback" not in foreground.stderr.read_text(), foreground.output()


async def test_start_serves_metrics_on_the_given_port(foreground: Foreground) -> None:
    port = free_port()
    foreground.start("--metrics-port", str(port))
    pool = default_pool(foreground.home)
    await foreground.wait_serving(pool)
    submitted = await foreground.cli("task", "submit", "count me", "--priority", "HIGH")
    assert submitted.exit_code == 0, submitted.output

    def scrape() -> str:
        return without_replica(
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        )

    body = await asyncio.to_thread(scrape)
    for family in (
        "maos_build_info",
        "maos_tasks_submitted_total",
        "maos_task_transitions_total",
        "maos_tasks_pending",
        "maos_agents_connected",
        "maos_agent_lease_expirations_total",
        "grpc_server_handled_total",
    ):
        assert f"# TYPE {family}" in body or f"# TYPE {family.removesuffix('_total')}" in body, family
    assert 'maos_tasks_submitted_total{queue="high"} 1.0' in body
    for agent_type, count in pool.items():
        assert f'maos_agents_connected{{pool="{agent_type}"}} {float(count)}' in body

    code = foreground.signal_and_wait(signal.SIGTERM)
    assert code == 0, foreground.output()
    with pytest.raises(urllib.error.URLError):  # the endpoint went with the process
        await asyncio.to_thread(scrape)
    await wait_for(
        lambda: not any(alive(pid) for pid in foreground.agent_pids),
        15,
        message="the launched agent processes to exit",
    )
