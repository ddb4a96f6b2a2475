"""Matching offline and model-backed agents, and fitting plans to the agent types there are."""

from __future__ import annotations

from controlplane.domain.model import ExecutionPlan, PlannedSubtask, SubtaskKind, Task
from controlplane.domain.pool import BACKING_MODEL, BACKING_OFFLINE, AgentPool, PoolType, fit_plan
from controlplane.scheduler.queue import matches

ECHO = PoolType("echo", frozenset({"*", "echo"}), BACKING_OFFLINE, connected=2)
RESEARCHER = PoolType(
    "researcher", frozenset({"web_search", "synthesis", "researcher"}), BACKING_MODEL, connected=1
)
CODER = PoolType("coder", frozenset({"programming", "coder"}), BACKING_MODEL, connected=1)
COORDINATOR = PoolType("coordinator", frozenset({"synthesis", "coordinator"}), BACKING_MODEL, launchable=True)
COUNTER = PoolType("word_count", frozenset({"word_count"}), BACKING_OFFLINE, connected=1)


def plan(*steps: PlannedSubtask) -> ExecutionPlan:
    return ExecutionPlan(subtasks=list(steps), planner="test")


def work(key: str, capability: str = "", agent_type: str = "") -> PlannedSubtask:
    return PlannedSubtask(key, key, f"do {key}", capability, agent_type)


def synthesis(*deps: str) -> PlannedSubtask:
    return PlannedSubtask(
        "synthesis", "Synthesize", "combine", "synthesis", kind=SubtaskKind.SYNTHESIS, depends_on=list(deps)
    )


def test_offline_agents_take_typed_work_only_when_addressed_or_alone() -> None:
    echo = ("echo", frozenset({"*", "echo"}))
    assert matches(("", "researcher"), *echo, offline=True, generic_ok=lambda _k: False) is False
    assert matches(("", ""), *echo, offline=True, generic_ok=lambda _k: False) is False
    assert matches(("echo", ""), *echo, offline=True, generic_ok=lambda _k: False) is True  # its own type
    assert matches(("", "researcher"), *echo, offline=True, generic_ok=lambda _k: True) is True  # alone
    shell = ("shell", frozenset({"shell", "word_count"}))
    assert matches(("", "word_count"), *shell, offline=True, generic_ok=lambda _k: False) is True  # declared
    assert matches(("", "researcher"), "researcher", frozenset({"researcher"})) is True  # model-backed


def test_takers_prefer_model_backed_types() -> None:
    pool = AgentPool.of([ECHO, RESEARCHER])
    assert [t.name for t in pool.takers("", "researcher")] == ["researcher"]
    assert [t.name for t in pool.takers("", "")] == ["researcher"]
    assert [t.name for t in pool.takers("echo", "")] == ["echo"]
    assert [t.name for t in AgentPool.of([ECHO]).takers("", "researcher")] == ["echo"]


def test_a_named_type_takes_every_work_step_whatever_the_capability() -> None:
    task = Task(id="t", description="d", agent_type="coder")
    fitted = fit_plan(plan(work("a", "web_search", "coder")), task, AgentPool.of([CODER, ECHO]))
    assert not fitted.refused
    (step,) = fitted.plan.subtasks
    assert (step.agent_type, step.capability) == ("coder", "")


def test_a_type_that_cannot_run_here_is_refused_with_the_reason() -> None:
    task = Task(id="t", description="d", agent_type="researcher")
    missing = PoolType(
        "researcher", frozenset({"researcher"}), BACKING_MODEL, unavailable="no Anthropic API key"
    )
    fitted = fit_plan(plan(work("a")), task, AgentPool.of([ECHO, missing]), {"researcher": "spec"})
    assert fitted.refused == "agents of type researcher cannot run here: no Anthropic API key"
    assert fit_plan(plan(work("a")), task, AgentPool.of([missing])).refused  # even with nothing connected
    # A type that is only absent (an agent of it may connect from elsewhere) is waited for.
    absent = fit_plan(
        plan(work("a")), Task(id="t", description="d", agent_type="ghost"), AgentPool.of([ECHO])
    )
    assert not absent.refused and absent.plan.subtasks[0].agent_type == "ghost"


def test_a_capability_nobody_has_is_re_routed_with_a_warning() -> None:
    fitted = fit_plan(plan(work("a", "telepathy")), Task(id="t", description="d"), AgentPool.of([RESEARCHER]))
    assert fitted.plan.subtasks[0].capability == ""
    assert any("telepathy" in w for w in fitted.plan.warnings)


def test_synthesis_goes_to_the_coordinator_when_there_is_one() -> None:
    steps = plan(work("a", "researcher"), work("b", "researcher"), synthesis("a", "b"))
    fitted = fit_plan(steps, Task(id="t", description="d"), AgentPool.of([RESEARCHER, COORDINATOR]))
    final = fitted.plan.subtasks[-1]
    assert (final.agent_type, final.capability) == ("coordinator", "synthesis")
    without = fit_plan(steps, Task(id="t", description="d"), AgentPool.of([RESEARCHER, ECHO]))
    assert (without.plan.subtasks[-1].agent_type, without.plan.subtasks[-1].capability) == ("", "synthesis")


def test_a_type_that_does_not_declare_synthesis_never_gets_it() -> None:
    task = Task(id="t", description="d", agent_type="word_count")
    steps = plan(work("a", agent_type="word_count"), work("b", agent_type="word_count"), synthesis("a", "b"))
    fitted = fit_plan(steps, task, AgentPool.of([COUNTER, ECHO]))
    assert [s.key for s in fitted.plan.subtasks] == ["a", "b"]  # the parts are joined by the control plane
    assert any("joined" in w for w in fitted.plan.warnings)
    with_coordinator = fit_plan(steps, task, AgentPool.of([COUNTER, COORDINATOR]))
    assert with_coordinator.plan.subtasks[-1].agent_type == "coordinator"
    own = PoolType("word_count", frozenset({"word_count", "synthesis"}), BACKING_OFFLINE, connected=1)
    assert fit_plan(steps, task, AgentPool.of([own])).plan.subtasks[-1].agent_type == "word_count"


def test_an_offline_pool_keeps_its_plan() -> None:
    steps = plan(work("a", "researcher"), work("b", "researcher"), synthesis("a", "b"))
    fitted = fit_plan(steps, Task(id="t", description="d"), AgentPool.of([ECHO]))
    assert [(s.agent_type, s.capability) for s in fitted.plan.subtasks] == [
        ("", "researcher"),
        ("", "researcher"),
        ("", "synthesis"),
    ]
    assert not fitted.plan.warnings


def test_under_consensus_any_type_that_synthesizes_may_answer() -> None:
    from controlplane.domain.model import ConsensusPolicy

    steps = plan(work("a", "researcher"), work("b", "researcher"), synthesis("a", "b"))
    task = Task(id="t", description="d", consensus=ConsensusPolicy(required=True))
    final = fit_plan(steps, task, AgentPool.of([RESEARCHER, COORDINATOR])).plan.subtasks[-1]
    assert (final.agent_type, final.capability) == ("", "synthesis")
