"""Events across replicas on PostgreSQL without Redis: LISTEN/NOTIFY, ids per replica."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from controlplane.domain.events import Event, EventType
from controlplane.replicas.event_notify import MAX_PAYLOAD, pack
from controlplane.replicas.event_stream import decode_event
from tests.controlplane.api.test_stream_resume import reason_of
from tests.controlplane.replicas.test_event_stream import _events_of, _submit, replica_pair
from tests.harness.server import wait_for


async def test_a_replica_sees_another_replicas_events_without_redis(
    tmp_path: Path, postgres_url: str
) -> None:
    async with replica_pair(tmp_path, **{"database.primary_url": postgres_url}) as pair:
        a, b, stubs_a, stubs_b, agent = pair
        on_a = stubs_a.system.WatchEvents(system_pb.WatchEventsRequest(), timeout=30)
        on_b = stubs_b.system.WatchEvents(system_pb.WatchEventsRequest(), timeout=30)
        await wait_for(lambda: a.engine.event_listeners and b.engine.event_listeners, 5, message="listeners")
        name = await _submit(stubs_b, "held by B, seen on A")
        seen_a = await asyncio.wait_for(_events_of(on_a, name), 20)
        seen_b = await asyncio.wait_for(_events_of(on_b, name), 20)
        on_a.cancel()
        on_b.cancel()
        # The same changes in the same order; ids are each replica's own.
        assert [(e.type, e.subtask, e.to_status) for e in seen_a] == [
            (e.type, e.subtask, e.to_status) for e in seen_b
        ]
        assert seen_a[0].id.split(".")[0] == str(a.engine.incarnation)
        # Resuming on A from A's id works; B's id on A is refused precisely.
        again = stubs_a.system.WatchEvents(
            system_pb.WatchEventsRequest(task=name, after_event_id=seen_a[0].id), timeout=10
        )
        assert [e.id for e in await asyncio.wait_for(_events_of(again, name), 10)] == [
            e.id for e in seen_a[1:]
        ]
        again.cancel()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            request = system_pb.WatchEventsRequest(after_event_id=seen_b[0].id)
            await anext(aiter(stubs_a.system.WatchEvents(request, timeout=5)))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(caught.value) == "ERROR_REASON_RESUME_POINT_LOST"

        # WatchTask on A of a task B holds: the snapshot from storage, then B's changes to the end.
        agent.gate.clear()
        held = await _submit(stubs_b, "watched on A while B runs it")
        watch = stubs_a.tasks.WatchTask(t.WatchTaskRequest(name=held), timeout=30)
        snapshot = await watch.read()
        assert not snapshot.HasField("event") and snapshot.task.status != enums.TASK_STATUS_COMPLETED
        agent.gate.set()
        replies = []
        while (reply := await watch.read()) != grpc.aio.EOF:
            replies.append(reply)
        assert replies[-1].event.to_status == "TASK_STATUS_COMPLETED"
        assert replies[-1].task.status == enums.TASK_STATUS_COMPLETED


def test_notifications_stay_under_the_limit_and_cut_what_cannot_fit() -> None:
    events = [Event(EventType.SUBTASK_OUTPUT, task_id="t", message="x" * 3000) for _ in range(5)]
    events.append(Event(EventType.SUBTASK_OUTPUT, task_id="t", message="y" * 20_000))
    payloads = pack("me", events)
    assert all(len(p.encode()) <= MAX_PAYLOAD for p in payloads)
    back = [decode_event(line.encode(), "") for p in payloads for line in p.split("\n")[1:]]
    assert [e.message for e in back[:5]] == ["x" * 3000] * 5
    assert back[5].message == "(message and data cut: too large to relay)"
