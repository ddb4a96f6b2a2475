"""An agent resuming its session on replica B while replica A, alive, holds its running work keeps it.

A hands the work over (:mod:`controlplane.scheduler.session_moves`): the task moves to B with its
lease (same attempt and lease epoch), A ends its own stream to the agent (one it still believes
open included) and revokes nothing; the agent's result is applied by B, once. Only the agent's
current session moves work: a stale or forged session id moves nothing and leaves the holder as it was.

* With a real agent process reaching A through a TCP proxy of the test's, cut on the agent's side
  only: A's end of the stream stays open and silent (half-open TCP), as after a network fault.
* With an agent speaking the protocol by hand (:class:`RawAgent`): a forged session id, the move
  while the old stream is still open, a stale session after the move, and the move back to A.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal

import grpc
import pytest

from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from controlplane.scheduler.commands import Ref
from controlplane.scheduler.session_moves import Resume, batches, decode, encode, same_secret
from tests.controlplane.replicas.test_carried_reports import (
    LONG_LEASES,
    RPC,
    claimed_by,
    register,
    stubs_of,
    wait_finished,
)
from tests.controlplane.scheduler.test_faults import RawAgent
from tests.harness.recording_agent import AGENT_TYPE
from tests.harness.replica_fixtures import MakeCluster
from tests.harness.replicas import RecordingAgentProcess
from tests.harness.server import Stubs, wait_for
from tests.harness.tcp_proxy import TcpProxy


def resume_of(first: gw.Registered, ref: gw.AssignmentRef, session_id: str | None = None) -> gw.ResumeSession:
    """The resume of ``first``'s agent with its one assignment, in its first session or ``session_id``."""
    return gw.ResumeSession(
        agent=first.agent,
        session_id=first.session_id if session_id is None else session_id,
        assignments=[ref],
    )


async def raw_work(
    stubs: Stubs, agent: RawAgent, description: str
) -> tuple[gw.Registered, str, gw.AssignmentRef]:
    """Register ``agent`` (type raw), submit a task for it and take its assignment: what registering
    answered, the task's name and the assignment's ref."""
    first = await register(agent)
    submitted = await stubs.tasks.SubmitTask(
        tasks_pb.SubmitTaskRequest(task=msgs.Task(description=description, agent_type="raw")), timeout=RPC
    )
    ref = (await agent.receive("assignment")).assignment.ref
    return first, submitted.task.name, ref


async def completed_subtasks(stubs: Stubs, name: str, timeout: float) -> list[msgs.Subtask]:
    """The subtasks' results of task ``name``, once it finished (within ``timeout``), completed."""
    task = await wait_finished(stubs, name, timeout)
    assert task.status == enums.TASK_STATUS_COMPLETED, task
    results = await stubs.tasks.GetTaskResults(tasks_pb.GetTaskResultsRequest(name=name), timeout=RPC)
    return list(results.result.subtasks)


async def subtask_of(stubs: Stubs, name: str) -> msgs.Subtask:
    full = await stubs.tasks.GetTask(
        tasks_pb.GetTaskRequest(name=name, view=enums.TASK_VIEW_FULL), timeout=RPC
    )
    [sub] = full.subtasks
    return sub


