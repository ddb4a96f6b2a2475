"""``maos start --daemon``, ``status``, ``stop`` and ``restart`` as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from maos_cli._errors import EXIT_FAILED_PRECONDITION
from tests.harness.server import alive, free_port

pytestmark = pytest.mark.slow


def maos(home: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAOS_")}
    env.update(
        {
            "MAOS_HOME": str(home),
            "MAOS_SERVER_METRICS_PORT": "0",
            "MAOS_SERVER_HTTP_PORT": "0",
            "MAOS_SERVER_DASHBOARD_PORT": "0",
            "MAOS_SYSTEM_LOG_LEVEL": "info",
            "NO_COLOR": "1",
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "maos_cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_daemon_start_status_stop(tmp_path: Path) -> None:
    home = tmp_path / "home"
    address = f"127.0.0.1:{free_port()}"
    initialized = maos(home, "init")  # the admin key the CLI then uses ($MAOS_HOME/credentials)
    assert initialized.returncode == 0, initialized.stderr
    started = maos(
        home,
        "-o",
        "json",
        "start",
        "--daemon",
        "--address",
        address,
        "--agents",
        "echo=1",
        "--startup-timeout",
        "60",
    )
    assert started.returncode == 0, started.stderr
    info = json.loads(started.stdout)
    pid = info["pid"]
    try:
        assert info["address"] == address
        assert (home / "maos.pid").read_text().strip() == str(pid)
        assert alive(pid)
        assert (home / "logs" / "controlplane.log").exists()

        status = maos(home, "--addr", address, "status")
        assert status.returncode == 0, status.stderr
        assert "Version:" in status.stdout

        again = maos(home, "start", "--daemon", "--address", address)
        assert again.returncode == EXIT_FAILED_PRECONDITION
        assert "already running" in again.stderr

        restarted = maos(home, "-o", "json", "restart", "--address", address, "--agents", "echo=1")
        assert restarted.returncode == 0, restarted.stderr
        old_pid, pid = pid, json.loads(restarted.stdout)["pid"]
        assert pid != old_pid and not alive(old_pid) and alive(pid)

        stopped = maos(home, "stop", "--timeout", "60")
        assert stopped.returncode == 0, stopped.stderr
        assert f"pid {pid}" in stopped.stdout
        assert not alive(pid)
        assert not (home / "maos.pid").exists()
    finally:
        if alive(pid):
            os.kill(pid, 9)

    not_running = maos(home, "stop")
    assert not_running.returncode == 0 and "not running" in not_running.stderr


def test_daemon_that_cannot_start_shows_the_log(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yml").write_text("database:\n  primary_url: 'nosuchdb://x'\n")
    result = maos(home, "start", "--daemon", "--address", f"127.0.0.1:{free_port()}", "--agents", "echo=0")
    assert result.returncode != 0
    assert "nosuchdb" in result.stderr
    assert not (home / "maos.pid").exists()


def test_start_rejects_a_bad_agent_pool(tmp_path: Path) -> None:
    result = maos(tmp_path / "home", "start", "--agents", "echo=two")
    assert result.returncode == 2 and "--agents" in result.stderr
