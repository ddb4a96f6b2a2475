"""One variable names the control plane: MAOS_SERVER_ADDRESS, for maos-agent and a standalone agent alike.

``MAOS_ADDR``, the name ``maos-agent`` used to read, still works, with a
deprecation warning. The standalone agent is the one of docs/plugins.md, run
as its author would (``python upper_agent.py``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.runner import server_address
from controlplane.app import App
from controlplane.config import load_settings
from tests.controlplane.api.test_task_service import results, submit, wait_status
from tests.harness.server import Stubs, wait_for_agents
from tests.plugins.sites import ROOT, guide_files


def agent_env(home: Path, **variables: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAOS_")}
    env.update({"MAOS_HOME": str(home), "PYTHONPATH": str(ROOT), **variables})
    return env


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def start(
    processes: list[subprocess.Popen[str]], args: list[str], env: dict[str, str], cwd: Path | None = None
) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    processes.append(proc)
    return proc


async def stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM (drain) the process and return its stderr (waiting off the loop the control plane runs on)."""
    proc.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.to_thread(proc.communicate, timeout=30)
    assert proc.returncode == 0, stderr
    return stderr


async def test_maos_agent_finds_the_server_by_maos_server_address(
    control_plane: App, maos_home: Path, processes
) -> None:
    proc = start(
        processes,
        ["-m", "agent_sdk.runner", "run", "--type", "echo"],
        agent_env(maos_home, MAOS_SERVER_ADDRESS=control_plane.address),
    )
    await wait_for_agents(control_plane, 1, timeout=25)
    assert "MAOS_ADDR" not in await stop(proc)


async def test_maos_addr_still_works_with_a_deprecation_warning(
    control_plane: App, maos_home: Path, processes
) -> None:
    proc = start(
        processes,
        ["-m", "agent_sdk.runner", "run", "--type", "echo"],
        agent_env(maos_home, MAOS_ADDR=control_plane.address),
    )
    await wait_for_agents(control_plane, 1, timeout=25)
    assert "MAOS_ADDR is deprecated: set MAOS_SERVER_ADDRESS" in await stop(proc)


def test_the_order_flag_then_maos_server_address_then_maos_addr_then_config(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text("server:\n  address: 0.0.0.0:7300\n")
    both = {"MAOS_SERVER_ADDRESS": "127.0.0.1:7400", "MAOS_ADDR": "127.0.0.1:7500"}
    flagged = server_address("127.0.0.1:7600", load_settings(home=tmp_path, environ=both), both)
    assert flagged == "127.0.0.1:7600"
    assert server_address(None, load_settings(home=tmp_path, environ=both), both) == "127.0.0.1:7400"
    legacy = {"MAOS_ADDR": "127.0.0.1:7500"}
    assert server_address(None, load_settings(home=tmp_path, environ=legacy), legacy) == "127.0.0.1:7500"
    # A server bound to every interface is dialled on localhost.
    assert server_address(None, load_settings(home=tmp_path, environ={}), {}) == "127.0.0.1:7300"


async def test_the_guides_standalone_agent_runs_a_task(
    control_plane: App, maos_home: Path, tmp_path: Path, processes
) -> None:
    script = tmp_path / "upper_agent.py"
    script.write_text(guide_files()["upper_agent.py"])
    proc = start(
        processes,
        [str(script)],
        agent_env(maos_home, MAOS_SERVER_ADDRESS=control_plane.address),
        cwd=tmp_path,
    )
    await wait_for_agents(control_plane, 1, timeout=25)
    [session] = control_plane.engine.sessions.values()
    assert session.info.agent_type == "upper"
    stubs = Stubs(control_plane.address)
    try:
        task = await submit(stubs, "quiet words", agent_type="upper")
        done = await wait_status(
            stubs, task.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED, timeout=20
        )
        assert done.status == enums.TASK_STATUS_COMPLETED, done
        assert (await results(stubs, task.name)).output == "QUIET WORDS"
    finally:
        await stubs.close()
    assert "Traceback" not in await stop(proc)
