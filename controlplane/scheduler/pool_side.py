"""The pool side of the engine: who may take what, plans fitted to the pool, launches on demand.

A component of :class:`~controlplane.scheduler.engine.Engine`: it owns what the
supervisor can launch (``supply``) and the answers cached about the pool. The matching rule is
:mod:`controlplane.domain.pool`'s: offline agents keep off typed work while a
model-backed agent could take it. Each plan is fitted to the agent types that
are connected or launchable (:func:`controlplane.domain.pool.fit_plan`) before
it runs: a step nobody could run is re-routed or the task fails at once with
ERROR_REASON_NO_ELIGIBLE_AGENTS. Work that no connected agent can take makes
the supervisor launch an agent of a type that can (within
``system.max_agents``); a consensus task with fewer distinct eligible agents
than candidates gets more launched, or fails at once saying how many it needs
and has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from controlplane.domain.model import ExecutionPlan, Failure, Subtask, SubtaskKind, Task, TaskStatus, now
from controlplane.domain.pool import (
    BACKING_OFFLINE,
    COORDINATOR,
    SYNTHESIS,
    AgentPool,
    PoolType,
    explicit_match,
    fit_plan,
    wildcard_match,
)
from controlplane.scheduler.queue import matches
from controlplane.scheduler.sessions import AgentSession

log = logging.getLogger(__name__)

HeapKey = tuple[str, str]
#: Seconds an on-demand launch is waited for before another may be made for the same work.
LAUNCH_PATIENCE = 60.0
#: Seconds the pool seen by planning is reused (it is rebuilt at once when an agent comes or goes).
POOL_TTL = 1.0
NO_ELIGIBLE = "ERROR_REASON_NO_ELIGIBLE_AGENTS"


class PoolSide:
    """Matching, plan fitting and on-demand launches."""

    def __init__(
        self,
        *,
        sessions: dict[str, AgentSession],
        subtasks: dict[str, dict[str, Subtask]],
        setting: Callable[[str], Any],
        finish_task: Callable[[Task, TaskStatus, Failure | None], None],
        background: Callable[[Coroutine[Any, Any, Any]], None],
    ):
        #: The connected agents' sessions (the agent side's) and the task book's subtasks (read only).
        self.sessions = sessions
        self.subtasks = subtasks
        self.setting = setting
        self._finish_task = finish_task
        self._background = background
        #: What the supervisor can launch (controlplane.pool.AgentSupply; set by build_app), or None:
        #: plans fit the connected agents only.
        self.supply: Any = None
        self._match_cache: dict[HeapKey, tuple[bool, bool]] = {}
        self._launching: dict[HeapKey, float] = {}
        self._pool_cache: tuple[float, AgentPool] | None = None
        self._launch_cache: dict[tuple[str, str, bool], tuple[float, str]] = {}

    def launching(self, agent_type: str, capability: str) -> bool:
        """Whether an agent is being launched for work of (agent type, capability)."""
        return self._launching.get((agent_type, capability), 0.0) > now()

    # --- matching -------------------------------------------------------------

    def _pool_changed(self) -> None:
        """An agent came or went: matching answers may differ."""
        self._match_cache.clear()
        self._launch_cache.clear()
        self._pool_cache = None

    def _who_takes(self, heap_key: HeapKey) -> tuple[bool, bool]:
        """(a connected model-backed agent may take the work, one may or it is addressed to a connected
        offline agent), cached until an agent comes or goes."""
        found = self._match_cache.get(heap_key)
        if found is None:
            step_type, capability = heap_key
            live = [s for s in self.sessions.values() if not s.closed]
            model = any(
                not s.offline and wildcard_match(step_type, capability, s.info.agent_type, s.capabilities)
                for s in live
            )
            addressed = any(
                s.offline and explicit_match(step_type, capability, s.info.agent_type, s.capabilities)
                for s in live
            )
            found = self._match_cache[heap_key] = (model, model or addressed)
        return found

    def _generic_ok(self, heap_key: HeapKey, model: bool | None = None) -> bool:
        """Whether offline agents may take a heap's generic work: no model-backed agent could take it
        (connected, or being launched for it)."""
        if model is None:
            model = self._who_takes(heap_key)[0]
        launching = self._launching.get(heap_key)
        return not model and not (launching is not None and launching > now())

    def may_take(self, session: AgentSession, agent_type: str, capability: str) -> bool:
        """Whether the agent of ``session`` may take work of (agent type, capability)."""
        return matches(
            (agent_type, capability),
            session.info.agent_type,
            session.capabilities,
            offline=session.offline,
            generic_ok=self._generic_ok,
        )

    # --- the pool -------------------------------------------------------------

    def agent_pool(self) -> AgentPool:
        """The types connected here (with their agents' capabilities) and those the supervisor can launch.

        Cached until an agent comes or goes, for at most :data:`POOL_TTL` seconds (what can be launched
        changes with the launches).
        """
        cached = self._pool_cache
        if cached is not None and cached[0] > now():
            return cached[1]
        pool = self._build_pool()
        self._pool_cache = (now() + POOL_TTL, pool)
        return pool

    def _build_pool(self) -> AgentPool:
        connected: dict[str, PoolType] = {}
        for session in self.sessions.values():
            if session.closed:
                continue
            info = session.info
            earlier = connected.get(info.agent_type)
            capabilities = frozenset(session.capabilities) | (
                earlier.capabilities if earlier else frozenset()
            )
            backing = info.backing if earlier is None or earlier.backing == info.backing else 0
            connected[info.agent_type] = PoolType(
                info.agent_type, capabilities, backing, (earlier.connected if earlier else 0) + 1
            )
        types = dict(connected)
        if self.supply is not None:
            for supplied in self.supply.pool_types():
                here = types.get(supplied.name)
                if here is None:
                    types[supplied.name] = supplied
                else:
                    types[supplied.name] = PoolType(
                        here.name,
                        here.capabilities,
                        here.backing,
                        here.connected,
                        supplied.launchable,
                        supplied.unavailable,
                    )
        return AgentPool(types)

    def _fit(self, task: Task, plan: ExecutionPlan) -> ExecutionPlan | None:
        """The plan fitted to the pool; None when the task was failed because nobody could run it."""
        known = self.supply.specs() if self.supply is not None else {}
        fitted = fit_plan(plan, task, self.agent_pool(), known)
        if fitted.refused:
            self._finish_task(task, TaskStatus.FAILED, Failure(NO_ELIGIBLE, fitted.refused))
            return None
        return fitted.plan

    # --- launches on demand ---------------------------------------------------

    def _launch_type_for(self, agent_type: str, capability: str, *, offline_too: bool = False) -> str:
        """The type to launch for work of (agent type, capability), or "" if none can be.

        Model-backed and custom types are launched on demand; with ``offline_too`` (consensus in an
        offline pool) also another agent of an offline type already able to take such work. Answers are
        cached with the pool (until an agent comes or goes, at most :data:`POOL_TTL` seconds).
        """
        if self.supply is None or not self.supply.enabled:
            return ""
        key = (agent_type, capability, offline_too)
        cached = self._launch_cache.get(key)
        if cached is not None and cached[0] > now():
            return cached[1]
        name = self._choose_launch_type(agent_type, capability, offline_too)
        self._launch_cache[key] = (now() + POOL_TTL, name)
        return name

    def _choose_launch_type(self, agent_type: str, capability: str, offline_too: bool) -> str:
        specs = self.supply.specs()
        if agent_type:
            spec = specs.get(agent_type)
            return agent_type if spec is not None and self.supply.on_demand(spec) else ""
        able = [
            name
            for name, spec in specs.items()
            if self.supply.on_demand(spec)
            and (not capability or capability == name or capability in spec.capabilities)
        ]
        if able:
            for preferred in (capability, COORDINATOR if capability == SYNTHESIS else ""):
                if preferred in able:
                    return preferred
            first: str = able[0]
            return first
        if offline_too:
            doing = [
                s.info.agent_type
                for s in self.sessions.values()
                if not s.closed and s.info.agent_type in specs and self.may_take(s, agent_type, capability)
            ]
            return doing[0] if doing else ""
        return ""

    def _demand(self, agent_type: str, capability: str) -> None:
        """Launch an agent for work no connected agent can take (an offline one only through ``*``)."""
        heap_key = (agent_type, capability)
        if self._who_takes(heap_key)[1]:
            return
        name = self._launch_type_for(agent_type, capability)
        if name and not self.supply.starting(name) and self.supply.room() > 0:
            self._launch(heap_key, name, 1)

    def _launch(self, heap_key: HeapKey, name: str, count: int) -> None:
        """Launch ``count`` agents of type ``name`` for the work of ``heap_key`` (in the background)."""
        spec = self.supply.specs().get(name)
        if spec is not None and int(getattr(spec, "backing", 0)) != BACKING_OFFLINE:
            # Offline agents leave this work to the model-backed agent on its way.
            self._launching[heap_key] = now() + LAUNCH_PATIENCE
        self._background(self.supply.launch(name, count))

    def _demand_for_plan(self, task: Task) -> None:
        """Ask for agents for every step of a just-planned task that no connected agent can take."""
        if self.supply is None:
            return
        for key in {
            (s.agent_type, s.capability)
            for s in self.subtasks[task.id].values()
            if s.kind != SubtaskKind.CANDIDATE
        }:
            self._demand(*key)

    def _registered_for_launches(self, session: AgentSession) -> None:
        """A new agent: launches waited for on its work are done."""
        for key in [k for k in self._launching if matches(k, session.info.agent_type, session.capabilities)]:
            del self._launching[key]

    # --- consensus capacity -----------------------------------------------------

    def _consensus_capacity(self, task: Task) -> bool:
        """Enough distinct agents for the candidates, launching more if needed; False when the task failed."""
        candidates: list[Subtask] = [
            s for s in self.subtasks[task.id].values() if s.kind == SubtaskKind.CANDIDATE
        ]
        if not candidates or (not self.sessions and self.supply is None):
            return True
        step = candidates[0]
        need = len(candidates)
        eligible = sum(
            1
            for s in self.sessions.values()
            if not s.closed and not s.draining and self.may_take(s, step.agent_type, step.capability)
        )
        if eligible >= need:
            return True
        name = self._launch_type_for(step.agent_type, step.capability, offline_too=True)
        if (
            self.supply is not None
            and eligible + self.supply.starting_for(step.agent_type, step.capability) >= need
        ):
            return True  # enough are starting already (the pool of a control plane that just started)
        starting = self.supply.starting(name) if name else 0
        room = self.supply.room() if name else 0
        if eligible + starting + room >= need:
            if need - eligible - starting > 0:
                self._launch((step.agent_type, step.capability), name, need - eligible - starting)
            return True
        what = (
            f"of type {step.agent_type}"
            if step.agent_type
            else f"with capability {step.capability}"
            if step.capability
            else "able to take it"
        )
        limit = self.setting("system.max_agents")
        self._finish_task(
            task,
            TaskStatus.FAILED,
            Failure(
                NO_ELIGIBLE,
                (
                    f"consensus needs {need} distinct agents {what} for step {step.id.rsplit('-c', 1)[0]}; "
                    f"{eligible} connected, {starting + room} more can be launched (system.max_agents {limit}"
                    + ("" if name else "; no agent type that could take it can be launched here")
                    + ")"
                ),
            ),
        )
        return False
