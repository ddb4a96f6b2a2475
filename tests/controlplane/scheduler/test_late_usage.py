"""Usage reported after an attempt ended (the task was cancelled, the stream was stopped) is charged once,
and only by the agent that held the lease (a real server, the raw protocol)."""

from __future__ import annotations

from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import errors_pb2 as errors
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from controlplane.app import App
from tests.controlplane.scheduler.test_resume import connect, submit
from tests.harness.server import Stubs, wait_for

SPENT = m.TokenUsage(input_tokens=100, output_tokens=40, cost_micros=900, model_calls=1)


async def usage_of(stubs: Stubs, task: str) -> m.TokenUsage:
    return (await stubs.tasks.GetTask(t.GetTaskRequest(name=task), timeout=5)).task.usage


async def test_a_cancelled_attempt_is_charged_once_and_only_by_its_agent(
    control_plane: App, stubs: Stubs
) -> None:
    holder, _ = await connect(control_plane.address)
    other, _ = await connect(control_plane.address)
    try:
        task = await submit(stubs)
        ref = (await holder.receive("assignment")).assignment.ref
        await stubs.tasks.CancelTask(t.CancelTaskRequest(name=task), timeout=5)
        assert (await holder.receive("cancel")).cancel.ref == ref

        # What the stopped stream delivered, as the SDK reports it after a Cancel.
        holder.send(
            failure=gw.SubtaskFailure(ref=ref, message="cancelled", error_type="Cancelled", usage=SPENT)
        )
        await holder.receive("ack")
        await wait_for(lambda: _charged(stubs, task, 100), 5, message="the late usage charged")

        holder.send(failure=gw.SubtaskFailure(ref=ref, message="again", error_type="Cancelled", usage=SPENT))
        await holder.receive("ack")  # handled: a repeated report is not charged again
        other.send(result=gw.SubtaskResult(ref=ref, output="not mine", usage=SPENT))  # never held that lease
        ack = (await other.receive("ack")).ack
        assert not ack.accepted and ack.reason in (
            errors.ERROR_REASON_NOT_LEASE_HOLDER,
            errors.ERROR_REASON_TASK_FINISHED,
        )
        await control_plane.engine.committer.durable()
        usage = await usage_of(stubs, task)
        assert (usage.input_tokens, usage.output_tokens, usage.cost_micros, usage.model_calls) == (
            100,
            40,
            900,
            1,
        )
        full = await stubs.tasks.GetTask(t.GetTaskRequest(name=task, view=enums.TASK_VIEW_FULL), timeout=5)
        assert full.task.status == enums.TASK_STATUS_CANCELLED  # nothing else changed
    finally:
        await holder.close()
        await other.close()


async def _charged(stubs: Stubs, task: str, tokens: int) -> bool:
    return (await usage_of(stubs, task)).input_tokens == tokens


async def test_after_a_restart_running_steps_hold_their_share_and_may_still_report_usage(tmp_path) -> None:
    from tests.harness.server import make_settings, start_app

    settings = make_settings(tmp_path / "home")
    app = await start_app(settings)
    stubs = Stubs(app.address)
    agent, _ = await connect(app.address)
    try:
        reply = await stubs.tasks.SubmitTask(
            t.SubmitTaskRequest(
                task=m.Task(description="Plan:\n1. a\n2. b", budget=m.Budget(max_total_tokens=3000))
            ),
            timeout=5,
        )
        task_id = reply.task.name.split("/")[1]
        ref = (await agent.receive("assignment")).assignment.ref
        assert ref.subtask.endswith("/s0")
    finally:
        await agent.close()
        await stubs.close()
        await app.stop(grace=0.5)
    app = await start_app(settings)
    try:
        engine = app.engine
        assert (
            engine.reservations.held(task_id)[0] == 1000
        )  # 3,000 shared by s0 (running), s1 and the synthesis
        agent_id = engine.subtasks[task_id]["s0"].agent_id
        assert engine.grants.claim(task_id, "s0", ref.lease_epoch, agent_id)
    finally:
        await app.stop(grace=0.5)
