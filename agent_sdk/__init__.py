"""The MAOS agent SDK: write agents, run them against a control plane, and call its API.

Write an agent by subclassing :class:`Agent`; run it with :class:`Worker` (or
:func:`run_agent`, or ``maos-agent run --type NAME``); register it as an agent
type with an :class:`AgentTypeSpec` from a plugin; test it without a server
with :class:`AgentEnvironment`; and talk to the control plane with :class:`Client`
(over TLS with :func:`tls_credentials`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent_sdk.agent import Agent
from agent_sdk.client import Client
from agent_sdk.context import (
    Artifact,
    Assignment,
    Ballot,
    Candidate,
    Context,
    DependencyResult,
    Result,
    SharedState,
    StateConflict,
    Usage,
    VoteChoice,
)
from agent_sdk.errors import AgentError, BudgetExhausted, MaosRpcError, PermanentError, RetryableError
from agent_sdk.pacing import ModelCallDeferred, ModelPacer, Permit
from agent_sdk.submitter import TaskSubmitter
from agent_sdk.tls import tls_credentials
from agent_sdk.types import AgentBacking, AgentTypeSpec, SubtaskKind, verdict_json
from agent_sdk.worker import Worker

if TYPE_CHECKING:
    from agent_sdk.runner import run_agent
    from agent_sdk.testing import AgentEnvironment

# Imported on first use: agent_sdk.runner is also run as ``python -m agent_sdk.runner`` (importing it
# here first would make runpy warn), and agent_sdk.testing is only for tests.
_LAZY = {"run_agent": "agent_sdk.runner", "AgentEnvironment": "agent_sdk.testing"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'agent_sdk' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    # Writing agents
    "Agent",
    "Context",
    "Assignment",
    "DependencyResult",
    "Result",
    "Usage",
    "Artifact",
    "SharedState",
    "StateConflict",
    # Model pacing
    "ModelPacer",
    "Permit",
    "ModelCallDeferred",
    # Consensus
    "Ballot",
    "Candidate",
    "VoteChoice",
    # Review steps (SubtaskKind.REVIEW)
    "verdict_json",
    # Errors
    "AgentError",
    "RetryableError",
    "PermanentError",
    "BudgetExhausted",
    "MaosRpcError",
    # Agent types, running and testing
    "AgentTypeSpec",
    "AgentBacking",
    "SubtaskKind",
    "Worker",
    "run_agent",
    "AgentEnvironment",
    # Calling the control plane
    "Client",
    "TaskSubmitter",
    "tls_credentials",
]
