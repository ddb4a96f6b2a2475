"""Periodic jobs under database leases: one replica runs each, another takes over when it stops or dies."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from controlplane.app import App, build_app
from controlplane.checkpoints.interval import IntervalJob
from controlplane.config import Settings
from controlplane.periodic import PeriodicJob
from controlplane.replicas.leases import JobLeases, LeasedJob
from controlplane.storage.replicas import LeaseGrant
from controlplane.storage.sql.backend import SqlBackend
from controlplane.storage.sql.plugin import SqlBackendFactory
from controlplane.storage.sql.replicas import SqlReplicaStore, replica_store
from tests.harness.server import ControlPlaneProcess, empty_postgres, make_settings, start_app, wait_for

JOBS = ("audit-retention", "checkpoints", "metrics-history")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlReplicaStore]:
    url = (
        f"sqlite:///{tmp_path / 'maos.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    backend = SqlBackendFactory().open(url)
    backend.migrate()
    if request.param == "postgresql":
        empty_postgres(url)
    assert isinstance(backend, SqlBackend)
    found = replica_store(backend)
    assert found is not None
    yield found
    backend.close()


def test_a_lease_has_one_holder_and_a_new_token_per_holder(store: SqlReplicaStore) -> None:
    a = store.acquire_lease("job", "a", 100.0, 10.0)
    assert a == LeaseGrant("job", "a", 1, 110.0)
    assert store.acquire_lease("job", "b", 105.0, 10.0) is None  # a's lease runs
    renewed = store.renew_lease(a, 108.0, 10.0)
    assert renewed == LeaseGrant("job", "a", 1, 118.0)
    assert store.acquire_lease("job", "b", 117.9, 10.0) is None
    b = store.acquire_lease("job", "b", 118.0, 10.0)  # expired: b takes it, with a larger token
    assert b == LeaseGrant("job", "b", 2, 128.0)
    assert store.renew_lease(renewed, 119.0, 10.0) is None  # a's stale grant is fenced off
    assert not store.fenced(renewed, 119.0) and store.fenced(b, 119.0)
    store.release_lease(renewed)  # a stale release changes nothing
    assert store.list_leases(120.0) == [b]
    store.release_lease(b)
    assert store.list_leases(120.0) == []
    assert store.acquire_lease("job", "a", 120.0, 10.0) == LeaseGrant("job", "a", 3, 130.0)


def test_two_first_takers_get_one_lease(store: SqlReplicaStore) -> None:
    """Both see no row; the second insert finds the first's and waits, not fails."""
    engine = store._reads  # its events reach the writes' option engine too
    taken: list[LeaseGrant | None] = []

    def first_taker_wins(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("INSERT INTO job_leases") and not taken:
            taken.append(None)  # once: b inserts its row between a's look and a's insert
            taken[0] = store.acquire_lease("job", "b", 100.0, 10.0)

    if engine.dialect.name == "sqlite":  # one writer at a time: the race cannot happen there
        assert store.acquire_lease("job", "a", 100.0, 10.0) == LeaseGrant("job", "a", 1, 110.0)
        assert store.acquire_lease("job", "b", 100.0, 10.0) is None
        return
    sqlalchemy.event.listen(engine, "before_cursor_execute", first_taker_wins)
    try:
        assert store.acquire_lease("job", "a", 100.0, 10.0) is None  # held by b: not an error
    finally:
        sqlalchemy.event.remove(engine, "before_cursor_execute", first_taker_wins)
    assert taken == [LeaseGrant("job", "b", 1, 110.0)]
    assert store.list_leases(105.0) == taken


class _Direct:
    """A storage executor calling the store on the loop's thread."""

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)


