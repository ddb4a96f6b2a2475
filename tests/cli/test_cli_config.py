"""``maos config get/set``: the file and, for runtime settings, the running control plane."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml
from click.testing import CliRunner

from controlplane.app import App
from maos_cli.main import cli


def invoke(home: Path, *args: str):
    return CliRunner().invoke(cli, list(args), env={"MAOS_HOME": str(home)}, catch_exceptions=False)


async def test_set_saves_the_file_and_changes_the_running_server(control_plane: App, tmp_path: Path) -> None:
    home = tmp_path / "cli-home"
    result = await asyncio.to_thread(
        invoke,
        home,
        "--addr",
        control_plane.address,
        "config",
        "set",
        "consensus.voting_strategy",
        "weighted",
    )
    assert result.exit_code == 0, result.output
    assert "applies now" in result.output
    assert yaml.safe_load((home / "config.yml").read_text()) == {"consensus": {"voting_strategy": "weighted"}}
    assert control_plane.engine.setting("consensus.voting_strategy") == "weighted"
    shown = await asyncio.to_thread(
        invoke,
        home,
        "--addr",
        control_plane.address,
        "-o",
        "json",
        "config",
        "get",
        "consensus.voting_strategy",
    )
    assert '"source": "runtime"' in shown.output and '"value": "weighted"' in shown.output


def test_set_of_a_startup_setting_only_writes_the_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yml").write_text("system:\n  log_level: info\n")
    result = invoke(home, "config", "set", "system.max_agents", "20")
    assert result.exit_code == 0, result.output
    assert "at the next start" in result.output
    assert yaml.safe_load((home / "config.yml").read_text())["system"] == {
        "log_level": "info",
        "max_agents": 20,
    }


def test_bad_values_change_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for args, fragment in (
        (("consensus.voting_strategy", "loudest"), "must be one of"),
        (("no.such.key", "1"), "unknown setting"),
    ):
        result = invoke(home, "config", "set", *args)
        assert result.exit_code == 4 and fragment in result.output
    assert not (home / "config.yml").exists()


def test_set_keeps_the_files_comments_and_takes_the_guides_spellings(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yml").write_text(
        "# My settings\nsystem:\n  max_agents: 10  # enough for now\ntasks:\n  default_max_retries: 3\n"
    )
    assert invoke(home, "config", "set", "agents.defaults.max_memory", "2GB").exit_code == 0
    result = invoke(home, "config", "set", "tasks.defaults.max_retries", "2")  # the best practices' name
    assert result.exit_code == 0, result.output
    text = (home / "config.yml").read_text()
    assert text.startswith("# My settings\n") and "max_agents: 10  # enough for now" in text
    data = yaml.safe_load(text)
    assert data["tasks"] == {"default_max_retries": 2}
    assert data["agents"] == {"defaults": {"max_memory": "2GB"}}


def test_an_unknown_key_is_refused_with_the_closest_one(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = invoke(home, "config", "set", "system.max_memry", "8GB")
    assert result.exit_code == 4
    assert "unknown setting 'system.max_memry' (did you mean 'system.max_memory'?)" in result.output
    result = invoke(home, "config", "set", "audit.log_level", "detailed")
    assert result.exit_code == 4 and "unknown setting 'audit.log_level'" in result.output
    assert not (home / "config.yml").exists()