async def test_running_work_moves_with_the_session_and_finishes_once(replica_cluster: MakeCluster) -> None:
    cluster = await replica_cluster(2, **LONG_LEASES)
    proxy = TcpProxy("127.0.0.1", cluster.replicas[0].port)
    await proxy.start()
    agent = RecordingAgentProcess(
        f"{proxy.address},{cluster.addresses[1]}", cluster.folder / "agent.jsonl", delay=6.0, concurrency=1
    )
    cluster.agents.append(agent)
    try:
        async with stubs_of(cluster) as stubs:

            async def on_replica(index: int) -> list[msgs.Agent]:
                listed = await stubs[index].agents.ListAgents(agents_pb.ListAgentsRequest(), timeout=RPC)
                return [a for a in listed.agents if a.replica == f"replica-{index}"]

            [on_a] = await wait_for(lambda: on_replica(0), 30, 0.05, "the agent on replica 0")
            submitted = await stubs[0].tasks.SubmitTask(
                tasks_pb.SubmitTaskRequest(task=msgs.Task(description="moved", agent_type=AGENT_TYPE)),
                timeout=RPC,
            )
            name = submitted.task.name
            await wait_for(lambda: len(agent.executions()) == 1, 30, 0.02, "the work to start")
            # The agent loses its connection; replica 0 keeps its end open (half-open) and holds the task.
            await proxy.shut_client_side()

            async def moved() -> bool:
                return claimed_by(cluster.database_url, name) == "replica-1"

            await wait_for(moved, 20, 0.05, "the task to move to replica 1 with the agent")
            assert agent.executions()[0].done_ns is None  # moved while it ran

            # Replica 0 counts the agent as replica 1's: commands for it are carried there.
            got = (
                await stubs[0].agents.GetAgent(agents_pb.GetAgentRequest(name=on_a.name), timeout=RPC)
            ).agent
            assert got.replica == "replica-1" and got.status != enums.AGENT_STATUS_DISCONNECTED, got

            # (within the 30 s lease: nothing ran again)
            subtasks = await completed_subtasks(stubs[0], name, 20)
            [execution] = agent.executions()
            assert execution.done_ns is not None  # not revoked: it ran to its end
            assert [s.output for s in subtasks] == [execution.token]
            sub = await subtask_of(stubs[1], name)
            assert sub.attempt == execution.attempt == 0  # the first attempt, still
            assert claimed_by(cluster.database_url, name) == "replica-1"
            assert all(replica.running for replica in cluster.replicas)
    finally:
        await proxy.close()


async def stream_ended(agent: RawAgent) -> bool:
    """Whether the control plane ended the agent's stream (it reads what is left, then the end)."""
    while True:
        try:
            response = await agent.call.read()
        except grpc.aio.AioRpcError:
            return True
        if response is grpc.aio.EOF:
            return True


async def next_assignment(agent: RawAgent) -> gw.Assignment:
    """The agent's next assignment, however long it takes (the caller bounds it). A cancel (the lease of
    work it was told is not its own expired) is answered with a heartbeat, as an SDK agent's would be."""
    while True:
        response = await agent.call.read()
        assert response is not grpc.aio.EOF, "the stream ended before an assignment"
        kind = response.WhichOneof("message")
        if kind == "assignment":
            return response.assignment
        if kind == "cancel":
            agent.send(heartbeat=gw.Heartbeat(free_slots=1))


@pytest.mark.parametrize("wakeups", ["redis", "listen-notify"])
async def test_only_the_current_session_moves_work_between_live_replicas(
    replica_cluster: MakeCluster, wakeups: str
) -> None:
    no_redis = {"MAOS_REDIS_URL": ""} if wakeups == "listen-notify" else {}
    cluster = await replica_cluster(2, **LONG_LEASES, **no_redis)
    a, b = cluster.addresses
    streams: list[RawAgent] = []

    def raw(address: str) -> RawAgent:
        streams.append(RawAgent(address))
        return streams[-1]

    try:
        async with stubs_of(cluster) as stubs:
            on_a = raw(a)
            first, name, ref = await raw_work(stubs[0], on_a, "to move")

            # A forged session id on B moves nothing: a new agent, the assignment revoked, A keeps it all.
            forged = await register(
                raw(b), gw.ResumeSession(agent=first.agent, session_id="0" * 16, assignments=[ref])
            )
            assert forged.agent != first.agent and list(forged.resumed) == [], forged
            assert list(forged.revoked) == [ref]
            assert claimed_by(cluster.database_url, name) == "replica-0"

            # The agent resumes on B while its stream to A is still open: the work moves, A ends that stream.
            on_b = raw(b)
            moved = await register(on_b, resume_of(first, ref))
            assert moved.agent == first.agent and moved.replica == "replica-1", moved
            assert list(moved.resumed) == [ref] and list(moved.revoked) == [], moved
            assert claimed_by(cluster.database_url, name) == "replica-1"
            assert await stream_ended(on_a)

            # The session it left is stale now: resumed on A with it, the work stays on B.
            stale = await register(raw(a), resume_of(first, ref))
            assert stale.agent != first.agent and list(stale.revoked) == [ref], stale
            assert claimed_by(cluster.database_url, name) == "replica-1"
            sub = await subtask_of(stubs[0], name)
            assert (sub.status, sub.agent, sub.attempt) == (
                enums.SUBTASK_STATUS_RUNNING,
                first.agent,
                ref.attempt,
            )

            # Back on A with its current session: the work moves back, and B ends its stream.
            back = await register(raw(a), resume_of(first, ref, moved.session_id))
            assert back.agent == first.agent and back.replica == "replica-0", back
            assert list(back.resumed) == [ref], back
            assert claimed_by(cluster.database_url, name) == "replica-0"
            assert await stream_ended(on_b)

            streams[-1].send(result=gw.SubtaskResult(ref=ref, output="after two moves"))
            committed = (await streams[-1].receive("committed")).committed
            assert [r.subtask for r in committed.refs] == [ref.subtask]
            subtasks = await completed_subtasks(stubs[1], name, 10)
            assert [s.output for s in subtasks] == ["after two moves"]
            assert (await subtask_of(stubs[1], name)).attempt == ref.attempt
    finally:
        for stream in streams:
            await stream.close()


