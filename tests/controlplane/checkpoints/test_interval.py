"""The automatic checkpoint job keeps to ``checkpoints.cpu_budget``: a long checkpoint spaces the next."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from controlplane.checkpoints.interval import IntervalJob, next_wait
from controlplane.config import known_options, parse_value
from controlplane.errors import InvalidArgument, MaosError
from tests.harness.server import make_settings, start_app


def test_next_wait_keeps_the_interval_for_quick_checkpoints_and_spaces_long_ones() -> None:
    assert next_wait(30.0, 1.0, 0.05) == 30.0
    assert next_wait(30.0, 1.5, 0.05) == 30.0
    assert next_wait(30.0, 10.0, 0.05) == pytest.approx(200.0)
    assert next_wait(30.0, 10.0, 1.0) == 30.0
    assert next_wait(5.0, 10.0, 1.0) == 10.0  # never more than one checkpoint at a time


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0


class _Checkpoints:
    """Takes each checkpoint in the given number of seconds of a fake clock (or fails it)."""

    def __init__(self, clock: _Clock, durations: list[float], fail: set[int] | None = None):
        self.clock, self.durations, self.fail = clock, durations, fail or set()
        self.taken = 0

    async def create(self, **kwargs: Any) -> None:
        assert kwargs == {"display_name": "automatic", "automatic": True}
        self.clock.now += self.durations[self.taken]
        self.taken += 1
        if self.taken in self.fail:
            raise MaosError("disk full")


async def _waits(job: IntervalJob, count: int) -> list[float]:
    """The waits the job asks for, until it has asked ``count`` times."""
    asked: list[float] = []
    enough = asyncio.Event()

    async def sleep(seconds: float) -> None:
        asked.append(seconds)
        if len(asked) == count:
            enough.set()
            await asyncio.Future()  # the job waits here until stopped
        await asyncio.sleep(0)

    job._sleep = sleep
    job.start()
    try:
        await asyncio.wait_for(enough.wait(), 10)
    finally:
        await job.stop()
    return asked


async def test_a_long_checkpoint_spaces_the_next_and_a_quick_one_restores_the_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    checkpoints = _Checkpoints(clock, [0.5, 10.0, 0.5, 4.0])
    versions = iter(range(100))
    job = IntervalJob(checkpoints, 30.0, lambda: next(versions), 0.05, clock=lambda: clock.now)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="controlplane.checkpoints.interval"):
        asked = await _waits(job, 5)
    assert asked == [30.0, 30.0, pytest.approx(200.0), 30.0, pytest.approx(80.0)]
    assert checkpoints.taken == 4
    assert "the automatic checkpoint took 10.0 s: the next in 200 s, not 30 s" in caplog.text


async def test_nothing_changed_waits_the_interval_and_a_failed_checkpoint_still_counts() -> None:
    clock = _Clock()
    checkpoints = _Checkpoints(clock, [20.0, 0.1], fail={1})
    versions = iter([1, 1, 1, 1])  # a failed checkpoint is tried again even though nothing changed since
    job = IntervalJob(checkpoints, 30.0, lambda: next(versions), 0.1, clock=lambda: clock.now)  # type: ignore[arg-type]
    asked = await _waits(job, 4)
    # A failed checkpoint that took 20 s still spaces the next try; once taken, an unchanged state
    # takes none and waits the interval.
    assert asked == [30.0, pytest.approx(200.0), 30.0, 30.0]
    assert checkpoints.taken == 2


@pytest.mark.parametrize("value", ["0", "-0.5", "1.5", "lots"])
def test_a_bad_cpu_budget_is_refused_with_the_key(value: str) -> None:
    with pytest.raises(InvalidArgument, match="checkpoints.cpu_budget"):
        parse_value("checkpoints.cpu_budget", value, known_options())


async def test_the_running_job_uses_the_setting(maos_home: Path) -> None:
    settings = make_settings(maos_home, **{"checkpoints.cpu_budget": 0.25, "checkpoints.interval": 60})
    app = await start_app(settings)
    try:
        job = app.pm.get_plugin("maos-checkpoints").job
        assert (job.interval, job.cpu_budget, job.wait) == (60.0, 0.25, 60.0)
    finally:
        await app.stop(grace=1.0)
