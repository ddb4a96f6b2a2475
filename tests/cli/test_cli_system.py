"""``maos init``, ``status``, ``health``, ``version`` and ``db migrate``."""

from __future__ import annotations

import json
import sqlite3

import yaml

from controlplane.config import DEFAULT_CONFIG_YML
from maos_cli._errors import EXIT_INVALID_ARGUMENT, EXIT_UNAVAILABLE
from tests.cli.conftest import Maos


async def test_init_creates_files_and_respects_force(offline_maos: Maos) -> None:
    home = offline_maos.home
    result = await offline_maos("init")
    assert result.exit_code == 0, result.output
    assert (home / "config.yml").read_text() == DEFAULT_CONFIG_YML
    assert (home / "agents").is_dir() and (home / "logs").is_dir()
    assert (home / "config.yml").stat().st_mode & 0o077 == 0
    assert str(home / "config.yml") in result.stdout
    credentials = home / "credentials"  # the admin API key the CLI uses by default
    assert credentials.stat().st_mode & 0o777 == 0o600
    assert "token: maos_key_" in credentials.read_text()

    (home / "config.yml").write_text("system:\n  max_agents: 3\n")
    result = await offline_maos("init")
    assert result.exit_code == 0, result.output
    assert (home / "config.yml").read_text() == "system:\n  max_agents: 3\n"
    assert "--force" in result.stderr

    result = await offline_maos("-o", "json", "init", "--force")
    assert result.exit_code == 0, result.output
    assert (home / "config.yml").read_text() == DEFAULT_CONFIG_YML
    assert json.loads(result.stdout)["created"] == [str(home / "config.yml"), str(home / "credentials")]


async def test_db_migrate_on_a_fresh_home(offline_maos: Maos) -> None:
    result = await offline_maos("db", "migrate")
    assert result.exit_code == 0, result.output
    db = offline_maos.home / "maos.db"
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"tasks", "alembic_version"} <= tables
    assert (await offline_maos("db", "migrate")).exit_code == 0  # idempotent


async def test_status(maos: Maos) -> None:
    result = await maos("status")
    assert result.exit_code == 0, result.output
    for text in ("Version:", "Uptime:", "Storage:", "sqlite", "1 connected"):
        assert text in result.stdout

    result = await maos("status", "--detailed", "--resources", "--performance", "--memory", "--system")
    assert result.exit_code == 0, result.output
    for text in ("Subtasks:", "COMPONENT", "Limit system.max_agents:", "Metrics:", "Python:"):
        assert text in result.stdout

    data = yaml.safe_load((await maos("-o", "yaml", "status")).stdout)
    assert data["status"]["storage_backend"] == "sqlite"


async def test_health(maos: Maos) -> None:
    result = await maos("health")
    assert result.exit_code == 0, result.output
    assert "database" in result.stdout and "Overall: HEALTHY" in result.stdout

    data = json.loads(
        (await maos("-o", "json", "health", "--component", "database", "--component", "agents")).stdout
    )
    assert [c["component"] for c in data["components"]] == ["database", "agents"]
    assert data["state"] == "HEALTHY"

    result = await maos("health", "--component", "flux-capacitor")
    assert result.exit_code == EXIT_INVALID_ARGUMENT and "flux-capacitor" in result.stderr


async def test_version(maos: Maos, offline_maos: Maos) -> None:
    result = await maos("-o", "json", "version")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["client"] and data["server"] == data["client"]

    result = await offline_maos("version")
    assert result.exit_code == 0, result.output
    assert "Client:" in result.stdout and "not reachable" in result.stderr


async def test_unreachable_server_is_unavailable(offline_maos: Maos) -> None:
    result = await offline_maos("--timeout", "3", "status")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "cannot reach" in result.stderr and "127.0.0.1:1" in result.stderr
