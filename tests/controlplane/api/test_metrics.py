"""Prometheus /metrics on its own port, with the starter families."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import pytest

from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from controlplane.app import build_app
from controlplane.errors import InvalidArgument
from controlplane.metrics import MAX_POOLS, OTHER_POOL, Metrics
from tests.harness.exposition import without_replica
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
        await stubs.tasks.SubmitTask(
            t.SubmitTaskRequest(task=m.Task(description="count me", priority=3)), timeout=5
        )

        async def scrape() -> str:
            return await asyncio.to_thread(
                lambda: without_replica(
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
                )
            )

        async def queued() -> str | None:  # the queue figure is refreshed by the lease sweeper
            body = await scrape()
            return body if 'maos_tasks_pending{queue="high"} 1.0' in body else None

        body = await wait_for(queued, 10, interval=0.1, message="the queued subtask in /metrics")
        for family in STARTER:
            assert family in body, family
        assert 'maos_tasks_submitted_total{queue="high"} 1.0' in body
        assert 'maos_tasks_pending{queue="high"} 1.0' in body  # no agent: its subtask waits
        assert (
            'grpc_server_handled_total{grpc_code="OK",grpc_method="SubmitTask",'
            'grpc_service="maos.v1.TaskService",grpc_type="unary"} 1.0'
        ) in body
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
    pools = {
        s.labels["pool"]: s.value
        for f in metrics.registry.collect()
        if f.name == "maos_agents_connected"
        for s in f.samples
    }
    assert len(pools) == MAX_POOLS + 1
    assert pools["type-0"] == 2 and pools[f"type-{MAX_POOLS - 1}"] == 1
    assert pools[OTHER_POOL] == 4 and f"type-{MAX_POOLS}" not in pools


def series(body: str) -> list[str]:
    """The sample lines of a /metrics page."""
    return [line for line in body.splitlines() if line and not line.startswith("#")]


async def test_throw_away_agent_types_leave_no_series_behind(tmp_path: Path) -> None:
    """200 agents each naming a new type connect and leave: /metrics has as many series as before."""
    from tests.controlplane.scheduler.test_faults import RawAgent

    port = free_port()
    app = await start_app(make_settings(tmp_path, **{"server.metrics_port": port}))

    async def scrape() -> str:
        return await asyncio.to_thread(
            lambda: without_replica(
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            )
        )

    async def connect_and_leave(names: list[str]) -> None:
        agents = [RawAgent(app.address) for _ in names]
        for agent, name in zip(agents, names, strict=True):
            agent.send(
                register=gw.Register(agent_type=name, capabilities=["x"], max_concurrency=1, language="test")
            )
        for agent in agents:
            await agent.receive("registered")
        for agent in agents:
            await agent.close()
        await wait_for(lambda: not app.engine.sessions, 10, message="the agents to leave")

    try:
        await connect_and_leave(["warm-up"])  # the gateway's own RPC series exist from here on
        before = series(await scrape())
        assert not [line for line in before if line.startswith("maos_agents_connected{")]
        for start in range(0, 200, 50):
            await connect_and_leave([f"throwaway-{n}" for n in range(start, start + 50)])
        after = series(await scrape())
        assert not [line for line in after if "throwaway" in line]

        # Only agent-labelled series count: RPC series (a stream's CANCELLED code) may come and stay.
        def names(lines: list[str]) -> set[str]:  # each series without its value
            return {line.rsplit(" ", 1)[0] for line in lines if not line.startswith("grpc_server_")}

        assert not names(after) - names(before), sorted(names(after) - names(before))
    finally:
        await app.stop(grace=1.0)


def test_a_pool_series_goes_when_its_last_agent_leaves_and_frees_its_place() -> None:
    metrics = Metrics()

    def pools() -> dict[str, float]:
        return {
            s.labels["pool"]: s.value
            for f in metrics.registry.collect()
            if f.name == "maos_agents_connected"
            for s in f.samples
        }

    for index in range(MAX_POOLS + 1):
        metrics.agent_connected(f"type-{index}", +1)
    assert pools()[OTHER_POOL] == 1 and len(pools()) == MAX_POOLS + 1
    metrics.agent_connected("type-0", -1)
    metrics.agent_connected(f"type-{MAX_POOLS}", -1)
    assert "type-0" not in pools() and OTHER_POOL not in pools()
    metrics.agent_connected("newcomer", +1)  # the freed place is taken by the next new type
    assert pools()["newcomer"] == 1 and len(pools()) == MAX_POOLS
    metrics.agent_connected("never-seen", -1)  # nothing to take back
    assert "never-seen" not in pools()


async def test_metrics_beyond_localhost_need_the_explicit_opt_in(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, **{"server.metrics_port": free_port(), "server.metrics_address": "0.0.0.0"}
    )
    app = build_app(settings)
    try:
        with pytest.raises(
            InvalidArgument, match=r"refusing to serve /metrics .*server\.allow_insecure_remote"
        ) as info:
            await app.start("127.0.0.1:0")
        assert [v.field for v in info.value.violations] == ["server.metrics_address"]
        assert app.metrics_port == 0 and not app.port  # nothing was bound
    finally:
        await app.stop(grace=0)
    allowed = await start_app(settings.with_overrides({"server.allow_insecure_remote": True}))
    try:
        assert allowed.metrics_port == settings["server.metrics_port"]
    finally:
        await allowed.stop(grace=1.0)
