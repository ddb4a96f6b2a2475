"""The metrics history: the ``metrics_samples`` table on SQLite and PostgreSQL, downsampling, and the sampler
of a real control plane serving GetMetricsHistory and GetResources."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text

from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from controlplane.app import App
from controlplane.observability.history import SERIES, downsample
from controlplane.storage.base import KeepsMetricsHistory, MetricsHistory, ReportsSize
from controlplane.storage.sql import SqlBackend, SqlBackendFactory
from tests.harness.server import Stubs, empty_postgres, make_settings, start_app, wait_for


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlBackend]:
    """A migrated backend with no samples: a fresh SQLite file, or the session's PostgreSQL database."""
    url = (
        f"sqlite:///{tmp_path / 'maos.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    store = SqlBackendFactory().open(url)
    store.migrate()
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM metrics_samples"))
    yield store
    store.close()


def test_the_backend_offers_the_capabilities(backend: SqlBackend) -> None:
    assert isinstance(backend, KeepsMetricsHistory) and isinstance(backend, ReportsSize)
    assert isinstance(backend.metrics_history(), MetricsHistory)
    assert backend.database_size_bytes() > 0


def test_samples_round_trip_oldest_first_and_are_pruned(backend: SqlBackend) -> None:
    history = backend.metrics_history()
    for when in (100.0, 200.0, 300.0, 400.0):
        history.put_metrics_sample(when, "r1", {"maos_tasks_running": when / 100, "maos_cpu_percent": 1.5})
    history.put_metrics_sample(200.0, "r1", {"maos_tasks_running": 99.0})  # the same instant again: dropped
    history.put_metrics_sample(200.0, "r2", {"maos_tasks_running": 7.0})  # another replica's

    got = history.list_metrics_samples(150.0, 400.0, 100)
    assert [(t, v["maos_tasks_running"]) for t, v in got] == [(200.0, 2.0), (200.0, 7.0), (300.0, 3.0)]
    assert [t for t, _ in history.list_metrics_samples(0.0, 1e9, 2)] == [300.0, 400.0]  # the newest kept
    assert history.prune_metrics_samples(250.0) == 3
    assert [t for t, _ in history.list_metrics_samples(0.0, 1e9, 100)] == [300.0, 400.0]


def test_downsampling_averages_gauges_and_keeps_the_last_counter() -> None:
    samples = [
        (t, {"maos_cpu_percent": float(t), "maos_rpc_calls_total": float(t * 10), "unknown": 1.0})
        for t in (0, 1, 2, 3, 8, 9)
    ]
    series = downsample(samples, since=0.0, until=10.0, points=2)
    assert series["maos_cpu_percent"] == [(3, 1.5), (9, 8.5)]
    assert series["maos_rpc_calls_total"] == [(3, 30.0), (9, 90.0)]
    assert "unknown" not in series
    assert set(downsample(samples, 0.0, 10.0, 5, category="rpc")) == {"maos_rpc_calls_total"}
    assert all(SERIES[name].type in ("gauge", "counter") for name in SERIES)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def sampling_plane(request: pytest.FixtureRequest, maos_home: Path) -> AsyncIterator[App]:
    """A control plane sampling every 0.1 s and keeping samples 1 h, on SQLite or PostgreSQL."""
    overrides = {"metrics.history.interval": 0.1, "metrics.history.retention": 3600}
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        overrides["database.primary_url"] = url
        SqlBackendFactory().open(url).migrate()
        empty_postgres(url)
    app = await start_app(make_settings(maos_home, **overrides))
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


async def test_a_control_plane_samples_keeps_and_serves_its_history(sampling_plane: App) -> None:
    stubs = Stubs(sampling_plane.address)
    try:

        def request(**fields: object) -> system_pb.GetMetricsHistoryRequest:
            r = system_pb.GetMetricsHistoryRequest(**fields)
            r.timeframe.FromSeconds(10)  # with 1000 points: 10 ms buckets, one sample each
            return r

        async def sampled() -> bool:
            return (await stubs.system.GetMetricsHistory(request())).samples >= 3

        await wait_for(sampled, 15, interval=0.05, message="three samples")
        answer = await stubs.system.GetMetricsHistory(request(category="tasks", max_points=1000))
        assert {s.category for s in answer.series} == {"tasks"}
        assert answer.interval.ToMilliseconds() == 100 and answer.retention.seconds == 3600
        running = next(s for s in answer.series if s.name == "maos_tasks_running")
        assert running.type == "gauge" and len(running.points) == answer.samples

        # A sample older than the retention is deleted by the next sampling round.
        history = sampling_plane.storage.backend.metrics_history()
        await sampling_plane.storage.call(history.put_metrics_sample, time.time() - 7200, "old", {"x": 1.0})

        async def pruned() -> bool:
            rows = await sampling_plane.storage.call(
                history.list_metrics_samples, 0.0, time.time() - 3600, 10
            )
            return rows == []

        await wait_for(pruned, 15, interval=0.05, message="the old sample pruned")

        for fields, timeframe, text_ in [
            ({"category": "disks"}, 600, "unknown category 'disks'"),
            ({}, 7200, "longer than the history kept (metrics.history.retention 3600 s)"),
            ({"max_points": 5000}, 600, "max_points is at most 1000"),
        ]:
            bad = system_pb.GetMetricsHistoryRequest(**fields)
            bad.timeframe.FromSeconds(timeframe)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stubs.system.GetMetricsHistory(bad)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and text_ in caught.value.details()

        resources = await stubs.system.GetResources(system_pb.GetResourcesRequest())
        assert resources.control_plane.measured and resources.database_size_bytes > 0
    finally:
        await stubs.close()


async def test_history_off_is_a_precondition(maos_home: Path) -> None:
    app = await start_app(make_settings(maos_home, **{"metrics.history.interval": 0}))
    stubs = Stubs(app.address)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.system.GetMetricsHistory(system_pb.GetMetricsHistoryRequest())
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "metrics history is off (metrics.history.interval is 0)" in caught.value.details()
        rows = await app.storage.call(
            app.storage.backend.metrics_history().list_metrics_samples, 0.0, 1e12, 10
        )
        assert rows == []  # and nothing was sampled
    finally:
        await stubs.close()
        await app.stop(grace=1.0)
