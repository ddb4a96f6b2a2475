"""``maos start --migrate/--no-migrate``: a database not at the latest schema revision is refused.

Real processes (``python -m maos_cli.main``) on SQLite in a fresh MAOS_HOME and on a fresh
PostgreSQL database created for each test on the session's server.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import sqlalchemy
from alembic import command
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy.engine import make_url

from controlplane.storage.sql.migrations import SCRIPT_LOCATION, alembic_config
from maos_cli._errors import EXIT_FAILED_PRECONDITION
from tests.harness.server import alive, free_port

pytestmark = pytest.mark.slow

#: The revisions shipped, read straight from the scripts (not through the code under test).
_SCRIPTS = ScriptDirectory(str(SCRIPT_LOCATION))
HEAD = _SCRIPTS.get_current_head()
PREVIOUS = _SCRIPTS.get_revision(HEAD).down_revision


@dataclass
class Database:
    """The database of one test: SQLite in ``home`` (``url`` None) or a PostgreSQL database."""

    home: Path
    url: str | None = None

    @property
    def sqlalchemy_url(self) -> str:
        return self.url or f"sqlite:///{self.home / 'maos.db'}"

    def exists(self) -> bool:
        return self.url is not None or (self.home / "maos.db").exists()

    def run(self, fn) -> object:
        """``fn(connection)`` in a committed transaction."""
        engine = sqlalchemy.create_engine(self.sqlalchemy_url)
        try:
            with engine.begin() as conn:
                return fn(conn)
        finally:
            engine.dispose()

    def tables(self) -> set[str]:
        return (
            set(self.run(lambda conn: sqlalchemy.inspect(conn).get_table_names())) if self.exists() else set()
        )

    def revision(self) -> str | None:
        return self.run(
            lambda conn: conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version")).scalar_one()
        )

    def maos(self, *args: str, timeout: float = 90, **env: str) -> subprocess.CompletedProcess[str]:
        """``maos ARGS...`` in its own process, with only this home and database."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("MAOS_")}
        environ.update(
            {
                "MAOS_HOME": str(self.home),
                "MAOS_SERVER_METRICS_PORT": "0",
                "MAOS_SERVER_HTTP_PORT": "0",
                "MAOS_SERVER_DASHBOARD_PORT": "0",
                "NO_COLOR": "1",
                **env,
            }
        )
        if self.url:
            environ["MAOS_DATABASE_PRIMARY_URL"] = self.url
        return subprocess.run(
            [sys.executable, "-m", "maos_cli.main", *args],
            env=environ,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def start(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``maos start ARGS`` without agents on a free port (foreground unless ``--daemon`` is given)."""
        return self.maos("start", "--agents", "echo=0", "--address", f"127.0.0.1:{free_port()}", *args, **env)

    def serves_then_stops(self, *args: str, **env: str) -> None:
        """``maos start --daemon ARGS`` serves (its health check passes); then ``maos stop``."""
        started = self.maos(
            "-o",
            "json",
            "start",
            "--daemon",
            "--agents",
            "echo=0",
            "--address",
            f"127.0.0.1:{free_port()}",
            "--startup-timeout",
            "60",
            *args,
            **env,
        )
        assert started.returncode == 0, started.stderr
        pid = json.loads(started.stdout)["pid"]
        try:
            stopped = self.maos("stop", "--timeout", "60")
            assert stopped.returncode == 0, stopped.stderr
            assert not alive(pid)
        finally:
            if alive(pid):
                os.kill(pid, 9)


def _admin(postgres_url: str) -> psycopg.Connection:
    url = make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database: no SQLite file yet, or a PostgreSQL database just created (dropped after)."""
    home = tmp_path / "home"
    if request.param == "sqlite":
        yield Database(home)
        return
    postgres_url = request.getfixturevalue("postgres_url")  # the session's server (skip/fail policy included)
    name = f"maos_start_{secrets.token_hex(6)}"
    with _admin(postgres_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield Database(home, make_url(postgres_url).set(database=name).render_as_string(hide_password=False))
    finally:
        with _admin(postgres_url) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_no_migrate_refuses_an_empty_database_until_db_migrate(database: Database) -> None:
    refused = database.start("--no-migrate")
    assert refused.returncode == EXIT_FAILED_PRECONDITION, refused.stderr
    assert "has no MAOS schema: run `maos db migrate`" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert database.tables() == set()  # nothing created (on SQLite, not even the file)
    assert not database.exists() or database.url is not None

    migrated = database.maos("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert database.revision() == HEAD

    database.serves_then_stops("--no-migrate")


def test_an_older_revision_is_refused_and_the_setting_is_the_default(database: Database) -> None:
    database.home.mkdir(parents=True)
    database.run(lambda conn: command.upgrade(alembic_config(conn), PREVIOUS))
    (database.home / "config.yml").write_text("database:\n  migrate_on_start: false\n")

    refused = database.start()  # no flag: database.migrate_on_start (false here) decides
    assert refused.returncode == EXIT_FAILED_PRECONDITION, refused.stderr
    assert (
        f"the database schema is at revision {PREVIOUS}, this version needs {HEAD}: run `maos db migrate`"
        in refused.stderr
    )
    assert database.revision() == PREVIOUS  # left as it was

    by_env = database.start(MAOS_DATABASE_MIGRATE_ON_START="false")
    assert by_env.returncode == EXIT_FAILED_PRECONDITION, by_env.stderr

    database.serves_then_stops("--migrate")  # the flag beats the setting; the daemon gets it too
    assert database.revision() == HEAD


def test_a_revision_this_version_does_not_know_is_refused(database: Database) -> None:
    assert database.maos("db", "migrate").returncode == 0
    database.run(
        lambda conn: conn.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = 'f00d'"))
    )

    refused = database.start("--no-migrate")
    assert refused.returncode == EXIT_FAILED_PRECONDITION, refused.stderr
    assert "at revision f00d, which this version of MAOS does not know" in refused.stderr

    in_background = database.maos(
        "start", "--daemon", "--no-migrate", "--agents", "echo=0", "--address", f"127.0.0.1:{free_port()}"
    )
    assert in_background.returncode != 0
    assert (
        "at revision f00d, which this version of MAOS does not know" in in_background.stderr
    )  # the log's tail
    assert not (database.home / "maos.pid").exists()
