"""Tests of the service harness (tests/harness/services.py) against the real servers."""

from __future__ import annotations

import re
import uuid

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from tests.harness import services


@pytest.mark.postgres
def test_postgres_url_is_a_fresh_session_database(postgres_url: str) -> None:
    url = make_url(postgres_url)
    assert url.drivername == "postgresql+psycopg"
    assert re.fullmatch(r"maos_test_[0-9a-f]{12}", url.database or "")

    table = f"harness_probe_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {table} (id serial PRIMARY KEY, name text NOT NULL)"))
            conn.execute(
                sa.text(f"INSERT INTO {table} (name) VALUES (:name)"), [{"name": "a"}, {"name": "b"}]
            )
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == url.database
            names = conn.execute(sa.text(f"SELECT name FROM {table} ORDER BY id")).scalars().all()
            conn.execute(sa.text(f"DROP TABLE {table}"))
    finally:
        engine.dispose()
    assert names == ["a", "b"]


@pytest.mark.redis
def test_redis_namespace_set_get_expire(redis_url: str, redis_namespace: str) -> None:
    assert re.fullmatch(r"maos-test:[0-9a-f-]{36}:", redis_namespace)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        key = f"{redis_namespace}greeting"
        assert client.set(key, "hello")
        assert client.get(key) == "hello"
        assert client.expire(key, 60)
        assert 0 < client.ttl(key) <= 60
        client.set(f"{redis_namespace}other", "x")
        assert sorted(client.scan_iter(match=f"{redis_namespace}*")) == [
            f"{redis_namespace}greeting",
            f"{redis_namespace}other",
        ]
    finally:
        client.close()


@pytest.mark.redis
def test_delete_namespace_only_deletes_the_prefix(redis_url: str) -> None:
    prefix = f"{services.NAMESPACE_ROOT}{uuid.uuid4()}:"
    outside = f"{services.NAMESPACE_ROOT}{uuid.uuid4()}:keep"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        client.mset({f"{prefix}{i}": i for i in range(1200)})  # more than one SCAN/DEL batch
        client.set(outside, "1", ex=60)
        assert services.delete_namespace(redis_url, prefix) == 1200
        assert list(client.scan_iter(match=f"{prefix}*")) == []
        assert client.get(outside) == "1"
    finally:
        client.delete(outside)
        client.close()
    with pytest.raises(ValueError, match="glob"):
        services.delete_namespace(redis_url, "maos-test:*")


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_fail_or_skip_fails_under_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL unreachable"):
        services.fail_or_skip("PostgreSQL unreachable")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_fail_or_skip_skips_outside_ci(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.skip.Exception, match="Redis unreachable"):
        services.fail_or_skip("Redis unreachable")


def test_unreachable_postgres_goes_through_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL unreachable at postgresql://"):
        services._admin_connect(make_url("postgresql://postgres@127.0.0.1:1/test"))
