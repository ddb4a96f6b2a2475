"""The metrics history: the summary figures sampled every ``metrics.history.interval``, kept in the database.

:class:`HistorySampler` is a periodic job. Its unit of work, :meth:`HistorySampler.sample_once`
(sample, store, prune), is safe to run from any replica. Every replica samples (a sample is
keyed by replica and time); with several replicas the pruning moves to a job of its own
(:meth:`HistorySampler.pruning_job`, set as ``pruning``) that runs under a lease on one
replica at a time. Reading
(:func:`downsample`) averages gauges and keeps the last value of counters in each
time bucket, so a week of minute samples becomes a few dozen points.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from controlplane.errors import FailedPrecondition, InvalidArgument
from controlplane.periodic import PeriodicJob
from controlplane.storage.base import KeepsMetricsHistory

log = logging.getLogger(__name__)

#: The categories of ``maos metrics --category`` (and of GetMetricsSummary).
CATEGORIES = ("system", "tasks", "agents", "rpc", "storage")
#: Points per series when the request names none, and the most it may ask for.
DEFAULT_POINTS, MAX_POINTS = 60, 1000
#: Timeframe when the request names none.
DEFAULT_TIMEFRAME = 86400.0
#: Most samples read for one answer (a sample a second for about three hours).
MAX_SAMPLES = 10_000


@dataclass(frozen=True)
class Series:
    """What one figure of a sample means."""

    category: str
    help: str
    type: str = "gauge"


SERIES: dict[str, Series] = {
    "maos_cpu_percent": Series(
        "system", "CPU of the control plane and its supervised agents, % of the machine."
    ),
    "maos_memory_bytes": Series("system", "Resident memory of the control plane and its supervised agents."),
    "maos_memory_percent": Series("system", "That memory in % of the machine's."),
    "maos_connections": Series("system", "Open sockets of the control plane."),
    "maos_uptime_seconds": Series("system", "Seconds since the control plane started."),
    "maos_tasks_pending": Series("tasks", "Tasks PENDING."),
    "maos_tasks_queued": Series("tasks", "Tasks QUEUED."),
    "maos_tasks_running": Series("tasks", "Tasks RUNNING."),
    "maos_tasks_completed": Series("tasks", "Tasks COMPLETED (stored)."),
    "maos_tasks_failed": Series("tasks", "Tasks FAILED (stored)."),
    "maos_tasks_cancelled": Series("tasks", "Tasks CANCELLED (stored)."),
    "maos_tasks_submitted_total": Series(
        "tasks", "Tasks accepted since the control plane started.", "counter"
    ),
    "maos_subtasks_queued": Series("tasks", "Subtasks waiting for an agent."),
    "maos_agents_connected": Series("agents", "Connected agents."),
    "maos_agent_slots_free": Series("agents", "Free assignment slots of connected agents."),
    "maos_agent_processes": Series("agents", "Supervised agent processes running."),
    "maos_rpc_calls_total": Series("rpc", "RPCs completed since the control plane started.", "counter"),
    "maos_rpc_errors_total": Series("rpc", "RPCs that ended with a status other than OK.", "counter"),
    "maos_database_size_bytes": Series("storage", "Size of the database."),
    "maos_storage_commits_total": Series(
        "storage", "Group commits since the control plane started.", "counter"
    ),
}


@dataclass
class HistoryAnswer:
    """Series of a timeframe, downsampled: name -> [(bucket end time, value)], and the samples read."""

    series: dict[str, list[tuple[float, float]]]
    samples: int


def check_category(category: str) -> None:
    """INVALID_ARGUMENT naming the known categories unless ``category`` is one (or empty)."""
    if category and category not in CATEGORIES:
        raise InvalidArgument(
            f"unknown category {category!r}; known: {', '.join(CATEGORIES)}", field="category"
        )


def downsample(
    samples: list[tuple[float, dict[str, float]]], since: float, until: float, points: int, category: str = ""
) -> dict[str, list[tuple[float, float]]]:
    """At most ``points`` points per series over ``[since, until)``: gauges averaged, counters' last value.

    A point's time is the time of the last sample in its bucket; empty buckets give no point.
    """
    width = (until - since) / points
    buckets: dict[str, dict[int, list[tuple[float, float]]]] = {}
    for when, values in samples:
        index = min(points - 1, int((when - since) / width)) if width > 0 else 0
        for name, value in values.items():
            meaning = SERIES.get(name)
            if meaning is None or (category and meaning.category != category):
                continue
            buckets.setdefault(name, {}).setdefault(index, []).append((when, float(value)))
    out: dict[str, list[tuple[float, float]]] = {}
    for name, meaning in SERIES.items():
        if name not in buckets:
            continue
        counter = meaning.type == "counter"
        out[name] = [
            (group[-1][0], group[-1][1] if counter else sum(v for _, v in group) / len(group))
            for _, group in sorted(buckets[name].items())
        ]
    return out


class HistorySampler:
    """Samples the figures on an interval, stores them and prunes what is older than the retention.

    Args:
        storage: The storage executor (its backend must offer ``KeepsMetricsHistory`` to keep anything).
        figures: Produces one sample's figures (``Observer.figures``).
        replica: This replica's id, stored with each sample.
        interval: Seconds between samples; 0 disables the job.
        retention: Seconds a sample is kept.
    """

    def __init__(
        self,
        storage: Any,
        figures: Callable[[], Awaitable[dict[str, float]]],
        replica: str,
        interval: float,
        retention: float,
    ):
        self.storage = storage
        self.figures = figures
        self.replica = replica
        self.interval = interval
        self.retention = retention
        #: The sampling loop.
        self.periodic = PeriodicJob("metrics history sample", self.sample_once, interval)
        #: The job pruning old samples when pruning runs apart from sampling (several replicas:
        #: under a lease), started and stopped with the sampler; None: each sample prunes.
        self.pruning: Any = None

    @property
    def store(self) -> object | None:
        """The backend's history store, or None when it keeps none."""
        backend = self.storage.backend
        return backend if isinstance(backend, KeepsMetricsHistory) else None

    def start(self) -> None:
        """Start sampling on the running loop (not when the interval is 0 or the backend keeps no history)."""
        if self.interval > 0 and self.store is not None:
            self.periodic.start()
            if self.pruning is not None:
                self.pruning.start()

    async def stop(self) -> None:
        """Stop sampling (a sample being stored is abandoned)."""
        await self.periodic.stop()
        if self.pruning is not None:
            await self.pruning.stop()

    def pruning_job(self) -> PeriodicJob:
        """A job pruning old samples every interval, for :attr:`pruning` (then samples do not prune)."""
        return PeriodicJob("metrics history prune", self.prune_once, self.interval)

    async def prune_once(self, when: float | None = None) -> None:
        """Delete the samples older than the retention, as of ``when`` (now)."""
        backend = self.store
        if backend is None:
            return
        when = time.time() if when is None else when
        history = await self.storage.call(backend.metrics_history)  # type: ignore[attr-defined]
        await self.storage.call(history.prune_metrics_samples, when - self.retention)

    async def sample_once(self, when: float | None = None) -> None:
        """Take one sample, store it, and delete samples older than the retention (unless :attr:`pruning` does)."""
        backend = self.store
        if backend is None:
            return
        values = await self.figures()
        when = time.time() if when is None else when
        history = await self.storage.call(backend.metrics_history)  # type: ignore[attr-defined]
        await self.storage.call(history.put_metrics_sample, when, self.replica, values)
        if self.pruning is None:
            await self.storage.call(history.prune_metrics_samples, when - self.retention)

    async def read(self, category: str, timeframe: float, points: int) -> HistoryAnswer:
        """The downsampled series of the last ``timeframe`` seconds.

        Raises:
            InvalidArgument: An unknown category, a timeframe of 0 or past the retention, too many points.
            FailedPrecondition: Sampling is off, or the backend keeps no history.
        """
        check_category(category)
        if timeframe <= 0:
            raise InvalidArgument(
                "timeframe must be more than 0 (for example 1h, 24h, 7d)", field="timeframe"
            )
        if timeframe > self.retention:
            raise InvalidArgument(
                f"timeframe {timeframe:g} s is longer than the history kept (metrics.history.retention "
                f"{self.retention:g} s)",
                field="timeframe",
            )
        if points > MAX_POINTS:
            raise InvalidArgument(f"max_points is at most {MAX_POINTS}", field="max_points")
        backend = self.store
        if backend is None:
            raise FailedPrecondition(
                f"the storage backend {self.storage.backend.kind!r} keeps no metrics history",
                reason="ERROR_REASON_NOT_SUPPORTED",
            )
        if self.interval <= 0:
            raise FailedPrecondition(
                "metrics history is off (metrics.history.interval is 0); set it and restart",
                reason="ERROR_REASON_NOT_SUPPORTED",
            )
        until = time.time() + 1e-3
        since = until - timeframe
        history = await self.storage.call(backend.metrics_history)  # type: ignore[attr-defined]
        samples = await self.storage.call(history.list_metrics_samples, since, until, MAX_SAMPLES)
        # Buckets span the samples there are: a history younger than the timeframe still shows its shape.
        start = samples[0][0] if samples else since
        series = downsample(samples, start, until, points or DEFAULT_POINTS, category)
        return HistoryAnswer(series, len(samples))
