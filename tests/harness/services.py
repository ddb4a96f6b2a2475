"""Pytest plugin giving tests the real PostgreSQL and Redis servers.

Enable it in ``tests/conftest.py`` with
``pytest_plugins = ["tests.harness.services"]``. It provides:

* ``--postgres-url`` / ``--redis-url`` options (defaults: env
  ``MAOS_TEST_POSTGRES_URL`` / ``MAOS_TEST_REDIS_URL``, else the local
  servers ``postgresql://postgres@127.0.0.1:5432/test`` and
  ``redis://127.0.0.1:6379/0``);
* ``postgres_url`` (session): a fresh database ``maos_test_<random>`` created
  for the session and dropped at its end, as a SQLAlchemy URL
  (``postgresql+psycopg://...``);
* ``redis_url`` (session): the Redis URL, checked with PING;
* ``redis_namespace`` (function): a unique key prefix ``maos-test:<uuid>:``
  whose keys are deleted after the test.

Tests using these fixtures get the ``postgres`` / ``redis`` markers. When a
server is unreachable they are skipped, or failed when env ``CI`` is ``true``
or ``1`` (see :func:`fail_or_skip`), so CI never passes by skipping them.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from typing import NoReturn

import psycopg
import pytest
import redis
from psycopg import sql
from sqlalchemy.engine import URL, make_url

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
CONNECT_TIMEOUT_S = 5
NAMESPACE_ROOT = "maos-test:"


def in_ci() -> bool:
    """Whether the tests run in CI (env ``CI`` is ``true`` or ``1``)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def fail_or_skip(reason: str) -> NoReturn:
    """Give up on a test whose external dependency is unavailable.

    The single place of the policy: under CI (see :func:`in_ci`) the test
    fails, elsewhere it is skipped.

    Args:
        reason: What is missing and why, e.g. ``"PostgreSQL unreachable at
            ...: connection refused"``.

    Raises:
        pytest.fail.Exception: Under CI.
        pytest.skip.Exception: Otherwise.
    """
    if in_ci():
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--postgres-url`` and ``--redis-url``."""
    group = parser.getgroup("maos-services", "MAOS test services")
    group.addoption(
        "--postgres-url",
        default=os.environ.get("MAOS_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help="Admin URL of the PostgreSQL server; each session creates and drops its own database "
        "there (default: env MAOS_TEST_POSTGRES_URL or %(default)s).",
    )
    group.addoption(
        "--redis-url",
        default=os.environ.get("MAOS_TEST_REDIS_URL", DEFAULT_REDIS_URL),
        help="URL of the Redis server (default: env MAOS_TEST_REDIS_URL or %(default)s).",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests using the service fixtures ``postgres`` / ``redis`` (for ``-m`` selection)."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "postgres_url" in names:
            item.add_marker(pytest.mark.postgres)
        if "redis_url" in names:
            item.add_marker(pytest.mark.redis)


def _libpq_url(url: URL) -> str:
    """Render a SQLAlchemy URL as a libpq connection URL (no ``+driver``)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _admin_connect(admin: URL) -> psycopg.Connection:
    """Connect in autocommit mode to the admin database, or fail/skip."""
    try:
        return psycopg.connect(_libpq_url(admin), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as exc:
        error = str(exc).strip()
    fail_or_skip(f"PostgreSQL unreachable at {admin.render_as_string()}: {error}")  # outside except: no chain


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database for this test session.

    Yields:
        Its SQLAlchemy URL, e.g.
        ``postgresql+psycopg://postgres@127.0.0.1:5432/maos_test_1a2b3c4d5e6f``.
        The database is dropped (connections terminated) after the session.
    """
    admin = make_url(request.config.getoption("--postgres-url"))
    name = f"maos_test_{secrets.token_hex(6)}"
    with _admin_connect(admin) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with _admin_connect(admin) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=CONNECT_TIMEOUT_S
    )


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The Redis URL, once the server answered PING.

    Yields:
        The URL from ``--redis-url``. Share the server safely by putting all
        keys under :func:`redis_namespace`.
    """
    url = request.config.getoption("--redis-url")
    client = _redis_client(url)
    error = None
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        error = str(exc)
    finally:
        client.close()
    if error is not None:
        fail_or_skip(f"Redis unreachable at {url}: {error}")
    yield url


def delete_namespace(url: str, prefix: str) -> int:
    """Delete every key starting with ``prefix`` (SCAN + DEL).

    Args:
        url: Redis URL.
        prefix: Key prefix; must not contain glob characters (``*?[]\\``).

    Returns:
        The number of keys deleted.
    """
    if any(ch in prefix for ch in "*?[]\\"):
        raise ValueError(f"glob characters in Redis key prefix {prefix!r}")
    client = _redis_client(url)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=500):
            batch.append(key)
            if len(batch) >= 500:
                deleted += client.delete(*batch)
                batch.clear()
        if batch:
            deleted += client.delete(*batch)
    finally:
        client.close()
    return deleted


@pytest.fixture
def redis_namespace(redis_url: str) -> Iterator[str]:
    """A unique Redis key prefix for one test.

    Yields:
        ``maos-test:<uuid4>:``; all keys starting with it are deleted after
        the test.
    """
    prefix = f"{NAMESPACE_ROOT}{uuid.uuid4()}:"
    try:
        yield prefix
    finally:
        delete_namespace(redis_url, prefix)
