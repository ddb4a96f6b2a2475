"""One broken installed plugin is skipped with a warning; MAOS, its CLI and its agents go on.

Installed next to a sound plugin (the ``whisperer`` agent type): one with a
misspelt hook, one whose module cannot be imported, one whose hooks raise,
and one whose settings use a section of MAOS's own.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.harness.server import alive, free_port
from tests.plugins.sites import install, maos

SOUND = """
from agent_sdk import Agent, AgentTypeSpec
from controlplane import hookimpl


class Whisperer(Agent):
    agent_type = "whisperer"
    capabilities = ["whisper"]

    async def handle(self, ctx):
        return ctx.assignment.instructions.lower()


@hookimpl
def register_agent_types(settings):
    return [AgentTypeSpec(name="whisperer", capabilities=("whisper",), description="Answers quietly.",
                          factory=lambda parameters: Whisperer(), source="maos-plugin-sound")]
"""

MISSPELT = """
from controlplane import hookimpl


@hookimpl
def register_agent_type(settings):
    return []
"""

MISSING = """
import a_module_nobody_installed  # noqa: F401
"""

RAISING = """
from controlplane import hookimpl


@hookimpl
def register_agent_types(settings):
    raise RuntimeError("no licence")


@hookimpl
def register_commands(cli):
    raise RuntimeError("no commands today")
"""

TRESPASSING = """
from controlplane import hookimpl
from controlplane.config import Option, parse_text


@hookimpl
def register_settings():
    return [Option("server.colour", parse_text, "blue", "Not this plugin's section.")]
"""

SQUATTING = """
import click

from controlplane import hookimpl


@hookimpl
def register_commands(cli):
    @cli.command("status")
    def status():
        click.echo("not MAOS's status")

    @click.command("task")
    def task():
        click.echo("not MAOS's task")

    @click.command("squat")
    def squat():
        click.echo("squatting")

    return [task, squat]
"""

EXPECTED_PROBLEMS = [
    "plugin missing skipped: ModuleNotFoundError: No module named 'a_module_nobody_installed'",
    "plugin misspelt skipped: unknown hook 'register_agent_type' (did you mean 'register_agent_types'?); "
    "docs/plugin_hooks.md lists the hooks",
    "plugin trespassing: its settings are left out: setting 'server.colour' is in the section 'server', "
    "which is MAOS's own",
    "plugin raising: register_agent_types failed (RuntimeError: no licence); what it registers is left out",
    "plugin raising: register_commands failed (RuntimeError: no commands today); what it registers is "
    "left out",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("broken-site")
    install(root, "maos-plugin-sound", {"sound": "sound_plugin"}, {"sound_plugin.py": SOUND})
    install(root, "maos-plugin-misspelt", {"misspelt": "misspelt_plugin"}, {"misspelt_plugin.py": MISSPELT})
    install(root, "maos-plugin-missing", {"missing": "missing_plugin"}, {"missing_plugin.py": MISSING})
    install(root, "maos-plugin-raising", {"raising": "raising_plugin"}, {"raising_plugin.py": RAISING})
    install(
        root,
        "maos-plugin-trespassing",
        {"trespassing": "trespassing_plugin"},
        {"trespassing_plugin.py": TRESPASSING},
    )
    install(
        root, "maos-plugin-squatting", {"squatting": "squatting_plugin"}, {"squatting_plugin.py": SQUATTING}
    )
    return root


def test_maos_plugins_list_reports_each_and_lists_the_rest(site: Path, tmp_path: Path) -> None:
    listed = maos(site, tmp_path, "plugins", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
    data = json.loads(listed.stdout)
    assert sorted(data["problems"]) == sorted(EXPECTED_PROBLEMS)
    plugins = {p["name"]: p for p in data["plugins"]}
    assert plugins["sound"]["agent_types"] == ["whisperer"]
    assert "misspelt" not in plugins and "missing" not in plugins  # skipped
    assert plugins["raising"]["agent_types"] == []
    assert "settings" not in plugins["trespassing"]

    text = maos(site, tmp_path, "plugins", "list")
    assert text.returncode == 0 and "Problems\n" in text.stdout
    assert "plugin misspelt skipped: unknown hook 'register_agent_type'" in text.stdout


def test_the_command_line_works_and_says_what_it_left_out(site: Path, tmp_path: Path) -> None:
    helped = maos(site, tmp_path, "--help")  # lists the commands: every plugin's register_commands runs
    assert helped.returncode == 0, helped.stderr
    assert "task" in helped.stdout and "Traceback" not in helped.stderr
    assert "register_commands failed (RuntimeError: no commands today)" in helped.stderr
    squat = maos(site, tmp_path, "squat")  # a plugin's own command runs
    assert squat.returncode == 0 and squat.stdout == "squatting\n"
    assert "command 'task' left out: maos already has a command of that name" in squat.stderr
    assert "command 'status' left out: maos already has a command of that name" in squat.stderr
    task = maos(site, tmp_path, "task", "--help")  # MAOS's own, never replaced
    assert task.returncode == 0 and "submit" in task.stdout
    unknown = maos(site, tmp_path, "frobnicate")
    assert unknown.returncode == 2 and "No such command 'frobnicate'" in unknown.stderr
    assert "Traceback" not in unknown.stderr


@pytest.mark.slow
def test_maos_start_and_its_agents_run_a_task_despite_them(site: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    address = f"127.0.0.1:{free_port()}"
    assert maos(site, home, "init").returncode == 0
    started = maos(
        site,
        home,
        "-o",
        "json",
        "start",
        "--daemon",
        "--address",
        address,
        "--agents",
        "whisperer=1",
        "--startup-timeout",
        "60",
    )
    assert started.returncode == 0, started.stderr
    pid = json.loads(started.stdout)["pid"]
    try:
        assert "Traceback" not in started.stderr
        assert len(started.stderr.splitlines()) <= 2 * len(EXPECTED_PROBLEMS), started.stderr
        deadline = time.monotonic() + 60
        while True:
            listed = maos(site, home, "--addr", address, "-o", "json", "agent", "list")
            agents = json.loads(listed.stdout)["agents"] if listed.returncode == 0 else []
            if any(a.get("agent_type") == "whisperer" for a in agents):
                break
            assert time.monotonic() < deadline, f"no whisperer agent registered: {agents}"
            time.sleep(0.3)
        done = maos(
            site,
            home,
            "--addr",
            address,
            "task",
            "submit",
            "--wait",
            "--timeout",
            "60",
            "--agent-type",
            "whisperer",
            "SPEAK SOFTLY",
        )
        assert done.returncode == 0, done.stderr
        assert "speak softly" in done.stdout
        logs = home / "logs"
        agent_logs = [p.read_text() for p in logs.glob("agent-whisperer-*.log")]
        assert agent_logs and not any("Traceback" in text for text in agent_logs)
        assert "Traceback" not in (logs / "controlplane.log").read_text()
        assert "plugin misspelt skipped" in (logs / "controlplane.log").read_text()
    finally:
        stopped = maos(site, home, "stop", "--timeout", "60")
        if alive(pid):
            os.kill(pid, 9)
        assert stopped.returncode == 0, stopped.stderr
