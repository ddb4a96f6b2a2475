"""SystemService.WatchEvents: committed changes as they happen, resumable by event id."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from agent_sdk.builtin import EchoAgent
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from agent_sdk.worker import Worker
from controlplane.app import App
from tests.harness.server import Stubs, wait_for


async def test_events_of_one_task_in_order_and_resume(control_plane: App, stubs: Stubs) -> None:
    worker = Worker(EchoAgent(), control_plane.address)
    runner = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.registered.wait(), 10)
        stream = stubs.system.WatchEvents(
            system_pb.WatchEventsRequest(event_types=[enums.EVENT_TYPE_TASK_STATUS_CHANGED]), timeout=20
        )
        reply = await stubs.tasks.SubmitTask(
            t.SubmitTaskRequest(task=m.Task(description="watch me")), timeout=5
        )
        seen = []
        while not seen or seen[-1].to_status != "TASK_STATUS_COMPLETED":
            event = (await stream.read()).event
            if event.task == reply.task.name:
                seen.append(event)
        stream.cancel()
        assert [e.to_status for e in seen][-1] == "TASK_STATUS_COMPLETED"
        # Every status is the name of a TaskStatus value, as the proto says.
        assert all(
            enums.TaskStatus.Value(e.to_status)
            and (not e.from_status or enums.TaskStatus.Value(e.from_status))
            for e in seen
        )
        assert all(e.type == enums.EVENT_TYPE_TASK_STATUS_CHANGED for e in seen)
        # Resuming after the first event replays the rest, in order.
        resumed = stubs.system.WatchEvents(
            system_pb.WatchEventsRequest(
                task=reply.task.name,
                after_event_id=seen[0].id,
                event_types=[enums.EVENT_TYPE_TASK_STATUS_CHANGED],
            ),
            timeout=5,
        )
        replayed = [(await resumed.read()).event for _ in seen[1:]]
        resumed.cancel()
        assert [e.id for e in replayed] == [e.id for e in seen[1:]]
    finally:
        await worker.shutdown(0.5)
        await runner


@pytest.mark.parametrize("after", ["garbage", "999999.1"])
async def test_bad_or_expired_resume_points(stubs: Stubs, after: str) -> None:
    stream = stubs.system.WatchEvents(system_pb.WatchEventsRequest(after_event_id=after), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stream.read()
    expected = grpc.StatusCode.INVALID_ARGUMENT if after == "garbage" else grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.code() == expected


async def test_listener_is_removed_when_the_watcher_leaves(control_plane: App, stubs: Stubs) -> None:
    stream = stubs.system.WatchEvents(system_pb.WatchEventsRequest(), timeout=5)
    await wait_for(lambda: control_plane.engine.event_listeners, 5, message="the listener")
    stream.cancel()
    await wait_for(lambda: not control_plane.engine.event_listeners, 5, message="the listener to go")
