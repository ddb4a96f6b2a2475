"""A periodic job of the control plane: one step now, then one every interval, until stopped.

Audit retention and the metrics history sampler are such jobs (and, with several replicas, the
ones to run under a lease on one replica at a time). A step that fails is logged and tried again
at the next interval: one bad run never stops the job. A job given a ``guard`` runs a step only
when the guard says yes (a job under a lease: only while the lease is confirmed held).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from controlplane.errors import MaosError

log = logging.getLogger(__name__)


class PeriodicJob:
    """Runs ``step`` on the event loop now and then every ``interval`` seconds, between start and stop."""

    def __init__(self, name: str, step: Callable[[], Awaitable[Any]], interval: float):
        self.name = name
        self.step = step
        self.interval = interval
        #: Asked before each step; the step is skipped unless it answers True (None: every step runs).
        self.guard: Callable[[], Awaitable[bool]] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start on the running loop (a started job is left alone)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"maos-{self.name}")

    async def stop(self) -> None:
        """Stop (a step under way is cancelled)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                if self.guard is None or await self.guard():
                    await self.step()
            except MaosError as exc:  # the storage refused or is away: said in one line
                log.warning("%s failed: %s", self.name, exc)
            except Exception:
                log.exception("%s failed", self.name)
            await asyncio.sleep(self.interval)
