"""Custom types with MCP servers: checked at load, reported by `maos agent types` and `maos plugins list`
through the real CLI and server, refused tasks, and a real agent process that starts and ends its server."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import maos_plugins.claude.plugin as claude_plugin
from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from controlplane.app import App
from controlplane.custom_agents import custom_agent_types
from controlplane.plugins import get_plugin_manager
from maos_plugins.claude.tools.sources import PROBES
from tests.cli.conftest import Maos
from tests.controlplane.api.test_task_service import submit, wait_status
from tests.harness.server import Stubs, alive, make_settings, wait_for, wait_for_agents

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-ant-test-key"
PROCESS_START = 25.0

#: The guide's example, as written (a researcher with `specialized_tools` under `parameters`).
GUIDE_DOMAIN_RESEARCHER = """\
# ~/.maos/agents/custom_researcher.yml
name: "domain_researcher"
type: "researcher"
capabilities:
  - "scientific_literature"
  - "patent_research"
  - "academic_databases"
parameters:
  max_memory: "2GB"
  timeout: 7200
  specialized_tools:
    - "pubmed_search"
    - "arxiv_search"
    - "patent_db_access"
"""

GUIDE_WARNING = (
    "specialized_tools: no built-in tool or MCP server of this type offers pubmed_search, "
    "arxiv_search, patent_db_access; its agents run without them"
)


def write(home: Path, name: str, text: str) -> Path:
    path = home / "agents" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def fact_researcher(command: list[str], extra: str = "") -> str:
    """A researcher type whose MCP server runs ``command`` (a key in its parameters: it can run)."""
    return (
        textwrap.dedent(f"""\
        name: fact_researcher
        type: researcher
        parameters: {{api_key: {KEY}, base_url: "http://127.0.0.1:9"}}
        mcp_servers:
          - name: facts
            command: {json.dumps(command)}
            env: {{PYTHONPATH: {json.dumps(str(ROOT))}}}
            cwd: {json.dumps(str(ROOT))}
        specialized_tools: [lookup_fact]
        """)
        + extra
    )


def problems_of(home: Path) -> dict[str, str]:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(claude_plugin, name="claude")
    found = custom_agent_types(pm, make_settings(home))
    return {p.path.name: p.message for p in found.problems}


def test_bad_tool_settings_skip_the_file_with_the_reason(tmp_path: Path) -> None:
    write(
        tmp_path,
        "typo.yml",
        """\
        name: typo
        type: researcher
        mcp_servers:
          - {name: facts, comand: [python, facts.py]}
        """,
    )
    write(
        tmp_path,
        "both.yml",
        """\
        name: both
        type: researcher
        mcp_servers: [{name: facts, url: "http://127.0.0.1:8123/mcp", command: [x]}]
        """,
    )
    write(tmp_path, "offline.yml", "name: offline\ntype: echo\nmcp_servers: [{name: f, command: [x]}]\n")
    write(
        tmp_path,
        "twice.yml",
        """\
        name: twice
        type: researcher
        specialized_tools: [a]
        parameters: {specialized_tools: [b]}
        """,
    )
    write(tmp_path, "names.yml", "name: names\ntype: coder\nspecialized_tools: lookup_fact\n")
    write(
        tmp_path,
        "fine.yml",
        "name: fine\ntype: researcher\nmcp_servers: [{name: f, url: 'http://127.0.0.1:9/mcp'}]\n",
    )
    problems = problems_of(tmp_path)
    assert problems == {
        "typo.yml": "mcp_servers[0]: unknown field(s) comand; allowed: name, command, env, cwd, url, "
        "startup_timeout, call_timeout",
        "both.yml": "mcp_servers[0] (facts): give either `command` (a stdio server) or `url` (streamable HTTP), "
        "not both",
        "offline.yml": "`mcp_servers` needs a model-backed base type: agents of 'echo' run no model, so they use "
        "no tools",
        "twice.yml": "`specialized_tools` is given both at the top level and under `parameters`; keep one",
        "names.yml": "`specialized_tools` must be a list of tool names",
    }


async def test_a_bad_mcp_command_is_reported_at_load_and_fails_the_types_tasks(
    control_plane: App, stubs: Stubs, maos_home: Path
) -> None:
    PROBES.clear()
    write(maos_home, "fact_researcher.yml", fact_researcher(["/nonexistent/facts-server", "--stdio"]))
    write(maos_home, "guide.yml", GUIDE_DOMAIN_RESEARCHER)
    maos = Maos(control_plane.address, maos_home)
    reason = (
        "MCP server 'facts' (/nonexistent/facts-server --stdio) cannot be started: "
        "No such file or directory: /nonexistent/facts-server"
    )

    listed = await maos("agent", "types")
    assert listed.exit_code == 0, listed.output
    assert f"note: fact_researcher cannot run here: {reason}" in listed.stderr, listed.output
    assert f"warning: domain_researcher: {GUIDE_WARNING}" in listed.stderr
    assert "skipped" not in listed.stderr  # both files load
    as_json = json.loads((await maos("agent", "types", "-o", "json")).stdout)
    types = {t["name"]: t for t in as_json["agent_types"]}
    assert types["fact_researcher"]["unavailable_reason"] == reason
    assert not types["fact_researcher"].get("spawnable")
    assert types["domain_researcher"]["warnings"] == [GUIDE_WARNING]
    assert types["researcher"].get("warnings", []) == []
    assert as_json["problems"] == []

    plugins = await maos("plugins", "list")
    assert plugins.exit_code == 0, plugins.output
    assert (
        f"fact_researcher (base researcher): {maos_home / 'agents' / 'fact_researcher.yml'}\n"
        f"    cannot run here: {reason}" in plugins.stdout
    )
    assert f"    warning: {GUIDE_WARNING}" in plugins.stdout
    data = json.loads((await maos("plugins", "list", "-o", "json")).stdout)
    custom = {t["name"]: t for t in data["custom_agent_types"]["types"]}
    assert custom["fact_researcher"]["unavailable"] == reason and custom["fact_researcher"]["warnings"] == []
    assert custom["domain_researcher"]["warnings"] == [GUIDE_WARNING]

    # A task addressed to the type fails at once with the reason, instead of running without its tools.
    task = await submit(stubs, "Look up the height of Everest", agent_type="fact_researcher")
    done = await wait_status(
        stubs, task.name, enums.TASK_STATUS_FAILED, enums.TASK_STATUS_COMPLETED, timeout=20
    )
    assert done.status == enums.TASK_STATUS_FAILED
    assert reason in done.failure.message, done.failure
    spawned = await maos("agent", "spawn", "fact_researcher")
    assert spawned.exit_code == 5 and reason in spawned.stderr, spawned.output


async def test_a_crashing_server_is_reported_with_its_stderr(
    control_plane: App, stubs: Stubs, maos_home: Path
) -> None:
    PROBES.clear()
    write(
        maos_home,
        "fact_researcher.yml",
        fact_researcher([sys.executable, "-m", "tests.harness.mcp_facts", "--crash"]),
    )

    async def checked() -> agents_pb.AgentType | None:
        """The type once its server's probe answered (a slow machine may need more than one call)."""
        listed = await stubs.agents.ListAgentTypes(agents_pb.ListAgentTypesRequest(), timeout=10)
        [custom] = [t for t in listed.agent_types if t.name == "fact_researcher"]
        return custom if custom.unavailable_reason else None

    custom = await wait_for(checked, 30, interval=0.2, message="the server's probe")
    assert "exited or closed the connection" in custom.unavailable_reason
    assert custom.unavailable_reason.endswith("its stderr: facts: cannot open the facts database")
    assert str(ROOT) not in custom.unavailable_reason.replace(sys.executable, "")  # only what the file says


