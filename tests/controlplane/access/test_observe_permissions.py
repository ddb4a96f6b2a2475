"""Who may read resources, metrics history and agent metrics, and restart agents (access control on)."""

from __future__ import annotations

import grpc
import pytest

from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError
from controlplane.app import App
from tests.controlplane.access.test_access import user_key
from tests.harness.server import admin_key, stored_audit, wait_for


async def test_a_viewer_reads_figures_but_cannot_restart(secured: App) -> None:
    async with Client(secured.address, token=await admin_key(secured)) as admin:
        (spawned,) = await admin.spawn_agents("echo")
        await wait_for(
            lambda: spawned.name.removeprefix("agents/") in secured.engine.sessions,
            message="the spawned agent connected",
        )
    async with Client(
        secured.address, token=await user_key(secured, "viewer@example.com", "viewer")
    ) as viewer:
        assert (await viewer.resources()).control_plane.measured
        assert (await viewer.metrics_history(3600)).interval.seconds == 60
        assert (await viewer.agent_metrics(spawned.name)).process.measured
        with pytest.raises(MaosRpcError) as denied:
            await viewer.restart_agent(spawned.name)
        assert (
            denied.value.code == grpc.StatusCode.PERMISSION_DENIED and "agent:manage" in denied.value.message
        )
    assert secured.launcher.by_agent(spawned.name.removeprefix("agents/")) is not None  # untouched
    records = await stored_audit(secured, action="RestartAgent")
    assert [(r["decision"], r["status_code"]) for r in records] == [("DENY", "PERMISSION_DENIED")]
