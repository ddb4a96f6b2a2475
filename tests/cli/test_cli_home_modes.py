"""MAOS_HOME is private: the folder 0700 and every file in it 0600, for new and existing installs."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from tests.cli.test_cli_daemon import maos
from tests.harness.server import alive, free_port

pytestmark = pytest.mark.slow


def modes(home: Path) -> dict[str, int]:
    """Every path under ``home`` (itself as ".") with its permission bits."""
    found = {".": stat.S_IMODE(home.stat().st_mode)}
    for folder, dirs, files in os.walk(home):
        for name in [*dirs, *files]:
            path = Path(folder, name)
            found[str(path.relative_to(home))] = stat.S_IMODE(path.lstat().st_mode)
    return found


def loosen(home: Path) -> None:
    """What an earlier version left: folders 0755, files 0644."""
    for name in modes(home):
        path = home / name
        path.chmod(0o755 if path.is_dir() else 0o644)


@pytest.fixture
def open_umask():
    """The umask most shells have (0022): files would be created readable by everyone."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_running_install_keeps_every_file_private(tmp_path: Path, open_umask: None) -> None:
    home = tmp_path / "home"
    assert maos(home, "init").returncode == 0
    migrated = maos(home, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    loosen(home)  # an existing install of an earlier version
    assert modes(home)["maos.db"] == 0o644 and modes(home)["."] == 0o755

    address = f"127.0.0.1:{free_port()}"
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
    pid = json.loads(started.stdout)["pid"]
    try:
        submitted = maos(
            home,
            "--addr",
            address,
            "-o",
            "json",
            "task",
            "submit",
            "say hello",
            "--wait",
            "--wait-timeout",
            "60",
        )
        assert submitted.returncode == 0, submitted.stderr
        deadline = time.monotonic() + 30
        while not (home / "maos.db-wal").exists() or not list((home / "logs").glob("agent-echo-*.log")):
            assert time.monotonic() < deadline, sorted(modes(home))
            time.sleep(0.1)
        seen = modes(home)
        assert {
            "maos.db",
            "maos.db-wal",
            "maos.db-shm",
            "maos.pid",
            "config.yml",
            "credentials",
            "logs/controlplane.log",
        } <= set(seen), sorted(seen)
        loose = {name: oct(mode) for name, mode in seen.items() if mode & 0o077}
        assert loose == {}, loose
        assert seen["."] == 0o700 and seen["logs"] == 0o700 and seen["maos.db"] == 0o600
        log = (home / "logs" / "controlplane.log").read_text()
        assert "tightened permissions in" in log and "maos.db" in log
    finally:
        maos(home, "stop", "--timeout", "60")
        if alive(pid):
            os.kill(pid, 9)


def test_a_fresh_home_is_private_from_the_start(tmp_path: Path, open_umask: None) -> None:
    home = tmp_path / "fresh"
    for args in (("init",), ("config", "set", "claude.api_key", "sk-test"), ("db", "migrate")):
        result = maos(home, *args)
        assert result.returncode == 0, result.stderr
    seen = modes(home)
    assert {".", "config.yml", "credentials", "maos.db", "logs", "agents"} <= set(seen), sorted(seen)
    assert {name: oct(mode) for name, mode in seen.items() if mode & 0o077} == {}
