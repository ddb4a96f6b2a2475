"""Runs storage calls on one dedicated thread, off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from controlplane.storage.base import StorageBackend

T = TypeVar("T")


class StorageExecutor:
    """Owns a backend and the single thread that talks to it."""

    def __init__(self, backend: StorageBackend):
        self.backend = backend
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maos-storage")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the storage thread and return its result."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        """Wait for pending calls, then close the backend."""
        self._pool.shutdown(wait=True)
        self.backend.close()
