"""Autoscaling seen from outside: GetStatus.scaling and the maos_scaling_* metrics.

With ``scaling.types`` set and ``scaling.enabled`` off (a Kubernetes deployment: another supervisor
runs the agents) the control plane decides and exports but launches nothing; the agent here is a real
``maos-agent`` process started by the test, as a Deployment's pod would be.
"""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import pytest

from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import system_service_pb2 as s
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from controlplane.config import load_settings
from tests.harness.exposition import without_replica
from tests.harness.server import Stubs, free_port, make_settings, start_app, wait_for


async def test_types_without_enabled_export_the_queue_and_launch_nothing(
    tmp_path: Path, agent_processes
) -> None:
    port = free_port()
    app = await start_app(
        make_settings(
            tmp_path,
            **{
                "server.metrics_port": port,
                "scaling.types": "sleep=0:4",
                "scaling.interval": 0.1,
                "scaling.queue_depth_threshold": 1,
                "scaling.idle_seconds": 0.5,
                "scaling.cooldown": 0,
            },
        )
    )
    stubs = Stubs(app.address)

    async def scaling() -> s.TypeScaling:
        reply = await stubs.system.GetStatus(s.GetStatusRequest(), timeout=5)
        assert [row.agent_type for row in reply.scaling] == ["sleep"]
        return reply.scaling[0]

    def scrape() -> str:
        return without_replica(
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        )

    try:
        for n in range(3):
            await stubs.tasks.SubmitTask(
                t.SubmitTaskRequest(
                    task=m.Task(description=f"nap {n}", agent_type="sleep", metadata={"sleep_seconds": "0.2"})
                ),
                timeout=5,
            )

        async def queued() -> s.TypeScaling | None:
            row = await scaling()
            return row if row.queued == 3 and row.desired == 1 else None

        row = await wait_for(queued, 10, interval=0.1, message="3 queued and 1 desired in GetStatus")
        assert row.current == 0 and row.max == 4 and "3 queued" in row.reason
        body = await asyncio.to_thread(scrape)
        assert 'maos_scaling_queue_depth{agent_type="sleep"} 3.0' in body
        assert 'maos_scaling_desired_agents{agent_type="sleep"} 1.0' in body
        assert "maos_scaling_events_total{" not in body  # it decides; it launches nothing
        assert app.launcher.launches == {}

        agent_processes(app.address, "sleep")

        async def drained() -> s.TypeScaling | None:
            row = await scaling()
            return row if row.queued == 0 and row.current == 1 and row.desired == 0 else None

        row = await wait_for(
            drained, 30, interval=0.1, message="the queue run down and the idle agent noticed"
        )
        assert "idle" in row.reason and row.HasField("decided_at")
        body = await asyncio.to_thread(scrape)
        assert 'maos_scaling_queue_depth{agent_type="sleep"} 0.0' in body
        assert 'maos_scaling_current_agents{agent_type="sleep"} 1.0' in body
    finally:
        await stubs.close()
        await app.stop(grace=1.0)


async def test_status_shows_no_scaling_when_off(tmp_path: Path) -> None:
    app = await start_app(make_settings(tmp_path))
    stubs = Stubs(app.address)
    try:
        assert app.autoscaler is None
        reply = await stubs.system.GetStatus(s.GetStatusRequest(), timeout=5)
        assert list(reply.scaling) == []
    finally:
        await stubs.close()
        await app.stop(grace=1.0)


@pytest.mark.parametrize(
    "value, message",
    [
        ("sleep=3:1", "max 1 is below min 3"),
        ("sleep=2", "write type=min:max"),
        ("9x=0:1", "not an agent type name"),
        ({"sleep": {"min": 1, "most": 3}}, "takes min and max"),
    ],
)
def test_bad_scaling_types_are_refused_with_what_to_write(tmp_path: Path, value, message) -> None:
    with pytest.raises(Exception) as caught:
        load_settings(home=tmp_path, environ={}, overrides={"scaling.types": value})
    assert message in str(caught.value)


def test_scaling_types_read_both_shapes(tmp_path: Path) -> None:
    for value in ("echo=1:4, sleep=0:2", {"echo": {"min": 1, "max": 4}, "sleep": {"max": 2}}):
        settings = load_settings(home=tmp_path, environ={}, overrides={"scaling.types": value})
        assert settings["scaling.types"] == {"echo": {"min": 1, "max": 4}, "sleep": {"min": 0, "max": 2}}
