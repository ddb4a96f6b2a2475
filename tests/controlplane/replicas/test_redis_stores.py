"""Rate-limit buckets and shared state in Redis: the same contracts as in one process, across replicas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis

from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError
from controlplane.access.rate_limit import TokenBuckets
from controlplane.app import build_app
from controlplane.errors import Aborted
from controlplane.replicas.redis_stores import RedisSharedState, RedisTokenBuckets
from controlplane.storage.sql.plugin import SqlBackendFactory
from tests.harness.server import empty_postgres, make_settings, start_app


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)


def test_two_replicas_take_from_one_bucket(redis_url: str, redis_namespace: str) -> None:
    a = RedisTokenBuckets(_client(redis_url), redis_namespace, "principal", TokenBuckets(0.5, 3))
    b = RedisTokenBuckets(_client(redis_url), redis_namespace, "principal", TokenBuckets(0.5, 3))
    taken = [a.take("users/alice"), b.take("users/alice"), a.take("users/alice")]
    assert taken == [0.0, 0.0, 0.0]  # the burst of 3, spent on two replicas
    delay = b.take("users/alice")
    assert 0 < delay <= 2.0  # the next token comes at 0.5/s: within 2 s
    assert a.take("users/bob") == 0.0  # buckets are per key
    assert (a.rate, a.burst) == (0.5, 3.0)


def test_replicas_lease_tokens_and_together_never_exceed_the_bucket(
    redis_url: str, redis_namespace: str
) -> None:
    """A lease takes several tokens in one round trip; what the replicas admit stays what one bucket
    allows (tokens are taken before they are spent), and a replica spends its own lease first."""
    # A burst of 400 leases up to 4 tokens at once; the rate refills a token in 100 s (none here).
    a, b = (
        RedisTokenBuckets(_client(redis_url), redis_namespace, "principal", TokenBuckets(0.01, 400))
        for _ in range(2)
    )
    trips = {"a": 0, "b": 0}
    for name, buckets in (("a", a), ("b", b)):
        script = buckets._script

        def counted(*args: object, name: str = name, script: object = script, **kwargs: object) -> object:
            trips[name] += 1
            return script(*args, **kwargs)  # type: ignore[operator]

        buckets._script = counted  # type: ignore[method-assign]
    admitted = {"a": 0, "b": 0}
    refused: set[str] = set()
    while len(refused) < 2:
        for name, buckets in (("a", a), ("b", b)):
            if buckets.take("users/alice") == 0.0:
                admitted[name] += 1
            else:
                refused.add(name)
    assert a.max_lease == 4
    assert sum(admitted.values()) == 400  # the burst, spent on two replicas, not a call more
    assert admitted["a"] > 100 and admitted["b"] > 100
    assert sum(trips.values()) < 150  # about one round trip per 4 calls, not one per call
    assert a.take("users/bob") == 0.0  # leases are per key


def test_unspent_leased_tokens_lapse(redis_url: str, redis_namespace: str) -> None:
    now = [0.0]
    a = RedisTokenBuckets(
        _client(redis_url), redis_namespace, "principal", TokenBuckets(0.01, 400), clock=lambda: now[0]
    )
    for _ in range(2):  # leases of 1 then 2: the second one's last token is left
        assert a.take("users/alice") == 0.0
    key = f"{redis_namespace}rate:principal:users/alice"
    left = float(_client(redis_url).hget(key, "tokens") or 0)
    assert left == pytest.approx(397, abs=0.1)
    now[0] += 5.0  # past the lease's lifetime: its token is not spent any more
    assert a.take("users/alice") == 0.0  # a new lease, of one token (halved)
    assert float(_client(redis_url).hget(key, "tokens") or 0) == pytest.approx(396, abs=0.1)


def test_without_redis_each_replica_uses_its_own_buckets(caplog: pytest.LogCaptureFixture) -> None:
    dead = RedisTokenBuckets(_client("redis://127.0.0.1:1/0"), "maos:", "principal", TokenBuckets(0.5, 1))
    assert dead.take("users/alice") == 0.0
    assert dead.take("users/alice") > 0  # the local bucket's burst of 1 is spent
    assert "this replica's own buckets decide" in caplog.text
    dead.client = None  # Redis is not tried again for a while (not one timeout per call)
    assert dead.take("users/alice") > 0


@pytest.fixture
def redis_state(redis_url: str, redis_namespace: str) -> RedisSharedState:
    return RedisSharedState(_client(redis_url), redis_namespace)


@pytest.fixture
def sql_state(tmp_path: Path) -> Iterator[object]:
    backend = SqlBackendFactory().open(f"sqlite:///{tmp_path / 'maos.db'}")
    backend.migrate()
    yield backend
    backend.close()


def _contract(state) -> list[object]:
    """The shared-state operations of the contract, and what each answered (errors by version)."""
    out: list[object] = []

    def call(fn, *args):
        try:
            out.append(fn(*args))
        except Aborted as exc:
            out.append(("conflict", exc.reason, exc.metadata["actual_version"]))

    call(state.state_get, "t1", "k")
    call(state.state_put, "t1", "k", b"one", None)
    call(state.state_put, "t1", "k", b"two", 1)
    call(state.state_put, "t1", "k", b"stale", 1)
    call(state.state_get, "t1", "k")
    call(state.state_put, "t1", "new", b"x", 0)
    call(state.state_put, "t1", "other", b"y", 3)
    call(state.state_delete, "t1", "k", 1)
    call(state.state_delete, "t1", "k", 2)
    call(state.state_delete, "t1", "k", None)
    call(state.state_get, "t1", "k")
    call(state.state_get, "t2", "new")
    return out


def test_redis_shared_state_keeps_the_storage_contract(redis_state: RedisSharedState, sql_state) -> None:
    expected = _contract(sql_state)
    assert expected[:5] == [None, 1, 2, ("conflict", "ERROR_REASON_VERSION_CONFLICT", "2"), expected[4]]
    assert _contract(redis_state) == expected


async def test_the_call_rate_holds_across_two_replicas(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    shared = {
        "database.primary_url": postgres_url,
        "redis.url": redis_url,
        "redis.key_prefix": f"maos-test:{tmp_path.name}:",
        "security.auth": "required",
        "security.rate_limit.rate": 0.2,
        "security.rate_limit.burst": 3,
    }
    build_app(make_settings(tmp_path / "m", **shared)).storage.close()
    empty_postgres(postgres_url)
    a = await start_app(make_settings(tmp_path / "a", **shared))
    b = await start_app(make_settings(tmp_path / "b", **shared))
    try:
        _, key = await a.storage.call(a.access.issue_key_sync, "admin", "test")
        async with Client(a.address, token=key) as on_a, Client(b.address, token=key) as on_b:
            await on_a.status()
            await on_b.status()
            await on_a.status()  # the burst of 3, spent on two replicas
            with pytest.raises(MaosRpcError) as refused:
                await on_b.status()
            assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "exceeded its call rate" in refused.value.message
    finally:
        await b.stop(grace=1.0)
        await a.stop(grace=1.0)
        from tests.harness.services import delete_namespace

        delete_namespace(redis_url, f"maos-test:{tmp_path.name}:")
