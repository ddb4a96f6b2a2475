"""TaskService against a real control plane: task lifecycles with real (in-process) agents.

Helpers shared by the other ``test_task_*`` modules live here too (they are
imported by name; nothing here starting with ``test`` is imported elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import duration_pb2, field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from agent_sdk.agent import Agent
from agent_sdk.builtin import EchoAgent, SleepAgent
from agent_sdk.context import Context
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import errors_pb2 as errors
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from agent_sdk.worker import Worker
from controlplane.app import App
from tests.harness.server import Stubs, wait_for

RPC_TIMEOUT = 5.0

# --- helpers --------------------------------------------------------------------


@dataclass
class RpcFailure:
    """A failed call, its rich status decoded."""

    code: grpc.StatusCode
    message: str
    reason: str
    domain: str
    metadata: dict[str, str]
    fields: list[str]

    def field_starting(self, prefix: str) -> list[str]:
        """The BadRequest field paths that start with ``prefix``."""
        return [f for f in self.fields if f.startswith(prefix)]


async def rpc_failure(call: Any) -> RpcFailure:
    """Await ``call``, which must fail, and decode its ErrorInfo and BadRequest."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        status = rpc_status.from_call(exc)
        assert status is not None, f"{exc.code().name} without grpc-status-details-bin: {exc.details()}"
        reason, domain, metadata, fields = "", "", {}, []
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields.extend(v.field for v in bad.field_violations)
        assert reason in errors.ErrorReason.DESCRIPTOR.values_by_name, (
            f"reason {reason!r} is not a maos.v1.ErrorReason"
        )
        return RpcFailure(exc.code(), exc.details() or "", reason, domain, metadata, fields)
    raise AssertionError("the call was expected to fail but succeeded")


def assert_failure(failure: RpcFailure, code: grpc.StatusCode, reason: str, field: str | None = None) -> None:
    """Check the code, the ErrorInfo (domain maos) and, when given, the BadRequest field."""
    assert failure.code == code, failure
    assert failure.reason == reason, failure
    assert failure.domain == "maos", failure
    if field is not None:
        assert field in failure.fields, failure


def task(description: str = "say hello", **fields: Any) -> msgs.Task:
    """A draft task."""
    return msgs.Task(description=description, **fields)


def seconds(value: float) -> duration_pb2.Duration:
    """A Duration."""
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


async def submit(
    stubs: Stubs, draft: msgs.Task | str = "say hello", request_id: str = "", **fields: Any
) -> msgs.Task:
    """SubmitTask; returns the task."""
    if isinstance(draft, str):
        draft = task(draft, **fields)
    reply = await stubs.tasks.SubmitTask(
        tasks_pb.SubmitTaskRequest(task=draft, request_id=request_id), timeout=RPC_TIMEOUT
    )
    return reply.task


async def get(stubs: Stubs, name: str, full: bool = False) -> tasks_pb.GetTaskResponse:
    """GetTask (BASIC or FULL)."""
    view = enums.TASK_VIEW_FULL if full else enums.TASK_VIEW_BASIC
    return await stubs.tasks.GetTask(tasks_pb.GetTaskRequest(name=name, view=view), timeout=RPC_TIMEOUT)


async def results(stubs: Stubs, name: str) -> msgs.TaskResult:
    """GetTaskResults."""
    reply = await stubs.tasks.GetTaskResults(tasks_pb.GetTaskResultsRequest(name=name), timeout=RPC_TIMEOUT)
    return reply.result


async def wait_status(stubs: Stubs, name: str, *statuses: int, timeout: float = 10.0) -> msgs.Task:
    """Poll GetTask until the task is in one of ``statuses``; returns it."""
    latest: list[msgs.Task] = []

    async def reached() -> bool:
        current = (await get(stubs, name)).task
        latest[:] = [current]
        return current.status in statuses

    wanted = ", ".join(enums.TaskStatus.Name(s) for s in statuses)
    try:
        await wait_for(reached, timeout, interval=0.02, message=f"{name} to be {wanted}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen {latest[0] if latest else None}") from None
    return latest[0]


async def list_all(stubs: Stubs, **filters: Any) -> list[msgs.Task]:
    """Every task ListTasks returns (one large page)."""
    reply = await stubs.tasks.ListTasks(
        tasks_pb.ListTasksRequest(page_size=1000, **filters), timeout=RPC_TIMEOUT
    )
    assert not reply.next_page_token
    return list(reply.tasks)


