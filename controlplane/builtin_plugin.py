"""Built-in planners and agent types, registered through the public hooks."""

from __future__ import annotations

from collections.abc import Generator
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
    """Agents that need no model: echo, noop, sleep, and the configurable shell and python."""
    from agent_sdk.builtin import builtin_agent_types

    return builtin_agent_types(allow_shell=settings["agents.allow_shell"])


@hookimpl(wrapper=True, specname="register_agent_types")
def register_custom_agent_types(settings: Settings) -> Generator[None, list[list[Any]], list[list[Any]]]:
    """Custom types from ``$MAOS_HOME/agents/*.yml``, added after every other implementation ran.

    A wrapper, because a custom type may specialise any registered type (a
    plugin's as well as a built-in one), so it needs the others' results.
    Broken files are logged and skipped (see :mod:`controlplane.custom_agents`).
    """
    from controlplane.custom_agents import load_custom_agent_types, registered_types

    results = yield
    custom = load_custom_agent_types(settings, registered_types(results))
    return [*results, custom.specs]
