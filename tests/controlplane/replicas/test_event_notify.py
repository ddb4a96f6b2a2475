"""Events across replicas on PostgreSQL without Redis: LISTEN/NOTIFY, ids per replica."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from controlplane.domain.events import Event, EventType
from controlplane.errors import FailedPrecondition, MaosError
from controlplane.replicas.event_notify import MAX_PAYLOAD, NotifyRelay, pack
from controlplane.replicas.event_stream import decode_event
from tests.controlplane.api.test_stream_resume import reason_of
from tests.controlplane.replicas.test_event_stream import _events_of, _submit, _submit_batch, replica_pair
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


class _Listener:
    """The receiving side of a relay: what it delivered and how its watchers were ended, in order."""

    def __init__(self, relay: NotifyRelay):
        self.seen: list[Event | MaosError] = []
        relay.receive = self.seen.append
        relay.sever = self.seen.append

    def messages(self) -> list[str]:
        return [e.message for e in self.seen if isinstance(e, Event)]


def _numbered(count: int, start: int = 0) -> list[Event]:
    return [
        Event(EventType.TASK_SUBMITTED, task_id=f"t{n}", message=f"event {n}") for n in range(start, count)
    ]


async def test_a_closing_relay_sends_what_its_outbox_holds(postgres_url: str) -> None:
    sender, receiver = NotifyRelay(postgres_url), NotifyRelay(postgres_url)
    listener = _Listener(receiver)
    await receiver.start()
    await sender.start()
    try:
        for event in _numbered(300):  # the final commit's events, each its own group
            sender.send([event])
        await sender.close()  # at once: what waits is sent before the relay stops
        await wait_for(lambda: len(listener.seen) >= 300, 10, message="every event relayed")
        assert listener.messages() == [f"event {n}" for n in range(300)]
    finally:
        await sender.close()
        await receiver.close()


async def test_an_overflowing_outbox_ends_the_other_replicas_watchers(postgres_url: str) -> None:
    sender, receiver = NotifyRelay(postgres_url, max_outbox=3), NotifyRelay(postgres_url)
    listener = _Listener(receiver)
    await receiver.start()
    try:
        for event in _numbered(5):  # the database not reached yet: the outbox holds 3, drops 2
            sender.send([event])
        await sender.start()
        sender.send(_numbered(6, 5))
        await wait_for(lambda: len(listener.seen) >= 5, 10, message="the gap and the events kept")
        gap, *kept = listener.seen
        assert isinstance(gap, FailedPrecondition)  # watchers end first, told to watch again
        assert gap.reason == "ERROR_REASON_RESUME_POINT_LOST"
        assert "2 notifications of events from another replica were lost" in str(gap)
        assert "watch again without a resume id" in str(gap)
        assert [e.message for e in kept if isinstance(e, Event)] == [
            "event 2",
            "event 3",
            "event 4",
            "event 5",
        ]
        sender.send(_numbered(7, 6))  # nothing dropped since: no second gap
        await wait_for(lambda: len(listener.seen) >= 6, 10, message="the next event")
        assert listener.messages()[-1] == "event 6"
        assert sum(isinstance(e, MaosError) for e in listener.seen) == 1
    finally:
        await sender.close()
        await receiver.close()


async def test_a_watcher_on_another_replica_is_ended_by_a_gap(tmp_path: Path, postgres_url: str) -> None:
    async with replica_pair(tmp_path, **{"database.primary_url": postgres_url}) as pair:
        a, b, stubs_a, _stubs_b, _agent = pair
        watch = stubs_a.system.WatchEvents(system_pb.WatchEventsRequest(), timeout=30)
        await wait_for(lambda: a.engine.event_listeners, 5, message="a listener on A")
        relay = b.engine.watchers.relay
        assert relay is not None
        relay.max_outbox = 1
        # One notification each (too large to share one): 4 of the 5 overflow the outbox.
        relay.send([Event(EventType.SUBTASK_OUTPUT, task_id=f"t{n}", message="x" * 5000) for n in range(5)])
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async for _ in watch:
                pass
        assert ended.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason_of(ended.value) == "ERROR_REASON_RESUME_POINT_LOST"
        assert "were lost" in (ended.value.details() or "")


async def test_a_dependency_finishing_on_another_replica_is_announced_by_its_relayed_event(
    tmp_path: Path, postgres_url: str
) -> None:
    """Without Redis the finished task's relayed TASK_STATUS_CHANGED event tells the replica holding
    its dependant: no `finished` wake-up NOTIFY of its own is sent, and the dependant starts long
    before a claims poll (every 60 s here) could have found it."""
    import psycopg

    shared = {"database.primary_url": postgres_url, "replicas.claim_poll_interval": 60.0}
    conninfo = postgres_url.replace("postgresql+psycopg://", "postgresql://", 1)
    async with replica_pair(tmp_path, **shared) as pair:
        a, b, stubs_a, stubs_b, agent = pair
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as listener:
            await listener.execute('LISTEN "maos_wake_finished"')
            agent.gate.clear()
            first = await _submit(stubs_b, "runs on B")
            reply = await stubs_a.tasks.SubmitTask(
                t.SubmitTaskRequest(task=m.Task(description="waits on A", depends_on=[first])), timeout=5
            )
            then = reply.task.name
            assert a.engine.holds(then.split("/")[1])  # A accepted it and holds it, waiting
            agent.gate.set()

            async def both_completed() -> bool:
                for name in (first, then):
                    answer = await stubs_a.tasks.GetTask(t.GetTaskRequest(name=name), timeout=5)
                    if answer.task.status != enums.TASK_STATUS_COMPLETED:
                        return False
                return True

            await wait_for(both_completed, 20, message="the task and its dependant to complete")
            # A marker sent now arrives after any wake-up sent before it: it must come first.
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as sender:
                await sender.execute("SELECT pg_notify('maos_wake_finished', 'marker')")
            heard = []
            async for note in listener.notifies(timeout=10):
                heard.append(note.payload)
                if note.payload == "marker":
                    break
            assert heard == ["marker"]


async def test_a_batch_sent_away_at_its_submit_is_one_notification(tmp_path: Path, postgres_url: str) -> None:
    """Without Redis, the events of a batch written leaving in its submit's commit go out as one group:
    one NOTIFY naming them all, as any commit's do."""
    import psycopg

    from controlplane.replicas.event_notify import CHANNEL

    async with replica_pair(tmp_path, **{"database.primary_url": postgres_url}) as pair:
        a = pair[0]
        listener = await psycopg.AsyncConnection.connect(a.engine.watchers.relay.conninfo, autocommit=True)
        try:
            await listener.execute(f"LISTEN {CHANNEL}")
            sent_away = a.engine.claims.sent_away
            calls: list[int] = []
            a.engine.claims.sent_away = lambda tasks: (calls.append(len(tasks)), sent_away(tasks))  # type: ignore[method-assign]
            ids = await _submit_batch(pair[2], 4)
            assert calls == [4]  # written leaving in the submit's commit
            await asyncio.wait_for(a.engine.watchers.relay.flushed(), 10)
            naming: list[set[str]] = []

            async def hear() -> None:
                async for note in listener.notifies():
                    events = [decode_event(line.encode(), "") for line in note.payload.split("\n")[1:]]
                    named = {
                        e.task_id for e in events if e.type == EventType.TASK_SUBMITTED and e.task_id in ids
                    }
                    if named:
                        naming.append(named)
                    if set().union(*naming) == set(ids):
                        return

            await asyncio.wait_for(hear(), 10)
            assert naming == [set(ids)]
        finally:
            await listener.close()
