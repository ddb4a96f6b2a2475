"""Fault tests with real processes: nothing accepted is lost, nothing is applied twice."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc
import pytest

from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import agent_gateway_pb2_grpc as gw_grpc
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import errors_pb2 as errors
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from controlplane.app import App
from tests.harness.server import ControlPlaneProcess, Stubs, wait_for, wait_for_agents

pytestmark = pytest.mark.slow


def sleep_task(seconds: float, steps: int) -> t.SubmitTaskRequest:
    return t.SubmitTaskRequest(
        task=m.Task(
            description="sleep",
            task_type="sleep",
            metadata={"sleep_seconds": str(seconds), "sleep_steps": str(steps)},
            retry_policy=m.RetryPolicy(max_retries=5),
        )
    )


async def subtask_of(stubs: Stubs, name: str) -> m.Subtask:
    full = await stubs.tasks.GetTask(t.GetTaskRequest(name=name, view=enums.TASK_VIEW_FULL), timeout=5)
    return full.subtasks[0]


async def test_control_plane_sigkill_with_queued_and_running_work(tmp_path: Path, agent_processes) -> None:
    """SIGKILL the control plane with 200 subtasks queued and 20 running; every task completes once."""
    cp = ControlPlaneProcess(tmp_path / "home")
    cp.start()
    await cp.wait_ready()
    for _ in range(2):
        agent_processes(cp.address, "sleep", "--max-concurrency", "10", home=tmp_path / "home")
    stubs = Stubs(cp.address)
    try:
        await wait_for(lambda: _connected(stubs, 2), 30, message="2 agents")
        requests = [t.SubmitTaskRequest(task=sleep_task(0.4, 2).task) for _ in range(220)]
        reply = await stubs.tasks.BatchSubmitTasks(t.BatchSubmitTasksRequest(requests=requests), timeout=30)
        accepted = {task.name for task in reply.tasks}
        assert len(accepted) == 220

        async def twenty_running() -> bool:
            status = await stubs.system.GetStatus(system_pb.GetStatusRequest(), timeout=5)
            counts = {c.state: c.count for c in status.subtasks}
            return counts.get("RUNNING", 0) >= 20 and counts.get("QUEUED", 0) >= 180

        await wait_for(twenty_running, 20, message="20 running and about 200 queued subtasks")
        cp.kill()
        cp.start()  # same port, same database: agents reconnect and resume
        await cp.wait_ready()
        await stubs.close()
        stubs = Stubs(cp.address)

        async def all_completed() -> bool:
            status = await stubs.system.GetStatus(system_pb.GetStatusRequest(), timeout=5)
            counts = {c.state: c.count for c in status.tasks}
            assert counts.get("FAILED", 0) == 0, counts
            return counts.get("COMPLETED", 0) == 220

        await wait_for(all_completed, 90, interval=0.2, message="all 220 tasks COMPLETED")
        listed = await stubs.all_tasks()
        names = [task.name for task in listed]
        assert len(names) == len(set(names)) == 220, "no task lost or duplicated"
        assert set(names) == accepted
        assert all(task.status == enums.TASK_STATUS_COMPLETED for task in listed)
    finally:
        await stubs.close()
        cp.stop()


async def _connected(stubs: Stubs, count: int) -> bool:
    status = await stubs.system.GetStatus(system_pb.GetStatusRequest(), timeout=5)
    return status.connected_agents >= count


async def test_killed_agent_work_resumes_on_another_agent_from_its_checkpoint(
    control_plane: App, stubs: Stubs, agent_processes
) -> None:
    first = agent_processes(control_plane.address, "sleep")
    await wait_for_agents(control_plane, 1)
    reply = await stubs.tasks.SubmitTask(sleep_task(6.0, 6), timeout=5)

    async def checkpointed() -> bool:
        sub = await subtask_of(stubs, reply.task.name)
        return sub.status == enums.SUBTASK_STATUS_RUNNING and sub.has_checkpoint and sub.progress >= 2 / 6

    await wait_for(checkpointed, 15, message="a checkpoint after two steps")
    first.signal(signal.SIGKILL)
    agent_processes(control_plane.address, "sleep")
    final = await _wait_finished(stubs, reply.task.name, 40)
    assert final.status == enums.TASK_STATUS_COMPLETED
    results = await stubs.tasks.GetTaskResults(t.GetTaskResultsRequest(name=reply.task.name), timeout=5)
    sub = results.result.subtasks[0]
    assert sub.attempt == 1
    # The second attempt started from the checkpoint of the first, not from step 0.
    resumed_at = int(sub.output.split("resumed at step ")[1].split(",")[0])
    assert resumed_at >= 2, sub.output


async def test_frozen_agent_loses_its_lease_and_work_is_redispatched(
    control_plane: App, stubs: Stubs, agent_processes
) -> None:
    frozen = agent_processes(control_plane.address, "sleep")
    await wait_for_agents(control_plane, 1)
    reply = await stubs.tasks.SubmitTask(sleep_task(2.0, 4), timeout=5)
    await wait_for(lambda: _running(stubs, reply.task.name), 10, message="the subtask to start")
    frozen.signal(signal.SIGSTOP)
    healthy = agent_processes(control_plane.address, "sleep")
    expirations = control_plane.metrics.lease_expirations
    final = await _wait_finished(stubs, reply.task.name, 40)
    assert final.status == enums.TASK_STATUS_COMPLETED, final.failure
    sub = await subtask_of(stubs, reply.task.name)
    assert sub.attempt >= 1
    assert expirations._value.get() >= 1
    frozen.signal(signal.SIGCONT)  # its late report, if any, is stale and changes nothing
    assert healthy.process.poll() is None


async def _running(stubs: Stubs, name: str) -> bool:
    return (await subtask_of(stubs, name)).status == enums.SUBTASK_STATUS_RUNNING


async def _wait_finished(stubs: Stubs, name: str, timeout: float) -> m.Task:
    async def finished() -> m.Task | None:
        task = (await stubs.tasks.GetTask(t.GetTaskRequest(name=name), timeout=5)).task
        done = task.status in (
            enums.TASK_STATUS_COMPLETED,
            enums.TASK_STATUS_FAILED,
            enums.TASK_STATUS_CANCELLED,
        )
        return task if done else None

    return await wait_for(finished, timeout, interval=0.05, message=f"{name} to finish")


class RawAgent:
    """An agent speaking the protocol by hand (as one in another language would)."""

    def __init__(self, address: str):
        self.channel = grpc.aio.insecure_channel(address)
        self.outbox: asyncio.Queue[gw.ConnectRequest | None] = asyncio.Queue()
        self.call = gw_grpc.AgentGatewayStub(self.channel).Connect(self._requests())

    async def _requests(self):
        while (item := await self.outbox.get()) is not None:
            yield item

    def send(self, **kwargs) -> None:
        self.outbox.put_nowait(gw.ConnectRequest(**kwargs))

    async def receive(self, kind: str) -> gw.ConnectResponse:
        while True:
            response = await asyncio.wait_for(self.call.read(), 10)
            if response.WhichOneof("message") == kind:
                return response

    async def close(self) -> None:
        self.outbox.put_nowait(None)
        await self.channel.close()


async def test_duplicated_and_stale_results_are_not_applied(control_plane: App, stubs: Stubs) -> None:
    agent = RawAgent(control_plane.address)
    try:
        agent.send(
            register=gw.Register(agent_type="raw", capabilities=["*"], max_concurrency=1, language="test")
        )
        await agent.receive("registered")
        reply = await stubs.tasks.SubmitTask(t.SubmitTaskRequest(task=m.Task(description="once")), timeout=5)
        assignment = (await agent.receive("assignment")).assignment
        ref = assignment.ref

        stale = gw.AssignmentRef(subtask=ref.subtask, attempt=ref.attempt, lease_epoch=ref.lease_epoch + 1)
        agent.send(result=gw.SubtaskResult(ref=stale, output="forged"))
        ack = (await agent.receive("ack")).ack
        assert not ack.accepted and ack.reason == errors.ERROR_REASON_STALE_ATTEMPT

        agent.send(result=gw.SubtaskResult(ref=ref, output="first"))
        committed = (await agent.receive("committed")).committed
        assert [r.subtask for r in committed.refs] == [ref.subtask]
        agent.send(result=gw.SubtaskResult(ref=ref, output="second"))
        duplicate = (await agent.receive("ack")).ack
        assert duplicate.accepted and "duplicate" in duplicate.message

        final = await _wait_finished(stubs, reply.task.name, 10)
        assert final.status == enums.TASK_STATUS_COMPLETED
        results = await stubs.tasks.GetTaskResults(t.GetTaskResultsRequest(name=reply.task.name), timeout=5)
        assert results.result.output == "first"
        assert [s.output for s in results.result.subtasks] == ["first"]
    finally:
        await agent.close()


async def test_first_message_must_be_register(control_plane: App) -> None:
    agent = RawAgent(control_plane.address)
    try:
        agent.send(heartbeat=gw.Heartbeat())
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await agent.receive("registered")
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        await agent.close()


async def test_register_with_bad_concurrency_is_invalid(control_plane: App) -> None:
    agent = RawAgent(control_plane.address)
    try:
        agent.send(register=gw.Register(agent_type="raw", max_concurrency=0))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await agent.receive("registered")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "max_concurrency" in info.value.details()
        assert not control_plane.engine.sessions
    finally:
        await agent.close()


async def test_a_stored_result_re_sent_after_a_restart_is_an_accepted_duplicate(tmp_path: Path) -> None:
    """The control plane dies after storing a result; the agent re-sends it to the restarted one."""
    cp = ControlPlaneProcess(tmp_path / "home")
    cp.start()
    await cp.wait_ready()
    stubs, agent = Stubs(cp.address), RawAgent(cp.address)
    try:
        agent.send(
            register=gw.Register(agent_type="raw", capabilities=["*"], max_concurrency=1, language="test")
        )
        first = (await agent.receive("registered")).registered
        reply = await stubs.tasks.SubmitTask(t.SubmitTaskRequest(task=m.Task(description="once")), timeout=5)
        ref = (await agent.receive("assignment")).assignment.ref
        agent.send(result=gw.SubtaskResult(ref=ref, output="stored"))
        assert (await _wait_finished(stubs, reply.task.name, 10)).status == enums.TASK_STATUS_COMPLETED
        cp.kill()  # whether or not its acknowledgement got out, the agent sends the result again
        await agent.close()
        await stubs.close()
        cp.start()
        await cp.wait_ready()
        stubs, agent = Stubs(cp.address), RawAgent(cp.address)
        agent.send(
            register=gw.Register(
                agent_type="raw",
                capabilities=["*"],
                max_concurrency=1,
                language="test",
                resume=gw.ResumeSession(agent=first.agent, session_id=first.session_id, assignments=[ref]),
            )
        )
        assert (await agent.receive("registered")).registered.agent == first.agent

        agent.send(result=gw.SubtaskResult(ref=ref, output="stored"))
        duplicate = (await agent.receive("ack")).ack
        assert duplicate.accepted and duplicate.message == "duplicate result ignored", duplicate

        stale = gw.AssignmentRef(subtask=ref.subtask, attempt=ref.attempt, lease_epoch=ref.lease_epoch + 1)
        agent.send(result=gw.SubtaskResult(ref=stale, output="stored"))
        refused = (await agent.receive("ack")).ack
        assert not refused.accepted and refused.reason == errors.ERROR_REASON_STALE_ATTEMPT, refused

        agent.send(result=gw.SubtaskResult(ref=ref, output="another answer"))
        different = (await agent.receive("ack")).ack
        assert not different.accepted and different.reason == errors.ERROR_REASON_TASK_FINISHED, different

        results = await stubs.tasks.GetTaskResults(t.GetTaskResultsRequest(name=reply.task.name), timeout=5)
        assert [s.output for s in results.result.subtasks] == ["stored"]
    finally:
        await agent.close()
        await stubs.close()
        cp.stop()
