"""Launched agents and shell commands get an allow-listed environment, not the control plane's secrets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from controlplane.app import App
from tests.controlplane.api.test_task_service import results, submit, wait_status
from tests.harness.messages_api import MessagesAPIServer
from tests.harness.server import Stubs
from tests.plugins.test_custom_agents import PROCESS_START, write

MODEL_KEY = "sk-ant-model-key-for-agents"
DATABASE_URL = "postgresql://maos:db-password-secret@127.0.0.1:1/maos"
#: What the control plane's own environment holds and no agent may see (unless its type needs it).
SECRETS = {
    "CLAUDE_API_KEY": MODEL_KEY,
    "ANTHROPIC_API_KEY": MODEL_KEY,
    "MAOS_CLAUDE_API_KEY": MODEL_KEY,
    "MAOS_DATABASE_PRIMARY_URL": DATABASE_URL,
    "MAOS_REDIS_URL": "redis://:redis-password-secret@127.0.0.1:6379/0",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "MAOS_JOIN_TOKEN": "abcdef.0123456789abcdef",
}


@pytest.fixture
def secret_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MAOS_AGENTS_ALLOW_SHELL", "false")  # a setting agents read: passed on


async def spawn(stubs: Stubs, agent_type: str) -> None:
    reply = await stubs.agents.SpawnAgents(
        agents_pb.SpawnAgentsRequest(agent_type=agent_type, count=1), timeout=PROCESS_START + 5
    )
    assert [a.status for a in reply.agents] == [enums.AGENT_STATUS_IDLE], reply


async def run(stubs: Stubs, agent_type: str, text: str = "show me") -> str:
    task = await submit(stubs, text, agent_type=agent_type)
    done = await wait_status(
        stubs, task.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED, timeout=30
    )
    assert done.status == enums.TASK_STATUS_COMPLETED, done
    return (await results(stubs, task.name)).output


def process_environment(app: App, agent_type: str) -> dict[str, str]:
    """The environment a launched process of ``agent_type`` was started with (from /proc)."""
    [launch] = [launch for launch in app.launcher.launches.values() if launch.agent_type == agent_type]
    assert launch.process is not None
    raw = Path(f"/proc/{launch.process.pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)


async def test_a_launched_python_agent_sees_no_secret(
    control_plane: App, stubs: Stubs, maos_home: Path, secret_environment: None
) -> None:
    write(
        maos_home,
        "envdump.yml",
        "name: envdump\ntype: python\nparameters: {function: 'tests.plugins.agent_functions:environment'}\n",
    )
    await spawn(stubs, "envdump")
    seen = json.loads(await run(stubs, "envdump"))
    assert not set(SECRETS) & set(seen), sorted(seen)
    assert not any(value in json.dumps(seen) for value in SECRETS.values())
    assert seen["MAOS_HOME"] == str(maos_home) and "PATH" in seen
    assert seen["MAOS_AGENTS_ALLOW_SHELL"] == "false"


async def test_a_shell_command_sees_no_secret(
    control_plane: App, stubs: Stubs, maos_home: Path, secret_environment: None
) -> None:
    write(
        maos_home,
        "envshell.yml",
        "name: envshell\ntype: shell\nparameters: {command: 'env', allow: true, env: {GREETING: hello}}\n",
    )
    await spawn(stubs, "envshell")
    lines = (await run(stubs, "envshell")).splitlines()
    seen = dict(line.split("=", 1) for line in lines if "=" in line)
    assert not set(SECRETS) & set(seen), sorted(seen)
    assert not any(
        name.startswith("MAOS_")
        for name in seen
        if name not in {"MAOS_TASK", "MAOS_SUBTASK", "MAOS_ATTEMPT", "MAOS_CAPABILITY", "MAOS_INPUTS"}
    )
    assert seen["GREETING"] == "hello" and "PATH" in seen and seen["MAOS_TASK"]


async def test_a_model_backed_agent_gets_its_model_key_and_nothing_else(
    control_plane: App, stubs: Stubs, secret_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with MessagesAPIServer(api_key=MODEL_KEY) as api:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        await spawn(stubs, "researcher")
        env = process_environment(control_plane, "researcher")
        assert env["ANTHROPIC_API_KEY"] == MODEL_KEY and env["ANTHROPIC_BASE_URL"] == api.base_url
        for name in (
            "MAOS_DATABASE_PRIMARY_URL",
            "MAOS_REDIS_URL",
            "AWS_SECRET_ACCESS_KEY",
            "MAOS_JOIN_TOKEN",
        ):
            assert name not in env, name
        api.push_text("the findings")
        assert await run(stubs, "researcher", "research this") == "the findings"
        assert api.requests, "the agent called the Messages API with its key"
