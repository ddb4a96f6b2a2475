"""The Claude planner: the model splits a task into a DAG of subtasks through a ``submit_plan`` tool.

The model must answer with one ``submit_plan`` call (structured output through
tool use). The plan is converted to an :class:`ExecutionPlan` and checked:
unique, safe keys; known dependencies; no cycle; non-empty instructions and
capabilities; at most ``min(max_fanout, max_subtasks)`` subtasks; a parallel
width of at most ``task.max_agents``. When the call fails, no tool call comes
back, or the plan is malformed or oversized, the deterministic plan is used
instead with the warning ``claude planner: <why>; used the deterministic plan``.

A plan with more than one work step always ends in a synthesis step
(capability ``synthesis``) that depends on the leaves; one is added when the
model left it out. For a task whose type names a capability (``research`` →
``researcher``...) the work steps are routed to that capability, as the
deterministic planner does; for ``mixed`` tasks the model's capabilities are kept.

The model is told the agent types that are connected or that the supervisor can
launch (``pool``, from the engine), so it plans only for those; a task naming an
agent type (``--agent-type X``) has every work step routed to X. The engine then
fits the plan to the pool (:func:`controlplane.domain.pool.fit_plan`): synthesis
goes to the coordinator when there is one, never to a type that does not declare
``synthesis``.

Planning is async only (``await planner.plan(task)``): the control plane runs it in the
background while the task is PENDING ("planning").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agent_sdk.context import Usage
from agent_sdk.pacing import UNPACED, ModelPacer, Permit
from controlplane.domain.model import ExecutionPlan, PlannedSubtask, SubtaskKind, Task
from controlplane.domain.planning import (
    SYNTHESIS_CAPABILITY,
    DeterministicPlanner,
    capability_for,
    validate_plan,
)
from controlplane.domain.pool import AgentPool
from maos_plugins.claude.client import (
    make_client,
    paced_call,
    report_success,
    request_options,
    translate_error,
)
from maos_plugins.claude.config import ClaudeConfig
from maos_plugins.claude.pricing import price_for, usage_cost_micros

if TYPE_CHECKING:
    from controlplane.pacing import Pacer

log = logging.getLogger(__name__)

#: Most subtasks the planner accepts from the model (besides ``tasks.max_fanout``).
DEFAULT_MAX_SUBTASKS = 32
PLANNER_MAX_TOKENS = 4096
#: The planning call may spend at most this share of a task's budget ...
PLANNER_BUDGET_SHARE = 0.25
#: ... and plans with the model only if that leaves it at least this many output tokens.
PLANNER_MIN_TOKENS = 256
#: Characters of each dependency's result the planner sees (every step sees it in full, within bounds).
PLANNER_DEPENDENCY_CHARS = 2000
PLANNER_TIMEOUT = 120.0
#: The longest the planning call waits for a permit while the model is paced (within tasks.planning_timeout).
PLANNER_PERMIT_WAIT = 30.0
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,62}$")
_CAPABILITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-.:]{0,62}$")
_TITLE_LIMIT = 80

#: Capabilities the model is told about (the user guide's agent types and what they can do).
KNOWN_CAPABILITIES = {
    "researcher": ["web_search", "data_analysis", "synthesis"],
    "coder": ["programming", "testing", "debugging"],
    "analyst": ["data_analysis", "visualization", "statistics"],
    "tester": ["test_generation", "validation", "qa"],
    "coordinator": ["orchestration", "consensus", "planning", "synthesis"],
}

SYSTEM_PROMPT = """\
You are the planner of MAOS, a system that runs the parts of a task in parallel on several agents.
Split the task into a small DAG of subtasks and submit it with the submit_plan tool (call it exactly once).

Rules:
- Make parts that can run in parallel whenever possible; add a dependency only when a part really needs
  another part's result. Dependencies name other subtasks' keys; there must be no cycle.
- Each subtask is self-contained: its instructions must make sense to an agent that sees only the task's
  shared context, these instructions and the results of its dependencies.
