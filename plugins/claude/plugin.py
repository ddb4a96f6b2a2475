"""The Claude plugin's hooks (entry point ``maos: claude = maos_plugins.claude.plugin``).

Registration makes no network call: agents and the planner only talk to the
Messages API when they work.
"""

from __future__ import annotations

from typing import Any

from controlplane.hookspecs import hookimpl
from maos_plugins.claude.agents import agent_type_specs
from maos_plugins.claude.config import resolve_config, settings_options
from maos_plugins.claude.planner import ClaudePlanner


def _max_fanout(settings: Any) -> int:
    try:
        return int(settings["tasks.max_fanout"])
    except (KeyError, TypeError):
        return 256


@hookimpl
def register_settings() -> list[Any]:
    """The ``claude`` section: api_key, model, base_url."""
    return settings_options()


@hookimpl
def register_agent_types(settings: Any) -> list[Any]:
    """researcher, coder, analyst, tester and coordinator, backed by Claude."""
    return agent_type_specs(settings)


@hookimpl
def register_planners(settings: Any) -> list[Any]:
    """The Claude planner (it accepts tasks only when an API key is configured)."""
    return [ClaudePlanner(resolve_config(settings), max_fanout=_max_fanout(settings))]
