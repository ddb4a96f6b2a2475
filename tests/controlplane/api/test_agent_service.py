"""AgentService against a real control plane, with in-process agents (``agent_sdk.worker.Worker``).

Listing, inspection, pause/resume, drain and terminate are observed from both
sides: through the API and through the worker's own state. Real processes
(SpawnAgents, the launcher) are covered in ``test_agent_service_processes``.
Helpers shared with that module live here (nothing starting with ``test``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import grpc
import pytest

from agent_sdk.agent import Agent
from agent_sdk.builtin import EchoAgent, NoopAgent
from agent_sdk.errors import RetryableError
from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from agent_sdk.worker import Worker
from controlplane.app import App
from tests.controlplane.api.test_task_service import (
    RPC_TIMEOUT,
    RecordingSleepAgent,
    assert_failure,
    get,
    results,
    rpc_failure,
    running_worker,
    seconds,
    submit,
    task,
    wait_status,
)
from tests.harness.server import Stubs, wait_for

# --- helpers --------------------------------------------------------------------


async def get_agent(stubs: Stubs, name: str) -> msgs.Agent:
    """GetAgent."""
    return (await stubs.agents.GetAgent(agents_pb.GetAgentRequest(name=name), timeout=RPC_TIMEOUT)).agent


async def list_agents(stubs: Stubs, **filters: Any) -> list[msgs.Agent]:
    """Every agent ListAgents returns with ``filters`` (one large page)."""
    reply = await stubs.agents.ListAgents(
        agents_pb.ListAgentsRequest(page_size=1000, **filters), timeout=RPC_TIMEOUT
    )
    assert not reply.next_page_token
    return list(reply.agents)


async def names(stubs: Stubs, **filters: Any) -> set[str]:
    """The names ListAgents returns with ``filters``."""
    return {a.name for a in await list_agents(stubs, **filters)}


async def wait_agent(stubs: Stubs, name: str, *statuses: int, timeout: float = 10.0) -> msgs.Agent:
    """Poll GetAgent until the agent is in one of ``statuses``; returns it."""
    latest: list[msgs.Agent] = []

    async def reached() -> bool:
        latest[:] = [await get_agent(stubs, name)]
        return latest[0].status in statuses

    wanted = ", ".join(enums.AgentStatus.Name(s) for s in statuses)
    try:
        await wait_for(reached, timeout, interval=0.02, message=f"{name} to be {wanted}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen {latest[0] if latest else None}") from None
    return latest[0]


def agents_fingerprint(agents: list[msgs.Agent]) -> list[tuple[Any, ...]]:
    """What must not change when a call fails."""
    return sorted(
        (a.name, a.status, a.free_slots, tuple(a.assignments), a.completed_subtasks, a.failed_subtasks)
        for a in agents
    )


async def all_agents_fingerprint(stubs: Stubs) -> list[tuple[Any, ...]]:
    """Fingerprint of every agent, terminated ones included."""
    return agents_fingerprint(await list_agents(stubs, include_terminated=True))


@contextlib.asynccontextmanager
async def running_workers(address: str, *agents: Agent, **options: Any) -> AsyncIterator[list[Worker]]:
    """Several in-process agents connected for the duration of the block."""
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(running_worker(agent, address, **options)) for agent in agents]


async def disconnected_agent(address: str, agent: Agent | None = None) -> str:
    """An agent that registered, then lost its stream without draining (DISCONNECTED); its name."""
    worker = Worker(agent or EchoAgent(), address, reconnect=False)
    runner = asyncio.get_running_loop().create_task(worker.run())
    await asyncio.wait_for(worker.registered.wait(), 10)
    runner.cancel()  # the channel closes under the stream: no drain, no goodbye
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    return worker.agent_name


async def wait_stopped(worker: Worker, timeout: float = 10.0) -> None:
    """Wait until the worker has left (its run loop stopped after a Drain)."""
    await wait_for(
        lambda: worker._stop.is_set() and worker._outbox is None,
        timeout,
        message="the worker to close its stream",
    )


async def subtasks_of(stubs: Stubs, name: str) -> list[msgs.Subtask]:
    """The subtasks of a task (FULL view)."""
    return list((await get(stubs, name, full=True)).subtasks)


class GatedEcho(EchoAgent):
    """EchoAgent whose assignments wait until ``gate`` is set (to observe work in flight)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started: list[str] = []

    async def handle(self, ctx: Any) -> str:
        """Record, wait for the gate, echo."""
        self.started.append(ctx.assignment.subtask)
        await self.gate.wait()
        return await super().handle(ctx)


LONG_SLEEP = {"sleep_seconds": "30"}


# --- ListAgents -------------------------------------------------------------------


async def test_list_agents_filters_by_status_and_type(control_plane: App, stubs: Stubs) -> None:
    async with running_workers(control_plane.address, EchoAgent(), NoopAgent(), RecordingSleepAgent()) as (
        echo,
        noop,
        sleep,
    ):
        await stubs.agents.PauseAgent(agents_pb.PauseAgentRequest(name=noop.agent_name), timeout=RPC_TIMEOUT)

        assert await names(stubs) == {echo.agent_name, noop.agent_name, sleep.agent_name}
        assert await names(stubs, statuses=[enums.AGENT_STATUS_IDLE]) == {echo.agent_name, sleep.agent_name}
        assert await names(stubs, statuses=[enums.AGENT_STATUS_PAUSED]) == {noop.agent_name}
        assert await names(stubs, statuses=[enums.AGENT_STATUS_BUSY]) == set()
        assert await names(stubs, statuses=[enums.AGENT_STATUS_IDLE, enums.AGENT_STATUS_PAUSED]) == {
            echo.agent_name,
            noop.agent_name,
            sleep.agent_name,
        }
        assert await names(stubs, agent_types=["sleep"]) == {sleep.agent_name}
        assert await names(stubs, agent_types=["echo", "noop"]) == {echo.agent_name, noop.agent_name}
        assert await names(stubs, agent_types=["researcher"]) == set()
        assert await names(stubs, statuses=[enums.AGENT_STATUS_IDLE], agent_types=["noop"]) == set()
        assert await names(stubs, statuses=[enums.AGENT_STATUS_PAUSED], agent_types=["noop"]) == {
            noop.agent_name
        }

        listed = {a.name: a for a in await list_agents(stubs)}
        assert listed[echo.agent_name].agent_type == "echo"
        assert listed[echo.agent_name].language == "python"
        assert listed[echo.agent_name].max_concurrency == EchoAgent.max_concurrency
        assert listed[echo.agent_name].free_slots == EchoAgent.max_concurrency
        assert listed[noop.agent_name].free_slots == 0  # paused: no credit
        assert not listed[echo.agent_name].managed

        # A busy agent is found by BUSY and not by IDLE.
        submitted = await submit(stubs, "nap", agent_type="sleep", metadata=LONG_SLEEP)
        await wait_agent(stubs, sleep.agent_name, enums.AGENT_STATUS_BUSY)
        assert await names(stubs, statuses=[enums.AGENT_STATUS_BUSY]) == {sleep.agent_name}
        assert await names(stubs, statuses=[enums.AGENT_STATUS_IDLE]) == {echo.agent_name}
        await stubs.tasks.CancelTask(tasks_pb.CancelTaskRequest(name=submitted.name), timeout=RPC_TIMEOUT)