def fingerprint(tasks: Iterable[msgs.Task]) -> list[tuple[Any, ...]]:
    """What must not change when a call fails."""
    return [
        (t.name, t.status, t.priority, t.max_agents, t.description, t.update_time.ToNanoseconds())
        for t in tasks
    ]


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    """A FieldMask."""
    return field_mask_pb2.FieldMask(paths=list(paths))


def short(name: str) -> str:
    """The id of ``tasks/{id}``."""
    return name.removeprefix("tasks/")


@contextlib.asynccontextmanager
async def running_worker(agent: Agent, address: str, **options: Any) -> AsyncIterator[Worker]:
    """An in-process agent connected to ``address`` for the duration of the block."""
    worker = Worker(agent, address, max_backoff=0.5, **options)
    runner = asyncio.get_running_loop().create_task(worker.run())
    try:
        try:
            await asyncio.wait_for(worker.registered.wait(), 10)
        except TimeoutError:
            if runner.done():
                runner.result()  # surfaces the worker's own error
            raise AssertionError("the in-process worker did not register within 10 s") from None
        yield worker
    finally:
        await worker.shutdown(1)
        try:
            await asyncio.wait_for(runner, 10)
        except TimeoutError:
            runner.cancel()
            raise AssertionError("the in-process worker did not stop within 10 s") from None


