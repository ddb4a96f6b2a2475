"""The plugin of docs/plugins.md, installed as a plugin author would, through the real CLI and a real server.

The plugin (an agent type, a tryfirst planner, two settings and a command) is
taken from the guide as written and installed into a temporary directory with
its dist-info (see :mod:`tests.plugins.sites`); only the processes and the
tests given that directory see it.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from maos_cli.main import cli
from tests.controlplane.api.test_task_service import results, submit, wait_status
from tests.harness.server import Stubs, make_settings, start_app, wait_for_agents
from tests.plugins.sites import ROOT, guide_files, install, maos

PLUGIN = "tickets_plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guide's tickets plugin, installed in a directory of its own."""
    files = guide_files()
    return install(
        tmp_path_factory.mktemp("tickets-site"),
        "maos-plugin-tickets",
        {"tickets": PLUGIN},
        {"tickets_plugin/__init__.py": files["tickets_plugin/__init__.py"]},
    )


@pytest.fixture
def on_path(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The plugin is importable and its entry point found, in this process and the agents it starts."""
    monkeypatch.syspath_prepend(str(site))  # also invalidates importlib's (metadata) caches
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(ROOT)]))
    try:
        yield site
    finally:
        for name in [n for n in sys.modules if n == PLUGIN or n.startswith(PLUGIN + ".")]:
            del sys.modules[name]
        importlib.invalidate_caches()


@pytest.mark.slow
def test_the_cli_lists_it_and_runs_its_command_with_its_settings(site: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    listed = maos(site, home, "plugins", "list", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    tickets = next(p for p in data["plugins"] if p["name"] == "tickets")
    assert tickets == {
        "name": "tickets",
        "source": "entry point",
        "distribution": "maos-plugin-tickets",
        "version": "0.1.0",
        "module": PLUGIN,
        "hooks": ["register_agent_types", "register_commands", "register_planners", "register_settings"],
        "agent_types": ["shouter"],
        "planners": ["tickets"],
        "storage_backends": [],
        "settings": ["tickets.prefix", "tickets.max_items"],
        "commands": ["tickets"],
    }
    assert data["problems"] == []
    text = maos(site, home, "plugins", "list")
    assert "Settings:     tickets.prefix, tickets.max_items" in text.stdout
    assert "Commands:     tickets" in text.stdout

    # The command, with the settings' defaults, config.yml and the environment.
    assert maos(site, home, "tickets").stdout == "TICKET 3\n"
    (home / "config.yml").write_text("tickets:\n  prefix: BUG\nnonsense:\n  knob: 1\n")
    assert maos(site, home, "tickets").stdout == "BUG 3\n"
    assert maos(site, home, "tickets", MAOS_TICKETS_MAX_ITEMS="5").stdout == "BUG 5\n"
    helped = maos(site, home, "--help")
    assert helped.returncode == 0 and "Show the ticket planner's settings." in helped.stdout

    # A section no plugin registers is a warning, shown where the plugins are.
    problems = json.loads(maos(site, home, "plugins", "list", "-o", "json").stdout)["problems"]
    assert problems == [
        f"{home / 'config.yml'}: unknown setting 'nonsense.knob' ignored: no installed "
        "plugin registers settings in the section 'nonsense' (`maos plugins list` shows the "
        "sections plugins register)"
    ]

    # maos config set checks and writes the plugin's settings like MAOS's own.
    before = (home / "config.yml").read_text()
    refused = maos(site, home, "config", "set", "tickets.max_items", "0")
    assert refused.returncode == 4, refused.stderr
    assert "tickets.max_items: must be at least 1" in refused.stderr
    assert (home / "config.yml").read_text() == before
    written = maos(site, home, "config", "set", "tickets.max_items", "2")
    assert written.returncode == 0, written.stderr
    assert maos(site, home, "tickets").stdout == "BUG 2\n"
    misspelt = maos(site, home, "config", "set", "tickets.max_item", "2")
    assert misspelt.returncode == 4 and "did you mean 'tickets.max_items'?" in misspelt.stderr


def test_a_bad_value_of_a_plugin_setting_stops_the_start_naming_it(site: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.yml").write_text("tickets:\n  max_items: many\n")
    started = maos(site, home, "start", "--address", "127.0.0.1:0")
    assert started.returncode == 4, started.stderr
    assert "tickets.max_items" in started.stderr and "Traceback" not in started.stderr
    assert not (home / "maos.pid").exists()


def test_without_the_plugin_its_section_is_only_a_warning(tmp_path: Path) -> None:
    from controlplane.config import load_settings

    (tmp_path / "config.yml").write_text("tickets:\n  prefix: BUG\n")
    settings = load_settings(home=tmp_path, environ={})
    [warning] = settings.warnings
    assert (
        "unknown setting 'tickets.prefix' ignored: no installed plugin registers settings in the "
        "section 'tickets'"
    ) in warning


async def test_its_planner_goes_first_and_its_agent_runs_the_steps(
    on_path: Path, maos_home: Path, agent_processes
) -> None:
    # A Claude key makes the model planner accept every task: the plugin's planner is tryfirst.
    settings = make_settings(
        maos_home,
        **{
            "tickets.prefix": "BUG",
            "claude.api_key": "sk-ant-unused",
            "claude.base_url": "http://127.0.0.1:9",
        },
    )
    app = await start_app(settings)
    stubs = Stubs(app.address)
    env = {
        "MAOS_HOME": str(maos_home),
        "MAOS_SERVER_ADDRESS": app.address,
        "NO_COLOR": "1",
        "MAOS_ADDR": None,
        "MAOS_TOKEN": None,
        "MAOS_OUTPUT": None,
    }
    runner = CliRunner()
    try:
        shown = await asyncio.to_thread(
            runner.invoke, cli, ["config", "get", "tickets.prefix", "-o", "json"], env=env, prog_name="maos"
        )
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout) == [
            {
                "key": "tickets.prefix",
                "value": "BUG",
                "source": "override",
                "description": "Prefix of the steps the ticket planner makes.",
            }
        ]
        everything = await asyncio.to_thread(
            runner.invoke, cli, ["config", "get", "-o", "json"], env=env, prog_name="maos"
        )
        keys = [v["key"] for v in json.loads(everything.stdout)]
        assert {"tickets.max_items", "claude.model", "server.address"} <= set(keys)

        analyzed = await asyncio.to_thread(
            runner.invoke,
            cli,
            ["task", "analyze", "Fix the login page", "--metadata", "tickets=101,102,103,104", "-o", "json"],
            env=env,
            prog_name="maos",
        )
        assert analyzed.exit_code == 0, analyzed.output
        plan = json.loads(analyzed.stdout)
        assert plan["planner"] == "tickets"
        # Three: tickets.max_items.
        assert [s["title"] for s in plan["subtasks"]] == ["BUG-101", "BUG-102", "BUG-103"]
        # Unlabelled, the task goes to the model planner, whose unreachable API is retried with
        # backoff before the deterministic fallback: more than the CLI's default 10 s on a busy machine.
        unlabelled = await asyncio.to_thread(
            runner.invoke,
            cli,
            ["--timeout", "90", "task", "analyze", "Fix it", "-o", "json"],
            env=env,
            prog_name="maos",
        )
        assert unlabelled.exit_code == 0, unlabelled.output
        assert json.loads(unlabelled.stdout)["planner"] != "tickets"

        agent_processes(app.address, "shouter", home=maos_home)  # maos-agent finds the type by entry point
        await wait_for_agents(app, 1, timeout=25)
        task = await submit(stubs, "fix the login page", metadata={"tickets": "7"})
        done = await wait_status(
            stubs, task.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED, timeout=20
        )
        assert done.status == enums.TASK_STATUS_COMPLETED, done
        assert (await results(stubs, task.name)).output == "BUG-7: FIX THE LOGIN PAGE"
    finally:
        await stubs.close()
        await app.stop(grace=1.0)


def test_the_guides_tests_of_the_plugin_pass_as_an_author_runs_them(site: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_tickets.py").write_text(guide_files()["test_tickets.py"])
    (project / "pytest.ini").write_text(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAOS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_tickets.py"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout
