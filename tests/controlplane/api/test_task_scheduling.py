"""TaskService against a real control plane: concurrency limits, retries, cascades and progress."""

from __future__ import annotations

import asyncio

import grpc

from agent_sdk.agent import Agent
from agent_sdk.builtin import EchoAgent, SleepAgent
from agent_sdk.context import Context
from agent_sdk.errors import PermanentError
from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import errors_pb2 as errors
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from controlplane.app import App
from tests.controlplane.api.test_task_service import (
    RPC_TIMEOUT,
    get,
    list_all,
    mask,
    results,
    running_worker,
    short,
    submit,
    wait_status,
)
from tests.harness.server import Stubs, wait_for


class GatedAgent(Agent):
    """Holds every assignment until released; counts how many run at once."""

    agent_type = "gated"
    capabilities = ["*"]
    max_concurrency = 8

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.running = 0
        self.peak = 0
        self.seen: list[str] = []

    async def handle(self, ctx: Context) -> str:
        self.seen.append(ctx.assignment.instructions)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.gate.wait()
        finally:
            self.running -= 1
        if ctx.assignment.inputs:
            return "\n".join(ctx.assignment.inputs[k] for k in sorted(ctx.assignment.inputs))
        return ctx.assignment.instructions


class FailFirstOnItem(Agent):
    """Echoes, but fails permanently the first attempt of an assignment mentioning ``item``."""

    agent_type = "picky"
    capabilities = ["*"]
    max_concurrency = 8

    def __init__(self, item: str) -> None:
        self.item = item
        self.seen: list[tuple[str, int]] = []

    async def handle(self, ctx: Context) -> str:
        a = ctx.assignment
        self.seen.append((a.instructions, a.attempt))
        if a.kind != enums.SUBTASK_KIND_SYNTHESIS and self.item in a.instructions and a.attempt == 0:
            raise PermanentError(f"refusing {self.item} on the first attempt")
        if a.inputs:
            return "\n".join(a.inputs[k] for k in sorted(a.inputs))
        return a.instructions


async def test_max_agents_caps_concurrent_subtasks_and_update_widens_it(
    control_plane: App, stubs: Stubs
) -> None:
    submitted = await submit(stubs, "1. a\n2. b\n3. c", max_agents=3)
    await stubs.tasks.UpdateTask(
        tasks_pb.UpdateTaskRequest(
            task=msgs.Task(name=submitted.name, max_agents=1), update_mask=mask("max_agents")
        ),
        timeout=RPC_TIMEOUT,
    )
    agent = GatedAgent()
    async with running_worker(agent, control_plane.address):
        await wait_for(lambda: agent.running == 1, 5, message="one subtask to run")
        task = (await get(stubs, submitted.name)).task
        assert task.subtasks_running == 1
        assert "at its max_agents (1)" in task.status_reason
        # Widening the task lets the waiting parts start on the free slots.
        await stubs.tasks.UpdateTask(
            tasks_pb.UpdateTaskRequest(
                task=msgs.Task(name=submitted.name, max_agents=3), update_mask=mask("max_agents")
            ),
            timeout=RPC_TIMEOUT,
        )
        await wait_for(lambda: agent.running == 3, 5, message="three subtasks to run")
        agent.gate.set()
        done = await wait_status(stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
    assert done.status == enums.TASK_STATUS_COMPLETED, done.failure
    assert agent.peak == 3


async def test_cancel_cascades_through_a_chain_of_dependants(stubs: Stubs) -> None:
    a = await submit(stubs, "A")
    b = await submit(stubs, "B", depends_on=[a.name])
    c = await submit(stubs, "C", depends_on=[b.name])
    assert (await get(stubs, c.name)).task.status == enums.TASK_STATUS_PENDING
    await stubs.tasks.CancelTask(tasks_pb.CancelTaskRequest(name=a.name), timeout=RPC_TIMEOUT)
    failed_b = await wait_status(stubs, b.name, enums.TASK_STATUS_FAILED)
    failed_c = await wait_status(stubs, c.name, enums.TASK_STATUS_FAILED)
    assert failed_b.failure.reason == failed_c.failure.reason == errors.ERROR_REASON_DEPENDENCY_FAILED
    assert a.name in failed_b.failure.message
    assert b.name in failed_c.failure.message


async def test_cancel_of_a_pending_task(stubs: Stubs) -> None:
    a = await submit(stubs, "A")
    b = await submit(stubs, "B", depends_on=[a.name])
    reply = await stubs.tasks.CancelTask(
        tasks_pb.CancelTaskRequest(name=b.name, reason="no longer needed"), timeout=RPC_TIMEOUT
    )
    assert reply.task.status == enums.TASK_STATUS_CANCELLED
    assert "no longer needed" in reply.task.failure.message
    assert (await get(stubs, a.name)).task.status == enums.TASK_STATUS_QUEUED  # the dependency is untouched


async def test_retry_of_a_dependency_failed_task_waits_for_the_retried_dependency(
    control_plane: App, stubs: Stubs
) -> None:
    a = await submit(stubs, "A")
    b = await submit(stubs, "B", depends_on=[a.name])
    await stubs.tasks.CancelTask(tasks_pb.CancelTaskRequest(name=a.name), timeout=RPC_TIMEOUT)
    await wait_status(stubs, b.name, enums.TASK_STATUS_FAILED)
    await stubs.tasks.RetryTask(tasks_pb.RetryTaskRequest(name=a.name), timeout=RPC_TIMEOUT)
    retried_b = (
        await stubs.tasks.RetryTask(tasks_pb.RetryTaskRequest(name=b.name), timeout=RPC_TIMEOUT)
    ).task
    assert retried_b.status == enums.TASK_STATUS_PENDING
    waiting = (await get(stubs, b.name)).task
    assert f"waiting for {a.name}" in waiting.status_reason
    async with running_worker(EchoAgent(), control_plane.address):
        done_b = await wait_status(stubs, b.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
    assert done_b.status == enums.TASK_STATUS_COMPLETED, done_b.failure
    assert (await get(stubs, a.name)).task.status == enums.TASK_STATUS_COMPLETED


async def test_retry_keeps_completed_subtasks(control_plane: App, stubs: Stubs) -> None:
    agent = FailFirstOnItem("bravo")
    async with running_worker(agent, control_plane.address, max_concurrency=1):
        submitted = await submit(stubs, "1. alpha\n2. bravo", max_agents=1 + 1)
        failed = await wait_status(
            stubs, submitted.name, enums.TASK_STATUS_FAILED, enums.TASK_STATUS_COMPLETED
        )
        assert failed.status == enums.TASK_STATUS_FAILED
        assert "refusing bravo" in failed.failure.message
        assert failed.failure.subtask.startswith(submitted.name + "/subtasks/")
        before = {s.name: s for s in (await get(stubs, submitted.name, full=True)).subtasks}
        await stubs.tasks.RetryTask(tasks_pb.RetryTaskRequest(name=submitted.name), timeout=RPC_TIMEOUT)
        done = await wait_status(stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
    assert done.status == enums.TASK_STATUS_COMPLETED, done.failure
    result = await results(stubs, submitted.name)
    by_id = {s.name.rsplit("/", 1)[-1]: s for s in result.subtasks}
    assert by_id["s0"].attempt == 0  # kept: alpha completed in the first run and did not run again
    assert by_id["s0"].end_time == before[by_id["s0"].name].end_time
    assert by_id["s1"].attempt == 1
    assert (
        sum(1 for instructions, _ in agent.seen if "alpha" in instructions and "bravo" not in instructions)
        == 1
    )
    assert "alpha" in result.output and "bravo" in result.output


async def test_retried_task_with_no_agent_is_queued_not_running(control_plane: App, stubs: Stubs) -> None:
    """After RetryTask nothing runs until an agent takes the work: the task is QUEUED (enums.proto)."""
    async with running_worker(EchoAgent(), control_plane.address):
        submitted = await submit(stubs, "doomed", metadata={"echo_fail": "permanent"})
        await wait_status(stubs, submitted.name, enums.TASK_STATUS_FAILED)
    await wait_for(lambda: not control_plane.engine.sessions, 5, message="the agent to leave")
    retried = (
        await stubs.tasks.RetryTask(tasks_pb.RetryTaskRequest(name=submitted.name), timeout=RPC_TIMEOUT)
    ).task
    current = (await get(stubs, submitted.name)).task
    assert current.subtasks_running == 0
    assert "no connected agent" in current.status_reason
    assert retried.status == current.status == enums.TASK_STATUS_QUEUED


async def test_watch_with_progress_streams_progress_events(control_plane: App, stubs: Stubs) -> None:
    async with running_worker(SleepAgent(), control_plane.address):
        quiet = await submit(stubs, "sleep quietly", metadata={"sleep_seconds": "0.3", "sleep_steps": "3"})
        watches = {}
        for include in (True, False):
            submitted = (
                quiet
                if not include
                else await submit(
                    stubs, "sleep loudly", metadata={"sleep_seconds": "0.3", "sleep_steps": "3"}
                )
            )
            watches[include] = stubs.tasks.WatchTask(
                tasks_pb.WatchTaskRequest(name=submitted.name, include_progress=include), timeout=15
            )
        collected = {}
        for include, stream in watches.items():
            collected[include] = [m async for m in stream]
            assert await stream.code() == grpc.StatusCode.OK
    loud = [m for m in collected[True] if m.event.type == enums.EVENT_TYPE_SUBTASK_PROGRESS]
    assert loud, [m.event for m in collected[True]]
    assert all(m.subtask.name and 0 < m.event.data["fraction"] <= 1 for m in loud)
    assert not [m for m in collected[False] if m.event.type == enums.EVENT_TYPE_SUBTASK_PROGRESS]
    for messages in collected.values():
        assert messages[-1].task.status == enums.TASK_STATUS_COMPLETED


async def test_paused_agent_then_resumed_takes_critical_work_first(control_plane: App, stubs: Stubs) -> None:
    agent = GatedAgent()
    agent.gate.set()  # answers at once
    async with running_worker(agent, control_plane.address, max_concurrency=1) as worker:
        paused = await stubs.agents.PauseAgent(
            agents_pb.PauseAgentRequest(name=worker.agent_name), timeout=RPC_TIMEOUT
        )
        assert paused.agent.status == enums.AGENT_STATUS_PAUSED
        low = await submit(stubs, "low work", priority=enums.PRIORITY_LOW)
        normal = await submit(stubs, "normal work")
        critical = await submit(stubs, "critical work", priority=enums.PRIORITY_CRITICAL)
        for t in (low, normal, critical):
            queued = (await get(stubs, t.name)).task
            assert queued.status == enums.TASK_STATUS_QUEUED  # a paused agent takes nothing
        assert agent.seen == []
        await stubs.agents.ResumeAgent(
            agents_pb.ResumeAgentRequest(name=worker.agent_name), timeout=RPC_TIMEOUT
        )
        for t in (low, normal, critical):
            await wait_status(stubs, t.name, enums.TASK_STATUS_COMPLETED)
    assert agent.seen == ["critical work", "normal work", "low work"]


async def test_dependency_that_already_failed_fails_the_new_task_at_once(
    control_plane: App, stubs: Stubs
) -> None:
    a = await submit(stubs, "A")
    await stubs.tasks.CancelTask(tasks_pb.CancelTaskRequest(name=a.name), timeout=RPC_TIMEOUT)
    # Let the finished dependency be committed and leave memory: it is then read from storage.
    await wait_for(lambda: short(a.name) not in control_plane.engine.tasks, 5, message="eviction")
    b = await submit(stubs, "B", depends_on=[a.name])
    failed = await wait_status(stubs, b.name, enums.TASK_STATUS_FAILED, enums.TASK_STATUS_COMPLETED)
    assert failed.status == enums.TASK_STATUS_FAILED
    assert failed.failure.reason == errors.ERROR_REASON_DEPENDENCY_FAILED
    assert a.name in failed.failure.message


async def test_watch_never_ends_without_the_terminal_state(control_plane: App, stubs: Stubs) -> None:
    """The task finishes right after the snapshot went out: the stream must still carry the terminal state.

    Driven on the server's own engine (the generator WatchTask iterates) so the interleaving is exact; over
    gRPC the same race loses the terminal message of a few percent of WatchTask calls racing a CancelTask.
    """
    submitted = await submit(stubs, "watched")
    stream = control_plane.engine.watch(short(submitted.name))
    try:
        event, snapshot, _ = await stream.__anext__()
        assert event is None and snapshot.status.name == "QUEUED"
        await stubs.tasks.CancelTask(tasks_pb.CancelTaskRequest(name=submitted.name), timeout=RPC_TIMEOUT)
        changes = []
        while True:
            try:
                changes.append(await asyncio.wait_for(stream.__anext__(), 5))
            except StopAsyncIteration:
                break
        assert changes, "the stream ended after a QUEUED snapshot, without the CANCELLED state"
        event, snapshot, _ = changes[-1]
        assert event is not None and event.type.name == "TASK_STATUS_CHANGED"
        assert snapshot.status.name == "CANCELLED"
    finally:
        await stream.aclose()


async def test_concurrent_retries_of_one_request_id_create_one_task(control_plane: App, stubs: Stubs) -> None:
    async with running_worker(EchoAgent(), control_plane.address):
        dep = await submit(stubs, "an earlier task")
        await wait_status(stubs, dep.name, enums.TASK_STATUS_COMPLETED)
    # The finished dependency leaves memory, so accepting the new task reads it from storage.
    await wait_for(lambda: short(dep.name) not in control_plane.engine.tasks, 5, message="eviction")
    request = tasks_pb.SubmitTaskRequest(
        task=msgs.Task(description="once", depends_on=[dep.name]), request_id="0d9e3c1e-retry-storm"
    )
    replies = await asyncio.gather(
        *[stubs.tasks.SubmitTask(request, timeout=RPC_TIMEOUT) for _ in range(10)], return_exceptions=True
    )
    created = set()
    for reply in replies:
        if isinstance(reply, grpc.aio.AioRpcError):
            assert reply.code() == grpc.StatusCode.ABORTED, reply  # REQUEST_IN_FLIGHT is allowed
        else:
            created.add(reply.task.name)
    listed = [t.name for t in await list_all(stubs)]
    assert len(created) == 1 and len(listed) == 2, (created, listed)