async def test_a_holder_whose_lease_was_taken_over_does_not_run(store: SqlReplicaStore) -> None:
    events: list[str] = []

    async def step() -> None:
        events.append("run")

    job = PeriodicJob("counted", step, 0.01)
    leased = JobLeases(_Direct(), store, "a", ttl=30.0).wrap("job", job)  # renewals 10 s apart
    confirm = leased.confirm

    async def confirm_noted() -> bool:
        held = await confirm()
        events.append(f"confirmed {held}")
        return held

    job.guard = confirm_noted
    leased.start()
    try:
        await wait_for(lambda: "run" in events, timeout=5, message="a running the job")
        grant = leased.grant
        assert grant is not None
        taken = store.acquire_lease("job", "b", grant.expires_at, 30.0)  # a stalled past its ttl: b took it
        assert taken is not None and taken.token == grant.token + 1
        await wait_for(lambda: events.count("confirmed False") >= 3, timeout=5, message="skipped runs")
        assert leased.grant is grant  # a's next lease round has not come: only the check keeps it off
        assert "run" not in events[events.index("confirmed False") :]
    finally:
        await leased.stop()
    assert store.list_leases(grant.expires_at) == [taken]  # a's stale release changes nothing


def _holders(app: App) -> dict[str, str]:
    leases = app.pm.get_plugin("maos-replicas").registry.leases
    return {name: app.engine.replica for name, job in leases.jobs.items() if job.grant is not None}


@pytest.fixture
async def pg_settings(tmp_path: Path, postgres_url: str) -> Callable[..., Settings]:
    build_app(make_settings(tmp_path / "migrate", **{"database.primary_url": postgres_url})).storage.close()
    empty_postgres(postgres_url)

    def make(name: str, **overrides: Any) -> Settings:
        return make_settings(
            tmp_path / name,
            **{
                "database.primary_url": postgres_url,
                "replicas.job_lease_ttl": 0.6,
                "replicas.heartbeat_interval": 0.2,
                "metrics.history.interval": 0.1,
                **overrides,
            },
        )

    return make


def _sample_replicas(url: str, since: float) -> set[str]:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                r[0]
                for r in conn.execute(
                    sqlalchemy.text("SELECT DISTINCT replica FROM metrics_samples WHERE time >= :t"),
                    {"t": since},
                )
            }
    finally:
        engine.dispose()


async def test_one_replica_runs_each_job_and_another_takes_over(
    pg_settings: Callable[..., Settings], postgres_url: str
) -> None:
    a = await start_app(pg_settings("a"))
    await wait_for(lambda: len(_holders(a)) == len(JOBS), timeout=5, message="a holding every job")
    b = await start_app(pg_settings("b"))
    try:
        assert isinstance(a.retention, LeasedJob) and isinstance(b.retention, LeasedJob)
        since = time.time()
        b_jobs = b.pm.get_plugin("maos-replicas").registry.leases.jobs
        for _ in range(4):  # several lease rounds of b (one each ttl / 3): it never takes a job a holds
            rounds = {name: job.rounds for name, job in b_jobs.items()}
            await wait_for(
                lambda rounds=rounds: all(job.rounds > rounds[name] for name, job in b_jobs.items()),
                timeout=5,
                message="a lease round of b",
            )
            assert _holders(b) == {}
        both = {a.engine.replica, b.engine.replica}  # every replica samples; only the pruning is leased
        await wait_for(lambda: _sample_replicas(postgres_url, since) == both, timeout=5, message="samples")

        store = replica_store(b.storage.backend)
        assert store is not None
        before = time.time()  # a's leases, renewed each ttl / 3, run past this unless released
        await a.stop(grace=1.0)  # a clean stop releases the leases: b takes them at its next round
        assert [g for g in store.list_leases(before) if g.holder == a.engine.replica] == []
        await wait_for(lambda: len(_holders(b)) == len(JOBS), timeout=5, message="b holding every job")
        moved = time.time()
        await wait_for(
            lambda: _sample_replicas(postgres_url, moved) == {b.engine.replica},
            timeout=5,
            message="b sampling",
        )
        history = b.pm.get_plugin("maos-metrics-history").sampler
        assert isinstance(history.pruning, LeasedJob) and history.pruning.grant is not None
    finally:
        await a.stop(grace=1.0)
        await b.stop(grace=1.0)


