"""The pool through the CLI: offline agents keep off typed work, Claude types need a key, plans fit the pool,
consensus never hangs (a real control plane, real agents, the Messages API test server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from agent_sdk.agent import Agent
from agent_sdk.builtin import EchoAgent
from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.worker import Worker
from controlplane.app import App
from maos_plugins.claude.agents import CoordinatorAgent, ResearcherAgent
from tests.cli.conftest import Maos
from tests.harness.messages_api import MessagesAPIServer
from tests.harness.planning_api import model_like
from tests.harness.server import Stubs, make_settings, start_app, wait_for

API_KEY = "sk-ant-test-key"
KEY_VARS = (
    "ANTHROPIC_API_KEY",
    "CLAUDE_API_KEY",
    "ANTHROPIC_BASE_URL",
    "MAOS_CLAUDE_API_KEY",
    "MAOS_CLAUDE_BASE_URL",
)


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """No Anthropic key anywhere unless a test sets one."""
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def api() -> Iterator[MessagesAPIServer]:
    with MessagesAPIServer(api_key=API_KEY, responder=model_like()) as server:
        yield server


@asynccontextmanager
async def connected(address: str, *agents: Agent) -> AsyncIterator[list[Worker]]:
    """In-process agents connected to ``address`` for the block."""
    workers = [Worker(agent, address, max_backoff=0.5) for agent in agents]
    runners = [asyncio.get_running_loop().create_task(w.run()) for w in workers]
    try:
        for worker in workers:
            await asyncio.wait_for(worker.registered.wait(), 15)
        yield workers
    finally:
        for worker in workers:
            await worker.shutdown(1.0)
        await asyncio.gather(*runners)


def claude(cls: type, api: MessagesAPIServer) -> Agent:
    return cls({"api_key": API_KEY, "base_url": api.base_url, "timeout": 10})


async def submit_wait(maos: Maos, *args: str) -> tuple[dict, str]:
    """``maos -o json task submit ... --wait``: the JSON answer and stderr."""
    result = await maos("-o", "json", "task", "submit", *args, "--wait", "--wait-timeout", "60")
    assert result.exit_code in (0, 10), result.output
    return json.loads(result.stdout), result.stderr


async def subtask_agents(app: App, task_id: str) -> dict[str, str]:
    subs = await app.engine.get_subtasks(task_id)
    return {s.id: app.engine.agents[s.agent_id].agent_type for s in subs if s.agent_id}


# --- offline agents never steal typed work --------------------------------------------------------


async def test_offline_agents_keep_off_typed_and_generic_work(
    maos: Maos, control_plane: App, api: MessagesAPIServer
) -> None:
    async with connected(control_plane.address, claude(ResearcherAgent, api)):
        research, stderr = await submit_wait(maos, "1. alpha\n2. beta", "--type", "research")
        assert research["status"] == "COMPLETED"
        assert set((await subtask_agents(control_plane, research["task_id"])).values()) == {"researcher"}
        assert "offline agents" not in stderr  # a model-backed agent is connected

        generic, _ = await submit_wait(maos, "Say hello")  # mixed: no capability
        assert set((await subtask_agents(control_plane, generic["task_id"])).values()) == {"researcher"}

        addressed, _ = await submit_wait(maos, "Say hello", "--agent-type", "echo")  # work addressed to echo
        assert set((await subtask_agents(control_plane, addressed["task_id"])).values()) == {"echo"}
        assert addressed["result"]["output"] == "Say hello"
    # Without a model-backed agent, the echo agent takes typed work again (the offline pool).
    alone, stderr = await submit_wait(maos, "1. alpha\n2. beta", "--type", "research")
    assert alone["status"] == "COMPLETED"
    assert set((await subtask_agents(control_plane, alone["task_id"])).values()) == {"echo"}
    assert "the answers come from offline agents (echo)" in stderr and "ANTHROPIC_API_KEY" in stderr


async def test_status_says_the_answers_come_from_offline_agents(
    maos: Maos, control_plane: App, api: MessagesAPIServer
) -> None:
    result = await maos("status")
    assert result.exit_code == 0, result.output
    assert "offline agents (echo)" in result.stderr and "maos agent spawn researcher" in result.stderr
    async with connected(control_plane.address, claude(ResearcherAgent, api)):
        result = await maos("status")
        assert result.exit_code == 0 and "offline agents" not in result.stderr


async def test_agents_say_what_backs_them(maos: Maos, control_plane: App, api: MessagesAPIServer) -> None:
    async with connected(control_plane.address, claude(ResearcherAgent, api)):
        listed = json.loads((await maos("-o", "json", "agent", "list")).stdout)["agents"]
        assert {a["agent_type"]: a["backing"] for a in listed} == {
            "echo": "OFFLINE",
            "researcher": "MODEL",
        }
    types = await maos("-o", "json", "agent", "types")
    by_name = {t["name"]: t for t in json.loads(types.stdout)["agent_types"]}
    assert by_name["echo"]["backing"] == "OFFLINE" and by_name["echo"]["spawnable"]
    assert by_name["researcher"]["backing"] == "MODEL" and not by_name["researcher"]["spawnable"]
    assert "ANTHROPIC_API_KEY" in by_name["researcher"]["unavailable_reason"]
    assert "researcher" in types.stderr and "cannot run here" in types.stderr


# --- Claude types need a key -------------------------------------------------------------------------


async def test_claude_types_cannot_be_spawned_without_a_key(maos: Maos, control_plane: App) -> None:
    result = await maos("agent", "spawn", "researcher")
    assert result.exit_code == 5, result.output
    assert "ANTHROPIC_API_KEY" in result.stderr and "claude.api_key" in result.stderr
    stubs = Stubs(control_plane.address)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stubs.agents.SpawnAgents(agents_pb.SpawnAgentsRequest(agent_type="coordinator"), timeout=5)
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "ERROR_REASON_AGENT_TYPE_UNAVAILABLE" in str(raised.value.trailing_metadata())
    finally:
        await stubs.close()
    assert not control_plane.launcher.launches  # nothing was started
    assert {a.agent_type for a in control_plane.engine.agents.values()} == {"echo"}


# --- plans fit the pool --------------------------------------------------------------------------------


async def test_a_step_for_a_type_nobody_can_run_fails_at_once(maos: Maos, control_plane: App) -> None:
    answer, _ = await submit_wait(maos, "Research quantum computing", "--agent-type", "researcher")
    assert answer["status"] == "FAILED"
    shown = json.loads((await maos("-o", "json", "task", "show", answer["task_id"])).stdout)
    failure = shown["task"]["failure"]
    assert failure["reason"] == "NO_ELIGIBLE_AGENTS"
    assert "researcher cannot run here" in failure["message"] and "ANTHROPIC_API_KEY" in failure["message"]

    # A type only absent here (its agents may connect from elsewhere) waits, and says for what.
    absent = await maos("-o", "json", "task", "submit", "Research", "--agent-type", "nobody_knows")
    task_id = json.loads(absent.stdout)["task_id"]

    async def waiting() -> dict | None:
        shown = json.loads((await maos("-o", "json", "task", "show", task_id)).stdout)["task"]
        return shown if shown["status_reason"] else None

    shown = await wait_for(waiting, 10, message="the reason it waits")
    assert shown["status"] == "QUEUED"
    assert shown["status_reason"] == "no connected agent of type nobody_knows"


SHOUTER = """\
name: shouter
type: python
capabilities: [shouting]
parameters:
  function: "tests.plugins.agent_functions:shout"
