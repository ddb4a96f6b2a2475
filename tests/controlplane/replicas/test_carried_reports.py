"""Reports on work another live replica holds are carried to it, applied there, and answered by it.

An agent loses its connection to replica A (A stays alive and healthy) and resumes its session on
replica B. The result it sends again reaches B, which does not hold the task: B carries it over the
replicas' bus to A, A applies it with its own fencing (attempt and lease epoch) and its answer is
the agent's. Nothing waits for A to count as lost, and the work does not run again.

* With a real agent process (:mod:`tests.harness.recording_agent`) reaching A through a TCP proxy
  of the test's (:mod:`tests.harness.tcp_proxy`): the proxy swallows what the agent sends while it
  finishes its work, then cuts it off from A, so the agent fails over to B.
* With an agent speaking the protocol by hand (:class:`RawAgent`), for the answers themselves: a
  stale report is refused by A, the result is applied by A, a duplicate is acknowledged, and a
  failure is carried the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import sqlalchemy

from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import errors_pb2 as errors
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from tests.controlplane.scheduler.test_faults import RawAgent
from tests.harness.recording_agent import AGENT_TYPE
from tests.harness.replica_fixtures import MakeCluster
from tests.harness.replicas import RecordingAgentProcess, ReplicaCluster
from tests.harness.server import Stubs, wait_for
from tests.harness.tcp_proxy import TcpProxy

RPC = 15
#: Leases far longer than the test: work re-run after a lease ran out would show as a second execution.
LONG_LEASES = {"MAOS_SCHEDULER_LEASE_TTL": "30", "MAOS_SCHEDULER_RESTART_GRACE": "30"}


def claimed_by(url: str, task_name: str) -> str | None:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sqlalchemy.text("SELECT claimed_by FROM tasks WHERE id = :id"),
                {"id": task_name.removeprefix("tasks/")},
            )
            return found.scalar_one()
    finally:
        engine.dispose()


async def wait_finished(stubs: Stubs, name: str, timeout: float) -> msgs.Task:
    async def finished() -> msgs.Task | None:
        task = (await stubs.tasks.GetTask(tasks_pb.GetTaskRequest(name=name), timeout=RPC)).task
        done = task.status in (enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
        return task if done else None

    return await wait_for(finished, timeout, interval=0.05, message=f"{name} to finish")


@contextlib.asynccontextmanager
async def stubs_of(cluster: ReplicaCluster) -> AsyncIterator[list[Stubs]]:
    stubs = [Stubs(address) for address in cluster.addresses]
    try:
        yield stubs
    finally:
        for stub in stubs:
            await stub.close()


async def test_a_result_sent_again_through_another_replica_is_applied_by_the_live_holder(
    replica_cluster: MakeCluster,
) -> None:
    cluster = await replica_cluster(2, **LONG_LEASES)
    proxy = TcpProxy("127.0.0.1", cluster.replicas[0].port)
    await proxy.start()
    agent = RecordingAgentProcess(
        f"{proxy.address},{cluster.addresses[1]}", cluster.folder / "agent.jsonl", delay=1.0, concurrency=1
    )
    cluster.agents.append(agent)
    try:
        async with stubs_of(cluster) as stubs:

            async def connected_to_a() -> list[msgs.Agent]:
                listed = await stubs[0].agents.ListAgents(agents_pb.ListAgentsRequest(), timeout=RPC)
                return [a for a in listed.agents if a.replica == "replica-0"]

            [on_a] = await wait_for(connected_to_a, 30, 0.05, "the agent on replica 0")
            submitted = await stubs[0].tasks.SubmitTask(
                tasks_pb.SubmitTaskRequest(task=msgs.Task(description="carried", agent_type=AGENT_TYPE)),
                timeout=RPC,
            )
            name = submitted.task.name
            await wait_for(lambda: len(agent.executions()) == 1, 30, 0.02, "the work to start")
            proxy.hold()  # what the agent sends from now on reaches nobody: its result is lost on the way
            await wait_for(lambda: agent.executions()[0].done_ns is not None, 30, 0.02, "the work to end")
            await proxy.shut()  # cut off from replica 0, the agent resumes its session on replica 1

            task = await wait_finished(stubs[1], name, 20)  # (within the lease: nothing ran again)
            [execution] = agent.executions()
            assert task.status == enums.TASK_STATUS_COMPLETED
            results = await stubs[1].tasks.GetTaskResults(
                tasks_pb.GetTaskResultsRequest(name=name), timeout=RPC
            )
            assert [s.output for s in results.result.subtasks] == [execution.token]
            assert claimed_by(cluster.database_url, name) == "replica-0"  # applied by its holder
            assert all(replica.running for replica in cluster.replicas)

            # The agent's own record, on replica 1 now, counts the work.
            async def counted() -> msgs.Agent | None:
                got = (
                    await stubs[1].agents.GetAgent(agents_pb.GetAgentRequest(name=on_a.name), timeout=RPC)
                ).agent
                return got if got.replica == "replica-1" and got.completed_subtasks == 1 else None

            await wait_for(counted, 10, 0.05, "the agent's completed work counted on replica 1")
    finally:
        await proxy.close()


async def register(agent: RawAgent, resume: gw.ResumeSession | None = None) -> gw.Registered:
    agent.send(
        register=gw.Register(
            agent_type="raw", capabilities=["*"], max_concurrency=1, language="test", resume=resume
        )
    )
    return (await agent.receive("registered")).registered


@pytest.mark.parametrize("wakeups", ["redis", "listen-notify"])
async def test_reports_carried_to_the_holder_are_fenced_and_answered_by_it(
    replica_cluster: MakeCluster, wakeups: str
) -> None:
    no_redis = {"MAOS_REDIS_URL": ""} if wakeups == "listen-notify" else {}
    cluster = await replica_cluster(2, **LONG_LEASES, **no_redis)
    a, b = cluster.addresses
    on_a = RawAgent(a)
    on_b: RawAgent | None = None
    try:
        async with stubs_of(cluster) as stubs:
            registered = await register(on_a)
            done = await stubs[0].tasks.SubmitTask(
                tasks_pb.SubmitTaskRequest(task=msgs.Task(description="to complete", agent_type="raw")),
                timeout=RPC,
            )
            first = (await on_a.receive("assignment")).assignment.ref
            await on_a.close()  # its stream to replica 0 breaks; replica 0 keeps the lease

            on_b = RawAgent(b)
            resumed = await register(
                on_b, gw.ResumeSession(agent=registered.agent, session_id=registered.session_id)
            )
            assert resumed.agent == registered.agent and resumed.replica == "replica-1"

            stale = gw.AssignmentRef(
                subtask=first.subtask, attempt=first.attempt, lease_epoch=first.lease_epoch + 1
            )
            on_b.send(result=gw.SubtaskResult(ref=stale, output="forged"))
            refused = (await on_b.receive("ack")).ack
            assert not refused.accepted and refused.reason == errors.ERROR_REASON_STALE_ATTEMPT, refused
            # Judged by the holder, in memory ("the current attempt is"), not from storage on replica 1.
            assert "the current attempt is" in refused.message, refused

            # An agent that does not hold the assignment is told so by the holder (from storage,
            # replica 1 would answer only that the task is finished or unknown).
            intruder = RawAgent(b)
            try:
                await register(intruder)
                intruder.send(result=gw.SubtaskResult(ref=first, output="not mine"))
                mismatch = (await intruder.receive("ack")).ack
            finally:
                await intruder.close()
            assert not mismatch.accepted and mismatch.reason == errors.ERROR_REASON_NOT_LEASE_HOLDER, mismatch

            on_b.send(result=gw.SubtaskResult(ref=first, output="carried"))
            applied = (await on_b.receive("ack")).ack
            assert applied.accepted, applied
            on_b.send(result=gw.SubtaskResult(ref=first, output="carried"))
            duplicate = (await on_b.receive("ack")).ack
            assert duplicate.accepted and "duplicate" in duplicate.message, duplicate

            task = await wait_finished(stubs[1], done.task.name, 10)
            assert task.status == enums.TASK_STATUS_COMPLETED
            results = await stubs[1].tasks.GetTaskResults(
                tasks_pb.GetTaskResultsRequest(name=done.task.name), timeout=RPC
            )
            assert [s.output for s in results.result.subtasks] == ["carried"]
            assert claimed_by(cluster.database_url, done.task.name) == "replica-0"

            # A failure is carried the same way: the holder fails the task with the agent's message.
            await on_b.close()
            on_b = None
            again = RawAgent(a)
            try:
                other = await register(again)
                failing = await stubs[0].tasks.SubmitTask(
                    tasks_pb.SubmitTaskRequest(task=msgs.Task(description="to fail", agent_type="raw")),
                    timeout=RPC,
                )
                ref = (await again.receive("assignment")).assignment.ref
            finally:
                await again.close()
            on_b = RawAgent(b)
            await register(on_b, gw.ResumeSession(agent=other.agent, session_id=other.session_id))
            on_b.send(failure=gw.SubtaskFailure(ref=ref, message="the tool broke", retryable=False))
            answered = (await on_b.receive("ack")).ack
            assert answered.accepted, answered
            failed = await wait_finished(stubs[1], failing.task.name, 10)
            assert failed.status == enums.TASK_STATUS_FAILED
            assert "the tool broke" in failed.failure.message
    finally:
        await on_a.close()
        if on_b is not None:
            await on_b.close()