- Keys are short identifiers (letters, digits, _ and -), unique in the plan.
- capability: what the agent must be able to do. Agent types and their capabilities:
{capabilities}
  An agent type's name is also a capability (e.g. "coder").
- When there is more than one work step, end with one synthesis step (capability "synthesis",
  kind "synthesis") that depends on the leaves and combines their results into the final answer.
- Do not exceed {limit} subtasks, and never have more than {width} subtasks runnable at the same time.
- A simple task is one subtask.
- complexity: low, medium or high. recommended_agents: how many agents should work at once (1-{width}).
"""


def plan_tool(limit: int) -> dict[str, Any]:
    """The ``submit_plan`` tool (its input schema is the plan)."""
    return {
        "name": "submit_plan",
        "description": "Submit the execution plan: the subtasks, their dependencies and capabilities.",
        "input_schema": {
            "type": "object",
            "properties": {
                "subtasks": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": limit,
                    "items": {
                        "type": "object",
                        "properties": {
                            "key": {"type": "string", "description": "Unique short id, e.g. 'market_size'."},
                            "title": {"type": "string", "description": "A few words."},
                            "instructions": {"type": "string", "description": "What the agent must do."},
                            "capability": {"type": "string", "description": "The capability the work needs."},
                            "depends_on": {
                                "type": "array",
                                "items": {"type": "string"},
                                "description": "Keys of the subtasks whose results it needs.",
                            },
                            "kind": {"type": "string", "enum": ["work", "synthesis"]},
                        },
                        "required": ["key", "title", "instructions", "capability", "depends_on"],
                    },
                },
                "complexity": {"type": "string", "enum": ["low", "medium", "high"]},
                "recommended_agents": {"type": "integer", "minimum": 1},
            },
            "required": ["subtasks", "complexity", "recommended_agents"],
        },
    }


class PlanRejected(Exception):
    """The model's plan cannot be used."""


