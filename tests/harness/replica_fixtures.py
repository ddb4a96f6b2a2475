"""Pytest plugin: ``replica_cluster``, clusters of ``maos start`` replicas (:mod:`tests.harness.replicas`).

Each cluster gets a fresh PostgreSQL database on the session's server and the test's Redis key
prefix (``redis_namespace``); every replica and agent process is killed, and the database dropped,
at the end of the test. Without PostgreSQL or Redis the test fails under CI (see
:mod:`tests.harness.services`). ``private_postgres`` is a PostgreSQL server of the test's own, for
tests that restart it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.private_postgres import PrivatePostgres, PrivatePostgresUnavailable
from tests.harness.private_postgres import private_postgres as start_private_postgres
from tests.harness.replicas import ReplicaCluster, fresh_database
from tests.harness.services import fail_or_skip

MakeCluster = Callable[..., Awaitable[ReplicaCluster]]


@pytest.fixture
async def replica_cluster(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str
) -> AsyncIterator[MakeCluster]:
    """``await replica_cluster(count=3, **env)``: a started cluster of ``count`` replicas.

    ``env`` holds more ``MAOS_*`` settings for every replica; ``server`` the admin URL of another
    PostgreSQL server for the cluster's database (a :func:`private_postgres`'s).
    """
    made: list[ReplicaCluster] = []
    with contextlib.ExitStack() as stack:

        async def make(
            count: int = 3,
            *,
            server: str = "",
            overrides: dict[int, dict[str, str]] | None = None,
            **env: str,
        ) -> ReplicaCluster:
            """``server``: the admin URL of another PostgreSQL server (default: the session's);
            ``overrides``: settings of single replicas, by index."""
            url = stack.enter_context(fresh_database(server or postgres_url))
            cluster = ReplicaCluster(
                tmp_path / f"cluster-{len(made)}",
                url,
                redis_url,
                f"{redis_namespace}c{len(made)}:",
                count,
                env,
                overrides,
            )
            made.append(cluster)
            await cluster.start()
            return cluster

        try:
            yield make
        finally:
            for cluster in made:
                cluster.stop()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of this test's own, to restart (:mod:`tests.harness.private_postgres`).

    Fails under CI, and skips elsewhere, when the machine cannot run one (the message says why).
    """
    try:
        with start_private_postgres() as server:
            yield server
    except PrivatePostgresUnavailable as exc:
        fail_or_skip(f"cannot run a private PostgreSQL server: {exc}")
