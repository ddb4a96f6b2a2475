"""Built-in planners and agent types, registered through the public hooks."""

from __future__ import annotations

from typing import Any

from controlplane.config import Settings
from controlplane.domain.planning import DeterministicPlanner
from controlplane.hookspecs import hookimpl


@hookimpl(trylast=True)
def register_planners(settings: Settings) -> list[Any]:
    """The deterministic planner, used when no plugin planner accepts a task."""
    return [DeterministicPlanner(max_fanout=settings["tasks.max_fanout"])]


@hookimpl(trylast=True)
def register_agent_types(settings: Settings) -> list[Any]:
    """Agents that need no model: echo, noop and sleep."""
    from agent_sdk.builtin import builtin_agent_types

    return builtin_agent_types()
