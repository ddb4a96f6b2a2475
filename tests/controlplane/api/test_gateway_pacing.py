"""Model pacing on the agent stream, spoken with the generated stubs alone (as an agent in Go or Node would)."""

from __future__ import annotations

import asyncio

from google.protobuf import duration_pb2

from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import system_service_pb2 as system
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from controlplane.app import App
from tests.controlplane.scheduler.test_faults import RawAgent, _wait_finished
from tests.harness.server import Stubs, wait_for

MODEL = "claude-raw-test"


def seconds(value: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


async def registered(agent: RawAgent, agent_type: str = "raw-model") -> gw.Registered:
    agent.send(
        register=gw.Register(agent_type=agent_type, capabilities=["*"], max_concurrency=2, language="go")
    )
    return (await agent.receive("registered")).registered


async def ask(agent: RawAgent, request_id: int, max_wait: float, model: str = MODEL) -> gw.ModelPermit:
    agent.send(
        permit_request=gw.ModelPermitRequest(
            request_id=request_id,
            model=model,
            input_tokens=500,
            output_tokens=1000,
            max_wait=seconds(max_wait),
        )
    )
    permit = (await agent.receive("permit")).permit
    assert permit.request_id == request_id
    return permit


async def pacing_of(stubs: Stubs, model: str = MODEL) -> system.ModelPacing | None:
    status = await stubs.system.GetStatus(system.GetStatusRequest(), timeout=5)
    return next((p for p in status.model_pacing if p.model == model), None)


async def test_a_529_holds_every_agents_permits_until_its_retry_after(
    control_plane: App, stubs: Stubs
) -> None:
    one, two = RawAgent(control_plane.address), RawAgent(control_plane.address)
    try:
        assert (await registered(one)).paces_model_calls
        await registered(two)
        first = await ask(one, 1, max_wait=1)
        assert first.granted and first.permit_id

        one.send(
            model_outcome=gw.ModelCallOutcome(
                permit_id=first.permit_id,
                status_code=529,
                retry_after=seconds(2.0),
                headers={
                    "anthropic-ratelimit-requests-limit": "50",
                    "anthropic-ratelimit-output-tokens-limit": "8000",
                    "x-other": "ignored",
                },
            )
        )
        shown = await wait_for(lambda: _open(stubs), 5, message="the breaker to open")
        assert shown.overloaded_answers == 1 and "overloaded (529)" in shown.last_problem
        assert shown.requests_per_minute == 50 and shown.output_tokens_per_minute == 8000

        deferred = await ask(two, 7, max_wait=0.05)  # the other agent is held too
        assert not deferred.granted and 0 < deferred.retry_after.ToNanoseconds() / 1e9 <= 2.0
        assert "breaker is open" in deferred.reason

        probe = await ask(two, 8, max_wait=10)  # granted once the hold ends: the test call
        assert probe.granted and probe.waited.ToNanoseconds() > 0
        two.send(
            model_outcome=gw.ModelCallOutcome(
                permit_id=probe.permit_id, status_code=200, input_tokens=480, output_tokens=300
            )
        )
        closed = await wait_for(lambda: _state(stubs, enums.BREAKER_STATE_CLOSED), 5, message="recovery")
        assert closed.in_flight_cap == 2 and closed.granted == 2
    finally:
        await one.close()
        await two.close()


async def _open(stubs: Stubs) -> system.ModelPacing | None:
    return await _state(stubs, enums.BREAKER_STATE_OPEN)


async def _state(stubs: Stubs, state: int) -> system.ModelPacing | None:
    shown = await pacing_of(stubs)
    return shown if shown is not None and shown.breaker == state else None


async def test_a_bad_request_is_answered_not_granted_and_changes_nothing(
    control_plane: App, stubs: Stubs
) -> None:
    agent = RawAgent(control_plane.address)
    try:
        await registered(agent)
        refused = await ask(agent, 3, max_wait=1, model="not a model name")
        assert (
            not refused.granted and "invalid permit request" in refused.reason and "model" in refused.reason
        )
        agent.send(
            model_outcome=gw.ModelCallOutcome(permit_id="p-unknown", status_code=529, model="bad name!")
        )
        ok = await ask(agent, 4, max_wait=1, model="claude-other")  # the stream still works
        assert ok.granted
        status = await stubs.system.GetStatus(system.GetStatusRequest(), timeout=5)
        assert [p.model for p in status.model_pacing] == ["claude-other"]
        assert status.model_pacing[0].breaker == enums.BREAKER_STATE_CLOSED
    finally:
        await agent.close()


async def test_permits_of_an_agent_that_leaves_are_freed(control_plane: App, stubs: Stubs) -> None:
    agent = RawAgent(control_plane.address)
    await registered(agent)
    grant = await ask(agent, 1, max_wait=1)
    assert grant.granted
    assert (await pacing_of(stubs)).in_flight == 1
    await agent.close()
    await wait_for(lambda: _in_flight(stubs, 0), 5, message="the permit to be freed")


async def _in_flight(stubs: Stubs, count: int) -> bool:
    shown = await pacing_of(stubs)
    return shown is not None and shown.in_flight == count


async def test_work_handed_back_by_the_pacer_is_queued_again_without_spending_a_retry(
    control_plane: App, stubs: Stubs
) -> None:
    agent = RawAgent(control_plane.address)
    try:
        await registered(agent)
        reply = await stubs.tasks.SubmitTask(
            t.SubmitTaskRequest(
                task=m.Task(description="one call", retry_policy=m.RetryPolicy(max_retries=0))
            ),
            timeout=5,
        )
        first = (await agent.receive("assignment")).assignment
        agent.send(
            failure=gw.SubtaskFailure(
                ref=first.ref,
                message="no permit within 10 s",
                retryable=True,
                error_type="ModelPaced",
                retry_after=seconds(0.2),
            )
        )
        again = (await asyncio.wait_for(agent.receive("assignment"), 10)).assignment
        assert again.ref.subtask == first.ref.subtask and again.ref.attempt == first.ref.attempt + 1
        agent.send(result=gw.SubtaskResult(ref=again.ref, output="done"))
        final = await _wait_finished(stubs, reply.task.name, 10)
        assert final.status == enums.TASK_STATUS_COMPLETED
    finally:
        await agent.close()