async def test_an_agent_process_starts_its_server_and_ends_it(
    control_plane: App, stubs: Stubs, maos_home: Path, agent_processes
) -> None:
    PROBES.clear()
    write(
        maos_home,
        "fact_researcher.yml",
        fact_researcher([sys.executable, "-m", "tests.harness.mcp_facts", "--tag", str(maos_home)]),
    )

    async def checked() -> Any:
        listed = await Maos(control_plane.address, maos_home)("agent", "types")
        return None if "still being checked" in listed.stderr else listed

    listed = await wait_for(checked, 30, interval=0.2, message="the server's probe")
    assert "fact_researcher" in listed.stdout and "fact_researcher cannot run" not in listed.stderr, (
        listed.output
    )
    assert "warning:" not in listed.stderr  # lookup_fact is offered by the server

    agent = agent_processes(control_plane.address, "fact_researcher", home=maos_home)
    await wait_for_agents(control_plane, 1, timeout=PROCESS_START)

    def servers() -> list[int]:
        """The test server processes this test's agent started (tagged with its MAOS_HOME)."""
        found = []
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if (
                str(maos_home).encode() in argv
                and b"tests.harness.mcp_facts" in argv
                and alive(int(entry.name))
            ):
                found.append(int(entry.name))
        return found

    [server] = await wait_for(servers, 10, message="the agent's MCP server")  # started at warm-up
    assert int(Path(f"/proc/{server}/stat").read_text().rsplit(")", 1)[1].split()[1]) == agent.pid
    os.kill(agent.pid, signal.SIGTERM)  # a graceful stop closes the agent, and its tool sources
    await wait_for(lambda: agent.process.poll() is not None, 30, interval=0.05, message="the agent to exit")
    assert not servers() and not alive(server)


async def test_a_command_that_exits_while_a_server_is_probed_leaves_no_process(tmp_path: Path) -> None:
    import subprocess
    import uuid

    marker = f"mute-{uuid.uuid4().hex}"
    home = tmp_path / "home"
    write(
        home,
        "mute.yml",
        f"""\
        name: mute_researcher
        type: researcher
        mcp_servers:
          - name: mute
            command: {json.dumps([sys.executable, "-c", "import time; time.sleep(120)", marker])}
            startup_timeout: 60
        """,
    )
    env = {**os.environ, "MAOS_HOME": str(home), "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-c", "from maos_cli.main import main; main()", "plugins", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr
    assert "warning: MCP server(s) mute still being checked" in done.stdout

    def mute_servers() -> list[int]:
        found = []
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker.encode() in argv and alive(int(entry.name)):
                found.append(int(entry.name))
        return found

    assert mute_servers() == []
