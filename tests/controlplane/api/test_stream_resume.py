"""Resuming WatchTask, WatchEvents and TailLogs after a disconnect: the missed messages, none twice."""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from agent_sdk.builtin import EchoAgent
from agent_sdk.client import Client
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from agent_sdk.worker import Worker
from controlplane.app import App
from controlplane.errors import FailedPrecondition, InvalidArgument
from controlplane.logbook import LogBook, LogEntry, LogFilter
from tests.controlplane.access.test_access import user_key
from tests.harness.server import Stubs, wait_for

PROGRESS = {enums.EVENT_TYPE_SUBTASK_PROGRESS, enums.EVENT_TYPE_SUBTASK_OUTPUT}


def reason_of(error: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a refused call."""
    status = rpc_status.from_call(error)
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info.reason
    return ""


async def test_watch_task_resumes_with_exactly_the_missed_changes(control_plane: App, stubs: Stubs) -> None:
    # Every event of the task, read without interruption, is what a resumed watch must add up to.
    reference = stubs.system.WatchEvents(system_pb.WatchEventsRequest(), timeout=30)
    await wait_for(lambda: control_plane.engine.event_listeners, 5, message="the reference listener")
    name = (
        await stubs.tasks.SubmitTask(t.SubmitTaskRequest(task=m.Task(description="resume me")), timeout=5)
    ).task.name
    watch = stubs.tasks.WatchTask(t.WatchTaskRequest(name=name), timeout=30)
    snapshot = await watch.read()
    assert not snapshot.HasField("event")
    everything: list[m.Event] = []

    async def read_reference(until: str) -> None:
        while not everything or everything[-1].to_status != until:
            event = (await reference.read()).event
            if event.task == name and event.type not in PROGRESS:
                everything.append(event)

    worker = Worker(EchoAgent(), control_plane.address)
    runner = asyncio.create_task(worker.run())
    try:
        first = await asyncio.wait_for(watch.read(), 10)
        watch.cancel()  # the client goes away after one change; the task runs on to its end
        await asyncio.wait_for(read_reference("TASK_STATUS_COMPLETED"), 20)
    finally:
        await worker.shutdown(0.5)
        await runner
    reference.cancel()
    resumed = stubs.tasks.WatchTask(t.WatchTaskRequest(name=name, after_event_id=first.event.id), timeout=10)
    replayed = [reply async for reply in resumed]  # the task is finished: the stream ends by itself
    ids = [e.id for e in everything]
    assert [r.event.id for r in replayed] == ids[ids.index(first.event.id) + 1 :]
    assert all(r.task.status == enums.TASK_STATUS_COMPLETED for r in replayed)  # the task as it is now
    assert replayed[-1].event.to_status == "TASK_STATUS_COMPLETED"
    # Resuming after the last change sends nothing more (and ends: the task is finished).
    tail = stubs.tasks.WatchTask(t.WatchTaskRequest(name=name, after_event_id=ids[-1]), timeout=10)
    assert [reply async for reply in tail] == []


@pytest.mark.parametrize("rpc", ["watch_task", "watch_events", "tail_logs"])
async def test_resume_ids_that_are_malformed_unknown_or_from_another_start(
    control_plane: App, stubs: Stubs, rpc: str
) -> None:
    name = (
        await stubs.tasks.SubmitTask(t.SubmitTaskRequest(task=m.Task(description="x")), timeout=5)
    ).task.name
    incarnation = control_plane.engine.incarnation

    def open_stream(resume: str):  # noqa: ANN202 - a gRPC stream call
        if rpc == "watch_task":
            return stubs.tasks.WatchTask(t.WatchTaskRequest(name=name, after_event_id=resume), timeout=5)
        if rpc == "watch_events":
            return stubs.system.WatchEvents(system_pb.WatchEventsRequest(after_event_id=resume), timeout=5)
        return stubs.system.TailLogs(system_pb.TailLogsRequest(after_record_id=resume), timeout=5)

    field = "after_record_id" if rpc == "tail_logs" else "after_event_id"
    for resume, code, reason in [
        ("yesterday", grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_FIELD"),
        (f"{incarnation}.999999999", grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_FIELD"),
        (f"{incarnation + 7}.1", grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_RESUME_POINT_LOST"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await open_stream(resume).read()
        assert info.value.code() == code, (resume, info.value.details())
        assert reason_of(info.value) == reason
        assert field in info.value.details() or reason == "ERROR_REASON_RESUME_POINT_LOST"


async def test_tail_logs_resumes_after_a_record_id(control_plane: App, stubs: Stubs) -> None:
    log = logging.getLogger("controlplane.resumeprobe")
    probe = system_pb.TailLogsRequest(contains="resume-probe")
    stream = stubs.system.TailLogs(probe, timeout=20)
    await wait_for(lambda: control_plane.logbook.subscribers, 5, message="the tail's subscriber")
    for n in range(2):
        log.warning("resume-probe %d", n)
    seen = [(await stream.read()).record for _ in range(2)]
    stream.cancel()
    assert [r.message for r in seen] == ["resume-probe 0", "resume-probe 1"]
    assert seen[0].id and seen[0].id != seen[1].id
    for n in range(2, 5):  # written while nobody tails
        log.warning("resume-probe %d", n)
    resumed = stubs.system.TailLogs(
        system_pb.TailLogsRequest(contains="resume-probe", after_record_id=seen[1].id), timeout=20
    )
    missed = [(await resumed.read()).record for _ in range(3)]
    log.warning("resume-probe 5")  # live records follow the replayed ones
    live = (await resumed.read()).record
    resumed.cancel()
    assert [r.message for r in missed] + [live.message] == [f"resume-probe {n}" for n in range(2, 6)]
    # ListLogs shows the same ids, so a reader can list and then tail from where the list ended.
    listed = await stubs.system.ListLogs(system_pb.ListLogsRequest(contains="resume-probe"), timeout=5)
    assert [r.id for r in listed.records][:2] == [r.id for r in seen]


def test_a_log_record_pushed_out_of_the_ring_is_reported_lost() -> None:
    book = LogBook(capacity=3)
    for n in range(5):
        book.add(LogEntry(level=logging.INFO, component="x", message=str(n)))
    assert [e.message for e in book.after(LogFilter(), 2)] == ["2", "3", "4"]  # seq 3, 4, 5
    assert book.after(LogFilter(), 5) == []
    with pytest.raises(FailedPrecondition) as lost:
        book.after(LogFilter(), 1)
    assert lost.value.reason == "ERROR_REASON_RESUME_POINT_LOST" and "oldest now is 3" in lost.value.message
    with pytest.raises(InvalidArgument):
        book.after(LogFilter(), 6)


async def test_an_event_pushed_out_of_the_kept_history_is_reported_lost(
    control_plane: App, stubs: Stubs
) -> None:
    engine = control_plane.engine
    engine.watchers.recent_events = deque(maxlen=2)  # a short history, to push an event out of it
    stream = stubs.system.WatchEvents(system_pb.WatchEventsRequest(), timeout=10)
    await wait_for(lambda: engine.event_listeners, 5, message="the listener")
    for n in range(3):
        await stubs.tasks.SubmitTask(t.SubmitTaskRequest(task=m.Task(description=f"n{n}")), timeout=5)
    ids = [(await stream.read()).event.id for _ in range(3)]
    stream.cancel()
    await wait_for(
        lambda: len(engine.recent_events) == 2 and engine.recent_events[0].id > int(ids[0].split(".")[1]),
        5,
        message="the first event to leave the history",
    )
    old = stubs.system.WatchEvents(system_pb.WatchEventsRequest(after_event_id=ids[0]), timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await old.read()
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason_of(info.value) == "ERROR_REASON_RESUME_POINT_LOST"
    assert "no longer kept" in (info.value.details() or "")


async def test_a_resumed_event_stream_shows_only_what_the_caller_may_see(secured: App) -> None:
    a = await user_key(secured, "dev-a@example.com", "developer")
    b = await user_key(secured, "dev-b@example.com", "developer")
    async with Client(secured.address, token=a) as dev_a, Client(secured.address, token=b) as dev_b:
        stream = dev_a.system.WatchEvents(system_pb.WatchEventsRequest())
        reader = asyncio.ensure_future(anext(stream))
        await wait_for(lambda: secured.engine.event_listeners, 5, message="dev-a's listener")
        first = await dev_a.submit_task(description="a's first", agent_type="nobody")
        seen = (await asyncio.wait_for(reader, 10)).event
        await stream.aclose()
        assert seen.task == first.name
        theirs = await dev_b.submit_task(description="b's", agent_type="nobody")  # while dev-a is away
        mine = await dev_a.submit_task(description="a's second", agent_type="nobody")
        resumed = dev_a.system.WatchEvents(system_pb.WatchEventsRequest(after_event_id=seen.id))
        replayed: list[m.Event] = []
        while not any(e.task == mine.name for e in replayed):
            replayed.append((await asyncio.wait_for(anext(resumed), 10)).event)
        await resumed.aclose()
        assert {e.task for e in replayed} <= {first.name, mine.name}, replayed  # none of dev-b's
        assert theirs.name not in {e.task for e in replayed}
