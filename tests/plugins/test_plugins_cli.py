"""``maos plugins list``: the local plugin manager, no server needed."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from controlplane import hookimpl
from controlplane.plugins import get_plugin_manager
from maos_cli.main import cli
from maos_cli.plugins import inspect_plugins
from tests.harness.server import make_settings

_CLEARED = ["MAOS_TOKEN", "MAOS_OUTPUT", "MAOS_AGENTS_ALLOW_SHELL", "NO_COLOR"]


def maos(home: Path, *args: str):
    """``maos ARGS`` with MAOS_HOME=home and a closed server port (nothing may call it)."""
    env = dict.fromkeys(_CLEARED)
    env.update({"MAOS_HOME": str(home), "MAOS_ADDR": "127.0.0.1:1", "NO_COLOR": "1"})
    return CliRunner().invoke(cli, list(args), env=env, prog_name="maos")


def write(home: Path, name: str, text: str) -> None:
    (home / "agents").mkdir(parents=True, exist_ok=True)
    (home / "agents" / name).write_text(text)


def test_lists_the_builtins_their_hooks_and_what_they_provide(tmp_path: Path) -> None:
    result = maos(tmp_path, "plugins", "list", "-o", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    plugins = {p["name"]: p for p in data["plugins"]}
    builtin = plugins["controlplane.builtin_plugin"]
    assert builtin["source"] == "built-in"
    assert builtin["hooks"] == ["register_agent_types", "register_planners"]
    assert builtin["agent_types"] == ["echo", "noop", "python", "shell", "sleep"]
    assert builtin["planners"] == ["deterministic"]
    storage = plugins["controlplane.storage.sql.plugin"]
    assert (storage["hooks"], storage["storage_backends"]) == (["register_storage_backends"], ["sqlalchemy"])
    assert data["custom_agent_types"] == {"directory": str(tmp_path / "agents"), "types": []}
    assert data["problems"] == []


def test_custom_types_and_broken_files_are_shown(tmp_path: Path) -> None:
    write(tmp_path, "good.yml", "name: domain_researcher\ntype: echo\ncapabilities: [papers]\n")
    write(tmp_path, "bad.yml", "name: broken\ntype: nothing_like_it\n")
    result = maos(tmp_path, "plugins", "list", "-o", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["custom_agent_types"]["types"] == [
        {
            "name": "domain_researcher",
            "base_type": "echo",
            "capabilities": ["papers"],
            "file": str(tmp_path / "agents" / "good.yml"),
            "unavailable": "",
            "warnings": [],
        }
    ]
    [problem] = data["problems"]
    assert problem.startswith(f"{tmp_path / 'agents' / 'bad.yml'}: unknown base type 'nothing_like_it'")
    # Custom types are not attributed to the built-in plugin that loads them.
    builtin = next(p for p in data["plugins"] if p["name"] == "controlplane.builtin_plugin")
    assert "domain_researcher" not in builtin["agent_types"]

    text = maos(tmp_path, "plugins", "list")
    assert text.exit_code == 0, text.output
    assert "controlplane.builtin_plugin (built-in)" in text.stdout
    assert "Agent types:  echo, noop, python, shell, sleep" in text.stdout
    assert f"domain_researcher (base echo): {tmp_path / 'agents' / 'good.yml'}" in text.stdout
    assert "Problems\n" in text.stdout and "unknown base type 'nothing_like_it'" in text.stdout
    assert "custom agent type skipped" not in text.output  # shown once, as a problem, not logged too


def test_a_plugin_registered_at_runtime_and_its_failures(tmp_path: Path) -> None:
    class Good:
        @hookimpl
        def register_planners(self, settings):
            class Planner:
                name = "tiny"

            return [Planner()]

    class Broken:
        @hookimpl
        def register_agent_types(self):
            raise RuntimeError("boom")

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Good(), name="good-plugin")
    pm.register(Broken(), name="broken-plugin")
    data = inspect_plugins(pm, make_settings(tmp_path))
    plugins = {p["name"]: p for p in data["plugins"]}
    assert plugins["good-plugin"]["source"] == "registered at runtime"
    assert plugins["good-plugin"]["planners"] == ["tiny"]
    assert plugins["broken-plugin"]["hooks"] == ["register_agent_types"]
    assert "plugin broken-plugin: register_agent_types failed: RuntimeError: boom" in data["problems"]
    # Plugins first, built-ins last (the order hooks call them).
    assert [p["source"] for p in data["plugins"]][-2:] == ["built-in", "built-in"]


def test_help_lists_the_group() -> None:
    result = CliRunner().invoke(cli, ["--help"], prog_name="maos")
    assert "plugins" in result.stdout
