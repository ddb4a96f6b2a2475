"""The replica harness itself (tests/harness/replicas.py): replicas, agents spread over them, the faults;
and the private PostgreSQL server tests restart (tests/harness/private_postgres.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from tests.harness.private_postgres import PrivatePostgres, PrivatePostgresUnavailable
from tests.harness.replica_fixtures import MakeCluster
from tests.harness.replicas import kill_redis_connections, redis_cut, rotated
from tests.harness.server import Stubs, wait_for


def test_rotated_lists_start_at_the_chosen_replica() -> None:
    assert rotated(["a:1", "b:2", "c:3"], 0) == "a:1,b:2,c:3"
    assert rotated(["a:1", "b:2", "c:3"], 4) == "b:2,c:3,a:1"


async def test_three_replicas_agents_spread_and_fail_over(replica_cluster: MakeCluster) -> None:
    cluster = await replica_cluster(3)
    stubs = Stubs(cluster.addresses[1])
    try:
        status = await stubs.system.GetStatus(system_pb.GetStatusRequest(), timeout=10)
        assert sorted(r.id for r in status.replica_status) == ["replica-0", "replica-1", "replica-2"]
        assert {r.address for r in status.replica_status} == set(cluster.addresses)
    finally:
        await stubs.close()

    agents = [cluster.agent(i) for i in range(3)]
    await cluster.wait_for_connections(3)
    assert [cluster.replica_of(a) for a in agents] == cluster.replicas  # each on the first of its list

    cluster.kill(0)
    assert not cluster.replicas[0].running
    # the agent of replica 0 moves to the next address of its list
    await wait_for(
        lambda: cluster.replica_of(agents[0]) is cluster.replicas[1], 30, 0.05, "the agent to move"
    )
    assert cluster.live() == cluster.replicas[1:]


async def test_redis_connections_of_a_replica_are_closed_and_it_keeps_serving(
    replica_cluster: MakeCluster,
) -> None:
    cluster = await replica_cluster(1)
    replica = cluster.replicas[0]
    stubs = Stubs(replica.address)
    try:
        await stubs.system.GetHealth(system_pb.GetHealthRequest(), timeout=10)  # uses Redis
        assert kill_redis_connections(cluster.redis_url, [replica.pid]) >= 1
        async with redis_cut(cluster.redis_url, cluster.redis_pids()) as rounds:
            await wait_for(lambda: len(rounds) >= 3, 10, message="three rounds of cuts")
        assert kill_redis_connections(cluster.redis_url, [12345678]) == 0  # no such process: nothing
        health = await stubs.system.GetHealth(system_pb.GetHealthRequest(), timeout=10)
        assert health.components
    finally:
        await stubs.close()


def test_a_private_postgres_keeps_what_was_committed_across_both_restarts(
    private_postgres: PrivatePostgres,
) -> None:
    import psycopg

    with psycopg.connect(private_postgres.admin_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (1)")
    private_postgres.restart("fast")
    with psycopg.connect(private_postgres.admin_url, autocommit=True) as conn:
        conn.execute("INSERT INTO kept VALUES (2)")
    private_postgres.restart("immediate")  # a crash: the second row comes back from the WAL
    with psycopg.connect(private_postgres.admin_url) as conn:
        assert [row[0] for row in conn.execute("SELECT n FROM kept ORDER BY n")] == [1, 2]


def test_a_machine_without_postgres_binaries_is_told_where_they_were_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAOS_TEST_PG_BIN", str(tmp_path))  # no initdb there
    with pytest.raises(PrivatePostgresUnavailable, match=r"no PostgreSQL server binaries.*MAOS_TEST_PG_BIN"):
        PrivatePostgres()


def test_a_private_postgres_that_cannot_start_says_why(tmp_path: Path) -> None:
    server = PrivatePostgres()
    try:
        # never initialized: pg_ctl finds no data folder
        with pytest.raises(PrivatePostgresUnavailable, match=r"pg_ctl exited \d+: .*data"):
            server.start()
    finally:
        server.remove()
