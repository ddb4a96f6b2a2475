"""Assignments and results in batches on the agent stream, for agents that ask for them."""

from __future__ import annotations

import asyncio
import dataclasses

from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import errors_pb2 as errors
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from agent_sdk.worker import _CLOSE, MAX_RESULT_BATCH_BYTES, _take_results
from controlplane.api.servicers.gateway import (
    MAX_ASSIGNMENT_BATCH,
    MAX_ASSIGNMENT_BYTES,
    MAX_BATCH_BYTES,
    assignment_to_pb,
    take_assignments,
)
from controlplane.app import App
from controlplane.domain.model import Priority, SubtaskKind
from controlplane.scheduler.commands import Ack, Assign, Ref
from tests.controlplane.scheduler.test_faults import RawAgent, _wait_finished
from tests.harness.server import Stubs


def _assign(n: int, description: str = "") -> Assign:
    return Assign(
        ref=Ref("t", f"s{n}", 1, n),
        title="",
        instructions="",
        capability="",
        kind=SubtaskKind.WORK,
        task_description=description,
        context="",
        constraints="",
        metadata={},
        inputs={},
        resume_checkpoint=None,
        deadline=None,
        lease_ttl=30.0,
        priority=Priority.NORMAL,
        max_total_tokens=0,
        max_cost_micros=0,
    )


def test_take_assignments_stops_at_the_first_other_command_and_keeps_order() -> None:
    outbox: asyncio.Queue = asyncio.Queue()
    ack = Ack(Ref("t", "s9", 1, 9), True)
    for item in (_assign(2), _assign(3), ack, _assign(4)):
        outbox.put_nowait(item)
    batch, following = take_assignments(_assign(1), outbox)
    assert [a.ref.subtask for a in batch.assignments] == [
        "tasks/t/subtasks/s1",
        "tasks/t/subtasks/s2",
        "tasks/t/subtasks/s3",
    ]
    assert following is ack and outbox.qsize() == 1  # s4 stays queued, behind the ack


def test_take_assignments_is_bounded() -> None:
    outbox: asyncio.Queue = asyncio.Queue()
    for n in range(MAX_ASSIGNMENT_BATCH + 5):
        outbox.put_nowait(_assign(n + 1))
    batch, following = take_assignments(_assign(0), outbox)
    assert len(batch.assignments) == MAX_ASSIGNMENT_BATCH and following is None and outbox.qsize() == 6


