"""The unclaimed backlog across replicas: work no replica holds is counted and exported by each.

Two real ``maos start`` processes on one PostgreSQL and Redis, with no agents: tasks submitted to A
are given up (no agent there can take them), so they wait unclaimed, in no replica's queue gauge.
Both replicas report the same system-wide count in ``maos status`` (GetStatus), in ``/metrics``
(``maos_unclaimed_tasks``, ``maos_scaling_unclaimed_depth``) and per autoscaled type.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from tests.controlplane.replicas.test_routing import RPC, Replicas, _replicas
from tests.harness.server import Stubs, wait_for

pytestmark = pytest.mark.slow

TASKS = 12


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
        assert await _metric(stubs, "maos_scaling_queue_depth", agent_type="echo") == 0

    shown = await r.cli_a("status")
    assert shown.exit_code == 0, shown.output
    assert f"{TASKS} (all replicas), oldest waiting" in shown.output
    assert "UNCLAIMED" in shown.output


async def test_a_single_control_plane_reports_no_backlog(stubs: Stubs) -> None:
    status = await stubs.system.GetStatus(system_pb.GetStatusRequest(), timeout=RPC)
    assert not status.HasField("unclaimed_tasks")
    assert await _metric(stubs, "maos_unclaimed_tasks") is None