class RecordingSleepAgent(SleepAgent):
    """SleepAgent that records how its assignments ended."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []

    async def handle(self, ctx: Context) -> str:
        """Sleep like SleepAgent, noting a cancellation."""
        self.started.append(ctx.assignment.subtask)
        try:
            return await super().handle(ctx)
        except asyncio.CancelledError:
            self.cancelled.append(ctx.assignment.subtask)
            raise


class OrderRecordingEcho(EchoAgent):
    """EchoAgent that records the tasks of its assignments in the order they started."""

    def __init__(self) -> None:
        self.order: list[str] = []

    async def handle(self, ctx: Context) -> str:
        """Record, then echo."""
        self.order.append(ctx.assignment.task)
        return await super().handle(ctx)


# --- lifecycle -------------------------------------------------------------------


async def test_list_description_runs_as_parallel_subtasks_plus_synthesis(
    control_plane: App, stubs: Stubs
) -> None:
    async with running_worker(EchoAgent(), control_plane.address):
        submitted = await submit(stubs, "Compare:\n1. alpha\n2. beta\n3. gamma")
        assert submitted.name.startswith("tasks/")
        done = await wait_status(stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
    assert done.status == enums.TASK_STATUS_COMPLETED, done.failure
    assert done.progress == 1.0
    assert (
        done.start_time.ToNanoseconds() and done.end_time.ToNanoseconds() >= done.start_time.ToNanoseconds()
    )

    full = await get(stubs, submitted.name, full=True)
    work = [s for s in full.plan.subtasks if s.kind != enums.SUBTASK_KIND_SYNTHESIS]
    synthesis = [s for s in full.plan.subtasks if s.kind == enums.SUBTASK_KIND_SYNTHESIS]
    assert full.plan.planner == "deterministic"
    assert len(work) == 3 and len(synthesis) == 1
    assert sorted(synthesis[0].depends_on) == sorted(s.key for s in work)
    assert [
        "alpha" in work[0].instructions,
        "beta" in work[1].instructions,
        "gamma" in work[2].instructions,
    ] == [True] * 3
    assert len(full.subtasks) == 4
    assert all(s.status == enums.SUBTASK_STATUS_COMPLETED for s in full.subtasks)
    assert full.task.subtasks_total == 4 and full.task.subtasks_completed == 4

    result = await results(stubs, submitted.name)
    assert result.task == submitted.name
    assert result.status == enums.TASK_STATUS_COMPLETED
    assert len(result.subtasks) == 4
    outputs = {s.name.rsplit("/", 1)[-1]: s.output for s in result.subtasks}
    for word in ("alpha", "beta", "gamma"):
        assert any(word in out for key, out in outputs.items() if key != "synthesis"), outputs
        assert word in result.output  # the synthesis combined every part
    for sub in result.subtasks:
        if sub.kind == enums.SUBTASK_KIND_WORK:
            assert sub.output and sub.output in result.output


async def test_max_agents_groups_items_with_a_warning(control_plane: App, stubs: Stubs) -> None:
    async with running_worker(EchoAgent(), control_plane.address):
        submitted = await submit(stubs, "1. a\n2. b\n3. c", max_agents=2)
        done = await wait_status(stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
    assert done.status == enums.TASK_STATUS_COMPLETED, done.failure
    full = await get(stubs, submitted.name, full=True)
    work = [s for s in full.plan.subtasks if s.kind == enums.SUBTASK_KIND_WORK]
    assert len(work) == 2
    assert [s.instructions for s in work] == ["- a\n- b", "- c"]
    assert any("3 items grouped into 2 subtasks" in w for w in full.plan.warnings)
    assert any("3 items grouped into 2 subtasks" in w for w in done.warnings)
    result = await results(stubs, submitted.name)
    for item in ("- a", "- b", "- c"):
        assert item in result.output


async def test_task_waits_for_a_capable_agent_then_runs(control_plane: App, stubs: Stubs) -> None:
    submitted = await submit(stubs, "find three sources on ocean acidification", task_type="research")
    queued = await wait_status(stubs, submitted.name, enums.TASK_STATUS_QUEUED)
    assert "no connected agent has capability researcher" in queued.status_reason
    # An agent without that capability does not take it.
    async with running_worker(EchoAgent(), control_plane.address, capabilities=["coder"]):
        still = (await get(stubs, submitted.name)).task
        assert still.status == enums.TASK_STATUS_QUEUED
        assert "no connected agent has capability researcher" in still.status_reason
    async with running_worker(EchoAgent(), control_plane.address, capabilities=["researcher"]):
        done = await wait_status(stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
    assert done.status == enums.TASK_STATUS_COMPLETED, done.failure
    assert (await results(stubs, submitted.name)).output == "find three sources on ocean acidification"


async def test_critical_task_runs_before_an_older_low_one(control_plane: App, stubs: Stubs) -> None:
    low = await submit(stubs, "low priority work", priority=enums.PRIORITY_LOW)
    critical = await submit(stubs, "critical work", priority=enums.PRIORITY_CRITICAL)
    for t in (low, critical):
        await wait_status(stubs, t.name, enums.TASK_STATUS_QUEUED)
    agent = OrderRecordingEcho()
    async with running_worker(agent, control_plane.address, max_concurrency=1):
        done_low = await wait_status(stubs, low.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
        done_critical = await wait_status(
            stubs, critical.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED
        )
    assert agent.order == [critical.name, low.name]
    assert done_critical.end_time.ToNanoseconds() <= done_low.start_time.ToNanoseconds()


async def test_update_priority_reorders_queued_work(control_plane: App, stubs: Stubs) -> None:
    first = await submit(stubs, "first, low", priority=enums.PRIORITY_LOW)
    second = await submit(stubs, "second, low", priority=enums.PRIORITY_LOW)
    await wait_status(stubs, second.name, enums.TASK_STATUS_QUEUED)
    updated = await stubs.tasks.UpdateTask(
        tasks_pb.UpdateTaskRequest(
            task=msgs.Task(name=second.name, priority=enums.PRIORITY_CRITICAL, max_agents=7),
            update_mask=mask("priority", "max_agents"),
        ),
        timeout=RPC_TIMEOUT,
    )
    assert updated.task.priority == enums.PRIORITY_CRITICAL and updated.task.max_agents == 7
    stored = (await get(stubs, second.name)).task
    assert stored.priority == enums.PRIORITY_CRITICAL and stored.max_agents == 7
    assert stored.status == enums.TASK_STATUS_QUEUED
    # Only the masked field changes.
    only_priority = await stubs.tasks.UpdateTask(
        tasks_pb.UpdateTaskRequest(
            task=msgs.Task(name=first.name, priority=enums.PRIORITY_HIGH, max_agents=9),
            update_mask=mask("priority"),
        ),
        timeout=RPC_TIMEOUT,
    )
    assert only_priority.task.priority == enums.PRIORITY_HIGH
    assert only_priority.task.max_agents == 4  # the server default, untouched
    agent = OrderRecordingEcho()
    async with running_worker(agent, control_plane.address, max_concurrency=1):
        for t in (first, second):
            await wait_status(stubs, t.name, enums.TASK_STATUS_COMPLETED)
    assert agent.order == [second.name, first.name]


async def test_dependant_waits_then_runs_after_its_dependency(control_plane: App, stubs: Stubs) -> None:
    a = await submit(stubs, "step A")
    b = await submit(stubs, "step B", depends_on=[a.name])
    waiting = await wait_status(stubs, b.name, enums.TASK_STATUS_PENDING)
    assert f"waiting for {a.name}" in waiting.status_reason
    assert list(waiting.depends_on) == [a.name]
    async with running_worker(EchoAgent(), control_plane.address):
        done_b = await wait_status(stubs, b.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
    done_a = (await get(stubs, a.name)).task
    assert done_a.status == enums.TASK_STATUS_COMPLETED
    assert done_b.status == enums.TASK_STATUS_COMPLETED, done_b.failure
    assert done_b.start_time.ToNanoseconds() >= done_a.end_time.ToNanoseconds()


async def test_dependant_runs_at_once_when_dependency_already_completed(
    control_plane: App, stubs: Stubs
) -> None:
    async with running_worker(EchoAgent(), control_plane.address):
        a = await submit(stubs, "step A")
        await wait_status(stubs, a.name, enums.TASK_STATUS_COMPLETED)
        b = await submit(stubs, "step B", depends_on=[a.name])
        done_b = await wait_status(stubs, b.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
    assert done_b.status == enums.TASK_STATUS_COMPLETED, done_b.failure


async def test_failed_dependency_fails_the_dependant(control_plane: App, stubs: Stubs) -> None:
    a = await submit(stubs, "step A", metadata={"echo_fail": "permanent"})
    b = await submit(stubs, "step B", depends_on=[a.name])
    await wait_status(stubs, b.name, enums.TASK_STATUS_PENDING)
    async with running_worker(EchoAgent(), control_plane.address):
        failed_b = await wait_status(stubs, b.name, enums.TASK_STATUS_FAILED, enums.TASK_STATUS_COMPLETED)
    assert failed_b.status == enums.TASK_STATUS_FAILED
    assert failed_b.failure.reason == errors.ERROR_REASON_DEPENDENCY_FAILED
    assert a.name in failed_b.failure.message and "failed" in failed_b.failure.message
    failed_a = (await get(stubs, a.name)).task
    assert failed_a.status == enums.TASK_STATUS_FAILED
    assert failed_a.failure.reason == errors.ERROR_REASON_AGENT_FAILED
    assert (await results(stubs, b.name)).failure.reason == errors.ERROR_REASON_DEPENDENCY_FAILED


async def test_cancelled_dependency_fails_the_dependant(control_plane: App, stubs: Stubs) -> None:
    a = await submit(stubs, "step A")
    b = await submit(stubs, "step B", depends_on=[a.name])
    cancelled = await stubs.tasks.CancelTask(
        tasks_pb.CancelTaskRequest(name=a.name, reason="not needed"), timeout=RPC_TIMEOUT
    )
    assert cancelled.task.status == enums.TASK_STATUS_CANCELLED
    assert cancelled.task.failure.reason == errors.ERROR_REASON_CANCELLED
    assert "not needed" in cancelled.task.failure.message
    failed_b = await wait_status(stubs, b.name, enums.TASK_STATUS_FAILED, enums.TASK_STATUS_COMPLETED)
    assert failed_b.status == enums.TASK_STATUS_FAILED
    assert failed_b.failure.reason == errors.ERROR_REASON_DEPENDENCY_FAILED
    assert a.name in failed_b.failure.message and "cancelled" in failed_b.failure.message


async def test_retryable_failure_is_retried_and_completes(control_plane: App, stubs: Stubs) -> None:
    async with running_worker(EchoAgent(), control_plane.address):
        submitted = await submit(stubs, "flaky work", metadata={"echo_fail": "retryable"})
        done = await wait_status(stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
    assert done.status == enums.TASK_STATUS_COMPLETED, done.failure
    result = await results(stubs, submitted.name)
    assert [s.attempt for s in result.subtasks] == [1]
    assert result.subtasks[0].status == enums.SUBTASK_STATUS_COMPLETED
    assert result.output == "flaky work"


async def test_permanent_failure_fails_the_task_with_the_agents_message(
    control_plane: App, stubs: Stubs
) -> None:
    async with running_worker(EchoAgent(), control_plane.address):
        submitted = await submit(stubs, "doomed work", metadata={"echo_fail": "permanent"})
        failed = await wait_status(
            stubs, submitted.name, enums.TASK_STATUS_FAILED, enums.TASK_STATUS_COMPLETED
        )
    assert failed.status == enums.TASK_STATUS_FAILED
    assert failed.failure.reason == errors.ERROR_REASON_AGENT_FAILED
    assert "echo was asked to fail" in failed.failure.message
    assert failed.failure.error_type == "PermanentError"
    result = await results(stubs, submitted.name)
    assert result.status == enums.TASK_STATUS_FAILED
    assert [s.attempt for s in result.subtasks] == [0]  # permanent: never retried
    assert result.subtasks[0].status == enums.SUBTASK_STATUS_FAILED
    assert "echo was asked to fail" in result.subtasks[0].failure.message


async def test_cancel_reaches_the_running_agent_within_a_second(control_plane: App, stubs: Stubs) -> None:
    agent = RecordingSleepAgent()
    async with running_worker(agent, control_plane.address) as worker:
        submitted = await submit(stubs, "sleep for a long time", metadata={"sleep_seconds": "30"})
        running = await wait_status(stubs, submitted.name, enums.TASK_STATUS_RUNNING)
        assert running.subtasks_running == 1
        await wait_for(lambda: worker._running, 5, message="the worker to run the assignment")
        reply = await stubs.tasks.CancelTask(
            tasks_pb.CancelTaskRequest(name=submitted.name, reason="changed my mind"), timeout=RPC_TIMEOUT
        )
        assert reply.task.status == enums.TASK_STATUS_CANCELLED
        await wait_for(lambda: not worker._running, 1.0, message="the agent's work to be cancelled")
        await wait_for(lambda: agent.cancelled, 1.0, message="the handler to see CancelledError")
    assert agent.cancelled == agent.started
    cancelled = await get(stubs, submitted.name, full=True)
    assert cancelled.task.status == enums.TASK_STATUS_CANCELLED
    assert cancelled.task.failure.reason == errors.ERROR_REASON_CANCELLED
    assert "changed my mind" in cancelled.task.failure.message
    assert [s.status for s in cancelled.subtasks] == [enums.SUBTASK_STATUS_CANCELLED]


async def test_timeout_fails_the_task_and_stops_the_agent(control_plane: App, stubs: Stubs) -> None:
    agent = RecordingSleepAgent()
    async with running_worker(agent, control_plane.address) as worker:
        submitted = await submit(
            stubs, "sleep past the deadline", metadata={"sleep_seconds": "30"}, timeout=seconds(0.5)
        )
        failed = await wait_status(
            stubs, submitted.name, enums.TASK_STATUS_FAILED, enums.TASK_STATUS_COMPLETED, timeout=5
        )
        await wait_for(lambda: not worker._running, 1.0, message="the timed-out work to be cancelled")
    assert failed.status == enums.TASK_STATUS_FAILED
    assert failed.failure.reason == errors.ERROR_REASON_TIMED_OUT
    assert agent.cancelled == agent.started and agent.started
    elapsed = (failed.end_time.ToNanoseconds() - failed.start_time.ToNanoseconds()) / 1e9
    assert 0.4 <= elapsed < 3.0


async def test_retry_task_runs_a_failed_task_again(control_plane: App, stubs: Stubs) -> None:
    async with running_worker(EchoAgent(), control_plane.address):
        # Fails once (retryable) with no retries allowed, so the task fails; the retry's attempt 1 succeeds.
        submitted = await submit(
            stubs,
            "second time lucky",
            metadata={"echo_fail": "retryable"},
            retry_policy=msgs.RetryPolicy(max_retries=0),
        )
        failed = await wait_status(
            stubs, submitted.name, enums.TASK_STATUS_FAILED, enums.TASK_STATUS_COMPLETED
        )
        assert failed.status == enums.TASK_STATUS_FAILED
        assert failed.failure.reason == errors.ERROR_REASON_AGENT_FAILED
        retried = await stubs.tasks.RetryTask(
            tasks_pb.RetryTaskRequest(name=submitted.name), timeout=RPC_TIMEOUT
        )
        assert retried.task.status not in (enums.TASK_STATUS_FAILED, enums.TASK_STATUS_CANCELLED)
        assert retried.task.retries == 1
        done = await wait_status(stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
    assert done.status == enums.TASK_STATUS_COMPLETED, done.failure
    assert done.retries == 1
    assert not done.HasField("failure")
    result = await results(stubs, submitted.name)
    assert result.output == "second time lucky"
    assert [s.attempt for s in result.subtasks] == [1]


async def test_retry_task_runs_a_cancelled_task_again(control_plane: App, stubs: Stubs) -> None:
    submitted = await submit(stubs, "1. x\n2. y")
    await stubs.tasks.CancelTask(tasks_pb.CancelTaskRequest(name=submitted.name), timeout=RPC_TIMEOUT)
    retried = await stubs.tasks.RetryTask(tasks_pb.RetryTaskRequest(name=submitted.name), timeout=RPC_TIMEOUT)
    assert retried.task.status == enums.TASK_STATUS_QUEUED
    async with running_worker(EchoAgent(), control_plane.address):
        done = await wait_status(stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED)
    assert done.status == enums.TASK_STATUS_COMPLETED, done.failure
    assert "- x" in (await results(stubs, submitted.name)).output


async def test_watch_streams_snapshot_then_events_until_terminal(control_plane: App, stubs: Stubs) -> None:
    submitted = await submit(stubs, "1. one\n2. two")
    stream = stubs.tasks.WatchTask(tasks_pb.WatchTaskRequest(name=submitted.name), timeout=15)
    messages = []
    first = await stream.read()
    assert not first.HasField("event")  # the snapshot
    assert first.task.name == submitted.name and first.task.status == enums.TASK_STATUS_QUEUED
    async with running_worker(EchoAgent(), control_plane.address):
        while (message := await stream.read()) is not grpc.aio.EOF:
            messages.append(message)
    assert await stream.code() == grpc.StatusCode.OK
    assert messages and all(m.HasField("event") for m in messages)
    ids = [tuple(int(part) for part in m.event.id.split(".")) for m in messages]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    last = messages[-1]
    assert last.task.status == enums.TASK_STATUS_COMPLETED
    assert last.event.type == enums.EVENT_TYPE_TASK_STATUS_CHANGED
    assert last.event.to_status.endswith("COMPLETED")
    task_changes = [
        (m.event.from_status, m.event.to_status)
        for m in messages
        if m.event.type == enums.EVENT_TYPE_TASK_STATUS_CHANGED
    ]
    assert len(task_changes) == 2, task_changes  # QUEUED -> RUNNING -> COMPLETED
    assert task_changes[0][0].endswith("QUEUED") and task_changes[0][1].endswith("RUNNING")
    assert task_changes[1][0].endswith("RUNNING") and task_changes[1][1].endswith("COMPLETED")
    sub_done = [
        m
        for m in messages
        if m.event.type == enums.EVENT_TYPE_SUBTASK_STATUS_CHANGED and m.event.to_status.endswith("COMPLETED")
    ]
    assert len(sub_done) == 3  # two parts and the synthesis
    assert all(m.subtask.name.startswith(submitted.name + "/subtasks/") for m in sub_done)
    assert all(m.event.task == submitted.name for m in messages)


async def test_watch_of_a_finished_task_sends_only_the_snapshot(control_plane: App, stubs: Stubs) -> None:
    submitted = await submit(stubs, "cancel me")
    await stubs.tasks.CancelTask(tasks_pb.CancelTaskRequest(name=submitted.name), timeout=RPC_TIMEOUT)
    messages = [
        m async for m in stubs.tasks.WatchTask(tasks_pb.WatchTaskRequest(name=submitted.name), timeout=5)
    ]
    assert len(messages) == 1
    assert not messages[0].HasField("event")
    assert messages[0].task.status == enums.TASK_STATUS_CANCELLED


async def test_end_to_end_on_postgresql(pg_control_plane: App) -> None:
    stubs = Stubs(pg_control_plane.address)
    try:
        async with running_worker(EchoAgent(), pg_control_plane.address):
            submitted = await submit(stubs, "Plan:\n- red\n- green\n- blue")
            done = await wait_status(
                stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED
            )
        assert done.status == enums.TASK_STATUS_COMPLETED, done.failure
        result = await results(stubs, submitted.name)
        assert len(result.subtasks) == 4
        for colour in ("red", "green", "blue"):
            assert colour in result.output
        listed = await list_all(stubs)
        assert [t.name for t in listed] == [submitted.name]
        assert listed[0].status == enums.TASK_STATUS_COMPLETED
        full = await get(stubs, submitted.name, full=True)
        assert len(full.plan.subtasks) == 4
    finally:
        await stubs.close()
