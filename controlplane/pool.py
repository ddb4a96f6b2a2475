"""The local agent pool: which types can run here, the default pool, and launches on demand.

* :func:`default_pool`: what ``maos start`` launches when ``agents.pool`` is not set. With an API
  key for a model-backed plugin (Claude: ``ANTHROPIC_API_KEY``, ``CLAUDE_API_KEY`` or
  ``claude.api_key``) it is a pool of those types, by their ``pool_share`` (researcher 2, coordinator,
  coder, analyst and tester 1 each) within ``system.max_agents``; without one, the offline ``echo: 2``.
* :func:`check_pool`: refuses (FAILED_PRECONDITION, ERROR_REASON_AGENT_TYPE_UNAVAILABLE) a type that
  cannot run here, naming the settings to set, before anything starts.
* :class:`AgentSupply`: what the supervisor could launch now (for plans that fit the pool), and
  launches on demand within ``system.max_agents``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

from agent_sdk.types import AgentBacking
from controlplane.agent_types import agent_type, agent_types
from controlplane.config import Settings
from controlplane.custom_agents import is_custom
from controlplane.domain.limits import clip
from controlplane.domain.pool import PoolType, wildcard_match
from controlplane.errors import FailedPrecondition

if TYPE_CHECKING:
    from controlplane.launcher import LocalLauncher

log = logging.getLogger(__name__)

OFFLINE_POOL = {"echo": 2}
#: Seconds the registered types are cached for (collecting them reads the custom types' files).
TYPES_TTL = 2.0


def model_backed(spec: Any) -> bool:
    """Whether agents of the type say a model does their work."""
    return getattr(spec, "backing", AgentBacking.UNSPECIFIED) == AgentBacking.MODEL


def unavailable(spec: Any) -> str:
    """Why agents of the type cannot run here ("" when they can)."""
    check = getattr(spec, "unavailable", None)
    return check() if callable(check) else ""


#: Most warnings shown per type, and the longest one (the rest is cut).
MAX_TYPE_WARNINGS = 8
MAX_WARNING_CHARS = 1024


def type_warnings(spec: Any) -> list[str]:
    """Notes about the type's configuration that do not stop it from running (bounded)."""
    check = getattr(spec, "warnings", None)
    if not callable(check):
        return []
    try:
        notes = check()
    except Exception as exc:  # noqa: BLE001 - a plugin's broken check is itself worth a note
        notes = [f"checking the type failed: {type(exc).__name__}: {exc}"]
    return [clip(str(note), MAX_WARNING_CHARS) for note in list(notes)[:MAX_TYPE_WARNINGS]]


def default_pool(pm: pluggy.PluginManager, settings: Settings) -> dict[str, int]:
    """The pool ``maos start`` launches when ``agents.pool`` is not set (see the module docstring)."""
    specs = [
        s
        for s in agent_types(pm, settings).values()
        if model_backed(s) and getattr(s, "pool_share", 0) > 0 and not unavailable(s)
    ]
    budget = settings["system.max_agents"]
    pool: dict[str, int] = {}
    level = 1
    while budget > 0 and any(s.pool_share >= level for s in specs):
        for spec in specs:
            if budget > 0 and spec.pool_share >= level:
                pool[spec.name] = pool.get(spec.name, 0) + 1
                budget -= 1
        level += 1
    return pool or dict(OFFLINE_POOL)


def pool_is_offline(pm: pluggy.PluginManager, settings: Settings, pool: Mapping[str, int]) -> bool:
    """Whether every agent of ``pool`` is offline (no model does the work)."""
    known = agent_types(pm, settings)
    return all(
        getattr(known.get(name), "backing", 0) == AgentBacking.OFFLINE for name, n in pool.items() if n
    )


def the_pool(pm: pluggy.PluginManager, settings: Settings) -> dict[str, int]:
    """``agents.pool`` when it is set (file, environment or ``--agents``), else :func:`default_pool`."""
    if settings.source("agents.pool") == "default":
        return default_pool(pm, settings)
    return dict(settings["agents.pool"])


