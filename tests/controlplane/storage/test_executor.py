"""The storage executor: which thread writes a batch."""

from __future__ import annotations

import threading

from controlplane.domain.model import Task
from controlplane.storage.base import WriteBatch
from controlplane.storage.executor import WRITE_NOW_MAX_ROWS, StorageExecutor


class Backend:
    """Records the thread of every write; ``write_now`` succeeds unless ``locked``."""

    kind = "fake"

    def __init__(self, *, locked: bool = False) -> None:
        self.locked = locked
        self.writes: list[tuple[str, str, int]] = []  # (method, thread name, rows)

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


async def test_small_batches_are_written_now_on_the_loop_thread() -> None:
    backend = Backend()
    executor = StorageExecutor(backend)  # type: ignore[arg-type]
    try:
        await executor.write(tasks(1))
        await executor.write(tasks(WRITE_NOW_MAX_ROWS))
        loop_thread = threading.current_thread().name
        assert backend.writes == [("write_now", loop_thread, 1), ("write_now", loop_thread, WRITE_NOW_MAX_ROWS)]
    finally:
        executor.close()


async def test_large_batches_go_to_the_storage_thread() -> None:
    backend = Backend()
    executor = StorageExecutor(backend)  # type: ignore[arg-type]
    try:
        await executor.write(tasks(WRITE_NOW_MAX_ROWS + 1))
        [(method, thread, rows)] = backend.writes
        assert (method, rows) == ("write", WRITE_NOW_MAX_ROWS + 1)
        assert thread.startswith("maos-storage")
    finally:
        executor.close()


async def test_a_locked_database_sends_the_batch_to_the_storage_thread() -> None:
    backend = Backend(locked=True)
    executor = StorageExecutor(backend)  # type: ignore[arg-type]
    try:
        await executor.write(tasks(1))
        [(method, thread, _)] = backend.writes
        assert method == "write" and thread.startswith("maos-storage")
    finally:
        executor.close()


async def test_a_backend_without_write_now_always_uses_the_storage_thread() -> None:
    backend = PlainBackend()
    executor = StorageExecutor(backend)  # type: ignore[arg-type]
    try:
        await executor.write(tasks(1))
        assert len(backend.threads) == 1 and backend.threads[0].startswith("maos-storage")
    finally:
        executor.close()
