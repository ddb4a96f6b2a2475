"""The automatic checkpoint job: every ``checkpoints.interval`` seconds, only when state changed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from controlplane.checkpoints.service import Checkpoints
from controlplane.errors import MaosError

log = logging.getLogger(__name__)


class IntervalJob:
    """Takes automatic checkpoints on an interval, only when state changed.

    ``version`` is a cheap counter of committed changes (the engine's
    ``state_version``): an unchanged counter skips the interval without
    reading anything; the content digest then catches changes that changed
    nothing in the end.
    """

    def __init__(self, checkpoints: Checkpoints, interval: float, version: Callable[[], int] | None = None):
        self.checkpoints = checkpoints
        self.interval = interval
        self.version = version
        self._last_version: int | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the job on the running loop (a zero interval disables it)."""
        if self.interval > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="maos-checkpoints")

    async def stop(self) -> None:
        """Stop the job (a checkpoint being taken is abandoned, never half stored)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            version = self.version() if self.version is not None else None
            if version is not None and version == self._last_version:
                continue
            try:
                record = await self.checkpoints.create(display_name="automatic", automatic=True)
                self._last_version = version
            except (MaosError, OSError) as exc:
                log.warning("automatic checkpoint failed: %s", exc)
                continue
            except Exception:
                log.exception("automatic checkpoint failed")
                continue
            if record is not None:
                log.info(
                    "automatic checkpoint checkpoints/%s (%d tasks, %d bytes)",
                    record.id,
                    record.task_count,
                    record.compressed_size,
                )
