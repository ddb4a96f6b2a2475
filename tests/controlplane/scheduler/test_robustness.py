"""Hostile or unlucky agents cannot wedge the control plane."""

from __future__ import annotations

from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import errors_pb2 as errors
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from controlplane.app import App
from tests.controlplane.scheduler.test_faults import RawAgent, _wait_finished
from tests.harness.server import Stubs


async def registered(raw: RawAgent, concurrency: int = 1, **resume) -> gw.Registered:
    register = gw.Register(agent_type="raw", capabilities=["*"], max_concurrency=concurrency, language="test")
    if resume:
        register.resume.CopyFrom(gw.ResumeSession(**resume))
    raw.send(register=register)
    return (await raw.receive("registered")).registered


async def test_absurd_usage_figures_cannot_poison_the_commits(control_plane: App, stubs: Stubs) -> None:
    agent = RawAgent(control_plane.address)
    try:
        await registered(agent)
        first = await stubs.tasks.SubmitTask(t.SubmitTaskRequest(task=m.Task(description="one")), timeout=5)
        ref = (await agent.receive("assignment")).assignment.ref
        agent.send(
            result=gw.SubtaskResult(
                ref=ref,
                output="x",
                usage=m.TokenUsage(input_tokens=2**64 - 1, output_tokens=2**64 - 1, cost_micros=-(2**62)),
            )
        )
        await agent.receive("committed")
        done = await _wait_finished(stubs, first.task.name, 10)
        assert done.status == enums.TASK_STATUS_COMPLETED
        assert done.usage.input_tokens == 1 << 40 and done.usage.cost_micros == 0  # clamped, never negative
        # Later work is still committed.
        second = await stubs.tasks.SubmitTask(t.SubmitTaskRequest(task=m.Task(description="two")), timeout=5)
        assert second.task.name
        assert control_plane.engine.committer.failed is None
    finally:
        await agent.close()


async def test_expiring_sibling_leases_do_not_stop_the_sweeper(control_plane: App, stubs: Stubs) -> None:
    agent = RawAgent(control_plane.address)
    await registered(agent, concurrency=3)
    reply = await stubs.tasks.SubmitTask(
        t.SubmitTaskRequest(
            task=m.Task(
                description="x:\n- a\n- b\n- c", max_agents=3, retry_policy=m.RetryPolicy(max_retries=0)
            )
        ),
        timeout=5,
    )
    for _ in range(3):
        await agent.receive("assignment")
    await agent.close()  # gone without a word: all three leases expire in the same sweep
    failed = await _wait_finished(stubs, reply.task.name, 15)
    assert failed.status == enums.TASK_STATUS_FAILED
    assert failed.failure.reason == errors.ERROR_REASON_LEASE_EXPIRED
    assert not control_plane.engine.leasing._sweeper.done()  # still sweeping for later tasks


async def test_an_agent_cannot_take_over_another_agents_identity(control_plane: App, stubs: Stubs) -> None:
    owner, intruder = RawAgent(control_plane.address), RawAgent(control_plane.address)
    try:
        mine = await registered(owner)
        theirs = await registered(intruder, agent=mine.agent, session_id="guessed")
        assert theirs.agent != mine.agent
        assert set(control_plane.engine.sessions) == {mine.agent.split("/")[1], theirs.agent.split("/")[1]}
        # The rightful owner can resume with its session id.
        await owner.close()
        again = RawAgent(control_plane.address)
        resumed = await registered(again, agent=mine.agent, session_id=mine.session_id)
        assert resumed.agent == mine.agent
        await again.close()
    finally:
        await intruder.close()


async def test_reports_on_a_finished_subtask_change_nothing(control_plane: App, stubs: Stubs) -> None:
    agent = RawAgent(control_plane.address)
    try:
        await registered(agent)
        reply = await stubs.tasks.SubmitTask(t.SubmitTaskRequest(task=m.Task(description="once")), timeout=5)
        ref = (await agent.receive("assignment")).assignment.ref
        agent.send(progress=gw.Progress(ref=ref, fraction=0.5, checkpoint=b"half"))
        agent.send(result=gw.SubtaskResult(ref=ref, output="done"))
        await agent.receive("committed")
        agent.send(progress=gw.Progress(ref=ref, fraction=0.1, checkpoint=b"late"))
        agent.send(result=gw.SubtaskResult(ref=gw.AssignmentRef(subtask="garbage", attempt=0)))
        rejected = (await agent.receive("ack")).ack
        assert not rejected.accepted and rejected.reason == errors.ERROR_REASON_INVALID_FIELD
        await _wait_finished(stubs, reply.task.name, 10)
        sub = control_plane.engine.subtasks.get(reply.task.name.split("/")[1], {}).get("s0")
        stored = sub or (await control_plane.engine.get_subtasks(reply.task.name.split("/")[1]))[0]
        assert stored.checkpoint == b"half" and stored.progress == 1.0
    finally:
        await agent.close()
