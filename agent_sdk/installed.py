"""What ``maos-agent`` finds installed: agent types and this machine's settings, through entry points.

The SDK imports no other MAOS package; what an installation adds, it offers in two
entry-point groups that the SDK reads:

``maos.agents`` — agent implementations
    Each entry point names a *catalog*: a callable taking no arguments that returns the
    :class:`~agent_sdk.types.AgentTypeSpec` of the types it offers. A package of agents declares
    one in its ``pyproject.toml``::

        [project.entry-points."maos.agents"]
        my-agents = "my_package.agents:agent_type_specs"

    ``maos-agent run --type NAME`` builds the first type named NAME, asking the catalog named
    ``maos`` first (the control plane's own: the types of its plugins and built-ins and the
    custom types of ``$MAOS_HOME/agents``, as ``config.yml`` configures them), then the others
    in the alphabetical order of their names, and last the SDK's own built-in types
    (:func:`agent_sdk.builtin.builtin_agent_types`: ``echo``, ``noop``, ``sleep``, ``shell``,
    ``python``), so a standalone agent host without the control plane still has them.

``maos.settings`` — this machine's settings
    One entry point, ``maos``, naming a callable that takes no arguments and returns the
    settings (:class:`InstalledSettings`): ``maos-agent`` reads ``server.address`` and
    ``client.tls.*`` from them. Without it the defaults apply (``127.0.0.1:7100``, plaintext).
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from agent_sdk.builtin import builtin_agent_types
from agent_sdk.types import AgentTypeSpec
from maos_common.tls import ClientTls

__all__ = [
    "AGENTS_GROUP",
    "SETTINGS_GROUP",
    "InstalledSettings",
    "UnknownAgentType",
    "agent_types",
    "find_agent_type",
    "installed_settings",
]

log = logging.getLogger(__name__)

#: The entry-point group of agent implementations (catalogs of agent types).
AGENTS_GROUP = "maos.agents"
#: The entry-point group of the settings provider.
SETTINGS_GROUP = "maos.settings"
#: The catalog (and settings provider) of the control plane, asked first.
FIRST = "maos"


class InstalledSettings(Protocol):
    """The settings ``maos-agent`` reads: ``server.address`` and ``client.tls.*``."""

    def __getitem__(self, key: str) -> Any:
        """The value of setting ``key`` (``"server.address"``)."""

    def source(self, key: str) -> str:
        """Where the value came from: ``default``, ``file``, ``env`` or ``override``."""

    @property
    def client_tls(self) -> ClientTls:
        """How clients on this machine connect (``client.tls.*``)."""


class _Defaults:
    """The settings when no provider is installed: the default address, plaintext."""

    _values = {"server.address": "127.0.0.1:7100"}

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def source(self, key: str) -> str:
        return "default"

    @property
    def client_tls(self) -> ClientTls:
        return ClientTls()


class UnknownAgentType(LookupError):
    """No installed catalog offers the agent type; the message names the known ones."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        shown = repr(name) if len(name) <= 64 else f"{name[:64]!r}… ({len(name)} characters)"
        super().__init__(f"unknown agent type {shown}; known types: {', '.join(sorted(known)) or 'none'}")
        self.message = str(self)


def _entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    found = {ep.name: ep for ep in importlib.metadata.entry_points(group=group)}
    return [found[name] for name in sorted(found, key=lambda name: (name != FIRST, name))]


def agent_types() -> dict[str, AgentTypeSpec]:
    """Every agent type the installed catalogs offer, by name (the first catalog offering a name wins).

    A catalog that fails to load or to list its types is reported with a warning and skipped: one
    broken package must not stop agents of the others (or the SDK's built-in types).
    """
    found: dict[str, AgentTypeSpec] = {}
    for ep in _entry_points(AGENTS_GROUP):
        try:
            catalog: Callable[[], Iterable[AgentTypeSpec]] = ep.load()
            specs = list(catalog())
        except Exception as exc:
            log.warning(
                "skipped the agent types of %s (%s): %s: %s", ep.name, ep.value, type(exc).__name__, exc
            )
            continue
        for spec in specs:
            found.setdefault(spec.name, spec)
    for spec in builtin_agent_types():
        found.setdefault(spec.name, spec)
    return found


def find_agent_type(name: str) -> AgentTypeSpec:
    """The installed agent type ``name``; :class:`UnknownAgentType` naming the known ones if none offers it."""
    known = agent_types()
    if name not in known:
        raise UnknownAgentType(name, known)
    return known[name]


def installed_settings() -> InstalledSettings:
    """This machine's settings from the ``maos.settings`` provider (the defaults without one)."""
    for ep in _entry_points(SETTINGS_GROUP):
        provider: Callable[[], InstalledSettings] = ep.load()
        return provider()
    return _Defaults()
