"""Heartbeats on a wall-clock slot grid: one interval apart once on it, never more than one interval."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from pathlib import Path
from typing import Any

import pytest

from agent_sdk.builtin import NoopAgent
from agent_sdk.worker import HEARTBEAT_SLOTS, Worker, heartbeat_due, next_heartbeat
from tests.harness.server import make_settings, start_app, wait_for


@pytest.mark.parametrize("interval", [5.0, 0.1, 30.0])
@pytest.mark.parametrize("start", [1_000_000.0, 1_000_000.123456, 1_000_004.999])
def test_beats_fall_on_slot_boundaries_one_interval_apart(interval: float, start: float) -> None:
    slot = interval / HEARTBEAT_SLOTS
    now, beats = start, []
    for _ in range(5):
        wait = next_heartbeat(interval, now)
        assert interval - slot < wait <= interval
        now += wait
        beats.append(now)
        assert abs(now / slot - round(now / slot)) < 1e-3  # on the grid
    gaps = [b - a for a, b in zip(beats, beats[1:], strict=False)]
    assert all(abs(g - interval) < 1e-6 for g in gaps)


def test_agents_that_start_apart_keep_their_own_slots() -> None:
    interval = 5.0
    first = 1_000_000.0 + next_heartbeat(interval, 1_000_000.0)
    second = 1_000_000.7 + next_heartbeat(interval, 1_000_000.7)
    assert 0.5 <= second - first < 1.0  # two slots apart, not merged into one


def _sent(interval: float, idle_interval: float, busy_at: set[int], beats: int) -> list[int]:
    """The slots (numbered) whose heartbeat goes out, as the worker's loop decides."""
    sent, last, free_sent = [], -math.inf, -1
    for n in range(beats):
        free = 0 if n in busy_at else 1
        idle = n not in busy_at and free == free_sent
        if heartbeat_due(idle, n * interval - last, interval, idle_interval):
            sent.append(n)
            last, free_sent = n * interval, free
    return sent


def test_an_idle_agent_beats_every_idle_interval() -> None:
    assert _sent(5.0, 30.0, set(), 20) == [0, 6, 12, 18]


def test_a_busy_agent_beats_every_interval_and_a_change_of_free_slots_at_once() -> None:
    # Busy in slots 3-5 (every beat goes), free again at 6 (a change: it goes), then idle.
    assert _sent(5.0, 30.0, {3, 4, 5}, 14) == [0, 3, 4, 5, 6, 12]


def test_without_an_idle_interval_every_beat_goes() -> None:
    assert _sent(5.0, 5.0, set(), 4) == [0, 1, 2, 3]


async def test_idle_beats_on_a_real_control_plane_are_idle_interval_apart(maos_home: Path) -> None:
    """Registered carries the idle interval, and the worker's idle heartbeats keep to it."""
    app = await start_app(
        make_settings(
            maos_home, **{"scheduler.heartbeat_interval": 0.1, "scheduler.idle_heartbeat_interval": 0.5}
        )
    )
    beats: list[float] = []
    original = app.engine.heartbeat

    def counting(session: Any, running: Any, draining: bool = False, free_slots: int | None = None) -> None:
        beats.append(time.monotonic())
        original(session, running, draining, free_slots)

    app.engine.heartbeat = counting  # type: ignore[method-assign]
    worker = Worker(NoopAgent(), app.address)
    run = asyncio.create_task(worker.run())
    try:
        await wait_for(lambda: len(beats) >= 4, 10, message="four heartbeats")
        assert worker._idle_heartbeat_interval == 0.5
        gaps = [b - a for a, b in zip(beats[1:], beats[2:], strict=False)]  # the first may be early
        assert all(g >= 0.4 for g in gaps), gaps
    finally:
        await worker.shutdown()
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await run
        await app.stop()
