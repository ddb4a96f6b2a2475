"""The group committer: what it writes, when, and what a pause holds back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from controlplane.domain.model import Task
from controlplane.scheduler import committer as committer_module
from controlplane.scheduler.committer import Committer
from controlplane.storage.base import WriteBatch
from tests.harness.server import wait_for


class RecordingStorage:
    """A storage executor that records every batch written."""

    def __init__(self) -> None:
        self.writes: list[WriteBatch] = []

    async def write(self, batch: WriteBatch) -> None:
        self.writes.append(batch)


@contextlib.asynccontextmanager
async def running(storage: RecordingStorage) -> AsyncIterator[Committer]:
    """A started committer writing to ``storage``, closed afterwards."""
    committer = Committer(storage)  # type: ignore[arg-type]
    committer.start()
    try:
        yield committer
    finally:
        await committer.close()


async def test_a_pause_holds_a_generation_whose_flush_had_already_woken() -> None:
    storage = RecordingStorage()
    async with running(storage) as committer:
        committer.task(Task(id="t1", description="x"))
        await asyncio.sleep(0)  # the flusher wakes and yields once before taking the generation
        async with committer.paused():
            for _ in range(5):
                await asyncio.sleep(0)
            assert storage.writes == []  # nothing may be written while paused (a restore is running)
        await committer.durable()
        assert [t.id for batch in storage.writes for t in batch.tasks] == ["t1"]


async def test_audit_records_and_tasks_share_a_commit_and_keep_their_order() -> None:
    storage = RecordingStorage()
    async with running(storage) as committer:
        committer.task(Task(id="t1", description="x"))
        for n in range(3):
            committer.audit({"id": str(n), "time": 0.0, "principal": "users/a", "method": "/m"})
        await committer.durable()
        assert len(storage.writes) == 1
        assert [r["id"] for r in storage.writes[0].audit] == ["0", "1", "2"]
        assert [t.id for t in storage.writes[0].tasks] == ["t1"]


async def test_an_audit_record_alone_waits_a_moment_for_company_then_is_written() -> None:
    storage = RecordingStorage()
    loop = asyncio.get_running_loop()
    async with running(storage) as committer:
        started = loop.time()
        committer.audit({"id": "a", "time": 0.0, "principal": "users/a", "method": "/m"})
        for _ in range(5):
            await asyncio.sleep(0)
        assert storage.writes == []  # no commit of its own at once
        await wait_for(lambda: storage.writes)
        assert loop.time() - started >= committer_module.AUDIT_FLUSH_DELAY * 0.9
        assert [r["id"] for r in storage.writes[0].audit] == ["a"]


async def test_waiting_audit_records_ride_the_next_commit() -> None:
    storage = RecordingStorage()
    async with running(storage) as committer:
        committer.audit({"id": "a", "time": 0.0, "principal": "users/a", "method": "/m"})
        committer.task(Task(id="t1", description="x"))
        await committer.durable()
        assert len(storage.writes) == 1
        assert [r["id"] for r in storage.writes[0].audit] == ["a"]


async def test_every_lone_audit_record_is_written_not_only_the_first() -> None:
    storage = RecordingStorage()
    async with running(storage) as committer:
        for n, record_id in enumerate(("a", "b", "c"), start=1):
            committer.audit({"id": record_id, "time": 0.0, "principal": "users/a", "method": "/m"})
            await wait_for(lambda n=n: len(storage.writes) == n, timeout=2.0)
        assert [r["id"] for batch in storage.writes for r in batch.audit] == ["a", "b", "c"]


async def test_many_waiting_audit_records_are_written_without_delay(monkeypatch: Any) -> None:
    monkeypatch.setattr(committer_module, "AUDIT_FLUSH_DELAY", 60.0)
    storage = RecordingStorage()
    async with running(storage) as committer:
        for n in range(committer_module.AUDIT_FLUSH_COUNT):
            committer.audit({"id": str(n), "time": 0.0, "principal": "users/a", "method": "/m"})
        await wait_for(lambda: storage.writes)
        assert len(storage.writes[0].audit) == committer_module.AUDIT_FLUSH_COUNT


async def test_close_writes_waiting_audit_records(monkeypatch: Any) -> None:
    monkeypatch.setattr(committer_module, "AUDIT_FLUSH_DELAY", 60.0)
    storage = RecordingStorage()
    committer = Committer(storage)  # type: ignore[arg-type]
    committer.start()
    committer.audit({"id": "a", "time": 0.0, "principal": "users/a", "method": "/m"})
    await committer.close()
    assert [r["id"] for batch in storage.writes for r in batch.audit] == ["a"]


async def test_changes_arriving_one_loop_turn_apart_share_one_commit() -> None:
    storage = RecordingStorage()
    loop = asyncio.get_running_loop()
    async with running(storage) as committer:

        def arrive(n: int) -> None:  # like calls received one per loop turn while the loop is busy
            committer.task(Task(id=f"t{n}", description="x"))
            if n < 5:
                loop.call_soon(arrive, n + 1)

        arrive(1)
        await committer.durable()
        assert [[t.id for t in batch.tasks] for batch in storage.writes] == [["t1", "t2", "t3", "t4", "t5"]]


async def test_an_idle_loop_commits_at_once_without_waiting_for_the_gather_bound(monkeypatch: Any) -> None:
    monkeypatch.setattr(committer_module, "GATHER_SECONDS", 3600.0)
    monkeypatch.setattr(committer_module, "GATHER_TURNS", 1_000_000)
    storage = RecordingStorage()
    async with running(storage) as committer:
        committer.task(Task(id="t1", description="x"))
        await asyncio.wait_for(committer.durable(), 10)
        assert [t.id for batch in storage.writes for t in batch.tasks] == ["t1"]


async def test_a_busy_loop_commits_within_the_gather_bound(monkeypatch: Any) -> None:
    """Changes joining on every turn, for ever: the commit still goes after GATHER_TURNS turns."""
    monkeypatch.setattr(committer_module, "GATHER_TURNS", 4)
    storage = RecordingStorage()
    loop = asyncio.get_running_loop()
    busy = True
    async with running(storage) as committer:
        arrived = iter(range(1_000_000))

        def arrive() -> None:  # a change on every turn
            if busy:
                committer.task(Task(id=f"t{next(arrived)}", description="x"))
                loop.call_soon(arrive)

        arrive()
        try:
            await asyncio.wait_for(committer.durable(), 10)
            first = [t.id for t in storage.writes[0].tasks]
            assert first[0] == "t0" and len(first) <= 4 + 2
        finally:
            busy = False


async def test_a_lone_change_commits_after_one_turn_while_the_loop_is_busy_with_other_work() -> None:
    """Other work ready on every turn that adds nothing to the generation does not hold the commit."""
    storage = RecordingStorage()
    loop = asyncio.get_running_loop()
    busy, turns = True, 0

    def spin() -> None:
        nonlocal turns
        if busy:
            turns += 1
            loop.call_soon(spin)

    spin()
    try:
        async with running(storage) as committer:
            committer.task(Task(id="t1", description="x"))
            before = turns
            await asyncio.wait_for(committer.durable(), 10)
            assert [t.id for batch in storage.writes for t in batch.tasks] == ["t1"]
            assert turns - before <= 8  # waking, one gather turn, the write, the answer (the bound is 32)
    finally:
        busy = False


class RefusingStorage(RecordingStorage):
    """Records batches and refuses the submissions whose request id it was told to (stored elsewhere first)."""

    def __init__(self, refuse: set[str]) -> None:
        super().__init__()
        self.refuse = refuse

    async def write(self, batch: WriteBatch) -> None:
        batch.refused = {r.key for r in batch.idempotency if r.request_id in self.refuse}
        await super().write(batch)


async def test_last_callbacks_and_a_written_submissions_then_keep_their_order() -> None:
    """A submission's ``then`` runs first (only when it was written), the callbacks marked ``last`` after every
    other callback of their commit, whatever the order they were registered in."""
    from controlplane.storage.base import IdempotencyRecord

    storage = RefusingStorage({"lost"})
    ran: list[str] = []
    async with running(storage) as committer:
        committer.after_commit(lambda: ran.append("last"), last=True)
        committer.after_commit(lambda: ran.append("after"))
        won = IdempotencyRecord("u", "SubmitTask", "won", "h", "t1", 0.0)
        lost = IdempotencyRecord("u", "SubmitTask", "lost", "h", "t2", 0.0)
        written = committer.submission(won, [Task(id="t1", description="x")], lambda: ran.append("won"))
        refused = committer.submission(lost, [Task(id="t2", description="x")], lambda: ran.append("lost"))
        committer.after_commit(lambda: ran.append("after 2"))
        assert (await written, await refused) == (True, False)
        await committer.durable()
    assert ran == ["won", "after", "after 2", "last"]


def arrive_every_other_turn(committer: Committer, first: int, last: int) -> None:
    """Add task ``t<first>`` now, then the next up to ``t<last>`` every other loop turn, the loop never
    empty (a turn adding nothing between two that add one)."""
    loop = asyncio.get_running_loop()

    def arrive(n: int, idle: bool) -> None:
        if idle:
            loop.call_soon(arrive, n, False)
            return
        committer.task(Task(id=f"t{n}", description="x"))
        if n < last:
            loop.call_soon(arrive, n + 1, True)

    arrive(first, False)


async def test_changes_arriving_between_idle_turns_share_a_commit_while_commits_follow_each_other(
    monkeypatch: Any,
) -> None:
    """Right after a commit, turns that add nothing (a call's answer going out) do not end the gathering."""
    monkeypatch.setattr(committer_module, "GATHER_SECONDS", 3600.0)  # the bound in turns decides alone
    storage = RecordingStorage()
    async with running(storage) as committer:
        committer.task(Task(id="t0", description="x"))
        await committer.durable()  # a commit just ended: the next one gathers patiently

        arrive_every_other_turn(committer, 1, 5)
        await committer.durable()
        assert [[t.id for t in batch.tasks] for batch in storage.writes] == [
            ["t0"],
            ["t1", "t2", "t3", "t4", "t5"],
        ]


async def test_without_a_recent_commit_a_turn_adding_nothing_ends_the_gathering() -> None:
    storage = RecordingStorage()
    async with running(storage) as committer:
        arrive_every_other_turn(committer, 1, 3)
        await wait_for(lambda: sum(len(batch.tasks) for batch in storage.writes) == 3)
        assert len(storage.writes) > 1


async def test_a_commit_older_than_the_gather_window_no_longer_keeps_the_gathering_open(
    monkeypatch: Any,
) -> None:
    """The same arrivals (a change every other turn) share one commit right after a commit, and are cut at the
    first turn adding nothing once the last commit ended more than GATHER_SECONDS ago."""
    monkeypatch.setattr(
        committer_module, "GATHER_SECONDS", 3600.0
    )  # only the window's start moves, not the clock
    storage = RecordingStorage()
    async with running(storage) as committer:

        def batches() -> list[list[str]]:
            return [[t.id for t in batch.tasks] for batch in storage.writes]

        committer.task(Task(id="t0", description="x"))
        await committer.durable()
        arrive_every_other_turn(committer, 1, 5)  # a commit just ended
        await committer.durable()
        assert batches() == [["t0"], ["t1", "t2", "t3", "t4", "t5"]]

        committer._last_written -= 2 * committer_module.GATHER_SECONDS  # that commit ended long ago
        arrive_every_other_turn(committer, 6, 10)
        await wait_for(lambda: sum(map(len, batches())) == 11)
        first = next(batch for batch in batches() if "t6" in batch)
        assert "t10" not in first, batches()
