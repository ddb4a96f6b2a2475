"""Memory is given back once the records in memory fall far below their peak, and not before."""

from __future__ import annotations

import asyncio
import threading

from controlplane.scheduler import giveback
from controlplane.scheduler.giveback import MIN_DROP, GiveBack


async def test_a_large_drop_gives_memory_back_once_and_a_small_one_does_not(monkeypatch) -> None:
    monkeypatch.setattr(giveback, "DELAY", 0.0)
    loop = asyncio.get_running_loop()
    size = [3 * MIN_DROP]
    compacted: list[int] = []
    passed = asyncio.Event()

    def before() -> None:
        compacted.append(size[0])
        passed.set()

    back = GiveBack(lambda: size[0], before)
    back.observe(loop)  # the peak

    size[0] = 2 * MIN_DROP  # a third gone: not yet half
    back.observe(loop)
    assert not back.planned and back.passes == 0 and not compacted

    size[0] = MIN_DROP  # down to a third of the peak
    back.observe(loop)
    back.observe(loop)  # coalesced: one pass
    assert back.planned
    async with asyncio.timeout(5):
        await passed.wait()
    assert not back.planned and back.passes == 1 and compacted == [MIN_DROP]

    size[0] = MIN_DROP // 3  # from the new peak, a drop smaller than MIN_DROP: nothing
    back.observe(loop)
    assert not back.planned and back.passes == 1


async def test_cancel_drops_a_planned_pass() -> None:
    loop = asyncio.get_running_loop()
    size = [2 * MIN_DROP]
    back = GiveBack(lambda: size[0])
    back.observe(loop)
    size[0] = 0
    back.observe(loop)
    assert back.planned
    back.cancel()
    assert not back.planned and back.passes == 0


async def test_trim_runs_off_the_loop_thread_and_collects_only_the_generation_asked(monkeypatch) -> None:
    loop_thread = threading.get_ident()
    trimmed: list[int] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    def fake_trim(pad: int) -> int:
        trimmed.append(threading.get_ident())
        loop.call_soon_threadsafe(done.set)
        return 1

    collected: list[int] = []
    monkeypatch.setattr(giveback.gc, "collect", lambda generation=2: collected.append(generation) or 0)
    back = GiveBack(lambda: 0)
    back._trim = fake_trim
    back.trim(collect=1)
    async with asyncio.timeout(5):
        await done.wait()
    assert collected == [1]  # never a full collection
    assert trimmed and trimmed[0] != loop_thread
    assert back.passes == 0  # not a give-back pass: the peak is untouched
