"""The automatic checkpoint job: every ``checkpoints.interval`` seconds, only when state changed.

A checkpoint of a large database takes long (seconds at a million tasks), and taking one every
interval would keep a core busy. So that automatic checkpoints use at most ``checkpoints.cpu_budget``
of one core on average, the wait after a checkpoint that took ``T`` seconds is at least
``T / cpu_budget`` (:func:`next_wait`): with the defaults (30 s, 0.05), a checkpoint taking 1.5 s or
less keeps the interval, one taking 10 s is followed by a wait of 200 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from controlplane.checkpoints.service import Checkpoints
from controlplane.errors import MaosError

log = logging.getLogger(__name__)


def next_wait(interval: float, took: float, cpu_budget: float) -> float:
    """Seconds to wait after a checkpoint that took ``took`` seconds: the interval, or more.

    ``took / cpu_budget`` keeps the time spent taking checkpoints to at most ``cpu_budget`` of the
    time (wall time is counted, an upper bound of the CPU they used).
    """
    return max(interval, took / cpu_budget)


class IntervalJob:
    """Takes automatic checkpoints on an interval, only when state changed.

    ``version`` is a cheap counter of committed changes (the engine's
    ``state_version``): an unchanged counter skips the interval without
    reading anything; the content digest then catches changes that changed
    nothing in the end.
    """

    def __init__(
        self,
        checkpoints: Checkpoints,
        interval: float,
        version: Callable[[], int] | None = None,
        cpu_budget: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.checkpoints = checkpoints
        self.interval = interval
        self.version = version
        self.cpu_budget = cpu_budget
        self._clock = clock
        self._sleep = sleep
        #: Seconds until the next automatic checkpoint is considered (the interval, or more after a long one).
        self.wait = interval
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
            await self._sleep(self.wait)
            version = self.version() if self.version is not None else None
            if version is not None and version == self._last_version:
                self.wait = self.interval
                continue
            started = self._clock()
            try:
                record = await self.checkpoints.create(display_name="automatic", automatic=True)
                self._last_version = version
            except (MaosError, OSError) as exc:
                log.warning("automatic checkpoint failed: %s", exc)
                continue
            except Exception:
                log.exception("automatic checkpoint failed")
                continue
            finally:
                self._spaced(self._clock() - started)
            if record is not None:
                log.info(
                    "automatic checkpoint checkpoints/%s (%d tasks, %d bytes)",
                    record.id,
                    record.task_count,
                    record.compressed_size,
                )

    def _spaced(self, took: float) -> None:
        wait = next_wait(self.interval, took, self.cpu_budget)
        if wait > self.interval:
            log.info(
                "the automatic checkpoint took %.1f s: the next in %.0f s, not %g s, to keep within "
                "checkpoints.cpu_budget (%g of a core)",
                took,
                wait,
                self.interval,
                self.cpu_budget,
            )
        self.wait = wait
