"""The Claude planner is told the agent types there are, and plans for those.

The test server plans over the types it is offered.
"""

from __future__ import annotations

from controlplane.domain.model import SubtaskKind, Task
from controlplane.domain.pool import BACKING_MODEL, BACKING_OFFLINE, AgentPool, PoolType
from maos_plugins.claude.config import ClaudeConfig
from maos_plugins.claude.planner import ClaudePlanner
from tests.harness.messages_api import MessagesAPIServer
from tests.harness.planning_api import offered_agent_types, plan_over_offered_types

POOL = AgentPool.of(
    [
        PoolType("echo", frozenset({"*", "echo"}), BACKING_OFFLINE, connected=2),
        PoolType("coder", frozenset({"programming", "coder"}), BACKING_MODEL, connected=1),
        PoolType("analyst", frozenset({"statistics", "analyst"}), BACKING_MODEL, launchable=True),
        PoolType("tester", frozenset({"qa", "tester"}), BACKING_MODEL),  # neither connected nor launchable
    ]
)


async def test_the_model_is_offered_only_the_types_that_can_run(
    api: MessagesAPIServer, config: ClaudeConfig
) -> None:
    api.responder = lambda request: plan_over_offered_types(request) or "unused"
    plan = await ClaudePlanner(config).plan(Task(id="t1", description="Build and analyse"), pool=POOL)
    (request,) = api.requests
    assert offered_agent_types(request.body) == {"coder": ["programming"], "analyst": ["statistics"]}
    assert plan.planner == "claude"
    assert [(s.capability, s.kind) for s in plan.subtasks] == [
        ("coder", SubtaskKind.WORK),
        ("analyst", SubtaskKind.WORK),
        ("synthesis", SubtaskKind.SYNTHESIS),
    ]


async def test_a_named_type_gets_every_work_step(api: MessagesAPIServer, config: ClaudeConfig) -> None:
    api.responder = lambda request: plan_over_offered_types(request) or "unused"
    task = Task(id="t1", description="Research quantum computing", agent_type="domain_researcher")
    pool = AgentPool.of(
        [
            *POOL.types.values(),
            PoolType(
                "domain_researcher",
                frozenset({"patent_research", "domain_researcher"}),
                BACKING_MODEL,
                launchable=True,
            ),
        ]
    )
    plan = await ClaudePlanner(config).plan(task, pool=pool)
    (request,) = api.requests
    assert "domain_researcher" in offered_agent_types(request.body)
    assert 'run on "domain_researcher" agents' in request.body["messages"][0]["content"]
    work = [s for s in plan.subtasks if s.kind == SubtaskKind.WORK]
    assert work and all(
        (s.agent_type, s.capability) == ("domain_researcher", "domain_researcher") for s in work
    )
