"""Memory is given back once the records in memory fall far below their peak, and not before."""

from __future__ import annotations

import asyncio

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