def test_take_assignments_stops_before_the_byte_budget_and_sends_the_next_alone() -> None:
    big = "x" * (MAX_BATCH_BYTES // 3)
    outbox: asyncio.Queue = asyncio.Queue()
    for n in range(2, 6):
        outbox.put_nowait(_assign(n, big))
    batch, following = take_assignments(_assign(1, big), outbox)
    assert len(batch.assignments) == 2 and batch.ByteSize() <= MAX_BATCH_BYTES + 1024
    assert isinstance(following, Assign) and following.ref.subtask_id == "s3"  # next, in order
    huge, _ = take_assignments(_assign(9, "y" * (2 * MAX_BATCH_BYTES)), asyncio.Queue())
    assert len(huge.assignments) == 1  # one assignment over the budget still goes


def test_take_results_joins_results_queued_back_to_back_only() -> None:
    outbox: asyncio.Queue = asyncio.Queue()
    result = lambda n: gw.ConnectRequest(result=gw.SubtaskResult(output=str(n)))  # noqa: E731
    heartbeat = gw.ConnectRequest(heartbeat=gw.Heartbeat(free_slots=1))
    for item in (result(2), result(3), heartbeat, result(4)):
        outbox.put_nowait(item)
    message, following = _take_results(result(1), outbox)
    assert [r.output for r in message.results.results] == ["1", "2", "3"]
    assert following is heartbeat and outbox.qsize() == 1
    outbox.get_nowait()
    outbox.put_nowait(_CLOSE)
    message, following = _take_results(result(5), outbox)
    assert [r.output for r in message.results.results] == ["5"] and following is _CLOSE


def test_take_results_stops_before_the_byte_budget() -> None:
    big = "r" * (MAX_RESULT_BATCH_BYTES // 3)
    outbox: asyncio.Queue = asyncio.Queue()
    items = [gw.ConnectRequest(result=gw.SubtaskResult(output=f"{n}{big}")) for n in range(5)]
    for item in items[1:]:
        outbox.put_nowait(item)
    message, following = _take_results(items[0], outbox)
    assert len(message.results.results) == 2 and following is items[2] and outbox.qsize() == 2


async def _queued_tasks(stubs: Stubs, n: int) -> list[str]:
    reply = await stubs.tasks.BatchSubmitTasks(
        t.BatchSubmitTasksRequest(
            requests=[t.SubmitTaskRequest(task=m.Task(description=f"batch {i}")) for i in range(n)]
        ),
        timeout=5,
    )
    return [task.name for task in reply.tasks]


async def test_an_agent_that_asks_gets_assignments_in_one_message_and_may_answer_in_one(
    control_plane: App, stubs: Stubs
) -> None:
    names = await _queued_tasks(stubs, 5)  # queued before any agent is there: one dispatch pass takes all
    agent = RawAgent(control_plane.address)
    try:
        agent.send(
            register=gw.Register(
                agent_type="raw",
                capabilities=["*"],
                max_concurrency=8,
                language="test",
                accepts_assignment_batches=True,
            )
        )
        registered = (await agent.receive("registered")).registered
        assert registered.accepts_result_batches
        batch = (await agent.receive("assignments")).assignments.assignments
        assert sorted(a.task for a in batch) == sorted(names)
        refs = [a.ref for a in batch]
        forged = gw.AssignmentRef(
            subtask=refs[0].subtask, attempt=refs[0].attempt, lease_epoch=refs[0].lease_epoch + 7
        )
        agent.send(
            results=gw.SubtaskResults(
                results=[
                    gw.SubtaskResult(ref=forged, output="forged"),  # rejected alone; the others still count
                    *[gw.SubtaskResult(ref=ref, output=f"done {ref.subtask}") for ref in refs],
                ]
            )
        )
        ack = (await agent.receive("ack")).ack
        assert not ack.accepted and ack.reason == errors.ERROR_REASON_STALE_ATTEMPT
        committed: set[str] = set()
        while len(committed) < len(refs):
            committed.update(r.subtask for r in (await agent.receive("committed")).committed.refs)
        assert committed == {r.subtask for r in refs}
        for name in names:
            done = await _wait_finished(stubs, name, 10)
            assert done.status == enums.TASK_STATUS_COMPLETED
        results = await stubs.tasks.GetTaskResults(t.GetTaskResultsRequest(name=names[0]), timeout=5)
        assert "forged" not in str(results)
    finally:
        await agent.close()


async def test_an_agent_that_does_not_ask_gets_one_assignment_per_message(
    control_plane: App, stubs: Stubs
) -> None:
    names = await _queued_tasks(stubs, 4)
    agent = RawAgent(control_plane.address)
    try:
        agent.send(
            register=gw.Register(agent_type="raw", capabilities=["*"], max_concurrency=8, language="test")
        )
        await agent.receive("registered")
        seen = []
        while len(seen) < len(names):
            response = await asyncio.wait_for(agent.call.read(), 10)
            kind = response.WhichOneof("message")
            assert kind != "assignments"
            if kind == "assignment":
                seen.append(response.assignment)
        for assignment in seen:
            agent.send(result=gw.SubtaskResult(ref=assignment.ref, output="ok"))
        for name in names:
            assert (await _wait_finished(stubs, name, 10)).status == enums.TASK_STATUS_COMPLETED
    finally:
        await agent.close()


def test_an_assignment_with_large_inputs_is_cut_to_fit_the_agents_receive_limit() -> None:
    """Five dependencies of 4 MB each (within limits.result_bytes) would make a 20 MB message."""
    inputs = {f"step-{i}": "é" * (2 * 1024 * 1024) for i in range(5)}
    command = dataclasses.replace(_assign(1), inputs=inputs)
    msg = assignment_to_pb(command)
    assert msg.ByteSize() <= MAX_ASSIGNMENT_BYTES
    assert set(msg.inputs) == set(inputs)
    for value in msg.inputs.values():
        assert value.startswith("é" * 1000) and value.endswith(
            f"[cut: the whole input is {4 * 1024 * 1024} bytes]"
        )
    small = assignment_to_pb(dataclasses.replace(_assign(2), inputs={"a": "short"}))
    assert dict(small.inputs) == {"a": "short"}
