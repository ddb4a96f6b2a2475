"""Which agents may take which work, and fitting a plan to the agents there are.

Matching (the scheduler's rule, also used to check plans):

* A subtask addressed to a type (``agent_type``) goes only to agents of that type.
* A model-backed agent (or one that did not say) takes a subtask when it declares the subtask's
  capability, declares ``*``, or the subtask names no capability (every agent's type name is one of
  its capabilities).
* An offline agent (echo, noop, sleep, shell, python) takes only work addressed to it: its own type, or
  a capability it declares by name (not through ``*``). Other work ("generic" work: no capability, or
  one it matches only through ``*``) it takes only while no connected model-backed agent could take it.

:func:`fit_plan` applies the same rule to a plan before it runs, over the agent types that are
connected or that the supervisor can launch (:class:`PoolType`): a step nobody could run is re-routed
(with a warning) or the task is refused with the reason; synthesis goes to the coordinator when there
is one, and never to a type that does not declare ``synthesis``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from controlplane.domain.model import ExecutionPlan, PlannedSubtask, SubtaskKind, Task

#: Values of ``maos.v1.AgentBacking``.
BACKING_UNSPECIFIED, BACKING_MODEL, BACKING_OFFLINE = 0, 1, 2
SYNTHESIS = "synthesis"
COORDINATOR = "coordinator"


def wildcard_match(step_type: str, capability: str, agent_type: str, capabilities: frozenset[str]) -> bool:
    """The plain rule: the type if one is named, and the capability, ``*``, or no capability."""
    if step_type and step_type != agent_type:
        return False
    return not capability or "*" in capabilities or capability in capabilities


def explicit_match(step_type: str, capability: str, agent_type: str, capabilities: frozenset[str]) -> bool:
    """Work addressed to the agent: its own type, or a capability it declares by name."""
    if step_type:
        return step_type == agent_type and (
            not capability or "*" in capabilities or capability in capabilities
        )
    return bool(capability) and (capability == agent_type or capability in capabilities)


@dataclass(frozen=True)
class PoolType:
    """An agent type as far as planning is concerned.

    Attributes:
        name: The type name.
        capabilities: What its agents declare (the type name is added).
        backing: ``maos.v1.AgentBacking`` value; UNSPECIFIED counts as model-backed.
        connected: How many of its agents are connected.
        launchable: Whether the supervisor can launch one now (it can run here and there is room).
        unavailable: Why it cannot run here (for example no API key); "" when it can.
    """

    name: str
    capabilities: frozenset[str]
    backing: int = BACKING_UNSPECIFIED
    connected: int = 0
    launchable: bool = False
    unavailable: str = ""

    @property
    def offline(self) -> bool:
        """Whether its agents do no model work."""
        return self.backing == BACKING_OFFLINE

    @property
    def present(self) -> bool:
        """Connected, or can be launched."""
        return self.connected > 0 or self.launchable

    def declares(self, capability: str) -> bool:
        """Whether the type names ``capability`` itself (``*`` does not count)."""
        return capability == self.name or capability in self.capabilities


@dataclass
class AgentPool:
    """The agent types connected here or launchable by the supervisor, by name."""

    types: dict[str, PoolType] = field(default_factory=dict)

    @classmethod
    def of(cls, types: Iterable[PoolType]) -> AgentPool:
        """A pool of these types (first of a name wins)."""
        pool = cls()
        for pool_type in types:
            pool.types.setdefault(pool_type.name, pool_type)
        return pool

    def present(self) -> list[PoolType]:
        """Types that are connected or launchable."""
        return [t for t in self.types.values() if t.present]

    def takers(self, step_type: str, capability: str) -> list[PoolType]:
        """Present types whose agents may take a step (the scheduler's rule; launchable offline types only
        for work addressed to them)."""
        present = self.present()
        model = [
            t
            for t in present
            if not t.offline and wildcard_match(step_type, capability, t.name, t.capabilities | {t.name})
        ]
        offline = [
            t
            for t in present
            if t.offline
            and (
                explicit_match(step_type, capability, t.name, t.capabilities | {t.name})
                or (
                    t.connected
                    and not model
                    and wildcard_match(step_type, capability, t.name, t.capabilities | {t.name})
                )
            )
        ]
        return model + offline

    def describe(self) -> str:
        """One line of what there is, for reasons given to people."""
        present = self.present()
        if not present:
            return "no agent is connected and none can be launched"
        return "agents here: " + ", ".join(
            f"{t.name} ({t.connected} connected{', launchable' if t.launchable else ''})" for t in present
        )


@dataclass
class Fitted:
    """What :func:`fit_plan` made of a plan."""

    plan: ExecutionPlan
    #: Why the task cannot run on this pool ("" when it can).
    refused: str = ""


def _why_type_missing(pool: AgentPool, name: str, known: Mapping[str, str]) -> str:
    found = pool.types.get(name)
    return f"agents of type {name} cannot run here: {found.unavailable if found else 'unknown type'}"


def fit_plan(
    plan: ExecutionPlan, task: Task, pool: AgentPool, known: Mapping[str, str] | None = None
) -> Fitted:
    """Route every step of ``plan`` to agents of ``pool``, re-routing or refusing what nobody could run.

    * A step addressed to a type (``--agent-type X``) runs on that type whatever capability the planner
      gave it; if the type cannot run here (a Claude type without an API key) and none is connected, the
      task is refused. A type that is only absent is waited for (an agent may connect from elsewhere; the
      task's status says so), or launched on demand.
    * A work step whose capability no present type has goes to any model-backed agent (warning).
    * A synthesis step goes to the coordinator when one is present; else to a type that declares
      ``synthesis`` (the task's own type first); else, if only offline agents are connected, to them as
      generic work; else it is removed and the control plane joins the parts' results (warning).

    An empty pool (nothing connected, nothing launchable) leaves the plan as it is, agents may connect later,
    unless it names a type that cannot run here (a Claude type without an API key).

    Args:
        plan: The planner's plan (not changed; a fitted copy is returned).
        task: The task.
        pool: The types connected or launchable now.
        known: Registered type names (to tell an unknown type from one that is only absent).
    """
    known = known or {}
    if not pool.present():  # agents may connect later; only a type that can never run here is refused
        for step in plan.subtasks:
            named = pool.types.get(step.agent_type or task.agent_type)
            if named is not None and named.unavailable:
                return Fitted(plan, _why_type_missing(pool, named.name, known))
        return Fitted(plan)
    warnings = list(plan.warnings)
    steps: list[PlannedSubtask] = []
    dropped: set[str] = set()
    needed = {d for s in plan.subtasks for d in s.depends_on}
    for step in plan.subtasks:
        step = replace(step, depends_on=list(step.depends_on))
        step_type = step.agent_type or task.agent_type
        if step.kind == SubtaskKind.SYNTHESIS:
            routed = _route_synthesis(step, step_type, pool, prefer_coordinator=not task.consensus.required)
            if routed is None:
                if step.key in needed:  # something builds on it: any model-backed agent combines
                    step = replace(step, agent_type="", capability="")
                    warnings.append(
                        f"step {step.key}: no agent here declares {SYNTHESIS}; any agent combines"
                    )
                else:
                    dropped.add(step.key)
                    warnings.append(
                        f"no agent here declares {SYNTHESIS}; the results of the parts are joined as they are"
                    )
                    continue
            else:
                step = routed
        elif step_type:
            step = replace(step, agent_type=step_type, capability="")
            named = pool.types.get(step_type)
            if named is not None and named.unavailable and not named.connected:
                return Fitted(plan, _why_type_missing(pool, step_type, known))
            # Otherwise an agent of the type may connect (another machine, another language): the task
            # waits, and its status says for what (or one is launched on demand).
        elif step.capability and not pool.takers("", step.capability):
            if pool.takers("", ""):
                warnings.append(
                    f"step {step.key}: no agent here declares capability {step.capability}; "
                    "re-routed to any agent"
                )
                step = replace(step, capability="")
            else:
                return Fitted(
                    plan,
                    f"step {step.key} needs capability {step.capability} and no agent here can "
                    f"take it ({pool.describe()})",
                )
        steps.append(step)
    if dropped:
        for step in steps:
            step.depends_on = [d for d in step.depends_on if d not in dropped]
    fitted = replace(plan, subtasks=steps, warnings=warnings)
    return Fitted(fitted)


def _route_synthesis(
    step: PlannedSubtask, step_type: str, pool: AgentPool, *, prefer_coordinator: bool = True
) -> PlannedSubtask | None:
    """Where a synthesis step goes (None: no agent here can synthesize).

    Under consensus the step becomes candidates on distinct agents: any type that declares ``synthesis``
    may answer, not only the coordinator.
    """
    own = pool.types.get(step_type) if step_type else None
    if own is not None and own.present and (own.declares(SYNTHESIS) or "*" in own.capabilities):
        return replace(step, agent_type=step_type, capability=SYNTHESIS)
    coordinator = pool.types.get(COORDINATOR)
    if prefer_coordinator and coordinator is not None and coordinator.present and not coordinator.offline:
        return replace(step, agent_type=COORDINATOR, capability=SYNTHESIS)
    if any(t.declares(SYNTHESIS) and not t.offline for t in pool.present()):
        return replace(step, agent_type="", capability=SYNTHESIS)
    if not step_type and pool.takers("", SYNTHESIS):  # an offline pool: generic work for echo and the like
        return replace(step, agent_type="", capability=SYNTHESIS)
    return None
