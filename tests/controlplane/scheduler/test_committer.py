"""The group committer: what it writes, when, and what a pause holds back."""

from __future__ import annotations

import asyncio
from typing import Any

from controlplane.domain.model import Task
from controlplane.scheduler.committer import Committer
from controlplane.storage.base import WriteBatch


class RecordingStorage:
    """A storage executor that runs calls inline and records every batch written."""

    def __init__(self) -> None:
        self.backend = self
        self.writes: list[WriteBatch] = []

    def write(self, batch: WriteBatch) -> None:
        self.writes.append(batch)

    async def call(self, fn: Any, *args: Any) -> Any:
        return fn(*args)


async def test_a_pause_holds_a_generation_whose_flush_had_already_woken() -> None:
    storage = RecordingStorage()
    committer = Committer(storage)  # type: ignore[arg-type]
    committer.start()
    try:
        committer.task(Task(id="t1", description="x"))
        await asyncio.sleep(0)  # the flusher wakes and yields once before taking the generation
        async with committer.paused():
            for _ in range(5):
                await asyncio.sleep(0)
            assert storage.writes == []  # nothing may be written while paused (a restore is running)
        await committer.durable()
        assert [t.id for batch in storage.writes for t in batch.tasks] == ["t1"]
    finally:
        await committer.close()


async def test_audit_records_and_tasks_share_a_commit_and_keep_their_order() -> None:
    storage = RecordingStorage()
    committer = Committer(storage)  # type: ignore[arg-type]
    committer.start()
    try:
        committer.task(Task(id="t1", description="x"))
        for n in range(3):
            committer.audit({"id": str(n), "time": 0.0, "principal": "users/a", "method": "/m"})
        await committer.durable()
        assert len(storage.writes) == 1
        assert [r["id"] for r in storage.writes[0].audit] == ["0", "1", "2"]
        assert [t.id for t in storage.writes[0].tasks] == ["t1"]
    finally:
        await committer.close()
