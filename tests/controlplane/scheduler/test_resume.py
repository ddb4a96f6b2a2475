"""An agent whose stream breaks and reconnects with Register.resume (a real server, the raw protocol).

Within its lease it keeps its assignment: the same attempt and lease epoch,
no re-dispatch, and its result is accepted. After the lease expired the
assignment is revoked and the subtask was re-queued as the next attempt.
Leases last 3 s here (tests.harness.server.TEST_OVERRIDES).
"""

from __future__ import annotations

from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import errors_pb2 as errors
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from controlplane.app import App
from tests.controlplane.scheduler.test_faults import RawAgent
from tests.harness.server import Stubs, wait_for

REGISTER = {"agent_type": "raw", "capabilities": ["*"], "max_concurrency": 1, "language": "test"}


def bare(name: str) -> str:
    return name.rsplit("/", 1)[-1]


async def connect(address: str, resume: gw.ResumeSession | None = None) -> tuple[RawAgent, gw.Registered]:
    """A raw agent, registered (resuming ``resume`` when given)."""
    agent = RawAgent(address)
    agent.send(register=gw.Register(**REGISTER, resume=resume))
    return agent, (await agent.receive("registered")).registered


async def submit(stubs: Stubs) -> str:
    reply = await stubs.tasks.SubmitTask(
        t.SubmitTaskRequest(task=m.Task(description="keep me", retry_policy=m.RetryPolicy(max_retries=3))),
        timeout=5,
    )
    return reply.task.name


async def subtask(stubs: Stubs, task: str) -> m.Subtask:
    full = await stubs.tasks.GetTask(t.GetTaskRequest(name=task, view=enums.TASK_VIEW_FULL), timeout=5)
    [sub] = full.subtasks
    return sub


async def completed(stubs: Stubs, task: str) -> t.GetTaskResultsResponse:
    """Wait until ``task`` is COMPLETED; its results."""

    async def done() -> bool:
        status = (await stubs.tasks.GetTask(t.GetTaskRequest(name=task), timeout=5)).task.status
        assert status not in (enums.TASK_STATUS_FAILED, enums.TASK_STATUS_CANCELLED), status
        return status == enums.TASK_STATUS_COMPLETED

    await wait_for(done, 10, interval=0.05, message=f"{task} to complete")
    return await stubs.tasks.GetTaskResults(t.GetTaskResultsRequest(name=task), timeout=5)


async def cut(agent: RawAgent, app: App, agent_id: str) -> None:
    """Break the agent's stream (its process lives on) and wait until the server has noticed."""
    await agent.channel.close()
    await wait_for(lambda: agent_id not in app.engine.sessions, 10, message="the server to end the session")


async def test_reconnecting_within_the_lease_keeps_the_assignment(control_plane: App, stubs: Stubs) -> None:
    first, registered = await connect(control_plane.address)
    agent_id = bare(registered.agent)
    others: list[RawAgent] = []
    try:
        task = await submit(stubs)
        ref = (await first.receive("assignment")).assignment.ref
        # An idle agent that could take the work if it went back to the queue.
        idle, idle_registered = await connect(control_plane.address)
        others.append(idle)
        expirations = control_plane.metrics.lease_expirations._value.get()

        await cut(first, control_plane, agent_id)
        resumed, again = await connect(
            control_plane.address,
            gw.ResumeSession(agent=registered.agent, session_id=registered.session_id, assignments=[ref]),
        )
        others.append(resumed)
        assert again.agent == registered.agent
        assert list(again.resumed) == [ref] and list(again.revoked) == []
        sub = await subtask(stubs, task)
        assert sub.status == enums.SUBTASK_STATUS_RUNNING
        assert (sub.attempt, sub.agent) == (ref.attempt, registered.agent)
        held = control_plane.engine.subtasks[bare(task)][bare(ref.subtask)]
        assert (held.attempt, held.lease_epoch) == (ref.attempt, ref.lease_epoch)

        resumed.send(result=gw.SubtaskResult(ref=ref, output="kept"))
        committed = (await resumed.receive("committed")).committed
        assert list(committed.refs) == [ref]
        results = await completed(stubs, task)
        assert results.result.output == "kept"
        [outcome] = results.result.subtasks
        assert outcome.attempt == ref.attempt == 0
        # Never re-dispatched: the idle agent holds nothing.
        assert control_plane.engine.sessions[bare(idle_registered.agent)].running == set()
        assert control_plane.metrics.lease_expirations._value.get() == expirations
    finally:
        for agent in (first, *others):
            await agent.close()


async def test_reconnecting_after_the_lease_expired_revokes_the_assignment(
    control_plane: App, stubs: Stubs
) -> None:
    first, registered = await connect(control_plane.address)
    agents = [first]
    try:
        task = await submit(stubs)
        ref = (await first.receive("assignment")).assignment.ref
        await cut(first, control_plane, bare(registered.agent))

        async def requeued() -> bool:
            sub = await subtask(stubs, task)
            return sub.attempt == ref.attempt + 1 and sub.status == enums.SUBTASK_STATUS_QUEUED

        await wait_for(requeued, 10, interval=0.05, message="the lease to expire and the subtask to re-queue")
        late, again = await connect(
            control_plane.address,
            gw.ResumeSession(agent=registered.agent, session_id=registered.session_id, assignments=[ref]),
        )
        agents.append(late)
        assert list(again.revoked) == [ref] and list(again.resumed) == []

        # The re-queued attempt comes back to this agent (the only one) under a new lease.
        retry = (await late.receive("assignment")).assignment.ref
        assert retry.subtask == ref.subtask
        assert retry.attempt == ref.attempt + 1 and retry.lease_epoch > ref.lease_epoch
        late.send(result=gw.SubtaskResult(ref=ref, output="too late"))
        ack = (await late.receive("ack")).ack
        assert not ack.accepted and ack.reason == errors.ERROR_REASON_STALE_ATTEMPT
        late.send(result=gw.SubtaskResult(ref=retry, output="second attempt"))
        results = await completed(stubs, task)
        assert results.result.output == "second attempt"
        assert [s.attempt for s in results.result.subtasks] == [1]
    finally:
        for agent in agents:
            await agent.close()


async def test_resume_with_a_wrong_session_id_takes_nothing_back(control_plane: App, stubs: Stubs) -> None:
    """Only the holder of the session may take its identity and work back."""
    first, registered = await connect(control_plane.address)
    agents = [first]
    try:
        task = await submit(stubs)
        ref = (await first.receive("assignment")).assignment.ref
        await cut(first, control_plane, bare(registered.agent))
        impostor, answer = await connect(
            control_plane.address,
            gw.ResumeSession(agent=registered.agent, session_id="0" * 16, assignments=[ref]),
        )
        agents.append(impostor)
        assert answer.agent != registered.agent
        assert list(answer.resumed) == []
        assert list(answer.revoked) == [ref]  # what it named is not its work: an SDK agent stops it
        impostor.send(result=gw.SubtaskResult(ref=ref, output="forged"))
        ack = (await impostor.receive("ack")).ack
        assert not ack.accepted and ack.reason == errors.ERROR_REASON_NOT_LEASE_HOLDER
        sub = await subtask(stubs, task)
        assert (sub.status, sub.agent) == (enums.SUBTASK_STATUS_RUNNING, registered.agent)
    finally:
        for agent in agents:
            await agent.close()
