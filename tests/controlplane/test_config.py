"""Settings: defaults < config.yml < MAOS_* environment < overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.config import DEFAULT_CONFIG_YML, known_options, load_settings, parse_value
from controlplane.errors import InvalidArgument


def test_defaults_and_sources(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, environ={})
    assert settings["system.max_agents"] == 10
    assert settings.source("system.max_agents") == "default"
    assert settings.database_url == f"sqlite:///{tmp_path / 'maos.db'}"


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text("system:\n  max_agents: 12\nconsensus:\n  timeout: 5m\n")
    settings = load_settings(home=tmp_path, environ={"MAOS_SYSTEM_MAX_AGENTS": "20"})
    assert settings["system.max_agents"] == 20 and settings.source("system.max_agents") == "env"
    assert settings["consensus.timeout"] == 300.0 and settings.source("consensus.timeout") == "file"
    overridden = settings.with_overrides({"system.max_agents": 3})
    assert overridden["system.max_agents"] == 3 and overridden.source("system.max_agents") == "override"


def test_environment_references_in_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text(DEFAULT_CONFIG_YML)
    settings = load_settings(home=tmp_path, environ={"CLAUDE_API_KEY": "sk-test"})
    assert settings["claude.api_key"] == "sk-test"
    assert settings["agents.pool"] == {"echo": 2}


def test_postgres_urls_use_psycopg(tmp_path: Path) -> None:
    settings = load_settings(
        home=tmp_path, environ={"MAOS_DATABASE_PRIMARY_URL": "postgresql://u@h:5432/maos"}
    )
    assert settings.database_url == "postgresql+psycopg://u@h:5432/maos"


def test_synchronous_commit_off_adds_a_server_option_to_postgres_urls_only(tmp_path: Path) -> None:
    off = {"MAOS_DATABASE_SYNCHRONOUS_COMMIT": "off"}
    url = "postgresql://u@h:5432/maos?sslmode=require&options=-c%20search_path%3Dx"
    settings = load_settings(home=tmp_path, environ={**off, "MAOS_DATABASE_PRIMARY_URL": url})
    assert settings.database_url == (
        "postgresql+psycopg://u@h:5432/maos?sslmode=require"
        "&options=-c%20search_path%3Dx%20-c%20synchronous_commit%3Doff"
    )
    assert load_settings(home=tmp_path, environ=off).database_url == f"sqlite:///{tmp_path / 'maos.db'}"
    default = load_settings(home=tmp_path, environ={"MAOS_DATABASE_PRIMARY_URL": url})
    assert "synchronous_commit" not in default.database_url


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("system.max_agents", "0", "at least 1"),
        ("scheduler.lease_ttl", "soon", "not a duration"),
        ("consensus.voting_strategy", "loudest", "must be one of"),
        ("agents.pool", "echo=x", "invalid literal"),
        ("nope.key", "1", "unknown setting"),
        ("claude.web.allowed_domains", "example.com, not a domain!", "not a domain name"),
        ("claude.tools.max_turns", "0", "at least 1"),
        ("agents.allow_exec", "maybe", "not a boolean"),
    ],
)
def test_bad_values_are_rejected_with_the_key(key: str, value: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_value(key, value, known_options())


def test_a_bad_environment_value_fails_loading(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="server.metrics_port"):
        load_settings(home=tmp_path, environ={"MAOS_SERVER_METRICS_PORT": "-5"})


def test_a_replica_id_with_the_reserved_prefix_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(
        InvalidArgument, match="server.replica_id: '~leaving:a' starts with '~', the reserved prefix"
    ):
        load_settings(home=tmp_path, environ={"MAOS_SERVER_REPLICA_ID": "~leaving:a"})
    assert parse_value("server.replica_id", "cp-a~1", known_options()) == "cp-a~1"  # elsewhere: allowed


def test_pool_syntax() -> None:
    assert parse_value("agents.pool", "researcher=2, coder=1,echo") == {
        "researcher": 2,
        "coder": 1,
        "echo": 1,
    }


def test_unknown_keys_of_the_file_load_with_a_warning_naming_them(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text("system:\n  max_agents: 12\n  max_memry: 8GB\nfancy:\n  knob: 1\n")
    settings = load_settings(home=tmp_path, environ={})
    assert settings["system.max_agents"] == 12
    assert len(settings.warnings) == 2
    assert (
        "unknown setting 'system.max_memry' ignored (did you mean 'system.max_memory'?)"
        in settings.warnings[0]
    )
    assert "'fancy.knob'" in settings.warnings[1] and "did you mean" not in settings.warnings[1]


def test_the_guides_settings(tmp_path: Path) -> None:
    (tmp_path / "config.yml").write_text(
        "system:\n  max_memory: 8GB\n  max_cpu_cores: 1.5\n  max_concurrent_tasks: 20\n"
        "agents:\n  defaults:\n    max_memory: 512MiB\n"
        "tasks:\n  defaults:\n    max_retries: 2\naudit:\n  retention_days: 90\n"
    )
    settings = load_settings(home=tmp_path, environ={})
    assert not settings.warnings
    assert (
        settings["system.max_memory"] == 8 * 10**9 and settings["agents.defaults.max_memory"] == 512 * 2**20
    )
    assert settings["system.max_cpu_cores"] == 1.5 and settings["system.max_concurrent_tasks"] == 20
    assert settings["tasks.default_max_retries"] == 2 and settings["audit.retention_days"] == 90


@pytest.mark.parametrize("size", ["lots", "-1GB", "1.5XB", "true"])
def test_a_bad_size_is_refused(tmp_path: Path, size: str) -> None:
    with pytest.raises(InvalidArgument, match="agents.defaults.max_memory"):
        load_settings(home=tmp_path, environ={}, overrides={"agents.defaults.max_memory": size})
