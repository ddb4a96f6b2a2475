"""Turning a task into a plan: a small DAG of subtasks.

Planners are plugins (``register_planners``). The built-in deterministic
planner needs no model: one subtask per enumerated item or bullet of the
description, plus a synthesis step that depends on them; a description with
no list is one subtask. ``max_agents`` caps the parallel width by grouping
items.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from controlplane.domain.model import ExecutionPlan, PlannedSubtask, SubtaskKind, Task

if TYPE_CHECKING:
    from controlplane.domain.model import Usage

# Task types the user guide names, and the capability their work needs. Any
# other type is a registered or custom agent type and needs that capability;
# every agent has its own type name as a capability.
TYPE_CAPABILITIES = {
    "research": "researcher",
    "coding": "coder",
    "analysis": "analyst",
    "testing": "tester",
    "mixed": "",
}
SYNTHESIS_CAPABILITY = "synthesis"

_ITEM = re.compile(r"^\s*(?:[-*•+]|\(?\d{1,3}[.)]|\(?[a-zA-Z][.)])\s+(?P<text>\S.*)$")


class Planner(Protocol):
    """What ``register_planners`` returns."""

    name: str

    def accepts(self, task: Task) -> bool:
        """Whether this planner plans the task."""

    async def plan(self, task: Task) -> ExecutionPlan:
        """Make the plan (may call a model).

        A planner whose ``plan`` also takes a ``pool`` keyword is given the agent types that are
        connected or launchable (:class:`controlplane.domain.pool.AgentPool`), and one that takes a
        ``pacer`` keyword the control plane's pacer of model calls. Every plan is fitted to
        the pool before it runs (:func:`controlplane.domain.pool.fit_plan`).

        A planner may also have the optional capabilities :class:`PlansAtOnce` (``plan_now``) and
        :class:`ReportsPlanningUsage` (``plan_with_usage``). The control plane looks them up by
        these names and nothing else, and a capability counts only when its attribute is
        callable: a planner whose ``plan_now`` or ``plan_with_usage`` is anything else is asked
        through ``plan``.
        """


@runtime_checkable
class PlansAtOnce(Protocol):
    """Optional planner capability: it plans synchronously, without calling a model.

    The control plane then plans the task at once, in the call that made it ready (no
    background planning, no ``tasks.planning_timeout``), and ``maos task analyze`` may use it
    for a caller who may not plan with a model. The built-in deterministic planner has it.
    """

    def plan_now(self, task: Task) -> ExecutionPlan:
        """The plan, synchronously (it must not block on I/O)."""


@runtime_checkable
class ReportsPlanningUsage(Protocol):
    """Optional planner capability: it reports what planning spent, to be charged to the task.

    Asked instead of ``plan`` when present; takes the same ``pool``/``pacer`` keywords as ``plan``.
    The Claude planner has it.
    """

    async def plan_with_usage(self, task: Task, **kwargs: object) -> tuple[ExecutionPlan, Usage]:
        """The plan and the tokens and cost the planning call used."""


def capability_for(task_type: str) -> str:
    """The capability work of a task type needs ("" means any agent)."""
    return TYPE_CAPABILITIES.get(task_type, task_type)


_INLINE_NUMBER = re.compile(r"(?:^|(?<=\s))(\d{1,2})[.)]\s+")


def _inline_items(description: str) -> tuple[str, list[str]]:
    """Items numbered 1, 2, 3... within one line ("Plan: 1. a 2. b 3. c")."""
    marks = list(_INLINE_NUMBER.finditer(description))
    numbered = [int(m.group(1)) for m in marks]
    if len(marks) < 2 or numbered != list(range(1, len(marks) + 1)):
        return description.strip(), []
    items = []
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(description)
        items.append(description[mark.end() : end].strip().rstrip(",;").strip())
    return description[: marks[0].start()].strip(), [item for item in items if item]


def list_items(description: str) -> tuple[str, list[str]]:
    """Split a description into its preamble and its enumerated items or bullets.

    Items are lines starting with a bullet or a number ("- a", "2. b", "c)"),
    or, in a description without such lines, items numbered 1, 2, 3... inline.
    """
    preamble: list[str] = []
    items: list[str] = []
    for line in description.splitlines():
        match = _ITEM.match(line)
        if match:
            items.append(match.group("text").strip())
        elif items and line.strip() and line.startswith((" ", "\t")):
            items[-1] += " " + line.strip()  # a wrapped item continues on an indented line
        elif not items:
            preamble.append(line)
    if not items:
        return _inline_items(description)
    return "\n".join(preamble).strip(), items


def _groups(items: list[str], width: int) -> list[list[str]]:
    """Split items into at most ``width`` contiguous groups of near-equal size."""
    width = max(1, min(width, len(items)))
    size, extra = divmod(len(items), width)
    groups, start = [], 0
    for index in range(width):
        end = start + size + (1 if index < extra else 0)
        groups.append(items[start:end])
        start = end
    return groups


def efficiency(plan_width: int, work_steps: int, has_synthesis: bool) -> tuple[float, int]:
    """Estimated parallel efficiency and critical path length of a fan-out/fan-in plan."""
    critical = 1 + (1 if has_synthesis else 0)
    total = work_steps + (1 if has_synthesis else 0)
    return total / (critical * max(1, plan_width)), critical


class DeterministicPlanner:
    """The built-in planner that needs no model."""

    name = "deterministic"

    def __init__(self, max_fanout: int = 256):
        self.max_fanout = max_fanout

    def accepts(self, task: Task) -> bool:
        """Plans every task."""
        return True

    async def plan(self, task: Task) -> ExecutionPlan:
        """Plan the task (see the module docstring)."""
        return self.plan_now(task)

    def plan_now(self, task: Task) -> ExecutionPlan:
        """The same plan, synchronously."""
        capability = capability_for(task.task_type)
        preamble, items = list_items(task.description)
        if len(items) < 2:
            step = PlannedSubtask(
                key="s0",
                title=_title(task.description),
                instructions=task.description,
                capability=capability,
                agent_type=task.agent_type,
            )
            return ExecutionPlan(subtasks=[step], planner=self.name, recommended_agents=1)
        warnings = []
        width = min(task.max_agents, self.max_fanout - 1)
        if len(items) > width:
            warnings.append(
                f"{len(items)} items grouped into {width} subtasks (max_agents {task.max_agents})"
            )
        steps = []
        for index, group in enumerate(_groups(items, width)):
            text = "\n".join(f"- {item}" for item in group)
            instructions = f"{preamble}\n\n{text}".strip() if preamble else text
            steps.append(
                PlannedSubtask(
                    key=f"s{index}",
                    title=_title(group[0]) if len(group) == 1 else f"{_title(group[0])} (+{len(group) - 1})",
                    instructions=instructions,
                    capability=capability,
                    agent_type=task.agent_type,
                )
            )
        steps.append(
            PlannedSubtask(
                key="synthesis",
                title="Synthesize the results",
                instructions=f"Combine the results of the parts into one answer to:\n{task.description}",
                # Agents of a named type take every step of their task, synthesis included.
                capability="" if task.agent_type else SYNTHESIS_CAPABILITY,
                agent_type=task.agent_type,
                kind=SubtaskKind.SYNTHESIS,
                depends_on=[s.key for s in steps],
            )
        )
        eff, critical = efficiency(len(steps) - 1, len(steps) - 1, True)
        return ExecutionPlan(
            subtasks=steps,
            planner=self.name,
            warnings=warnings,
            complexity="low" if len(items) <= 3 else "medium" if len(items) <= 8 else "high",
            recommended_agents=len(steps) - 1,
            estimated_parallel_efficiency=round(eff, 3),
            critical_path_length=critical,
        )


def _title(text: str, limit: int = 80) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def validate_plan(plan: ExecutionPlan, max_fanout: int) -> list[str]:
    """Problems that make a plan unusable (empty when it is fine)."""
    problems = []
    keys = [s.key for s in plan.subtasks]
    if not plan.subtasks:
        problems.append("the plan has no subtasks")
    if len(plan.subtasks) > max_fanout:
        problems.append(f"the plan has {len(plan.subtasks)} subtasks, more than the limit {max_fanout}")
    if len(set(keys)) != len(keys):
        problems.append("subtask keys are not unique")
    known = set(keys)
    for step in plan.subtasks:
        missing = [d for d in step.depends_on if d not in known]
        if missing:
            problems.append(f"subtask {step.key} depends on unknown {', '.join(missing)}")
    if not problems and any(s.depends_on for s in plan.subtasks) and _has_cycle(plan):
        problems.append("the plan's dependencies form a cycle")
    return problems


def _has_cycle(plan: ExecutionPlan) -> bool:
    deps = {s.key: list(s.depends_on) for s in plan.subtasks}
    state: dict[str, int] = {}

    def visit(key: str) -> bool:
        if state.get(key) == 1:
            return True
        if state.get(key) == 2:
            return False
        state[key] = 1
        if any(visit(d) for d in deps[key]):
            return True
        state[key] = 2
        return False

    return any(visit(k) for k in deps)