"""


async def test_a_plugin_type_is_never_handed_the_synthesis(
    maos: Maos, control_plane: App, maos_home: Path
) -> None:
    """A custom type without `synthesis`, named with --agent-type: it is launched on demand and does the
    parts, which are joined (the combining prompt never reaches it)."""
    (maos_home / "agents").mkdir(parents=True, exist_ok=True)
    (maos_home / "agents" / "shouter.yml").write_text(SHOUTER)
    answer, _ = await submit_wait(maos, "1. alpha\n2. beta", "--agent-type", "shouter")
    assert answer["status"] == "COMPLETED", answer
    subtasks = answer["result"]["subtasks"]
    assert len(subtasks) == 2 and all(s["output"].endswith("!") for s in subtasks)
    assert "COMBINE" not in answer["result"]["output"] and "ALPHA!" in answer["result"]["output"]
    shown = json.loads((await maos("-o", "json", "task", "show", answer["task_id"])).stdout)
    assert any("the results of the parts are joined" in w for w in shown["task"]["warnings"])
    launched = [launch.agent_type for launch in control_plane.launcher.launches.values()]
    assert launched == ["shouter"]  # launched on demand, once


# --- consensus never hangs ----------------------------------------------------------------------------------


async def test_consensus_launches_the_agents_it_needs(maos: Maos, control_plane: App) -> None:
    """One echo agent and --require-consensus: the supervisor launches two more, and the task ends."""
    answer, _ = await submit_wait(maos, "Pick a deployment strategy", "--require-consensus")
    shown = json.loads((await maos("-o", "json", "task", "show", answer["task_id"])).stdout)
    assert shown["task"]["status"] in ("COMPLETED", "FAILED")
    assert (shown["task"].get("failure") or {}).get("reason", "") != "ERROR_REASON_NO_ELIGIBLE_AGENTS"
    candidates = [s for s in await control_plane.engine.get_subtasks(answer["task_id"])]
    assert len({s.agent_id for s in candidates}) == 3
    assert sorted(launch.agent_type for launch in control_plane.launcher.launches.values()) == [
        "echo",
        "echo",
    ]


async def test_consensus_fails_at_once_when_the_agents_cannot_be_had(tmp_path: Path) -> None:
    app = await start_app(make_settings(tmp_path / "home", **{"system.max_agents": 1}))
    maos = Maos(app.address, tmp_path / "home")
    try:
        async with connected(app.address, EchoAgent()):
            loop = asyncio.get_running_loop()
            started = loop.time()
            answer, _ = await submit_wait(maos, "Pick a deployment strategy", "--require-consensus")
            assert loop.time() - started < 10
            shown = json.loads((await maos("-o", "json", "task", "show", answer["task_id"])).stdout)
            assert shown["task"]["status"] == "FAILED"
            assert shown["task"]["failure"]["reason"] == "NO_ELIGIBLE_AGENTS"
            assert "consensus needs 3 distinct agents" in shown["task"]["failure"]["message"]
            assert (
                "1 connected, 1 more can be launched (system.max_agents 1)"
                in shown["task"]["failure"]["message"]
            )
            assert not app.launcher.launches  # nothing launched in vain
    finally:
        await app.stop(grace=1.0)


# --- the synthesis goes to the coordinator ----------------------------------------------------------


async def test_synthesis_goes_to_the_coordinator(
    maos: Maos, control_plane: App, api: MessagesAPIServer
) -> None:
    async with connected(control_plane.address, claude(ResearcherAgent, api), claude(CoordinatorAgent, api)):
        answer, _ = await submit_wait(maos, "1. alpha\n2. beta", "--type", "research")
        ran = await subtask_agents(control_plane, answer["task_id"])
        assert ran == {"s0": "researcher", "s1": "researcher", "synthesis": "coordinator"}
        assert answer["result"]["output"].startswith("coordinator synthesized")
        synthesis = [r for r in api.requests if "Role: coordinator" in json.dumps(r.body.get("system"))]
        assert synthesis and synthesis[0].body["max_tokens"] == CoordinatorAgent.default_max_tokens


async def test_recommended_agents_are_model_backed_with_a_key(
    tmp_path: Path, api: MessagesAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    app = await start_app(make_settings(tmp_path / "home", **{"claude.base_url": api.base_url}))
    maos = Maos(app.address, tmp_path / "home")
    try:
        async with connected(app.address, EchoAgent()):
            result = await maos(
                "-o",
                "json",
                "task",
                "analyze",
                "Research cloud trends",
                "--type",
                "research",
                "--recommend-agents",
            )
            assert result.exit_code == 0, result.output
            recommended = json.loads(result.stdout)["recommended_agent_types"]
            assert "researcher" in recommended and "coordinator" in recommended
            assert not {"echo", "noop", "sleep"} & set(recommended)
    finally:
        await app.stop(grace=1.0)
    offline = await start_app(make_settings(tmp_path / "offline"))
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    maos = Maos(offline.address, tmp_path / "offline")
    try:
        async with connected(offline.address, EchoAgent()):
            result = await maos(
                "-o",
                "json",
                "task",
                "analyze",
                "Research cloud trends",
                "--type",
                "research",
                "--recommend-agents",
            )
            recommended = json.loads(result.stdout)["recommended_agent_types"]
            assert "researcher" not in recommended and "echo" in recommended
    finally:
        await offline.stop(grace=1.0)
