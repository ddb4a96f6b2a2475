"""The deterministic planner and plan validation."""

from __future__ import annotations

import pytest

from controlplane.domain.model import ExecutionPlan, PlannedSubtask, SubtaskKind, Task
from controlplane.domain.planning import DeterministicPlanner, capability_for, list_items, validate_plan


@pytest.mark.parametrize(
    ("description", "items"),
    [
        ("What is 2+2?", []),
        ("Research:\n1. market\n2. competitors\n3. pricing", ["market", "competitors", "pricing"]),
        ("Do:\n- a\n- b\n  continued\n* c", ["a", "b continued", "c"]),
        ("Plan a launch: 1. audience 2. channels 3. budget", ["audience", "channels", "budget"]),
        ("Pick 1) red, 2) blue", ["red", "blue"]),
        ("Version 2. is out. Then 3. things", []),  # not numbered from 1: not a list
    ],
)
def test_list_items(description: str, items: list[str]) -> None:
    assert list_items(description)[1] == items


def test_no_list_is_one_subtask_with_the_type_capability() -> None:
    plan = DeterministicPlanner().plan_now(Task(id="t", description="Implement OAuth2", task_type="coding"))
    assert [(s.key, s.capability, s.kind) for s in plan.subtasks] == [("s0", "coder", SubtaskKind.WORK)]
    assert plan.recommended_agents == 1


def test_items_become_parallel_subtasks_and_a_synthesis() -> None:
    task = Task(id="t", description="Research:\n1. a\n2. b\n3. c", task_type="research", max_agents=8)
    plan = DeterministicPlanner().plan_now(task)
    work = [s for s in plan.subtasks if s.kind == SubtaskKind.WORK]
    synthesis = [s for s in plan.subtasks if s.kind == SubtaskKind.SYNTHESIS]
    assert [s.capability for s in work] == ["researcher"] * 3
    assert "- b" in work[1].instructions and "Research:" in work[1].instructions
    assert len(synthesis) == 1 and synthesis[0].depends_on == ["s0", "s1", "s2"]
    assert plan.recommended_agents == 3
    assert plan.critical_path_length == 2
    assert validate_plan(plan, 256) == []


def test_max_agents_caps_the_width_and_says_so() -> None:
    task = Task(id="t", description="\n".join(f"- item {i}" for i in range(10)), max_agents=3)
    plan = DeterministicPlanner().plan_now(task)
    work = [s for s in plan.subtasks if s.kind == SubtaskKind.WORK]
    assert len(work) == 3
    assert sum(s.instructions.count("- item") for s in work) == 10
    assert plan.warnings and "max_agents 3" in plan.warnings[0]


def test_capability_of_custom_types_is_the_type() -> None:
    assert capability_for("mixed") == ""
    assert capability_for("domain_researcher") == "domain_researcher"


def test_validate_plan_rejects_cycles_unknown_dependencies_and_fanout() -> None:
    def plan(*steps: PlannedSubtask) -> ExecutionPlan:
        return ExecutionPlan(subtasks=list(steps), planner="test")

    cyclic = plan(
        PlannedSubtask("a", "a", "a", depends_on=["b"]), PlannedSubtask("b", "b", "b", depends_on=["a"])
    )
    assert "cycle" in validate_plan(cyclic, 10)[0]
    dangling = plan(PlannedSubtask("a", "a", "a", depends_on=["zz"]))
    assert "unknown zz" in validate_plan(dangling, 10)[0]
    wide = plan(*(PlannedSubtask(f"s{i}", "x", "x") for i in range(5)))
    assert "more than the limit 4" in validate_plan(wide, 4)[0]
    assert validate_plan(plan(), 4) == ["the plan has no subtasks"]


def test_planner_capabilities_are_recognised_by_their_interfaces() -> None:
    from controlplane.domain.planning import PlansAtOnce, ReportsPlanningUsage
    from maos_plugins.claude.planner import ClaudePlanner

    class OnlyPlans:
        name = "only-plans"

        def accepts(self, task: object) -> bool:
            return True

        async def plan(self, task: object) -> object:
            raise NotImplementedError

    assert isinstance(DeterministicPlanner(), PlansAtOnce)
    assert not isinstance(DeterministicPlanner(), ReportsPlanningUsage)
    assert issubclass(ClaudePlanner, ReportsPlanningUsage) and not issubclass(ClaudePlanner, PlansAtOnce)
    assert not isinstance(OnlyPlans(), PlansAtOnce | ReportsPlanningUsage)
