"""The unclaimed backlog across replicas: work no replica holds is counted and exported by each.

Two real ``maos start`` processes on one PostgreSQL and Redis, with no agents: tasks submitted to A
are given up (no agent there can take them), so they wait unclaimed, in no replica's queue gauge.
Both replicas report the same system-wide count in ``maos status`` (GetStatus), in ``/metrics``
(``maos_unclaimed_tasks``, ``maos_scaling_unclaimed_depth``) and per autoscaled type, and each
its share of it (``maos_scaling_queue_depth``: the shares add up to the backlog). With
``scaling.enabled`` on both, a backlog nobody holds launches agents, on one replica for one task.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from tests.controlplane.replicas.test_routing import RPC, Replicas, _replicas
from tests.harness.server import Stubs, wait_for

pytestmark = pytest.mark.slow

TASKS = 12
LIVE = {
    enums.AGENT_STATUS_IDLE,
    enums.AGENT_STATUS_BUSY,
    enums.AGENT_STATUS_STARTING,
    enums.AGENT_STATUS_PAUSED,
}


@pytest.fixture
async def autoscaled(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str
) -> AsyncIterator[Replicas]:
    """Replicas A and B on PostgreSQL and Redis, no agents, ``echo`` autoscaled by someone else."""
    async for replicas in _replicas(
        tmp_path,
        postgres_url,
        MAOS_REDIS_URL=redis_url,
        MAOS_REDIS_KEY_PREFIX=redis_namespace,
        MAOS_SCALING_TYPES="echo=0:4",
        MAOS_SCALING_INTERVAL="0.5",
    ):
        yield replicas


@pytest.fixture
async def self_scaling(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str
) -> AsyncIterator[Replicas]:
    """Replicas A and B on PostgreSQL and Redis, no agents, each autoscaling ``sleep`` itself."""
    async for replicas in _replicas(
        tmp_path,
        postgres_url,
        MAOS_REDIS_URL=redis_url,
        MAOS_REDIS_KEY_PREFIX=redis_namespace,
        MAOS_SCALING_ENABLED="true",
        MAOS_SCALING_TYPES="sleep=0:3",
        MAOS_SCALING_INTERVAL="0.2",
        MAOS_SCALING_QUEUE_DEPTH_THRESHOLD="1",
        MAOS_SCALING_WAIT_THRESHOLD="600",  # on the queue depth alone
        MAOS_REPLICAS_CLAIM_WINDOW="0",  # a replica holds only what its agents can start: the rest waits unclaimed
        # One scale-up per replica in the test's time: a task waiting for the agent launched for it
        # would, past the cooldown, ask for another (1 queued per agent), on one replica as on many.
        MAOS_SCALING_COOLDOWN="120",
        MAOS_SCALING_IDLE_SECONDS="600",  # what was launched stays to be counted
    ):
        yield replicas


async def _metric(stubs: Stubs, name: str, **labels: str) -> float | None:
    summary = await stubs.system.GetMetricsSummary(system_pb.GetMetricsSummaryRequest(), timeout=RPC)
    for sample in summary.samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


async def test_every_replica_reports_the_unclaimed_backlog(autoscaled: Replicas) -> None:
    r = autoscaled
    before = await r.stubs_b.system.GetStatus(system_pb.GetStatusRequest(), timeout=RPC)
    assert before.HasField("unclaimed_tasks")  # replicas: the field is set, even at 0
    for n in range(TASKS):
        await r.stubs_a.tasks.SubmitTask(
            tasks_pb.SubmitTaskRequest(task=msgs.Task(description=f"waiting {n}")), timeout=RPC
        )

    async def counted(stubs: Stubs) -> system_pb.GetStatusResponse | None:
        status = await stubs.system.GetStatus(system_pb.GetStatusRequest(), timeout=RPC)
        scaled = {row.agent_type: row for row in status.scaling}
        if status.unclaimed_tasks == TASKS and scaled["echo"].unclaimed == TASKS:
            return status
        return None

    for stubs in (r.stubs_a, r.stubs_b):
        status = await wait_for(lambda s=stubs: counted(s), 30, 0.2, f"{TASKS} unclaimed tasks in GetStatus")
        assert sum(q.count for q in status.queue) == 0  # in no replica's own queue
        assert status.unclaimed_oldest_wait.ToNanoseconds() > 0
        assert await _metric(stubs, "maos_unclaimed_tasks") == TASKS
        assert await _metric(stubs, "maos_scaling_unclaimed_depth", agent_type="echo") == TASKS

    async def shared() -> list[float] | None:
        depths = [
            await _metric(s, "maos_scaling_queue_depth", agent_type="echo") for s in (r.stubs_a, r.stubs_b)
        ]
        return depths if depths == [TASKS / 2, TASKS / 2] else None

    # Nothing held: each replica's queue depth is its half of the backlog, their sum the backlog once.
    await wait_for(shared, 30, 0.2, "each replica's share of the backlog in maos_scaling_queue_depth")
    for stubs in (r.stubs_a, r.stubs_b):
        row = (await stubs.system.GetStatus(system_pb.GetStatusRequest(), timeout=RPC)).scaling[0]
        assert row.queued == 0 and row.unclaimed_share == TASKS // 2
        assert row.desired == 1 and f"{TASKS // 2} queued ({TASKS // 2} unclaimed)" in row.reason

    shown = await r.cli_a("status")
    assert shown.exit_code == 0, shown.output
    assert f"{TASKS} (all replicas), oldest waiting" in shown.output
    assert "UNCLAIMED" in shown.output and "SHARE" in shown.output


async def test_a_single_control_plane_reports_no_backlog(stubs: Stubs) -> None:
    status = await stubs.system.GetStatus(system_pb.GetStatusRequest(), timeout=RPC)
    assert not status.HasField("unclaimed_tasks")
    assert await _metric(stubs, "maos_unclaimed_tasks") is None


async def _scaled_up(stubs: Stubs) -> float:
    return await _metric(stubs, "maos_scaling_events_total", agent_type="sleep", direction="up") or 0.0


async def _sleep_agents(stubs: Stubs) -> list[Any]:
    listed = await stubs.agents.ListAgents(agents_pb.ListAgentsRequest(), timeout=RPC)
    return [a for a in listed.agents if a.agent_type == "sleep" and a.status in LIVE]


async def _completed(stubs: Stubs, ids: list[str]) -> bool:
    for name in ids:
        task = await stubs.tasks.GetTask(tasks_pb.GetTaskRequest(name=name), timeout=RPC)
        if task.task.status != enums.TASK_STATUS_COMPLETED:
            return False
    return True


async def _submit(stubs: Stubs, count: int) -> list[str]:
    ids = []
    for n in range(count):
        task = msgs.Task(description=f"nap {n}", agent_type="sleep", metadata={"sleep_seconds": "0.5"})
        reply = await stubs.tasks.SubmitTask(tasks_pb.SubmitTaskRequest(task=task), timeout=RPC)
        ids.append(reply.task.name)
    return ids


async def test_an_unclaimed_backlog_scales_agents_up_once_across_replicas(self_scaling: Replicas) -> None:
    r = self_scaling
    status = await r.stubs_a.system.GetStatus(system_pb.GetStatusRequest(detailed=True), timeout=RPC)
    first = min(view.id for view in status.replica_status)  # the backlog's remainder goes to it
    by_id = {view.id: view.address for view in status.replica_status}
    assert len(by_id) == 2 and await _sleep_agents(r.stubs_a) == []  # min 0: none before there is work

    # One task no replica can run (no sleep agent anywhere): it waits unclaimed, and only the
    # replica whose share it is launches an agent for it; with each deciding on the whole
    # backlog, both would.
    ids = await _submit(r.stubs_a, 1)
    await wait_for(lambda: _completed(r.stubs_a, ids), 60, 0.2, "the task to be run by a launched agent")
    ups = [await _scaled_up(r.stubs_a), await _scaled_up(r.stubs_b)]
    agents = await _sleep_agents(r.stubs_a)
    assert sum(ups) == 1 and len(agents) == 1, (ups, agents)
    where = r.stubs_a if r.a.address == by_id[first] else r.stubs_b
    assert await _scaled_up(where) == 1  # the first replica by id

    # A deeper backlog, beyond what the first replica's agent can start: the other replica takes
    # its share of it too and grows for it (the first is cooling down after its scale-up).
    other = r.stubs_b if where is r.stubs_a else r.stubs_a
    ids = await _submit(r.stubs_b, 8)
    await wait_for(lambda: _completed(r.stubs_b, ids), 90, 0.2, "eight tasks run")
    assert await _scaled_up(other) == 1 and await _scaled_up(where) == 1
