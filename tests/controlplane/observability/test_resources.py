"""Process readings from /proc and the CPU meter's percentages."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from controlplane.observability.resources import MIN_CPU_WINDOW, CpuMeter, cpu_count, host, read_process


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_busy_process_reads_as_busy_and_an_idle_one_as_idle() -> None:
    idle = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        meter = CpuMeter()
        meter.read([os.getpid(), idle.pid])
        started, cpu = time.monotonic(), sum(os.times()[:2])
        _spin(0.5)  # busy, though other processes on the machine may get some of the core meanwhile
        me, other = meter.read([os.getpid(), idle.pid])
        expected = 100 * (sum(os.times()[:2]) - cpu) / (time.monotonic() - started) / cpu_count()
        assert me.cpu_percent > 0 and abs(me.cpu_percent - expected) < 5 + 0.2 * expected, (me, expected)
        assert other.measured and other.cpu_percent < me.cpu_percent
        assert me.memory_bytes > 10_000_000 and 0 < me.memory_percent < 100 and me.threads >= 1
        again = meter.read([os.getpid()])[0]  # within MIN_CPU_WINDOW: the same figure, not noise
        assert again.cpu_percent == me.cpu_percent
    finally:
        idle.kill()
        idle.wait()
    assert MIN_CPU_WINDOW > 0


def test_a_process_that_is_gone_is_not_measured() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    reading = read_process(gone.pid)
    assert not reading.measured and reading.memory_bytes == 0


def test_the_machine() -> None:
    machine = host()
    assert machine.cpu_count >= 1 and machine.memory_total_bytes >= machine.memory_available_bytes > 0
    assert len(machine.load_average) in (0, 3)
