"""Pytest plugin: ``replica_cluster``, clusters of ``maos start`` replicas (:mod:`tests.harness.replicas`).

Each cluster gets a fresh PostgreSQL database on the session's server and the test's Redis key
prefix (``redis_namespace``); every replica and agent process is killed, and the database dropped,
at the end of the test. Without PostgreSQL or Redis the test fails under CI (see
:mod:`tests.harness.services`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.harness.replicas import ReplicaCluster, fresh_database

MakeCluster = Callable[..., Awaitable[ReplicaCluster]]


@pytest.fixture
async def replica_cluster(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str
) -> AsyncIterator[MakeCluster]:
    """``await replica_cluster(count=3, **env)``: a started cluster of ``count`` replicas.

    ``env`` holds more ``MAOS_*`` settings for every replica.
    """
    made: list[ReplicaCluster] = []
    with contextlib.ExitStack() as stack:

        async def make(count: int = 3, **env: str) -> ReplicaCluster:
            url = stack.enter_context(fresh_database(postgres_url))
            cluster = ReplicaCluster(
                tmp_path / f"cluster-{len(made)}",
                url,
                redis_url,
                f"{redis_namespace}c{len(made)}:",
                count,
                env,
            )
            made.append(cluster)
            await cluster.start()
            return cluster

        try:
            yield make
        finally:
            for cluster in made:
                cluster.stop()