async def test_after_the_move_the_agent_is_reached_and_heard_through_its_new_replica(
    replica_cluster: MakeCluster,
) -> None:
    cluster = await replica_cluster(2, **LONG_LEASES)
    a, b = cluster.addresses
    on_a, on_b = RawAgent(a), RawAgent(b)
    try:
        async with stubs_of(cluster) as stubs:
            first, name, ref = await raw_work(stubs[0], on_a, "reached")
            moved = await register(on_b, resume_of(first, ref))
            assert list(moved.resumed) == [ref], moved

            # Progress (with a checkpoint) goes through B and is what every replica reads.
            on_b.send(progress=gw.Progress(ref=ref, fraction=0.5, message="half", checkpoint=b"state"))

            async def checkpointed() -> bool:
                return (await subtask_of(stubs[0], name)).has_checkpoint

            await wait_for(checkpointed, 10, 0.05, "the progress reported through replica 1")

            # A pause and a cancel asked of A reach the agent's stream on B.
            await stubs[0].agents.PauseAgent(agents_pb.PauseAgentRequest(name=first.agent), timeout=RPC)
            await on_b.receive("pause")
            await stubs[0].tasks.CancelTask(
                tasks_pb.CancelTaskRequest(name=name, reason="enough"), timeout=RPC
            )
            cancel = (await on_b.receive("cancel")).cancel
            assert cancel.ref.subtask == ref.subtask and cancel.ref.lease_epoch == ref.lease_epoch

            async def cancelled() -> bool:
                got = await stubs[1].tasks.GetTask(tasks_pb.GetTaskRequest(name=name), timeout=RPC)
                return got.task.status == enums.TASK_STATUS_CANCELLED

            await wait_for(cancelled, 10, 0.05, "the task cancelled")
    finally:
        await on_a.close()
        await on_b.close()


async def test_a_holder_that_stalls_during_the_hand_over_moves_nothing_and_the_work_runs_once_more(
    replica_cluster: MakeCluster,
) -> None:
    """A holder that cannot answer (frozen, or dying) hands nothing over: the agent is told its work is
    revoked, the work runs again once the holder is lost and the lease ran out, and one result is applied."""
    cluster = await replica_cluster(2)
    a, b = cluster.addresses
    on_a, on_b = RawAgent(a), RawAgent(b)
    try:
        async with stubs_of(cluster) as stubs:
            first, name, ref = await raw_work(stubs[0], on_a, "stalled")
            cluster.freeze(0)
            resumed = await register(on_b, resume_of(first, ref))
            assert resumed.agent == first.agent and list(resumed.resumed) == [], resumed
            assert list(resumed.revoked) == [ref]

            again = (await asyncio.wait_for(next_assignment(on_b), 40)).ref
            assert again.subtask == ref.subtask and again.attempt == ref.attempt + 1, again
            on_b.send(result=gw.SubtaskResult(ref=ref, output="revoked attempt"))
            stale = (await on_b.receive("ack")).ack
            assert not stale.accepted, stale
            on_b.send(result=gw.SubtaskResult(ref=again, output="second attempt"))
            subtasks = await completed_subtasks(stubs[1], name, 10)
            assert [s.output for s in subtasks] == ["second attempt"]

            os.kill(cluster.replicas[0].pid, signal.SIGCONT)  # it wakes past replicas.lost_after: it stops
            await wait_for(lambda: not cluster.replicas[0].running, 20, 0.1, "the stalled replica to stop")
            assert claimed_by(cluster.database_url, name) == "replica-1"
    finally:
        await on_a.close()
        await on_b.close()