async def test_jobs_move_when_their_holder_is_killed(
    pg_settings: Callable[..., Settings], postgres_url: str, tmp_path: Path
) -> None:
    holder = ControlPlaneProcess(
        tmp_path / "killed",
        MAOS_DATABASE_PRIMARY_URL=postgres_url,
        MAOS_REPLICAS_JOB_LEASE_TTL="1.5",
        MAOS_METRICS_HISTORY_INTERVAL="0.1",
    )
    holder.start()
    try:
        await holder.wait_ready()
        backend = SqlBackendFactory().open(postgres_url)
        store = replica_store(backend)
        assert store is not None
        await wait_for(
            lambda: {g.name for g in store.list_leases(time.time())} == set(JOBS),
            timeout=10,
            message="the process holding every job",
        )
        [process_replica] = {g.holder for g in store.list_leases(time.time())}
        b = await start_app(pg_settings("b", **{"replicas.job_lease_ttl": 1.5}))
        try:
            assert _holders(b) == {}
            holder.kill()  # SIGKILL: no release; the leases expire
            killed = time.monotonic()
            await wait_for(lambda: len(_holders(b)) == len(JOBS), timeout=10, message="b taking every job")
            took = time.monotonic() - killed
            assert took <= 1.5 + 0.5 + 0.5  # the ttl, one round of b (ttl / 3), slack for a loaded machine
            grants = store.list_leases(time.time())
            assert {g.holder for g in grants} == {b.engine.replica} != {process_replica}
            assert all(g.token >= 2 for g in grants)  # new holder, new fencing token
        finally:
            await b.stop(grace=1.0)
            backend.close()
    finally:
        holder.stop()


def test_replica_rows_register_heartbeat_and_prune(store: SqlReplicaStore) -> None:
    from controlplane.storage.replicas import ReplicaRow

    row = ReplicaRow("cp-1", "10.0.0.1:7100", "0.1.0", 100.0, 100.0, {"agents": 2})
    assert store.register_replica(row, live_after=90.0) is None
    in_the_way = store.register_replica(ReplicaRow("cp-1", "10.0.0.2:7100", "0.1.0", 105.0, 105.0), 95.0)
    assert in_the_way is not None and in_the_way.address == "10.0.0.1:7100"  # live: kept
    assert store.heartbeat_replica("cp-1", 110.0, {"agents": 3, "jobs": ["checkpoints"]})
    [seen] = store.list_replicas()
    assert (seen.heartbeat_at, seen.details) == (110.0, {"agents": 3, "jobs": ["checkpoints"]})
    # silent since 110: a new process with the same id replaces it after the bound
    assert store.register_replica(ReplicaRow("cp-1", "10.0.0.2:7100", "0.1.0", 200.0, 200.0), 150.0) is None
    assert [r.address for r in store.list_replicas()] == ["10.0.0.2:7100"]
    store.acquire_lease("checkpoints", "cp-1", 200.0, 10.0)
    assert store.prune_replicas(before=150.0) == 0
    assert store.prune_replicas(before=250.0) == 1
    assert not store.heartbeat_replica("cp-1", 251.0, {})  # gone: the registry registers again
    store.register_replica(ReplicaRow("cp-2", "a:1", "0.1.0", 1.0, 1.0), 0.0)
    store.acquire_lease("audit-retention", "cp-2", 200.0, 10.0)
    store.deregister_replica("cp-2")  # a clean stop releases its leases at once
    assert [g.name for g in store.list_leases(201.0)] == ["checkpoints"]


async def test_an_automatic_checkpoint_is_skipped_once_the_lease_was_taken_over(
    store: SqlReplicaStore, caplog: pytest.LogCaptureFixture
) -> None:
    taken: list[dict[str, Any]] = []

    class Checkpoints:
        async def create(self, **kwargs: Any) -> None:
            taken.append(kwargs)

    job = IntervalJob(Checkpoints(), 0.01)  # type: ignore[arg-type]
    leased = JobLeases(_Direct(), store, "a", ttl=30.0).wrap("checkpoints", job)
    leased.start()
    try:
        await wait_for(lambda: taken, timeout=5, message="a taking checkpoints")
        grant = leased.grant
        assert grant is not None
        assert store.acquire_lease("checkpoints", "b", grant.expires_at, 30.0) is not None
        skipped = "the checkpoints lease is no longer held here; skipped"
        await wait_for(lambda: caplog.text.count(skipped) >= 3, timeout=5, message="skipped checkpoints")
        count = len(taken)
        await wait_for(lambda: caplog.text.count(skipped) >= 6, timeout=5, message="more skipped checkpoints")
        assert len(taken) == count  # none taken since the takeover was seen
    finally:
        await leased.stop()
