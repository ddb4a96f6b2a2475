"""A second control plane on the same SQLite database is refused while the first lives (two real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane.errors import FailedPrecondition
from controlplane.replicas.sqlite_lock import hold_sqlite_database, sqlite_file
from tests.harness.server import ControlPlaneProcess, free_port


@pytest.mark.parametrize(
    ("url", "file"),
    [
        ("sqlite:////srv/maos/maos.db", Path("/srv/maos/maos.db")),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("sqlite:///file:maos?mode=memory&uri=true", None),
        ("postgresql+psycopg://postgres@127.0.0.1/maos", None),
    ],
)
def test_only_sqlite_files_are_locked(url: str, file: Path | None) -> None:
    assert sqlite_file(url) == file


def test_the_lock_is_held_until_released(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'maos.db'}"
    held = hold_sqlite_database(url, "127.0.0.1:7100")
    assert held is not None and (tmp_path / "maos.db.lock").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FailedPrecondition, match=r"127\.0\.0\.1:7100.*SQLite is the single-process embedded"):
        hold_sqlite_database(url)
    held.release()
    again = hold_sqlite_database(url)
    assert again is not None
    again.release()
    assert hold_sqlite_database("sqlite://") is None


def _maos_start(home: Path, database: str, port: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "MAOS_HOME": str(home),
        "MAOS_DATABASE_PRIMARY_URL": database,
        "MAOS_AGENTS_POOL": "",
        "MAOS_SERVER_METRICS_PORT": "0",
        "MAOS_SERVER_HTTP_PORT": "0",
        "MAOS_SERVER_DASHBOARD_PORT": "0",
        "MAOS_SECURITY_AUTH": "off",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "maos_cli.main", "start", "--address", f"127.0.0.1:{port}"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_a_second_start_on_the_same_sqlite_database_is_refused(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'shared' / 'maos.db'}"
    first = ControlPlaneProcess(tmp_path / "first", MAOS_DATABASE_PRIMARY_URL=database)
    first.start()
    try:
        await first.wait_ready()
        second = _maos_start(tmp_path / "second", database, free_port())  # its own MAOS_HOME, the same file
        out, err = second.communicate(timeout=60)
        assert second.returncode == 5, (out, err)  # failed precondition
        assert f"pid {first.process.pid}" in err and first.address in err
        assert "SQLite is the single-process embedded default" in err
        assert "use PostgreSQL (database.primary_url) and Redis (redis.url)" in err
        await first.wait_ready(timeout=5)  # the first one is untouched

        first.kill()  # SIGKILL: the kernel releases the lock with the process
        third = ControlPlaneProcess(tmp_path / "third", MAOS_DATABASE_PRIMARY_URL=database)
        third.start()
        try:
            await third.wait_ready()
        finally:
            third.stop()
    finally:
        first.stop()
