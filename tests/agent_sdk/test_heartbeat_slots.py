"""Heartbeats on a wall-clock slot grid: one interval apart once on it, never more than one interval."""

from __future__ import annotations

import pytest

from agent_sdk.worker import HEARTBEAT_SLOTS, next_heartbeat


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
