"""Runs storage calls on one dedicated thread, off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from controlplane.storage.base import StorageBackend, WriteBatch, WritesNow

T = TypeVar("T")

#: Batches of at most this many rows are committed on the event loop by a
#: backend that offers ``write_now`` (larger ones go to the storage thread, where
#: the database works while the loop goes on). A lone call's commit usually stays
#: on the loop, where it waits for no thread: its task, a subtask, its audit
#: record, its request id's record. It goes to the thread when it carries more:
#: a plan of more than 5 subtasks (6 without a request id), or the audit records
#: of other calls riding along. The larger commits of a stream of calls go to the
#: thread, and the loop gathers the next one meanwhile. Audit rows count like the
#: others though they cost less (SQLite: about 2.5 us each on top of a commit, a
#: subtask's 10-17 us): up to 1,000 of them wait for a commit, about 2.7 ms that
#: the loop would stop for.
WRITE_NOW_MAX_ROWS = 8


def fast_write(backend: StorageBackend) -> Callable[[WriteBatch], bool] | None:
    """The backend's :meth:`~controlplane.storage.base.WritesNow.write_now`, if it offers one that can write.

    Only a ``write_now`` defined by the backend's class counts. A wrapper that
    delegates what it does not define to another backend (``__getattr__``) and
    defines only ``write`` therefore sees every batch in its ``write``: writes
    of the engine's state reach a backend through one method.
    """
    if not (
        callable(getattr(type(backend), "write_now", None))
        and callable(getattr(type(backend), "can_write_now", None))
    ):
        return None
    if not isinstance(backend, WritesNow) or not backend.can_write_now():
        return None
    return backend.write_now


class StorageExecutor:
    """Owns a backend and the single thread that talks to it."""

    def __init__(self, backend: StorageBackend):
        self.backend = backend
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maos-storage")
        self._write_now = fast_write(backend)
        #: A second thread for short reads, when the backend serves reads beside a writer.
        self._reads = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="maos-storage-reads")
            if getattr(backend, "concurrent_reads", False)
            else None
        )
        #: A thread for reads that may wait for a lock (created when first needed).
        self._settling: ThreadPoolExecutor | None = None

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the storage thread and return its result."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def quick_read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a short read ``fn(*args)`` where it does not wait behind long storage work (a checkpoint,
        a large commit): on a thread of its own when the backend reads beside its writer (an SQLite
        file in WAL mode, PostgreSQL), else on the storage thread. It sees committed state."""
        pool = self._reads or self._pool
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def settling_read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a read ``fn(*args)`` that may wait seconds for a lock (a commit still in flight) on a thread
        of its own, so neither the writer nor the quick reads wait behind it."""
        if self._settling is None:
            self._settling = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maos-storage-settling")
        return await asyncio.get_running_loop().run_in_executor(self._settling, fn, *args)

    async def write(self, batch: WriteBatch) -> None:
        """Commit ``batch``: at once when it is small and the backend can, else on the storage thread."""
        if self._write_now is not None and batch.rows() <= WRITE_NOW_MAX_ROWS:
            # The loop stops while the write runs: let what is ready go first
            # (an assignment on its way to an agent, which then works meanwhile).
            await asyncio.sleep(0)
            if self._write_now(batch):
                return
        await self.call(self.backend.write, batch)

    def close(self) -> None:
        """Wait for pending calls, then close the backend."""
        self._pool.shutdown(wait=True)
        if self._reads is not None:
            self._reads.shutdown(wait=True)
        if self._settling is not None:
            self._settling.shutdown(wait=True)
        self.backend.close()