def check_type(pm: pluggy.PluginManager, settings: Settings, name: str, field: str = "agent_type") -> Any:
    """A type that can run here: INVALID_ARGUMENT if unknown, FAILED_PRECONDITION naming what to set."""
    spec = agent_type(pm, settings, name, field=field)
    why = unavailable(spec)
    if why:
        raise FailedPrecondition(
            f"agent type {name} cannot run: {why}",
            reason="ERROR_REASON_AGENT_TYPE_UNAVAILABLE",
            metadata={"agent_type": name},
        )
    return spec


def check_pool(
    pm: pluggy.PluginManager, settings: Settings, pool: Mapping[str, int], field: str = "agents"
) -> None:
    """Every type of ``pool`` can run here (see :func:`check_type`)."""
    for name, count in pool.items():
        if count:
            check_type(pm, settings, name, field=field)


class AgentSupply:
    """What the supervisor could launch, and launching on demand.

    Only model-backed types and custom types (``$MAOS_HOME/agents/*.yml``) are launched on demand: an
    offline built-in (echo...) would take work meant for a model.

    Args:
        pm: The plugin manager (registered types).
        settings: The control plane's settings.
        launcher: The local launcher, or None when this control plane launches nothing.
    """

    def __init__(self, pm: pluggy.PluginManager, settings: Settings, launcher: LocalLauncher | None):
        self.pm = pm
        self.settings = settings
        self.launcher = launcher
        #: Off while ``maos start`` launches its pool (so nothing is launched twice).
        self.enabled = True
        self._specs: dict[str, Any] = {}
        self._read_at = -TYPES_TTL

    def specs(self) -> dict[str, Any]:
        """The registered types (cached for :data:`TYPES_TTL` seconds)."""
        if time.monotonic() - self._read_at >= TYPES_TTL:
            try:
                self._specs = agent_types(self.pm, self.settings)
            except Exception:  # noqa: BLE001 - a broken plugin must not stop scheduling
                log.exception("collecting the agent types failed")
            self._read_at = time.monotonic()
        return self._specs

    def room(self) -> int:
        """Processes that can still be launched under ``system.max_agents``."""
        if self.launcher is None:
            return 0
        limit: int = self.settings["system.max_agents"]
        return max(0, limit - self.launcher.active)

    def on_demand(self, spec: Any) -> bool:
        """Whether ``spec`` may be launched on demand (model-backed or custom, and it can run here)."""
        return (model_backed(spec) or is_custom(spec, self.settings)) and not unavailable(spec)

    def pool_types(self) -> list[PoolType]:
        """The registered types as planning sees them (``connected`` left 0; the engine adds its agents)."""
        room = self.room() > 0 and self.enabled
        return [
            PoolType(
                name=name,
                capabilities=frozenset(spec.capabilities) | {name},
                backing=int(getattr(spec, "backing", 0)),
                launchable=room and self.on_demand(spec),
                unavailable=unavailable(spec),
            )
            for name, spec in self.specs().items()
        ]

    def starting(self, agent_type_name: str) -> int:
        """Launched processes of the type that have not registered yet."""
        if self.launcher is None:
            return 0
        return sum(
            1
            for launch in self.launcher.launches.values()
            if launch.agent_type == agent_type_name and not launch.agent_id and not launch.stopping
        )

    def starting_for(self, agent_type: str, capability: str) -> int:
        """Launched processes, not registered yet, whose type could take work of (agent type, capability)."""
        if self.launcher is None:
            return 0
        specs = self.specs()
        count = 0
        for launch in self.launcher.launches.values():
            spec = specs.get(launch.agent_type)
            if launch.agent_id or launch.stopping or spec is None:
                continue
            if wildcard_match(agent_type, capability, spec.name, frozenset(spec.capabilities) | {spec.name}):
                count += 1
        return count

    async def launch(self, agent_type_name: str, count: int) -> int:
        """Launch up to ``count`` agents of the type (within the room left); how many were started."""
        started = 0
        for _ in range(min(count, self.room())):
            assert self.launcher is not None  # room() is 0 without one
            try:
                await self.launcher.spawn(agent_type_name)
            except Exception as exc:  # noqa: BLE001 - the task's status says what it waits for; the log says why
                log.warning("launching a %s agent on demand failed: %s", agent_type_name, exc)
                break
            started += 1
        if started:
            log.info("launched %d %s agent(s) on demand", started, agent_type_name)
        return started