async def test_list_agents_pages_of_one_return_every_agent_once(control_plane: App, stubs: Stubs) -> None:
    gone = await disconnected_agent(control_plane.address)
    async with running_workers(control_plane.address, EchoAgent(), EchoAgent(), NoopAgent()) as workers:
        connected = [w.agent_name for w in workers]
        everything = [a.name for a in await list_agents(stubs)]
        assert sorted(everything) == sorted([*connected, gone])
        assert everything[-1] == gone  # connected agents first

        seen: list[str] = []
        token = ""
        for _ in range(10):
            reply = await stubs.agents.ListAgents(
                agents_pb.ListAgentsRequest(page_size=1, page_token=token), timeout=RPC_TIMEOUT
            )
            assert len(reply.agents) == 1
            seen.extend(a.name for a in reply.agents)
            token = reply.next_page_token
            if not token:
                break
        assert seen == everything

        # The same with a filter: only the echo agents, each once.
        seen, token = [], ""
        while True:
            reply = await stubs.agents.ListAgents(
                agents_pb.ListAgentsRequest(
                    page_size=1, page_token=token, agent_types=["echo"], statuses=[enums.AGENT_STATUS_IDLE]
                ),
                timeout=RPC_TIMEOUT,
            )
            seen.extend(a.name for a in reply.agents)
            token = reply.next_page_token
            if not token:
                break
        assert sorted(seen) == sorted(connected[:2])


async def test_terminated_agents_are_hidden_unless_asked_for(control_plane: App, stubs: Stubs) -> None:
    gone = await disconnected_agent(control_plane.address)
    async with (
        running_worker(EchoAgent(), control_plane.address) as leaving,
        running_worker(EchoAgent(), control_plane.address) as staying,
    ):
        await stubs.agents.DrainAgent(
            agents_pb.DrainAgentRequest(name=leaving.agent_name), timeout=RPC_TIMEOUT
        )
        await wait_stopped(leaving)
        await wait_agent(stubs, leaving.agent_name, enums.AGENT_STATUS_TERMINATED)

        assert await names(stubs) == {staying.agent_name, gone}  # DISCONNECTED is still listed
        assert await names(stubs, include_terminated=True) == {staying.agent_name, gone, leaving.agent_name}
        assert await names(stubs, statuses=[enums.AGENT_STATUS_TERMINATED]) == {leaving.agent_name}
        assert await names(stubs, statuses=[enums.AGENT_STATUS_DISCONNECTED]) == {gone}
        terminated = await get_agent(stubs, leaving.agent_name)
        assert terminated.disconnect_time.ToNanoseconds() > 0
        assert terminated.free_slots == 0 and not terminated.assignments


# --- GetAgent -------------------------------------------------------------------------


