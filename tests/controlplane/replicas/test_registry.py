"""The replica registry: register at start, heartbeat, deregister on stop, lost after silence; GetStatus."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from controlplane.app import App, build_app
from controlplane.config import Settings
from controlplane.errors import FailedPrecondition, InvalidArgument
from controlplane.replicas.registry import ReplicaRegistry, new_replica_id
from controlplane.storage.sql.replicas import replica_store
from tests.harness.server import Stubs, empty_postgres, make_settings, start_app, wait_for


def registry(app: App) -> ReplicaRegistry:
    return app.pm.get_plugin("maos-replicas").registry


def test_generated_replica_ids_are_readable_and_new_at_every_start() -> None:
    first, second = new_replica_id(), new_replica_id()
    assert first != second
    host, pid, tail = first.rsplit("-", 2)
    assert host and pid.isdigit() and len(tail) == 6
    assert new_replica_id("cp-1") == "cp-1"


async def _status(stubs: Stubs) -> system_pb.GetStatusResponse:
    return await stubs.system.GetStatus(system_pb.GetStatusRequest())


async def test_status_lists_this_replica_on_sqlite(maos_home: Path) -> None:
    app = await start_app(make_settings(maos_home, **{"replicas.heartbeat_interval": 0.1}))
    stubs = Stubs(app.address)
    try:
        status = await _status(stubs)
        [me] = status.replica_status
        assert me.id == app.engine.replica == status.replica
        assert (me.address, me.current, me.lost, me.version) == (app.address, True, False, status.version)
        assert (me.connected_agents, me.leases_held, list(me.jobs)) == (0, 0, [])
        first = me.heartbeat_time.ToDatetime()

        async def beat() -> bool:
            return (await _status(stubs)).replica_status[0].heartbeat_time.ToDatetime() > first

        await wait_for(beat, timeout=5, message="a heartbeat after the registration")
    finally:
        await stubs.close()
        await app.stop(grace=1.0)
    reopened = build_app(make_settings(maos_home))
    try:  # the clean stop deregistered it
        store = replica_store(reopened.storage.backend)
        assert await reopened.storage.call(store.list_replicas) == []
    finally:
        reopened.storage.close()


@pytest.fixture
async def pg_settings(tmp_path: Path, postgres_url: str) -> Callable[..., Settings]:
    """Settings of a replica on the session's PostgreSQL database, each in its own MAOS_HOME."""
    build_app(make_settings(tmp_path / "migrate", **{"database.primary_url": postgres_url})).storage.close()
    empty_postgres(postgres_url)

    def make(name: str, **overrides: Any) -> Settings:
        return make_settings(
            tmp_path / name,
            **{
                "database.primary_url": postgres_url,
                "replicas.heartbeat_interval": 0.2,
                "replicas.lost_after": 1.0,
                **overrides,
            },
        )

    return make


async def test_replicas_see_each_other_and_a_silent_one_is_lost(pg_settings: Callable[..., Settings]) -> None:
    a = await start_app(pg_settings("a"))
    b = await start_app(pg_settings("b"))
    stubs = Stubs(a.address)
    try:
        status = await _status(stubs)
        assert [(r.id, r.address, r.current, r.lost) for r in status.replica_status] == [
            (a.engine.replica, a.address, True, False),
            (b.engine.replica, b.address, False, False),
        ]
        await registry(b)._job.stop()  # b goes silent, as if killed: no heartbeat, no deregistration

        async def b_lost() -> bool:
            rows = {r.id: r for r in (await _status(stubs)).replica_status}
            return rows[b.engine.replica].lost and not rows[a.engine.replica].lost

        await wait_for(b_lost, timeout=5, message="b shown as lost")
        await b.stop(grace=1.0)  # a clean stop deletes its row
        assert [r.id for r in (await _status(stubs)).replica_status] == [a.engine.replica]
    finally:
        await stubs.close()
        await a.stop(grace=1.0)
        await b.stop(grace=1.0)


async def test_a_replica_id_in_use_by_a_live_replica_is_refused(pg_settings: Callable[..., Settings]) -> None:
    a = await start_app(pg_settings("a", **{"server.replica_id": "cp-1"}))
    try:
        with pytest.raises(
            FailedPrecondition, match=r"replica id 'cp-1' is in use by a live control plane at"
        ):
            build_app(pg_settings("b", **{"server.replica_id": "cp-1"}))
    finally:
        await a.stop(grace=1.0)
    c = await start_app(pg_settings("c", **{"server.replica_id": "cp-1"}))  # free again after a's stop
    try:
        assert [v.row.id for v in await registry(c).replicas()] == ["cp-1"]
    finally:
        await c.stop(grace=1.0)


@pytest.fixture
def redis_closes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Notes each Redis connection build_app opens ("opened") and its closing ("closed")."""
    import controlplane.app

    notes: list[str] = []
    opened = controlplane.app.open_redis

    def noting(settings: Any) -> Any:
        redis = opened(settings)
        if redis is None:  # no redis.url
            return None
        notes.append("opened")
        close = redis.sync.close

        def closing() -> None:
            notes.append("closed")
            close()

        redis.sync.close = closing
        return redis

    monkeypatch.setattr(controlplane.app, "open_redis", noting)
    return notes


@pytest.mark.redis
def test_a_failed_start_closes_redis(tmp_path: Path, redis_url: str, redis_closes: list[str]) -> None:
    with pytest.raises(InvalidArgument, match="no storage backend handles 'nosuch' URLs"):
        build_app(make_settings(tmp_path, **{"redis.url": redis_url, "database.primary_url": "nosuch://x"}))
    assert redis_closes == ["opened", "closed"]


@pytest.mark.redis
async def test_a_refused_replica_id_closes_redis(
    pg_settings: Callable[..., Settings], redis_url: str, redis_closes: list[str]
) -> None:
    a = await start_app(pg_settings("a", **{"server.replica_id": "cp-1"}))
    try:
        redis_closes.clear()
        with pytest.raises(FailedPrecondition, match="in use by a live control plane"):
            build_app(pg_settings("b", **{"server.replica_id": "cp-1", "redis.url": redis_url}))
        assert redis_closes == ["opened", "closed"]
    finally:
        await a.stop(grace=1.0)
