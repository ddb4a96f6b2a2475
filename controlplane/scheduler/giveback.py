"""Giving memory back to the system after the work held in memory shrinks a lot (a deep queue drained).

Finished tasks leave memory as soon as they are committed, but the allocator keeps the pages they used for
the next burst, so a control plane that once held 100,000 queued tasks would stay that large. After the
records in memory fall to half of their latest peak (and by at least :data:`MIN_DROP`), one pass a second
later collects garbage and, with glibc, asks ``malloc_trim(0)`` to return free pages. The pass is
coalesced, and the drop needed for the next one is measured from where this one left off, so a long drain
costs a few passes, each cheaper than the one before.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Records (tasks in memory) that must have left since the peak before memory is given back.
MIN_DROP = 10_000
#: Seconds from the drop to the pass (a burst of evictions ends first).
DELAY = 1.0


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None elsewhere (other systems, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class GiveBack:
    """Watches how many records are in memory and gives memory back after a large drop.

    ``size`` counts the records in memory; ``before`` runs first in each pass (dropping stale entries that
    still refer to records gone).
    """

    def __init__(self, size: Callable[[], int], before: Callable[[], None] = lambda: None):
        self._size = size
        self._before = before
        self._peak = 0
        self._handle: asyncio.TimerHandle | None = None
        self._trim = _malloc_trim()
        #: Passes made so far (for tests and diagnostics).
        self.passes = 0

    @property
    def planned(self) -> bool:
        """Whether a pass is waiting to run."""
        return self._handle is not None

    def observe(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Records left memory (or are about to): plan a pass if they fell far enough."""
        size = self._size()
        if size > self._peak:
            self._peak = size
        elif (
            self._handle is None
            and loop is not None
            and self._peak - size >= MIN_DROP
            and size <= self._peak // 2
        ):
            self._handle = loop.call_later(DELAY, self.give_back)

    def give_back(self) -> None:
        """Collect garbage and return free pages to the system now."""
        self._handle = None
        self._before()
        size = self._size()
        gc.collect(2 if size < MIN_DROP else 1)
        self.trim()
        self._peak = size
        self.passes += 1
        log.debug("gave memory back with %d tasks in memory", size)

    def trim(self, collect: int | None = None) -> None:
        """Return free pages to the system after a burst of garbage, such as a checkpoint's snapshot.

        Args:
            collect: Collect this generation of garbage first (a young one: a full collection walks every
                object, seconds with thousands of agents connected, the loop halted meanwhile).

        ``malloc_trim`` walks the whole heap: in a running loop it runs on a worker thread (ctypes lets go
        of the GIL), so that agents' heartbeats and commands are not held up behind it.
        """
        if collect is not None:
            gc.collect(collect)
        if self._trim is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._trim(0)
            return
        loop.run_in_executor(None, self._trim, 0)

    def cancel(self) -> None:
        """Drop a planned pass (at stop)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
