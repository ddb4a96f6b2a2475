"""Reports on work another replica may still hold: one claim per task, the other reports wait for it."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controlplane.scheduler.agent_side import MAX_WAITING_REPORTS
from controlplane.scheduler.commands import Ref
from tests.controlplane.scheduler.test_engine_unit import _engine, _stop_engines  # noqa: F401
from tests.harness.server import wait_for


async def test_reports_on_a_task_being_claimed_wait_for_that_claim_and_are_handled_once_after_it(
    tmp_path: Path,
) -> None:
    engine = await _engine(tmp_path)
    side = engine.agent_side
    gate, claims = asyncio.Event(), []

    async def claim(task_id: str) -> bool:
        claims.append(task_id)
        await gate.wait()
        return False  # still held elsewhere: the reports are answered as they stand

    side.claim, side.claim_patience = claim, 0
    first, second = Ref("t1", "s0", 0, 3), Ref("t1", "s1", 0, 3)
    handled: list[tuple[str, bool]] = []

    def handle(ref: Ref) -> None:  # what a report's handler does when run again: no new claim now
        handled.append((ref.subtask_id, side._claimable(ref)))

    assert side._claimable(first)
    side._claim_then(first, lambda: handle(first), agent_id="agents/a")
    assert side._claimable(second)  # the second report waits for the claim in progress ...
    side._claim_then(second, lambda: handle(second), agent_id="agents/b")
    await wait_for(lambda: claims == ["t1"], 10, message="the claim to start")
    assert handled == []  # ... and is not answered before it ends
    gate.set()
    await wait_for(lambda: len(handled) == 2, 10, message="both reports handled after the claim")
    assert handled == [("s0", False), ("s1", False)]
    assert claims == ["t1"]  # one claim for both
    assert side._claimable(first)  # a later report may claim again


async def test_the_reports_waiting_for_one_claim_are_bounded(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    side = engine.agent_side
    gate = asyncio.Event()

    async def claim(task_id: str) -> bool:
        await gate.wait()
        return False

    side.claim, side.claim_patience = claim, 0
    ref = Ref("t2", "s0", 0, 1)
    for _ in range(MAX_WAITING_REPORTS):
        assert side._claimable(ref)
        side._claim_then(ref, lambda: None)
    assert not side._claimable(ref)  # past the bound a report is answered from storage at once
    gate.set()
    await wait_for(lambda: side._claimable(ref), 10, message="the claim to end")
