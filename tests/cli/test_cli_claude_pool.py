"""With an Anthropic key, the user guide's quick start runs on Claude agents, end to end.

A real ``maos init`` and ``maos start`` (real agent processes) against the Messages API test server,
which plans over the agent types it is offered and answers naming the role that answered
(:mod:`tests.harness.planning_api`). Without a key, Claude types are refused before anything starts.
"""

from __future__ import annotations

import collections
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cli.test_cli_foreground import QUICK_START_TASK, Foreground
from tests.harness.messages_api import MessagesAPIServer
from tests.harness.planning_api import model_like
from tests.harness.server import alive, wait_for

pytestmark = pytest.mark.slow

API_KEY = "sk-ant-test-key"

DOMAIN_RESEARCHER = """\
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


@pytest.fixture
def api() -> Iterator[MessagesAPIServer]:
    with MessagesAPIServer(api_key=API_KEY, responder=model_like()) as server:
        yield server


@pytest.fixture
def keyed(tmp_path: Path, api: MessagesAPIServer) -> Iterator[Foreground]:
    """A fresh MAOS_HOME with ANTHROPIC_API_KEY set and the test server as claude.base_url."""
    fg = Foreground(tmp_path / "home")
    fg.env.update({"ANTHROPIC_API_KEY": API_KEY, "MAOS_CLAUDE_BASE_URL": api.base_url})
    try:
        yield fg
    finally:
        fg.cleanup()


def pool_of(home: Path) -> dict[str, int]:
    return yaml.safe_load((home / "config.yml").read_text())["agents"]["pool"]


async def finish(fg: Foreground, *submit: str) -> tuple[str, dict]:
    """Submit through the CLI, wait for the task, and return its id and `task show` JSON."""
    submitted = await fg.cli("task", "submit", *submit)
    assert submitted.exit_code == 0, submitted.output
    task_id = submitted.stdout.strip()
    waited = await fg.cli("task", "wait", task_id, "--timeout", "60")
    assert waited.exit_code in (0, 10), waited.output + fg.output()
    return task_id, json.loads((await fg.cli("-o", "json", "task", "show", task_id)).stdout)


async def test_quick_start_with_a_key_ends_in_the_models_synthesized_answer(
    keyed: Foreground, api: MessagesAPIServer
) -> None:
    keyed.env["MAOS_SYSTEM_MAX_AGENTS"] = "3"  # the pool is sized to system.max_agents
    initialized = keyed.run("init")
    assert initialized.returncode == 0, initialized.stderr
    pool = pool_of(keyed.home)
    assert pool == {"researcher": 1, "coordinator": 1, "coder": 1}

    keyed.start()  # no --agents
    agents = await keyed.wait_serving(pool)
    assert collections.Counter(a["agent_type"] for a in agents) == collections.Counter(pool)
    assert all(a["backing"] == "MODEL" for a in agents)
    assert "offline agents" not in keyed.stderr.read_text()

    submitted = await keyed.cli("task", "submit", QUICK_START_TASK)
    assert submitted.exit_code == 0, submitted.output
    task_id = submitted.stdout.strip()
    waited = await keyed.cli("task", "wait", task_id, "--timeout", "60")
    assert waited.exit_code == 0, waited.output + keyed.output()
    results = await keyed.cli("task", "results", task_id)
    assert results.exit_code == 0, results.output
    assert "coordinator synthesized: Synthesize the results" in results.stdout  # the model's combined answer

    shown = json.loads((await keyed.cli("-o", "json", "task", "show", task_id)).stdout)
    assert shown["task"]["status"] == "COMPLETED"
    by_key = {s["name"].rsplit("/", 1)[1]: s for s in shown["subtasks"]}
    assert by_key["final"]["agent"].startswith("agents/coordinator-")
    # The test server planned one part per offered type (coordinator aside): each ran on its type.
    parts = {s["title"].rsplit(" ", 1)[1]: s["agent"] for k, s in by_key.items() if k != "final"}
    assert set(parts) == {"researcher", "coder"}
    assert all(agent.startswith(f"agents/{kind}-") for kind, agent in parts.items()), parts
    planning = [r for r in api.requests if r.body and r.body.get("tools")]
    assert planning and "coordinator" in json.dumps(planning[0].body["system"])

    assert keyed.signal_and_wait(signal.SIGTERM) == 0, keyed.output()
    await wait_for(lambda: not any(alive(pid) for pid in keyed.agent_pids), 15, message="the agents to exit")


async def test_agent_types_without_a_coordinator_or_connected_agents_end(keyed: Foreground) -> None:
    """--agent-type coder and the guide's domain_researcher with the Claude planner: both end, the synthesis
    on a coordinator and the custom type launched on demand."""
    keyed.env["MAOS_SYSTEM_MAX_AGENTS"] = "4"
    assert keyed.run("init").returncode == 0
    (keyed.home / "agents" / "custom_researcher.yml").write_text(DOMAIN_RESEARCHER)
    keyed.start("--agents", "coder=1")
    await keyed.wait_serving({"coder": 1})

    task_id, shown = await finish(keyed, "Write a CLI tool that counts words", "--agent-type", "coder")
    assert shown["task"]["status"] == "COMPLETED", shown["task"]
    agents = {s["name"].rsplit("/", 1)[1]: s["agent"] for s in shown["subtasks"]}
    assert agents.pop("final").startswith("agents/coordinator-")  # coder does not declare synthesis
    assert agents and all(a.startswith("agents/coder-") for a in agents.values())
    results = await keyed.cli("task", "results", task_id)
    assert "coordinator synthesized" in results.stdout

    task_id, shown = await finish(
        keyed, "Research latest developments in quantum computing", "--agent-type", "domain_researcher"
    )
    assert shown["task"]["status"] == "COMPLETED", shown["task"]
    agents = {s["name"].rsplit("/", 1)[1]: s["agent"] for s in shown["subtasks"]}
    assert agents.pop("final").startswith("agents/coordinator-")
    assert agents and all(a.startswith("agents/domain_researcher-") for a in agents.values())

    listed = [a["agent_type"] for a in await keyed.agents() if a["status"] in ("IDLE", "BUSY")]
    keyed.agent_pids = [int(a["pid"]) for a in await keyed.agents()]
    assert sorted(listed) == ["coder", "coordinator", "domain_researcher"]
    assert keyed.signal_and_wait(signal.SIGTERM) == 0, keyed.output()


async def test_claude_types_are_refused_without_a_key_before_anything_starts(tmp_path: Path) -> None:
    fg = Foreground(tmp_path / "home")
    assert fg.run("init").returncode == 0
    assert pool_of(fg.home) == {"echo": 2}  # no key: the offline pool
    refused = fg.run("start", "--agents", "researcher=1")
    assert refused.returncode == 5, refused.stderr
    assert "agent type researcher cannot run" in refused.stderr and "ANTHROPIC_API_KEY" in refused.stderr
    assert "claude.api_key" in refused.stderr
    assert not (fg.home / "maos.pid").exists()
    daemon = fg.run("start", "--daemon", "--agents", "echo=1,coordinator=1")
    assert daemon.returncode == 5 and "coordinator cannot run" in daemon.stderr
    assert not (fg.home / "maos.pid").exists()