class ClaudePlanner:
    """A :class:`controlplane.domain.planning.Planner` backed by Claude.

    Args:
        config: Key, model and base URL (``accepts`` is true only when it has a key).
        max_fanout: ``tasks.max_fanout``.
        max_subtasks: The most subtasks taken from the model.
    """

    name = "claude"

    def __init__(self, config: ClaudeConfig, max_fanout: int = 256, max_subtasks: int = DEFAULT_MAX_SUBTASKS):
        self.config = config
        self.max_fanout = max_fanout
        self.max_subtasks = max(1, min(max_subtasks, max_fanout))
        self.fallback = DeterministicPlanner(max_fanout=max_fanout)

    def accepts(self, task: Task) -> bool:
        """Only when an API key is configured (offline installs use the deterministic planner)."""
        return bool(self.config.api_key)

    async def plan(
        self, task: Task, pool: AgentPool | None = None, pacer: Pacer | None = None
    ) -> ExecutionPlan:
        """The model's plan, or the deterministic plan with a warning."""
        plan, _ = await self.plan_with_usage(task, pool=pool, pacer=pacer)
        return plan

    async def plan_with_usage(
        self, task: Task, pool: AgentPool | None = None, pacer: Pacer | None = None
    ) -> tuple[ExecutionPlan, Usage]:
        """The plan and the tokens/cost the planning call used (to charge to the task).

        Args:
            task: The task to plan.
            pool: The agent types connected or launchable (None: the five Claude types are assumed).
            pacer: The control plane's pacer of model calls: the planning call takes a permit like an
                agent's calls (None: unpaced).
        """
        usage = Usage()
        max_tokens = self.planning_max_tokens(task)
        if max_tokens < PLANNER_MIN_TOKENS:
            return self._fallback(task, "the task's budget leaves too little for a model plan"), usage
        try:
            message = await self._ask(
                task, pool, max_tokens, pacer.model_pacer() if pacer is not None else UNPACED
            )
        except Exception as exc:  # noqa: BLE001 - any failure means the deterministic plan
            return self._fallback(task, f"the Messages API call failed ({translate_error(exc)})"), usage
        u = message.usage
        usage = Usage(
            input_tokens=int(u.input_tokens or 0),
            output_tokens=int(u.output_tokens or 0),
            cache_read_input_tokens=int(getattr(u, "cache_read_input_tokens", 0) or 0),
            cache_creation_input_tokens=int(getattr(u, "cache_creation_input_tokens", 0) or 0),
            cost_micros=usage_cost_micros(self.config.model, u),
            model_calls=1,
        )
        try:
            plan = self.convert(task, _tool_input(message))
        except PlanRejected as exc:
            return self._fallback(task, str(exc)), usage
        return plan, usage

    # --- the call ---------------------------------------------------------------

    def planning_max_tokens(self, task: Task) -> int:
        """``max_tokens`` of the planning call: within :data:`PLANNER_BUDGET_SHARE` of the task's budget."""
        max_tokens = min(self.config.max_tokens, PLANNER_MAX_TOKENS) or PLANNER_MAX_TOKENS
        prompt_tokens = (
            len(SYSTEM_PROMPT) + len(task.description) + len(task.context) + len(task.constraints)
        ) // 3 + 500  # the capability list and the tool schema
        if task.max_total_tokens:
            allowance = int(task.max_total_tokens * PLANNER_BUDGET_SHARE) - task.usage.total_tokens
            max_tokens = min(max_tokens, allowance - prompt_tokens)
        price = price_for(self.config.model)
        if task.max_cost_micros and price is not None and price.output > 0:
            allowance = int(task.max_cost_micros * PLANNER_BUDGET_SHARE) - task.usage.cost_micros
            max_tokens = min(max_tokens, int((allowance - prompt_tokens * price.input) / price.output))
        return max_tokens

    def _width_limit(self, task: Task) -> int:
        return max(1, min(task.max_agents, self.max_fanout))

    async def _ask(
        self,
        task: Task,
        pool: AgentPool | None = None,
        max_tokens: int = PLANNER_MAX_TOKENS,
        pacer: ModelPacer = UNPACED,
    ) -> Any:
        width = self._width_limit(task)
        offered = offered_types(pool, task)
        capabilities = "\n".join(f"  - {name}: {', '.join(caps) or name}" for name, caps in offered.items())
        system = SYSTEM_PROMPT.format(capabilities=capabilities, limit=self.max_subtasks, width=width)
        wanted = task.agent_type or capability_for(task.task_type)
        lines = [
            f'<task type="{task.task_type}" max_agents="{task.max_agents}">\n{task.description.strip()}\n</task>'
        ]
        if task.context.strip():
            lines.append(f"<context>\n{task.context.strip()}\n</context>")
        if task.constraints.strip():
            lines.append(f"<constraints>\n{task.constraints.strip()}\n</constraints>")
        for dep in task.dependency_results:  # what the task builds on (the steps see it whole, within bounds)
            excerpt = dep.output[:PLANNER_DEPENDENCY_CHARS] + (
                "…" if len(dep.output) > PLANNER_DEPENDENCY_CHARS else ""
            )
            lines.append(f'<dependency task="tasks/{dep.task_id}">\n{excerpt.strip()}\n</dependency>')
        if wanted:
            lines.append(
                f'The work steps of this task run on "{wanted}" agents; use capability "{wanted}" '
                f'for them (and "{SYNTHESIS_CAPABILITY}" for the synthesis step).'
            )
        lines.append("Plan this task and submit the plan with submit_plan.")
        config = replace(self.config, max_retry_wait=max(self.config.max_retry_wait, PLANNER_PERMIT_WAIT))
        text = "\n\n".join(lines)

        async def attempt(permit: Permit) -> Any:
            async with make_client(config) as client:
                # Plain dicts for messages, tools and tool_choice: the SDK's TypedDicts accept them at run time.
                raw = await client.messages.with_raw_response.create(  # type: ignore[call-overload]
                    model=config.model,
                    max_tokens=max_tokens,
                    system=system,
                    messages=[{"role": "user", "content": text}],
                    tools=[plan_tool(self.max_subtasks)],
                    tool_choice={"type": "tool", "name": "submit_plan"},
                    timeout=min(config.timeout, PLANNER_TIMEOUT),
                    **request_options(config),
                )
                answer = await raw.parse()
            report_success(permit, raw.headers, answer)
            return answer

        prompt_tokens = int((len(system) + len(text)) / 3.5) + 500  # the tool schema
        return await paced_call(pacer, config, prompt_tokens, max_tokens, attempt)

    def _fallback(self, task: Task, why: str) -> ExecutionPlan:
        plan = self.fallback.plan_now(task)
        warning = f"claude planner: {why}; used the deterministic plan"
        log.warning("task %s: %s", task.id, warning)
        plan.warnings = [*plan.warnings, warning]
        return plan

    # --- conversion and checks ----------------------------------------------------

    def convert(self, task: Task, data: Any) -> ExecutionPlan:
        """The :class:`ExecutionPlan` of a ``submit_plan`` input; :class:`PlanRejected` if unusable."""
        if not isinstance(data, Mapping):
            raise PlanRejected("the submit_plan input is not an object")
        raw_steps = data.get("subtasks")
        if not isinstance(raw_steps, list) or not raw_steps:
            raise PlanRejected("the plan has no subtasks")
        if len(raw_steps) > self.max_subtasks:
            raise PlanRejected(
                f"the plan has {len(raw_steps)} subtasks, more than the limit {self.max_subtasks}"
            )
        forced = task.agent_type or (capability_for(task.task_type) if task.task_type != "mixed" else "")
        steps = [self._step(task, index, raw, forced) for index, raw in enumerate(raw_steps)]

        work = [s for s in steps if s.kind != SubtaskKind.SYNTHESIS]
        if not work:
            raise PlanRejected("the plan has no work step")
        if len(work) > 1 and not any(s.kind == SubtaskKind.SYNTHESIS for s in steps):
            steps.append(self._synthesis_step(task, steps))

        plan = ExecutionPlan(subtasks=steps, planner=self.name)
        problems = validate_plan(plan, self.max_fanout)
        if problems:
            raise PlanRejected("; ".join(problems))
        _gather_leaves(steps)
        levels = dag_levels(steps)
        width = max(levels.count(level) for level in set(levels))
        limit = self._width_limit(task)
        if width > limit:
            raise PlanRejected(
                f"the plan runs {width} subtasks at once, more than max_agents {task.max_agents}"
            )
        critical = max(levels) + 1
        plan.critical_path_length = critical
        plan.estimated_parallel_efficiency = round(len(steps) / (critical * width), 3)
        complexity = data.get("complexity")
        plan.complexity = (
            complexity
            if complexity in ("low", "medium", "high")
            else ("low" if len(work) <= 3 else "medium" if len(work) <= 8 else "high")
        )
        recommended = data.get("recommended_agents")
        if isinstance(recommended, bool) or not isinstance(recommended, int) or recommended < 1:
            recommended = width
        plan.recommended_agents = max(1, min(recommended, limit))
        return plan

    def _step(self, task: Task, index: int, raw: Any, forced: str) -> PlannedSubtask:
        where = f"subtask {index + 1}"
        if not isinstance(raw, Mapping):
            raise PlanRejected(f"{where} is not an object")
        key = raw.get("key")
        if not isinstance(key, str) or not _KEY.match(key.strip()):
            raise PlanRejected(f"{where} has an invalid key {key!r}")
        key = key.strip()
        where = f"subtask {key}"
        instructions = raw.get("instructions")
        if not isinstance(instructions, str) or not instructions.strip():
            raise PlanRejected(f"{where} has no instructions")
        title = raw.get("title")
        title = title.strip() if isinstance(title, str) and title.strip() else instructions.strip()
        title = title.splitlines()[0]
        if len(title) > _TITLE_LIMIT:
            title = title[: _TITLE_LIMIT - 1] + "…"
        capability = raw.get("capability")
        if not isinstance(capability, str) or not capability.strip():
            raise PlanRejected(f"{where} has no capability")
        capability = capability.strip()
        if not _CAPABILITY.match(capability):
            raise PlanRejected(f"{where} has an invalid capability {capability!r}")
        deps = raw.get("depends_on", [])
        if deps is None:
            deps = []
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise PlanRejected(f"{where}: depends_on is not a list of keys")
        deps = list(dict.fromkeys(d.strip() for d in deps))
        synthesis = raw.get("kind") == "synthesis" or capability == SYNTHESIS_CAPABILITY
        if synthesis:
            capability = SYNTHESIS_CAPABILITY
        elif forced:
            capability = forced
        return PlannedSubtask(
            key=key,
            title=title,
            instructions=instructions.strip(),
            capability=capability,
            agent_type=task.agent_type,
            kind=SubtaskKind.SYNTHESIS if synthesis else SubtaskKind.WORK,
            depends_on=deps,
        )

    def _synthesis_step(self, task: Task, steps: list[PlannedSubtask]) -> PlannedSubtask:
        needed = {d for s in steps for d in s.depends_on}
        leaves = [s.key for s in steps if s.key not in needed]
        key = "synthesis"
        taken = {s.key for s in steps}
        suffix = 1
        while key in taken:
            suffix += 1
            key = f"synthesis_{suffix}"
        return PlannedSubtask(
            key=key,
            title="Synthesize the results",
            instructions=f"Combine the results of the parts into one answer to:\n{task.description}",
            capability=SYNTHESIS_CAPABILITY,
            agent_type=task.agent_type,
            kind=SubtaskKind.SYNTHESIS,
            depends_on=leaves,
        )


