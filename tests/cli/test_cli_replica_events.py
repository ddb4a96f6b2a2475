"""``maos monitor --follow`` and ``maos logs --follow`` on one replica show the work of another.

Two real ``maos start`` processes on one PostgreSQL and one Redis; the echo agent is connected to
B, the task is submitted on B (so B holds it), and both commands follow on A. ``maos logs
--follow`` given A and B goes on on B when A is killed, after the last record it printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.app import build_app
from tests.cli.conftest import Maos
from tests.harness.server import AgentProcess, ControlPlaneProcess, empty_postgres, make_settings, wait_for


@pytest.fixture
async def replicas(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str
) -> AsyncIterator[tuple[ControlPlaneProcess, ControlPlaneProcess]]:
    """Replicas A and B (processes), with an echo agent connected to B."""
    build_app(make_settings(tmp_path / "m", **{"database.primary_url": postgres_url})).storage.close()
    empty_postgres(postgres_url)
    env = {
        "MAOS_DATABASE_PRIMARY_URL": postgres_url,
        "MAOS_REDIS_URL": redis_url,
        "MAOS_REDIS_KEY_PREFIX": redis_namespace,
        "MAOS_SYSTEM_LOG_LEVEL": "info",
    }
    a = ControlPlaneProcess(tmp_path / "a", **env)
    b = ControlPlaneProcess(tmp_path / "b", **env)
    agent: AgentProcess | None = None
    try:
        a.start()
        b.start()
        await a.wait_ready()
        await b.wait_ready()
        agent = AgentProcess(b.address, "echo", home=tmp_path / "agent")

        async def connected() -> bool:
            status = json.loads((await Maos(b.address, tmp_path / "cli")("-o", "json", "status")).stdout)
            return status["status"].get("connected_agents", 0) == 1

        await wait_for(connected, 30, interval=0.2, message="the agent on B")
        yield a, b
    finally:
        if agent is not None:
            agent.stop()
        b.stop()
        a.stop()


async def _follow(address: str, home: Path, *args: str) -> Any:
    env = {k: v for k, v in {**os.environ, **Maos(address, home).env()}.items() if v is not None}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from maos_cli.main import main; main()",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _stop(proc: Any) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_monitor_and_logs_follow_on_a_see_the_work_of_b(
    tmp_path: Path, replicas: tuple[ControlPlaneProcess, ControlPlaneProcess]
) -> None:
    a, b = replicas
    home = tmp_path / "cli"
    monitor = await _follow(a.address, home, "-o", "json", "monitor", "--follow")
    logs = await _follow(a.address, home, "logs", "--follow", "--component", "agents")
    try:
        assert monitor.stdout is not None and logs.stdout is not None
        json.loads(await asyncio.wait_for(monitor.stdout.readline(), 30))  # the snapshot first
        # TailLogs has subscribed once it sent its (empty) backlog: wait until A's log book is followed.
        submitted = await Maos(b.address, home)(
            "task", "submit", "Echo this", "--metadata", "echo_log=written on replica B"
        )
        assert submitted.exit_code == 0, submitted.output
        task_id = submitted.stdout.strip().split()[-1]
        seen: list[tuple[str, str]] = []
        while ("TASK_STATUS_CHANGED", "COMPLETED") not in seen:
            event = json.loads(await asyncio.wait_for(monitor.stdout.readline(), 30))
            if event.get("task") == f"tasks/{task_id}":
                seen.append((event["type"], event["to_status"]))
                assert "-" in event["id"]  # a stream id: the same on every replica
        assert seen[0] == ("TASK_SUBMITTED", "PENDING")
        assert ("SUBTASK_STATUS_CHANGED", "RUNNING") in seen
        line = (await asyncio.wait_for(logs.stdout.readline(), 30)).decode()
        assert "written on replica B" in line
    finally:
        await _stop(monitor)
        await _stop(logs)


async def test_logs_follow_failing_over_to_another_replica_resumes_exactly(
    tmp_path: Path, replicas: tuple[ControlPlaneProcess, ControlPlaneProcess]
) -> None:
    """``maos logs --follow`` on A,B: A is killed; the CLI goes on on B after the last record it
    printed (a log record id valid on every replica), so the records written meanwhile come once."""
    a, b = replicas
    home = tmp_path / "cli"
    logs = await _follow(f"{a.address},{b.address}", home, "logs", "--follow", "--component", "agents")
    submit = Maos(b.address, home)
    try:
        assert logs.stdout is not None and logs.stderr is not None
        lines: list[str] = []

        async def until(text: str) -> None:
            while not any(text in line for line in lines):
                lines.append((await asyncio.wait_for(logs.stdout.readline(), 30)).decode())

        # A record of B's agent reaches the tail on A (the first ones may precede its subscription).
        for attempt in range(10):
            assert (
                await submit("task", "submit", "x", "--metadata", f"echo_log=before {attempt}")
            ).exit_code == 0
            try:
                await asyncio.wait_for(until("before"), 3)
                break
            except TimeoutError:
                continue
        a.kill()
        for n in range(3):  # written while the CLI finds that A is gone and reconnects to B
            assert (await submit("task", "submit", "x", "--metadata", f"echo_log=after {n}")).exit_code == 0
        await until("after 2")
        for n in range(3):
            assert sum(f"after {n}" in line for line in lines) == 1, lines
    finally:
        await _stop(logs)
    assert logs.stderr is not None
    noted = (await logs.stderr.read()).decode()
    assert "no longer kept" not in noted and "missed" not in noted, noted
