"""The public API of agent_sdk is exactly this list (httpx/temporalio: a pinned __all__)."""

from __future__ import annotations

import subprocess
import sys

import agent_sdk

EXPECTED = [
    "Agent",
    "AgentBacking",
    "AgentEnvironment",
    "AgentError",
    "AgentTypeSpec",
    "Artifact",
    "Assignment",
    "Ballot",
    "BudgetExhausted",
    "Candidate",
    "Client",
    "Context",
    "DependencyResult",
    "MaosRpcError",
    "ModelCallDeferred",
    "ModelPacer",
    "PermanentError",
    "Permit",
    "Result",
    "RetryableError",
    "SharedState",
    "StateConflict",
    "SubtaskKind",
    "TaskSubmitter",
    "Usage",
    "VoteChoice",
    "Worker",
    "run_agent",
    "tls_credentials",
    "verdict_json",
]


def test_all_is_pinned() -> None:
    assert sorted(agent_sdk.__all__) == EXPECTED
    assert len(set(agent_sdk.__all__)) == len(agent_sdk.__all__)


def test_every_export_resolves_to_its_home_module() -> None:
    homes = {
        "Agent": "agent_sdk.agent",
        "AgentEnvironment": "agent_sdk.testing",
        "AgentError": "agent_sdk.errors",
        "AgentTypeSpec": "agent_sdk.types",
        "AgentBacking": "agent_sdk.types",
        "SubtaskKind": "agent_sdk.types",
        "verdict_json": "agent_sdk.types",
        "Client": "agent_sdk.client",
        "MaosRpcError": "agent_sdk.errors",
        "PermanentError": "agent_sdk.errors",
        "RetryableError": "agent_sdk.errors",
        "BudgetExhausted": "agent_sdk.errors",
        "ModelPacer": "agent_sdk.pacing",
        "Permit": "agent_sdk.pacing",
        "ModelCallDeferred": "agent_sdk.pacing",
        "TaskSubmitter": "agent_sdk.submitter",
        "Worker": "agent_sdk.worker",
        "run_agent": "agent_sdk.runner",
        "tls_credentials": "agent_sdk.tls",
    }
    for name in EXPECTED:
        value = getattr(agent_sdk, name)
        assert value.__module__ == homes.get(name, "agent_sdk.context"), name


def test_star_import_gives_exactly_the_exports() -> None:
    namespace: dict[str, object] = {}
    exec("from agent_sdk import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == EXPECTED


def test_unknown_attributes_still_raise() -> None:
    try:
        agent_sdk.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("agent_sdk.NoSuchThing resolved")


def test_importing_the_sdk_does_not_import_test_tools() -> None:
    code = "import sys, agent_sdk; print('agent_sdk.testing' in sys.modules, 'pytest' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]