def offered_types(pool: AgentPool | None, task: Task) -> dict[str, list[str]]:
    """The agent types the model is told about, with their capabilities.

    Those of ``pool`` that are connected or launchable and model-backed (plus the task's own type);
    the five Claude types when there is no pool or it has none.
    """
    if pool is None:
        return dict(KNOWN_CAPABILITIES)
    offered = {
        t.name: sorted(c for c in t.capabilities if c not in (t.name, "*"))
        for t in pool.present()
        if not t.offline or t.name == task.agent_type
    }
    return offered or dict(KNOWN_CAPABILITIES)


def _gather_leaves(steps: list[PlannedSubtask]) -> None:
    """When the plan ends in one synthesis step, make it depend on every other leaf too.

    A work step nothing depends on would otherwise finish without its result reaching the final answer.
    Leaves that (transitively) depend on the synthesis step are left alone (that would be a cycle).
    """
    needed = {d for s in steps for d in s.depends_on}
    finals = [s for s in steps if s.kind == SubtaskKind.SYNTHESIS and s.key not in needed]
    if len(finals) != 1:
        return
    final = finals[0]
    by_key = {s.key: s for s in steps}

    def depends_on_final(key: str, seen: set[str]) -> bool:
        if key == final.key:
            return True
        if key in seen:
            return False
        seen.add(key)
        return any(depends_on_final(d, seen) for d in by_key[key].depends_on)

    for step in steps:
        if (
            step is not final
            and step.key not in needed
            and step.key not in final.depends_on
            and not depends_on_final(step.key, set())
        ):
            final.depends_on.append(step.key)


def _tool_input(message: Any) -> Any:
    for block in getattr(message, "content", None) or []:
        if getattr(block, "type", "") == "tool_use" and getattr(block, "name", "") == "submit_plan":
            return block.input
    raise PlanRejected("the model did not call submit_plan")


def dag_levels(steps: list[PlannedSubtask]) -> list[int]:
    """Each step's level: the length of the longest dependency chain before it (roots are 0).

    Steps of one level can run at the same time; the plan's width is the size of its largest level and
    its critical path is the number of levels. The DAG must be valid (no cycle, known keys).
    """
    by_key = {s.key: s for s in steps}
    memo: dict[str, int] = {}

    def level(key: str) -> int:
        if key not in memo:
            deps = by_key[key].depends_on
            memo[key] = 1 + max(level(d) for d in deps) if deps else 0
        return memo[key]

    return [level(s.key) for s in steps]


__all__ = ["ClaudePlanner", "PlanRejected", "dag_levels", "offered_types", "plan_tool"]