async def test_a_result_in_flight_to_the_old_replica_during_the_move_is_applied_once(
    replica_cluster: MakeCluster,
) -> None:
    """The agent's result is on its way to A (kept in a proxy) when the agent resumes on B: the work moves
    all the same (resumed, nothing revoked), A ends the old stream, and the result the agent sends again
    on B is applied once, in the same attempt. (A result A reads on the old stream after the move is
    carried to B: tests/controlplane/replicas/test_session_move_faults.py.)"""
    cluster = await replica_cluster(2, **LONG_LEASES)
    proxy = TcpProxy("127.0.0.1", cluster.replicas[0].port)
    await proxy.start()
    on_a, on_b = RawAgent(proxy.address), RawAgent(cluster.addresses[1])
    try:
        async with stubs_of(cluster) as stubs:
            first, name, ref = await raw_work(stubs[0], on_a, "in flight")
            proxy.pause()
            on_a.send(result=gw.SubtaskResult(ref=ref, output="in flight"))
            resumed = await register(on_b, resume_of(first, ref))
            assert resumed.agent == first.agent and resumed.replica == "replica-1", resumed
            assert list(resumed.resumed) == [ref] and list(resumed.revoked) == [], resumed
            assert claimed_by(cluster.database_url, name) == "replica-1"
            proxy.resume()  # (the old stream is over: what it carried late is not applied by A)
            assert await stream_ended(on_a)
            on_b.send(result=gw.SubtaskResult(ref=ref, output="in flight"))  # unacknowledged: sent again

            async def answered() -> gw.ReportAck | None:
                response = await on_b.call.read()
                kind = response.WhichOneof("message")
                if kind == "committed" and ref.subtask in [r.subtask for r in response.committed.refs]:
                    return gw.ReportAck(ref=ref, accepted=True)
                return response.ack if kind == "ack" else None

            ack = await wait_for(answered, 20, 0, "the answer to the result sent again")
            assert ack.accepted, ack
            subtasks = await completed_subtasks(stubs[1], name, 10)
            assert [s.output for s in subtasks] == ["in flight"]
            assert (await subtask_of(stubs[0], name)).attempt == ref.attempt
            assert claimed_by(cluster.database_url, name) == "replica-1"
    finally:
        await on_a.close()
        await on_b.close()
        await proxy.close()


def test_assignments_are_asked_for_in_requests_a_bus_message_holds() -> None:
    """Without Redis a bus message holds at most 7,900 bytes: many assignments go in several requests,
    each with every assignment of its tasks (a task moves whole)."""
    refs = [Ref(f"{'t' * 30}{i // 3:04d}", f"{'s' * 30}{i:04d}", 2, 1_000_000 + i) for i in range(300)]
    parts = batches(refs)
    assert len(parts) > 1 and [r for part in parts for r in part] == refs
    resume = Resume("raw-" + "a" * 16, "b" * 16, "raw", "users/someone")
    for part in parts:
        envelope = {
            "i": "0" * 24,
            "f": "replica-1",
            "r": "maos:replies:replica-1",
            "k": "hand_over",
            "d": 3.0,
        }
        sent = json.dumps({**envelope, "b": encode(resume, part, "replica-1")}, separators=(",", ":"))
        assert len(sent.encode()) <= 7900
    tasks = [{r.task_id for r in part} for part in parts]
    assert all(not (x & y) for i, x in enumerate(tasks) for y in tasks[i + 1 :])


def test_session_ids_of_any_characters_are_compared_without_error() -> None:
    assert same_secret("abc", "abc") and not same_secret("abc", "äbc") and not same_secret("abc", "")


def test_a_malformed_hand_over_request_is_refused_whole() -> None:
    ref = Ref("t1", "t1/subtasks/s0", 0, 7)
    resume = Resume("a1", "0123", "raw", "team-a")
    body = encode(resume, [ref], "replica-1")
    assert decode(body) == (resume, [ref], "replica-1")
    for broken in (
        {**body, "refs": [["t1", "s0", "zero", 7]]},
        {k: v for k, v in body.items() if k != "session"},
        {k: v for k, v in body.items() if k != "type"},
    ):
        with pytest.raises(ValueError, match="malformed hand-over request"):
            decode(broken)
