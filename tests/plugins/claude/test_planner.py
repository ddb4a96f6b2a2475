"""The Claude planner against the fake Messages API: tool-use plans, and every reason to fall back."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.config import load_settings
from controlplane.domain.model import SubtaskKind, Task
from controlplane.domain.planning import DeterministicPlanner
from maos_plugins.claude import plugin
from maos_plugins.claude.config import ClaudeConfig
from maos_plugins.claude.planner import ClaudePlanner, dag_levels
from tests.harness.messages_api import MessagesAPIServer
from tests.plugins.claude.conftest import API_KEY

DESCRIPTION = "Compare three cloud providers:\n- AWS\n- Azure\n- GCP"


def make_task(**fields: Any) -> Task:
    return Task(id="t1", description=fields.pop("description", DESCRIPTION), **fields)


def planner(config: ClaudeConfig, **kwargs: Any) -> ClaudePlanner:
    return ClaudePlanner(config, **kwargs)


def step(key: str, capability: str = "data_analysis", deps: list[str] | None = None, **extra: Any) -> dict:
    return {
        "key": key,
        "title": f"Step {key}",
        "instructions": f"Do {key}.",
        "capability": capability,
        "depends_on": deps or [],
        **extra,
    }


def good_plan() -> dict:
    return {
        "subtasks": [
            step("aws", "web_search"),
            step("azure", "web_search"),
            step("gcp", "web_search"),
            step("table", "data_analysis", ["aws", "azure", "gcp"]),
            step("report", "synthesis", ["table"], kind="synthesis"),
        ],
        "complexity": "medium",
        "recommended_agents": 3,
    }


def assert_fallback(plan: Any, why: str) -> None:
    assert plan.planner == "deterministic"
    warning = plan.warnings[-1]
    assert warning.startswith("claude planner: ") and warning.endswith("; used the deterministic plan"), (
        warning
    )
    assert why in warning, warning


async def test_valid_plan_through_tool_use(api: MessagesAPIServer, config: ClaudeConfig) -> None:
    api.push_tool_use("submit_plan", good_plan(), usage={"input_tokens": 500, "output_tokens": 200})
    task = make_task(task_type="mixed", max_agents=4)
    plan, usage = await planner(config).plan_with_usage(task)

    assert plan.planner == "claude" and not plan.warnings
    by_key = {s.key: s for s in plan.subtasks}
    assert list(by_key) == ["aws", "azure", "gcp", "table", "report"]
    assert by_key["aws"].capability == "web_search" and by_key["aws"].depends_on == []
    assert by_key["table"].capability == "data_analysis"
    assert by_key["table"].depends_on == ["aws", "azure", "gcp"]
    assert by_key["report"].kind == SubtaskKind.SYNTHESIS and by_key["report"].capability == "synthesis"
    assert by_key["report"].depends_on == ["table"]
    assert plan.critical_path_length == 3
    assert plan.estimated_parallel_efficiency == round(5 / (3 * 3), 3)
    assert plan.complexity == "medium" and plan.recommended_agents == 3
    assert usage.model_calls == 1 and usage.input_tokens == 500 and usage.cost_micros > 0

    body = api.requests[0].body
    assert body["tool_choice"] == {"type": "tool", "name": "submit_plan"}
    schema = body["tools"][0]["input_schema"]
    assert set(schema["properties"]["subtasks"]["items"]["required"]) == {
        "key",
        "title",
        "instructions",
        "capability",
        "depends_on",
    }
    assert {"complexity", "recommended_agents"} <= set(schema["properties"])
    assert "AWS" in body["messages"][0]["content"]


async def test_typed_task_routes_work_to_the_types_capability(
    api: MessagesAPIServer, config: ClaudeConfig
) -> None:
    api.push_tool_use("submit_plan", good_plan())
    plan = await planner(config).plan(make_task(task_type="research"))
    caps = {s.key: s.capability for s in plan.subtasks}
    assert caps == {
        "aws": "researcher",
        "azure": "researcher",
        "gcp": "researcher",
        "table": "researcher",
        "report": "synthesis",
    }
    assert 'capability "researcher"' in api.requests[0].body["messages"][0]["content"]


async def test_missing_synthesis_step_is_added(api: MessagesAPIServer, config: ClaudeConfig) -> None:
    api.push_tool_use(
        "submit_plan",
        {
            "subtasks": [step("a"), step("b"), step("c", deps=["a"])],
            "complexity": "low",
            "recommended_agents": 2,
        },
    )
    plan = await planner(config).plan(make_task(task_type="mixed"))
    final = plan.subtasks[-1]
    assert final.kind == SubtaskKind.SYNTHESIS and final.capability == "synthesis"
    assert sorted(final.depends_on) == ["b", "c"]  # the leaves
    assert plan.critical_path_length == 3


async def test_a_dangling_leaf_joins_the_synthesis(api: MessagesAPIServer, config: ClaudeConfig) -> None:
    api.push_tool_use(
        "submit_plan",
        {
            "subtasks": [step("a"), step("b"), step("s", "synthesis", ["a"])],
            "complexity": "low",
            "recommended_agents": 2,
        },
    )
    plan = await planner(config).plan(make_task(task_type="mixed"))
    assert [s.key for s in plan.subtasks] == ["a", "b", "s"]
    assert plan.subtasks[-1].depends_on == ["a", "b"]


async def test_single_step_plan_needs_no_synthesis(api: MessagesAPIServer, config: ClaudeConfig) -> None:
    api.push_tool_use(
        "submit_plan", {"subtasks": [step("only")], "complexity": "low", "recommended_agents": 1}
    )
    plan = await planner(config).plan(make_task(description="What is 2+2?"))
    assert [s.key for s in plan.subtasks] == ["only"] and plan.planner == "claude"
    assert plan.critical_path_length == 1 and plan.estimated_parallel_efficiency == 1.0


def wide(n: int) -> dict:
    return {"subtasks": [step(f"s{i}") for i in range(n)], "complexity": "high", "recommended_agents": n}


MALFORMED = {
    "missing tool call": (
        lambda api: api.push_text("Here is my plan: do it all."),
        "did not call submit_plan",
    ),
    "cycle": (
        lambda api: api.push_tool_use(
            "submit_plan",
            {
                "subtasks": [step("a", deps=["b"]), step("b", deps=["a"])],
                "complexity": "low",
                "recommended_agents": 1,
            },
        ),
        "cycle",
    ),
    "unknown dependency": (
        lambda api: api.push_tool_use(
            "submit_plan",
            {"subtasks": [step("a"), step("b", deps=["zzz"])], "complexity": "low", "recommended_agents": 1},
        ),
        "unknown zzz",
    ),
    "too many subtasks": (lambda api: api.push_tool_use("submit_plan", wide(40)), "more than the limit"),
    "width over max_agents": (
        lambda api: api.push_tool_use("submit_plan", wide(6)),
        "more than max_agents 4",
    ),
    "empty capability": (
        lambda api: api.push_tool_use(
            "submit_plan",
            {"subtasks": [step("a", capability="  ")], "complexity": "low", "recommended_agents": 1},
        ),
        "no capability",
    ),
    "duplicate keys": (
        lambda api: api.push_tool_use(
            "submit_plan", {"subtasks": [step("a"), step("a")], "complexity": "low", "recommended_agents": 1}
        ),
        "not unique",
    ),
    "bad key": (
        lambda api: api.push_tool_use(
            "submit_plan", {"subtasks": [step("../etc")], "complexity": "low", "recommended_agents": 1}
        ),
        "invalid key",
    ),
    "no subtasks": (
        lambda api: api.push_tool_use("submit_plan", {"subtasks": [], "complexity": "low"}),
        "no subtasks",
    ),
    "not an object": (lambda api: api.push_tool_use("submit_plan", "do everything"), "not an object"),
    "body not json": (lambda api: api.push_malformed("{oops"), "Messages API call failed"),
    "api error": (lambda api: api.push_error(400, "scripted bad request"), "scripted bad request"),
    "overloaded": (lambda api: [api.push_error(529, retry_after=0.01) for _ in range(3)], "overloaded"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_unusable_plans_fall_back_to_the_deterministic_plan(
    api: MessagesAPIServer, config: ClaudeConfig, case: str
) -> None:
    script, why = MALFORMED[case]
    script(api)
    task = make_task(task_type="research", max_agents=4)
    plan = await planner(config).plan(task)
    assert_fallback(plan, why)
    expected = DeterministicPlanner().plan_now(task)
    assert [(s.key, s.capability, s.depends_on) for s in plan.subtasks] == [
        (s.key, s.capability, s.depends_on) for s in expected.subtasks
    ]


async def test_plan_over_max_fanout_falls_back(api: MessagesAPIServer, config: ClaudeConfig) -> None:
    api.push_tool_use("submit_plan", wide(4))
    plan = await planner(config, max_fanout=4).plan(make_task(max_agents=10))
    assert_fallback(plan, "more than the limit 4")


def test_accepts_only_with_an_api_key(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = make_task()
    assert not ClaudePlanner(ClaudeConfig(api_key="")).accepts(task)
    assert ClaudePlanner(ClaudeConfig(api_key="k")).accepts(task)

    settings = load_settings(home=tmp_path, environ={})
    (offline,) = plugin.register_planners(settings)
    assert offline.name == "claude" and not offline.accepts(task)

    monkeypatch.setenv("CLAUDE_API_KEY", "sk-from-env")
    (online,) = plugin.register_planners(settings)
    assert online.accepts(task) and online.config.api_key == "sk-from-env"
    keyed = load_settings(home=tmp_path, environ={}, overrides={"claude.api_key": "sk-setting"})
    assert plugin.register_planners(keyed)[0].config.api_key == "sk-setting"


def test_registration_makes_no_network_call(api: MessagesAPIServer, tmp_path) -> None:
    settings = load_settings(
        home=tmp_path, environ={}, overrides={"claude.api_key": API_KEY, "claude.base_url": api.base_url}
    )
    plugin.register_planners(settings)
    plugin.register_agent_types(settings)
    assert not api.requests


def test_dag_levels() -> None:
    from controlplane.domain.model import PlannedSubtask

    steps = [
        PlannedSubtask("a", "a", "a"),
        PlannedSubtask("b", "b", "b", depends_on=["a"]),
        PlannedSubtask("c", "c", "c"),
        PlannedSubtask("d", "d", "d", depends_on=["b", "c"]),
    ]
    assert dag_levels(steps) == [0, 1, 0, 2]


async def test_the_planning_call_is_bounded_by_the_tasks_budget(
    api: MessagesAPIServer, config: ClaudeConfig
) -> None:
    plan, usage = await planner(config).plan_with_usage(make_task(max_total_tokens=2000))
    assert_fallback(plan, "the task's budget leaves too little for a model plan")
    assert usage.model_calls == 0 and not api.requests  # nothing was spent

    api.push_tool_use("submit_plan", good_plan())
    plan, _ = await planner(config).plan_with_usage(make_task(max_total_tokens=12_000))
    assert plan.planner == "claude"
    assert api.requests[0].body["max_tokens"] <= 12_000 // 4  # a quarter of the budget, the prompt included


async def test_the_planner_sees_the_results_the_task_builds_on(
    api: MessagesAPIServer, config: ClaudeConfig
) -> None:
    from controlplane.domain.model import DependencyResult

    api.push_tool_use("submit_plan", good_plan())
    await planner(config).plan_with_usage(
        make_task(
            dependency_results=[
                DependencyResult("t0", "Research user requirements", "Users need offline mode.")
            ]
        )
    )
    assert (
        '<dependency task="tasks/t0">\nUsers need offline mode.\n</dependency>'
        in api.requests[0].body["messages"][0]["content"]
    )


async def test_the_planning_call_takes_a_permit_of_the_control_planes_pacer(
    api: MessagesAPIServer, config: ClaudeConfig
) -> None:
    """The planner runs in the control plane: its calls wait for the same breaker as the agents'."""
    import time

    from controlplane.domain.model_limits import BreakerState, CallOutcome
    from controlplane.pacing import Pacer

    pacer = Pacer()
    opened = await pacer.acquire(config.model)
    pacer.report(opened.permit_id, CallOutcome(529, retry_after=0.4))  # an agent's call was overloaded
    api.rate_limit_headers = {"anthropic-ratelimit-requests-limit": "50"}
    api.push_error(529, retry_after=0.3)  # and so is the planner's test call
    api.push_tool_use("submit_plan", good_plan(), usage={"input_tokens": 500, "output_tokens": 200})
    started = time.monotonic()
    plan, usage = await planner(config).plan_with_usage(
        make_task(task_type="mixed", max_agents=4), pacer=pacer
    )
    assert plan.planner == "claude" and usage.model_calls == 1
    assert time.monotonic() - started >= 0.6  # held 0.4 s, then 0.3 s after its own 529, not retried at once
    (status,) = pacer.status()
    assert status.state == BreakerState.CLOSED and status.overloaded_answers == 2 and status.granted == 3
    assert status.limits.requests_per_minute == 50 and status.in_flight == 0
    assert len(api.requests) == 2
