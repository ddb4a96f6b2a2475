"""The agent types this installation knows, from the ``register_agent_types`` hook."""

from __future__ import annotations

import functools
from typing import Any

import pluggy

from controlplane.config import Settings
from controlplane.domain.limits import quote
from controlplane.errors import InvalidArgument


def agent_types(pm: pluggy.PluginManager, settings: Settings) -> dict[str, Any]:
    """Every registered agent type by name (plugins win over built-ins of the same name)."""
    found: dict[str, Any] = {}
    # pluggy calls trylast (built-in) implementations last; the first name seen wins.
    for specs in pm.hook.register_agent_types(settings=settings):
        for spec in specs or []:
            found.setdefault(spec.name, spec)
    return found


def agent_type(pm: pluggy.PluginManager, settings: Settings, name: str, field: str = "agent_type") -> Any:
    """One agent type; INVALID_ARGUMENT naming the known ones if it is unknown."""
    known = agent_types(pm, settings)
    if name not in known:
        raise InvalidArgument(
            f"unknown agent type {quote(name)}; known types: {', '.join(sorted(known)) or 'none'}",
            field=field,
            reason="ERROR_REASON_UNKNOWN_AGENT_TYPE",
        )
    return known[name]


def type_capabilities(pm: pluggy.PluginManager, settings: Settings, name: str) -> frozenset[str]:
    """The capabilities the registry gives agent type ``name`` (none for an unknown type)."""
    spec = agent_types(pm, settings).get(name)
    return frozenset(spec.capabilities) if spec is not None else frozenset()


@functools.cache
def _installed() -> tuple[pluggy.PluginManager, Settings]:
    from controlplane.config import load_settings
    from controlplane.plugins import get_plugin_manager

    pm = get_plugin_manager()  # a broken installed plugin is skipped with a warning
    return pm, load_settings(pm=pm)


def installed_settings() -> Settings:
    """This machine's settings, for ``maos-agent`` (the ``maos`` entry point of group ``maos.settings``)."""
    return _installed()[1]


def installed_agent_types() -> list[Any]:
    """Every agent type, as ``config.yml`` configures them, for ``maos-agent``.

    The ``maos`` catalog of the entry-point group ``maos.agents`` (see :mod:`agent_sdk.installed`):
    built-ins, plugins' types and the custom types of ``$MAOS_HOME/agents``.
    """
    pm, settings = _installed()
    return list(agent_types(pm, settings).values())
