"""Prometheus /metrics on its own port, with the starter families."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from controlplane.metrics import MAX_POOLS, OTHER_POOL, Metrics
from tests.harness.server import Stubs, free_port, make_settings, start_app, wait_for

STARTER = [
    "maos_build_info",
    "maos_tasks_submitted_total",
    "maos_task_transitions_total",
    "maos_tasks_pending",
    "maos_task_schedule_to_start_seconds_bucket",
    "maos_task_run_seconds_bucket",
    "maos_agents_connected",
    "maos_agent_lease_expirations_total",
    "maos_subtask_retries_total",
    "grpc_server_handled_total",
    "grpc_server_handling_seconds_bucket",
]


async def test_metrics_endpoint_serves_the_starter_families(tmp_path: Path) -> None:
    port = free_port()
    app = await start_app(make_settings(tmp_path, **{"server.metrics_port": port}))
    stubs = Stubs(app.address)
    try:
        assert app.metrics_port == port
        await stubs.tasks.SubmitTask(t.SubmitTaskRequest(task=m.Task(description="count me", priority=3)), timeout=5)
        async def scrape() -> str:
            return await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())

        async def queued() -> str | None:  # the queue figure is refreshed by the lease sweeper
            body = await scrape()
            return body if 'maos_tasks_pending{queue="high"} 1.0' in body else None

        body = await wait_for(queued, 10, interval=0.1, message="the queued subtask in /metrics")
        for family in STARTER:
            assert family in body, family
        assert 'maos_tasks_submitted_total{queue="high"} 1.0' in body
        assert 'maos_tasks_pending{queue="high"} 1.0' in body  # no agent: its subtask waits
        assert ('grpc_server_handled_total{grpc_code="OK",grpc_method="SubmitTask",'
                'grpc_service="maos.v1.TaskService",grpc_type="unary"} 1.0') in body
        for line in body.splitlines():  # bounded labels: never a task id
            assert "tasks/" not in line and "task_id" not in line
    finally:
        await stubs.close()
        await app.stop(grace=1.0)


def test_agent_types_beyond_the_limit_share_one_pool_series() -> None:
    metrics = Metrics()
    for index in range(MAX_POOLS + 5):
        metrics.agent_connected(f"type-{index}", +1)
    metrics.agent_connected("type-0", +1)
    metrics.agent_connected(f"type-{MAX_POOLS + 1}", -1)  # leaving counts where connecting did
    pools = {s.labels["pool"]: s.value for f in metrics.registry.collect() if f.name == "maos_agents_connected"
             for s in f.samples}
    assert len(pools) == MAX_POOLS + 1
    assert pools["type-0"] == 2 and pools[f"type-{MAX_POOLS - 1}"] == 1
    assert pools[OTHER_POOL] == 4 and f"type-{MAX_POOLS}" not in pools
