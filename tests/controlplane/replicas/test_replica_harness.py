"""The replica harness itself (tests/harness/replicas.py): replicas, agents spread over them, the faults."""

from __future__ import annotations

from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
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
