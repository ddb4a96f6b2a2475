"""CPU, memory, threads, files and sockets of processes on this machine, read from ``/proc``.

No third-party dependency: on Linux everything comes from ``/proc``; elsewhere
only this process is measured (through :mod:`resource` and :func:`os.times`),
and other processes are reported as not measured.

CPU is given in percent of the machine's capacity (all cores together), so
100 means every core busy. A percentage needs two readings: :class:`CpuMeter`
keeps the previous reading of each process and averages since it (when it is
at least :data:`MIN_CPU_WINDOW` old), or since the process started on the
first reading.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Readings closer together than this reuse the earlier window (a percentage over a few ms is noise).
MIN_CPU_WINDOW = 0.2
_PROC = Path("/proc")


@dataclass
class ProcessReading:
    """What one process uses now."""

    pid: int
    cpu_seconds: float = 0.0
    memory_bytes: int = 0
    threads: int = 0
    open_files: int = 0
    connections: int = 0
    #: Seconds since the process started (0 when unknown).
    age: float = 0.0
    measured: bool = False
    cpu_percent: float = 0.0
    memory_percent: float = 0.0


@dataclass
class HostReading:
    """The machine."""

    cpu_count: int
    memory_total_bytes: int
    memory_available_bytes: int
    load_average: list[float] = field(default_factory=list)


def _clock_ticks() -> int:
    try:
        return os.sysconf("SC_CLK_TCK")
    except (ValueError, OSError, AttributeError):
        return 100


def _boot_time() -> float:
    try:
        for line in (_PROC / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def host() -> HostReading:
    """The machine's CPU count, memory and load."""
    total = available = 0
    try:
        info = {}
        for line in (_PROC / "meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            info[key] = int(rest.split()[0]) * 1024
        total, available = info.get("MemTotal", 0), info.get("MemAvailable", info.get("MemFree", 0))
    except (OSError, ValueError, IndexError):
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            total = 0
    try:
        load = list(os.getloadavg())
    except (OSError, AttributeError):
        load = []
    return HostReading(cpu_count(), total, available, load)


def _socket_and_file_counts(pid: int) -> tuple[int, int]:
    files = sockets = 0
    try:
        for entry in os.scandir(_PROC / str(pid) / "fd"):
            files += 1
            try:
                if os.readlink(entry.path).startswith("socket:"):
                    sockets += 1
            except OSError:
                continue
    except OSError:
        pass
    return files, sockets


def read_process(pid: int) -> ProcessReading:
    """What process ``pid`` uses now (``measured`` False when it cannot be read or is gone)."""
    proc = _PROC / str(pid)
    try:
        stat = (proc / "stat").read_text()
        statm = (proc / "statm").read_text().split()
    except OSError:
        return _self_reading(pid) if pid == os.getpid() else ProcessReading(pid)
    fields = stat.rsplit(")", 1)[1].split()
    ticks = _clock_ticks()
    # Fields after the command: state(0) ... utime(11) stime(12) ... num_threads(17) ... starttime(19).
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    boot = _boot_time()
    age = max(0.0, time.time() - (boot + int(fields[19]) / ticks)) if boot else 0.0
    files, sockets = _socket_and_file_counts(pid)
    return ProcessReading(
        pid,
        cpu_seconds=cpu,
        memory_bytes=int(statm[1]) * os.sysconf("SC_PAGE_SIZE"),
        threads=int(fields[17]),
        open_files=files,
        connections=sockets,
        age=age,
        measured=True,
    )


def _self_reading(pid: int) -> ProcessReading:
    """This process without ``/proc``: CPU from os.times, peak memory from getrusage."""
    times = os.times()
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        memory = peak if os.uname().sysname == "Darwin" else peak * 1024
    except (ImportError, OSError):
        memory = 0
    return ProcessReading(pid, cpu_seconds=times.user + times.system, memory_bytes=memory, measured=True)


class CpuMeter:
    """Turns successive readings into CPU and memory percentages (one meter per observer)."""

    def __init__(self) -> None:
        #: pid -> (monotonic time, cpu seconds, percent) of the window's start.
        self._last: dict[int, tuple[float, float, float]] = {}

    def read(self, pids: list[int], host_reading: HostReading | None = None) -> list[ProcessReading]:
        """Readings of ``pids`` with ``cpu_percent`` and ``memory_percent`` filled in."""
        machine = host_reading or host()
        readings, now = [], time.monotonic()
        for pid in pids:
            reading = read_process(pid)
            if reading.measured:
                reading.cpu_percent = self._percent(pid, now, reading, machine.cpu_count)
                if machine.memory_total_bytes:
                    reading.memory_percent = 100.0 * reading.memory_bytes / machine.memory_total_bytes
            readings.append(reading)
        for gone in set(self._last) - set(pids):
            del self._last[gone]
        return readings

    def _percent(self, pid: int, now: float, reading: ProcessReading, cores: int) -> float:
        last = self._last.get(pid)
        if last is not None and now - last[0] < MIN_CPU_WINDOW:
            return last[2]  # too close to the previous reading: keep its figure and its window
        if last is None or reading.cpu_seconds < last[1]:
            elapsed, used = reading.age, reading.cpu_seconds
        else:
            elapsed, used = now - last[0], reading.cpu_seconds - last[1]
        percent = min(100.0, 100.0 * used / elapsed / cores) if elapsed > 0 else 0.0
        self._last[pid] = (now, reading.cpu_seconds, percent)
        return percent