async def test_get_agent_lists_running_assignments_and_free_slots(control_plane: App, stubs: Stubs) -> None:
    agent = GatedEcho()
    async with running_worker(agent, control_plane.address, max_concurrency=3) as worker:
        idle = await get_agent(stubs, worker.agent_name)
        assert idle.name == worker.agent_name
        assert idle.status == enums.AGENT_STATUS_IDLE
        assert idle.free_slots == 3 and idle.max_concurrency == 3
        assert not idle.assignments
        assert idle.connect_time.ToNanoseconds() > 0 and idle.last_heartbeat_time.ToNanoseconds() > 0
        bare = worker.agent_name.removeprefix("agents/")
        assert (await get_agent(stubs, bare)).name == worker.agent_name  # a bare id works too

        first = await submit(stubs, "one")
        second = await submit(stubs, "two")
        await wait_for(lambda: len(agent.started) == 2, 5, message="both assignments to start")
        busy = await get_agent(stubs, worker.agent_name)
        assert busy.status == enums.AGENT_STATUS_BUSY
        assert busy.free_slots == 1
        expected = sorted(
            [(await subtasks_of(stubs, first.name))[0].name, (await subtasks_of(stubs, second.name))[0].name]
        )
        assert sorted(busy.assignments) == expected == sorted(agent.started)

        agent.gate.set()
        for t in (first, second):
            done = await wait_status(stubs, t.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
            assert done.status == enums.TASK_STATUS_COMPLETED
        after = await wait_agent(stubs, worker.agent_name, enums.AGENT_STATUS_IDLE)
        assert not after.assignments and after.free_slots == 3


async def test_get_agent_counts_completed_and_failed_work(control_plane: App, stubs: Stubs) -> None:
    async with running_worker(EchoAgent(), control_plane.address) as worker:
        fresh = await get_agent(stubs, worker.agent_name)
        assert (fresh.completed_subtasks, fresh.failed_subtasks) == (0, 0)
        assert fresh.reliability == pytest.approx(0.5)  # Laplace-smoothed: no record yet

        ok = await submit(stubs, "1. a\n2. b")  # two parts and a synthesis: three subtasks
        bad = await submit(stubs, "doomed", metadata={"echo_fail": "permanent"})
        for t, status in ((ok, enums.TASK_STATUS_COMPLETED), (bad, enums.TASK_STATUS_FAILED)):
            finished = await wait_status(stubs, t.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
            assert finished.status == status
        record = await get_agent(stubs, worker.agent_name)
    assert (record.completed_subtasks, record.failed_subtasks) == (3, 1)
    assert record.reliability == pytest.approx((3 + 1) / (3 + 1 + 2))
    assert record.status in (enums.AGENT_STATUS_IDLE, enums.AGENT_STATUS_TERMINATED)


# --- ListAgentTypes -------------------------------------------------------------------


async def test_list_agent_types(stubs: Stubs) -> None:
    reply = await stubs.agents.ListAgentTypes(agents_pb.ListAgentTypesRequest(), timeout=RPC_TIMEOUT)
    by_name = {t.name: t for t in reply.agent_types}
    assert {"echo", "noop", "sleep"} <= set(by_name)
    assert [t.name for t in reply.agent_types] == sorted(by_name)
    for name in ("echo", "noop", "sleep"):
        kind = by_name[name]
        assert list(kind.capabilities) == ["*"], kind
        assert kind.spawnable, kind
        assert kind.source == "builtin", kind
        assert kind.description, kind


# --- PauseAgent / ResumeAgent -----------------------------------------------------------


async def test_paused_agent_gets_no_work_until_resumed(control_plane: App, stubs: Stubs) -> None:
    agent = GatedEcho()
    agent.gate.set()
    async with running_worker(agent, control_plane.address) as worker:
        paused = (
            await stubs.agents.PauseAgent(
                agents_pb.PauseAgentRequest(name=worker.agent_name), timeout=RPC_TIMEOUT
            )
        ).agent
        assert paused.status == enums.AGENT_STATUS_PAUSED and paused.free_slots == 0
        again = (
            await stubs.agents.PauseAgent(
                agents_pb.PauseAgentRequest(name=worker.agent_name), timeout=RPC_TIMEOUT
            )
        ).agent
        assert again.status == enums.AGENT_STATUS_PAUSED  # pausing twice is harmless

        submitted = await submit(stubs, "wait for me")
        # Two heartbeats later the paused agent has been seen alive and a dispatch pass has run.
        for _ in range(2):
            seen = (await get_agent(stubs, worker.agent_name)).last_heartbeat_time.ToNanoseconds()
            await wait_for(
                partial(_heartbeat_after, stubs, worker.agent_name, seen), 5, message="a heartbeat"
            )
        queued = (await get(stubs, submitted.name)).task
        assert queued.status == enums.TASK_STATUS_QUEUED
        assert queued.status_reason, queued
        assert not agent.started and not worker._running
        assert (await get_agent(stubs, worker.agent_name)).status == enums.AGENT_STATUS_PAUSED

        resumed = (
            await stubs.agents.ResumeAgent(
                agents_pb.ResumeAgentRequest(name=worker.agent_name), timeout=RPC_TIMEOUT
            )
        ).agent
        assert resumed.status in (enums.AGENT_STATUS_IDLE, enums.AGENT_STATUS_BUSY)
        done = await wait_status(stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
        assert done.status == enums.TASK_STATUS_COMPLETED
        assert (await results(stubs, submitted.name)).output == "wait for me"
        assert agent.started and (await subtasks_of(stubs, submitted.name))[0].agent == worker.agent_name
        assert (await get_agent(stubs, worker.agent_name)).status == enums.AGENT_STATUS_IDLE


async def _heartbeat_after(stubs: Stubs, name: str, nanos: int) -> bool:
    return (await get_agent(stubs, name)).last_heartbeat_time.ToNanoseconds() > nanos


async def test_pausing_keeps_running_work_going(control_plane: App, stubs: Stubs) -> None:
    agent = GatedEcho()
    async with running_worker(agent, control_plane.address) as worker:
        submitted = await submit(stubs, "keep going")
        await wait_for(lambda: agent.started, 5, message="the assignment to start")
        paused = (
            await stubs.agents.PauseAgent(
                agents_pb.PauseAgentRequest(name=worker.agent_name), timeout=RPC_TIMEOUT
            )
        ).agent
        assert paused.status == enums.AGENT_STATUS_PAUSED
        assert list(paused.assignments) == agent.started
        agent.gate.set()
        done = await wait_status(stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
        assert done.status == enums.TASK_STATUS_COMPLETED
        assert (await get_agent(stubs, worker.agent_name)).status == enums.AGENT_STATUS_PAUSED


# --- DrainAgent ----------------------------------------------------------------------------


async def test_drained_agent_finishes_its_work_takes_no_more_and_leaves(
    control_plane: App, stubs: Stubs
) -> None:
    agent = GatedEcho()
    async with running_worker(agent, control_plane.address, max_concurrency=4) as worker:
        running = await submit(stubs, "finish me")
        await wait_for(lambda: agent.started, 5, message="the assignment to start")

        drained = (
            await stubs.agents.DrainAgent(
                agents_pb.DrainAgentRequest(name=worker.agent_name, grace=seconds(10)), timeout=RPC_TIMEOUT
            )
        ).agent
        assert drained.status == enums.AGENT_STATUS_DRAINING
        assert drained.free_slots == 0 and len(drained.assignments) == 1
        await wait_for(lambda: worker._draining, 5, message="the worker to receive Drain")

        later = await submit(stubs, "not for the drained agent")
        listed = (await get(stubs, later.name)).task
        assert listed.status == enums.TASK_STATUS_QUEUED and listed.status_reason
        assert (await get_agent(stubs, worker.agent_name)).status == enums.AGENT_STATUS_DRAINING

        agent.gate.set()
        done = await wait_status(stubs, running.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
        assert done.status == enums.TASK_STATUS_COMPLETED
        [sub] = await subtasks_of(stubs, running.name)
        assert sub.attempt == 0 and sub.agent == worker.agent_name  # finished where it started
        await wait_stopped(worker)
        gone = await wait_agent(
            stubs, worker.agent_name, enums.AGENT_STATUS_TERMINATED, enums.AGENT_STATUS_DISCONNECTED
        )
        assert not gone.assignments
        assert len(agent.started) == 1  # the later task never reached it
        assert (await get(stubs, later.name)).task.status == enums.TASK_STATUS_QUEUED

    # Another agent picks up the work the drained one did not take.
    async with running_worker(EchoAgent(), control_plane.address) as other:
        done = await wait_status(stubs, later.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
        assert done.status == enums.TASK_STATUS_COMPLETED
        assert (await subtasks_of(stubs, later.name))[0].agent == other.agent_name


async def test_draining_an_idle_agent_ends_its_stream(control_plane: App, stubs: Stubs) -> None:
    async with running_worker(EchoAgent(), control_plane.address) as worker:
        await stubs.agents.DrainAgent(
            agents_pb.DrainAgentRequest(name=worker.agent_name), timeout=RPC_TIMEOUT
        )
        await wait_stopped(worker, timeout=5)
        gone = await wait_agent(stubs, worker.agent_name, enums.AGENT_STATUS_TERMINATED)
        assert gone.status == enums.AGENT_STATUS_TERMINATED
        assert worker.agent_name.removeprefix("agents/") not in control_plane.engine.sessions


# --- TerminateAgent --------------------------------------------------------------------------


async def test_force_terminate_requeues_running_work_at_once(control_plane: App, stubs: Stubs) -> None:
    sleeper = RecordingSleepAgent()
    async with running_worker(sleeper, control_plane.address) as doomed:
        submitted = await submit(stubs, "a long nap", metadata=LONG_SLEEP)
        await wait_status(stubs, submitted.name, enums.TASK_STATUS_RUNNING)
        await wait_for(lambda: sleeper.started, 5, message="the sleep to start")
        async with running_worker(EchoAgent(), control_plane.address) as rescuer:
            reply = await stubs.agents.TerminateAgent(
                agents_pb.TerminateAgentRequest(name=doomed.agent_name, force=True), timeout=RPC_TIMEOUT
            )
            assert reply.agent.name == doomed.agent_name
            assert reply.agent.status in (enums.AGENT_STATUS_DRAINING, enums.AGENT_STATUS_TERMINATED)
            assert not reply.agent.assignments
            [sub] = await subtasks_of(stubs, submitted.name)
            assert sub.attempt == 1, sub  # re-queued at once, not after the lease expires
            assert sub.agent != doomed.agent_name
            assert "terminated" in sub.status_reason or sub.status != enums.SUBTASK_STATUS_QUEUED

            done = await wait_status(
                stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED, timeout=5
            )
            assert done.status == enums.TASK_STATUS_COMPLETED, done.failure
            [sub] = await subtasks_of(stubs, submitted.name)
            assert sub.attempt == 1 and sub.agent == rescuer.agent_name
            await wait_for(lambda: sleeper.cancelled, 5, message="the terminated agent to stop its sleep")
            await wait_stopped(doomed, timeout=5)
            gone = await wait_agent(stubs, doomed.agent_name, enums.AGENT_STATUS_TERMINATED)
            assert gone.completed_subtasks == 0


class FailsOnce(EchoAgent):
    """Fails its first assignment with a retryable error, then echoes."""

    def __init__(self) -> None:
        self.failed = False

    async def handle(self, ctx: Any) -> str:
        if not self.failed:
            self.failed = True
            raise RetryableError("a passing fault")
        return await super().handle(ctx)


async def test_work_requeued_by_a_terminate_keeps_its_retries(control_plane: App, stubs: Stubs) -> None:
    sleeper = RecordingSleepAgent()
    async with running_worker(sleeper, control_plane.address) as doomed:
        draft = task("a long nap", metadata=LONG_SLEEP)
        draft.retry_policy.max_retries = 1
        submitted = await submit(stubs, draft)
        await wait_for(lambda: sleeper.started, 5, message="the sleep to start")
        async with running_worker(FailsOnce(), control_plane.address):
            await stubs.agents.TerminateAgent(
                agents_pb.TerminateAgentRequest(name=doomed.agent_name, force=True), timeout=RPC_TIMEOUT
            )
            # attempt 1 fails (retryable): the one retry the task allows is still there for it
            done = await wait_status(
                stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED, timeout=10
            )
            assert done.status == enums.TASK_STATUS_COMPLETED, done.failure
            [sub] = await subtasks_of(stubs, submitted.name)
            assert sub.attempt == 2, sub


async def test_terminate_without_force_lets_running_work_finish(control_plane: App, stubs: Stubs) -> None:
    agent = GatedEcho()
    async with running_worker(agent, control_plane.address) as worker:
        submitted = await submit(stubs, "finish before leaving")
        await wait_for(lambda: agent.started, 5, message="the assignment to start")
        reply = await stubs.agents.TerminateAgent(
            agents_pb.TerminateAgentRequest(name=worker.agent_name, grace=seconds(10)), timeout=RPC_TIMEOUT
        )
        assert reply.agent.status == enums.AGENT_STATUS_DRAINING
        assert len(reply.agent.assignments) == 1
        [sub] = await subtasks_of(stubs, submitted.name)
        assert sub.status == enums.SUBTASK_STATUS_RUNNING and sub.attempt == 0
        await wait_for(lambda: worker._draining, 5, message="the worker to receive Drain")

        agent.gate.set()
        done = await wait_status(stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
        assert done.status == enums.TASK_STATUS_COMPLETED
        [sub] = await subtasks_of(stubs, submitted.name)
        assert sub.attempt == 0 and sub.agent == worker.agent_name
        await wait_stopped(worker)
        gone = await wait_agent(stubs, worker.agent_name, enums.AGENT_STATUS_TERMINATED)
        assert gone.completed_subtasks == 1


async def test_terminate_grace_cancels_work_that_runs_too_long(control_plane: App, stubs: Stubs) -> None:
    sleeper = RecordingSleepAgent()
    async with running_worker(sleeper, control_plane.address) as worker:
        submitted = await submit(stubs, "overstay", metadata=LONG_SLEEP)
        await wait_for(lambda: sleeper.started, 5, message="the sleep to start")
        await stubs.agents.TerminateAgent(
            agents_pb.TerminateAgentRequest(name=worker.agent_name, grace=seconds(0.2)), timeout=RPC_TIMEOUT
        )
        await wait_for(lambda: sleeper.cancelled, 5, message="the sleep to be cancelled after the grace")
        await wait_stopped(worker, timeout=5)
        await wait_agent(stubs, worker.agent_name, enums.AGENT_STATUS_TERMINATED)
    [sub] = await subtasks_of(stubs, submitted.name)
    assert sub.status in (
        enums.SUBTASK_STATUS_RUNNING,
        enums.SUBTASK_STATUS_QUEUED,
    )  # until its lease expires


async def test_force_terminate_of_a_disconnected_agent_requeues_its_work(
    control_plane: App, stubs: Stubs
) -> None:
    sleeper = RecordingSleepAgent()
    worker = Worker(sleeper, control_plane.address, reconnect=False)
    runner = asyncio.get_running_loop().create_task(worker.run())
    try:
        await asyncio.wait_for(worker.registered.wait(), 10)
        submitted = await submit(stubs, "a long nap", metadata=LONG_SLEEP)
        await wait_for(lambda: sleeper.started, 5, message="the sleep to start")
        runner.cancel()  # the stream breaks; the lease stays with the agent until it expires (3 s)
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await wait_agent(stubs, worker.agent_name, enums.AGENT_STATUS_DISCONNECTED)

        reply = await stubs.agents.TerminateAgent(
            agents_pb.TerminateAgentRequest(name=worker.agent_name, force=True), timeout=RPC_TIMEOUT
        )
        [sub] = await subtasks_of(stubs, submitted.name)
        assert sub.attempt == 1 and sub.status == enums.SUBTASK_STATUS_QUEUED, sub  # at once, not in 3 s
        assert reply.agent.status == enums.AGENT_STATUS_TERMINATED
    finally:
        await worker._cancel_all()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


# --- bad input ------------------------------------------------------------------------------

AGENT_METHODS = {
    "GetAgent": lambda s, n: s.agents.GetAgent(agents_pb.GetAgentRequest(name=n), timeout=RPC_TIMEOUT),
    "PauseAgent": lambda s, n: s.agents.PauseAgent(agents_pb.PauseAgentRequest(name=n), timeout=RPC_TIMEOUT),
    "ResumeAgent": lambda s, n: s.agents.ResumeAgent(
        agents_pb.ResumeAgentRequest(name=n), timeout=RPC_TIMEOUT
    ),
    "DrainAgent": lambda s, n: s.agents.DrainAgent(agents_pb.DrainAgentRequest(name=n), timeout=RPC_TIMEOUT),
    "TerminateAgent": lambda s, n: s.agents.TerminateAgent(
        agents_pb.TerminateAgentRequest(name=n), timeout=RPC_TIMEOUT
    ),
}


async def test_unknown_agent_is_not_found(control_plane: App, stubs: Stubs) -> None:
    async with running_worker(EchoAgent(), control_plane.address):
        before = await all_agents_fingerprint(stubs)
        for method, call in AGENT_METHODS.items():
            for name in ("agents/nobody", "nobody"):
                failure = await rpc_failure(call(stubs, name))
                assert_failure(failure, grpc.StatusCode.NOT_FOUND, "ERROR_REASON_AGENT_NOT_FOUND")
                assert "agents/nobody" in failure.message, (method, failure)
        assert await all_agents_fingerprint(stubs) == before


MALFORMED_NAMES = [
    "",
    "agents/",
    "agents/bad name",
    "agents/-x",
    "agents/a/b",
    "tasks/x/agents/y",
    "agents/" + "x" * 129,
]


async def test_malformed_agent_name_is_invalid(control_plane: App, stubs: Stubs) -> None:
    async with running_worker(EchoAgent(), control_plane.address):
        before = await all_agents_fingerprint(stubs)
        for method, call in AGENT_METHODS.items():
            for name in MALFORMED_NAMES:
                failure = await rpc_failure(call(stubs, name))
                assert_failure(
                    failure, grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_FIELD", field="name"
                )
                assert failure.message, (method, name)
        assert await all_agents_fingerprint(stubs) == before


async def test_commands_to_a_disconnected_agent_fail_precondition(control_plane: App, stubs: Stubs) -> None:
    gone = await disconnected_agent(control_plane.address)
    await wait_agent(stubs, gone, enums.AGENT_STATUS_DISCONNECTED)
    before = await all_agents_fingerprint(stubs)
    for method in ("PauseAgent", "ResumeAgent", "DrainAgent"):
        failure = await rpc_failure(AGENT_METHODS[method](stubs, gone))
        assert_failure(failure, grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_AGENT_STATE")
        assert "not connected" in failure.message, (method, failure)
    assert await all_agents_fingerprint(stubs) == before
    assert (await get_agent(stubs, gone)).status == enums.AGENT_STATUS_DISCONNECTED


async def test_bad_list_requests(control_plane: App, stubs: Stubs) -> None:
    async with running_workers(control_plane.address, EchoAgent(), EchoAgent()):
        before = await all_agents_fingerprint(stubs)

        async def refused(reason: str, field: str, **fields: Any) -> None:
            failure = await rpc_failure(
                stubs.agents.ListAgents(agents_pb.ListAgentsRequest(**fields), timeout=RPC_TIMEOUT)
            )
            assert_failure(failure, grpc.StatusCode.INVALID_ARGUMENT, reason, field=field)

        await refused("ERROR_REASON_INVALID_FIELD", "page_size", page_size=-1)
        for token in ("garbage", "AAAA", "x" * 200, "!!!"):
            await refused("ERROR_REASON_INVALID_PAGE_TOKEN", "page_token", page_token=token)
        # An invalid status enum value (proto3 enums are open: any int32 arrives).
        await refused("ERROR_REASON_INVALID_FIELD", "statuses[0]", statuses=[99])
        await refused("ERROR_REASON_INVALID_FIELD", "statuses[1]", statuses=[enums.AGENT_STATUS_IDLE, -3])
        await refused("ERROR_REASON_INVALID_FIELD", "statuses[0]", statuses=[enums.AGENT_STATUS_UNSPECIFIED])

        # A real token reused with other filters; another page size is not another filter.
        first = await stubs.agents.ListAgents(agents_pb.ListAgentsRequest(page_size=1), timeout=RPC_TIMEOUT)
        assert first.next_page_token
        await refused(
            "ERROR_REASON_INVALID_PAGE_TOKEN",
            "page_token",
            page_size=1,
            page_token=first.next_page_token,
            agent_types=["echo"],
        )
        await refused(
            "ERROR_REASON_INVALID_PAGE_TOKEN",
            "page_token",
            page_size=1,
            page_token=first.next_page_token,
            include_terminated=True,
        )
        second = await stubs.agents.ListAgents(
            agents_pb.ListAgentsRequest(page_size=5, page_token=first.next_page_token), timeout=RPC_TIMEOUT
        )
        assert len(second.agents) == 1 and second.agents[0].name != first.agents[0].name
        assert await all_agents_fingerprint(stubs) == before
