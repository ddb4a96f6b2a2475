"""examples/maos-plugin-example, installed like a third-party plugin, found through its ``maos`` entry point.

The package is pip-installed (``--no-deps --target``) into a temporary
directory, never into the environment: it is visible only to the tests that
put that directory on ``sys.path`` (and on ``PYTHONPATH`` for the agent
processes they start), so other tests and concurrent runs never see it.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.testing import AgentEnvironment
from controlplane.agent_types import agent_types
from controlplane.plugins import get_plugin_manager
from maos_cli.main import cli
from tests.controlplane.api.test_task_service import results, submit, wait_status
from tests.harness.server import Stubs, make_settings, start_app, wait_for_agents

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "maos-plugin-example"
PROCESS_START = 25.0


@pytest.fixture(scope="module")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the installed example (package + dist-info with its entry points)."""
    root = tmp_path_factory.mktemp("plugin-example")
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    source = shutil.copytree(EXAMPLE, root / "src", ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = root / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (site / "maos_plugin_example" / "__init__.py").exists()
    return site


@pytest.fixture
def installed(example_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The example is importable and its entry point discoverable, for this test only."""
    assert "example" not in dict(get_plugin_manager().list_name_plugin()), (
        "maos-plugin-example is installed in the environment; uninstall it"
    )
    monkeypatch.syspath_prepend(str(example_site))  # also invalidates importlib's (metadata) caches
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(example_site), os.environ.get("PYTHONPATH")]))
    )
    try:
        yield example_site
    finally:
        for name in list(sys.modules):
            if name == "maos_plugin_example" or name.startswith("maos_plugin_example."):
                del sys.modules[name]
        importlib.invalidate_caches()


def test_the_plugin_manager_loads_it_from_its_entry_point(installed: Path, tmp_path: Path) -> None:
    pm = get_plugin_manager()
    plugin = pm.get_plugin("example")
    assert plugin is not None and plugin.__name__ == "maos_plugin_example"
    [(_, dist)] = [(p, d) for p, d in pm.list_plugin_distinfo() if p is plugin]
    assert (dist.project_name, dist.version) == ("maos-plugin-example", "0.1.0")

    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "backwards.yml").write_text("name: backwards\ntype: reverser\n")
    known = agent_types(pm, make_settings(tmp_path))
    assert known["reverser"].source == "maos-plugin-example"
    assert known["backwards"].base_type == "reverser"  # custom types can build on a plugin's types
    assert known["echo"].source == "builtin"


async def test_its_agent_in_an_agent_environment(installed: Path) -> None:
    from maos_plugin_example import ReverserAgent

    env = AgentEnvironment()
    assert (await env.run(ReverserAgent(), "abc")).output == "cba"


def test_maos_plugins_list_shows_it(installed: Path, tmp_path: Path) -> None:
    env = {"MAOS_HOME": str(tmp_path), "MAOS_ADDR": "127.0.0.1:1", "NO_COLOR": "1", "MAOS_OUTPUT": None}
    result = CliRunner().invoke(cli, ["plugins", "list", "-o", "json"], env=env, prog_name="maos")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    example = next(p for p in data["plugins"] if p["name"] == "example")
    assert example == {
        "name": "example",
        "source": "entry point",
        "distribution": "maos-plugin-example",
        "version": "0.1.0",
        "module": "maos_plugin_example",
        "hooks": ["register_agent_types"],
        "agent_types": ["reverser"],
        "planners": [],
        "storage_backends": [],
    }
    order = [p["name"] for p in data["plugins"]]
    # Plugins first, in the order hooks call them.
    assert order.index("example") < order.index("controlplane.builtin_plugin")
    text = CliRunner().invoke(cli, ["plugins", "list"], env=env, prog_name="maos")
    assert "example (maos-plugin-example 0.1.0, entry point)" in text.stdout
    assert "Agent types:  reverser" in text.stdout


async def test_a_task_runs_end_to_end_on_a_reverser_agent_process(
    installed: Path, maos_home: Path, agent_processes
) -> None:
    app = await start_app(make_settings(maos_home))  # build_app loads the installed plugins
    stubs = Stubs(app.address)
    try:
        listed = await stubs.agents.ListAgentTypes(agents_pb.ListAgentTypesRequest(), timeout=5)
        reverser = next(t for t in listed.agent_types if t.name == "reverser")
        assert reverser.source == "maos-plugin-example"

        agent_processes(app.address, "reverser", home=maos_home)  # maos-agent run --type reverser
        await wait_for_agents(app, 1, timeout=PROCESS_START)
        [session] = app.engine.sessions.values()
        assert session.info.agent_type == "reverser"

        task = await submit(stubs, "hello world", agent_type="reverser")
        done = await wait_status(
            stubs, task.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED, timeout=20
        )
        assert done.status == enums.TASK_STATUS_COMPLETED, done
        assert (await results(stubs, task.name)).output == "dlrow olleh"
    finally:
        await stubs.close()
        await app.stop(grace=1.0)
