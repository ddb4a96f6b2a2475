"""The storage executor: which thread writes a batch, and writes on both threads at once."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from controlplane.domain.model import Task
from controlplane.storage.base import WriteBatch
from controlplane.storage.executor import WRITE_NOW_MAX_ROWS, StorageExecutor
from controlplane.storage.sql import SqlBackendFactory
from controlplane.storage.testing import minimal_task


class Backend:
    """Records the thread of every write; ``write_now`` succeeds unless ``locked``."""

    kind = "fake"

    def __init__(self, *, locked: bool = False, able: bool = True) -> None:
        self.locked = locked
        self.able = able
        self.writes: list[tuple[str, str, int]] = []  # (method, thread name, rows)

    def can_write_now(self) -> bool:
        return self.able

    def write(self, batch: WriteBatch) -> None:
        self.writes.append(("write", threading.current_thread().name, batch.rows()))

    def write_now(self, batch: WriteBatch) -> bool:
        if self.locked:
            return False
        self.writes.append(("write_now", threading.current_thread().name, batch.rows()))
        return True

    def close(self) -> None:
        pass


class PlainBackend:
    """A backend without ``write_now`` (PostgreSQL-like)."""

    kind = "plain"

    def __init__(self) -> None:
        self.threads: list[str] = []

    def write(self, batch: WriteBatch) -> None:
        self.threads.append(threading.current_thread().name)

    def close(self) -> None:
        pass


def tasks(n: int) -> WriteBatch:
    return WriteBatch(tasks=[Task(id=f"t{i}", description="x") for i in range(n)])


async def write_through(backend: Any, *batches: WriteBatch) -> None:
    """Write ``batches`` one after another through a new executor on ``backend``, then close it."""
    executor = StorageExecutor(backend)
    try:
        for batch in batches:
            await executor.write(batch)
    finally:
        executor.close()


async def test_small_batches_are_written_now_on_the_loop_thread() -> None:
    backend = Backend()
    await write_through(backend, tasks(1), tasks(WRITE_NOW_MAX_ROWS))
    loop_thread = threading.current_thread().name
    assert backend.writes == [("write_now", loop_thread, 1), ("write_now", loop_thread, WRITE_NOW_MAX_ROWS)]


async def test_large_batches_go_to_the_storage_thread() -> None:
    backend = Backend()
    await write_through(backend, tasks(WRITE_NOW_MAX_ROWS + 1))
    [(method, thread, rows)] = backend.writes
    assert (method, rows) == ("write", WRITE_NOW_MAX_ROWS + 1)
    assert thread.startswith("maos-storage")


async def test_audit_records_riding_along_count_as_rows() -> None:
    """Up to 1,000 of them can wait for a commit: writing them would stop the loop for milliseconds."""
    backend = Backend()
    audit = [{"time": 1.0, "principal": "users/a", "method": "m"}] * WRITE_NOW_MAX_ROWS
    await write_through(backend, WriteBatch(tasks=[Task(id="t", description="x")], audit=audit))
    [(method, thread, rows)] = backend.writes
    assert (method, rows) == ("write", WRITE_NOW_MAX_ROWS + 1)
    assert thread.startswith("maos-storage")


async def test_a_locked_database_sends_the_batch_to_the_storage_thread() -> None:
    backend = Backend(locked=True)
    await write_through(backend, tasks(1))
    [(method, thread, _)] = backend.writes
    assert method == "write" and thread.startswith("maos-storage")


async def test_a_backend_without_write_now_always_uses_the_storage_thread() -> None:
    backend = PlainBackend()
    await write_through(backend, tasks(1))
    assert len(backend.threads) == 1 and backend.threads[0].startswith("maos-storage")


async def test_a_backend_that_cannot_write_now_is_never_asked_to() -> None:
    backend = Backend(able=False)
    await write_through(backend, tasks(1))
    [(method, thread, _)] = backend.writes
    assert method == "write" and thread.startswith("maos-storage")


async def test_shared_state_writes_on_the_storage_thread_survive_commits_made_on_the_loop(
    tmp_path: Any,
) -> None:
    """A read-then-write transaction on the storage thread is not refused because write_now committed meanwhile."""
    store = SqlBackendFactory().open(f"sqlite:///{tmp_path / 'maos.db'}")
    store.migrate()
    store.write(WriteBatch(tasks=[minimal_task()]))
    executor = StorageExecutor(store)
    stop = asyncio.Event()

    async def commits() -> int:
        count = 0
        while not stop.is_set():
            await executor.write(WriteBatch(tasks=[minimal_task()]))
            count += 1
            await asyncio.sleep(0)  # let the state_put calls' completions in between
        return count

    committing = asyncio.get_running_loop().create_task(commits())
    try:
        for expected in range(1, 301):
            assert await executor.call(store.state_put, "task-1", "k", b"x", None) == expected
    finally:
        stop.set()
        made = await committing
        executor.close()
    assert made > 50  # the commits really ran alongside
