"""The API key of supervised local agents lives no longer than the control-plane start that issued it.

A clean shutdown revokes it; a start revokes the keys of earlier starts (one
that crashed never revoked its own). Checked in process and with a control
plane killed by SIGKILL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from agent_sdk.client import Client
from controlplane.access import keys
from controlplane.access.manager import AGENT_USER, LOCAL_AGENTS_KEY
from controlplane.storage.sql import SqlBackendFactory
from tests.controlplane.access.test_access import fails
from tests.harness.server import ControlPlaneProcess, make_settings, start_app, wait_for, wait_for_agents


def local_keys(home: Path) -> list[dict[str, Any]]:
    """The local agents' keys stored in ``home``'s database (read by a separate connection)."""
    backend = SqlBackendFactory().open(make_settings(home).database_url)
    try:
        rows = backend.access_list("api_keys")
    finally:
        backend.close()
    return [r for r in rows if r["user"] == AGENT_USER and r["display_name"] == LOCAL_AGENTS_KEY]


def valid(rows: list[dict[str, Any]]) -> list[str]:
    """Ids of the keys not revoked."""
    return [r["id"] for r in rows if not r.get("revoke_time")]


async def test_clean_shutdown_revokes_it_and_the_next_start_refuses_it(maos_home: Path) -> None:
    settings = make_settings(maos_home, **{"security.auth": "required"})
    first = await start_app(settings)
    try:
        old = first.launcher.token
        assert old is not None and valid(local_keys(maos_home)) == [keys.parse(old)]
        async with Client(first.address, token=old) as agent:
            assert (await agent.get_caller()).principal == f"users/{AGENT_USER}"
    finally:
        await first.stop(grace=1.0)
    assert valid(local_keys(maos_home)) == []

    second = await start_app(settings)
    try:
        new = second.launcher.token
        assert new is not None and new != old
        assert valid(local_keys(maos_home)) == [keys.parse(new)]
        async with Client(second.address, token=old) as stale:
            await fails(
                stale.get_caller(), grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_CREDENTIAL_REVOKED"
            )
        async with Client(second.address, token=new) as agent:
            await agent.get_caller()
    finally:
        await second.stop(grace=1.0)


async def test_supervised_agents_connect_with_this_starts_key(maos_home: Path) -> None:
    app = await start_app(make_settings(maos_home, **{"security.auth": "required"}))
    try:
        await app.launcher.spawn("echo")
        await wait_for_agents(app, 1, timeout=30)
    finally:
        await app.stop(grace=2.0)
    assert valid(local_keys(maos_home)) == []


async def test_a_crashed_starts_key_is_revoked_by_the_next_start(maos_home: Path) -> None:
    plane = ControlPlaneProcess(maos_home, MAOS_SECURITY_AUTH="required")
    try:
        plane.start()
        await plane.wait_ready()
        [crashed] = valid(local_keys(maos_home))
        plane.kill()  # no shutdown: the key stays valid in the database
        assert valid(local_keys(maos_home)) == [crashed]

        plane.start()
        await plane.wait_ready()
        await wait_for(lambda: len(local_keys(maos_home)) == 2, 10, message="the second start's key")
        rows = {r["id"]: r for r in local_keys(maos_home)}
        assert rows[crashed]["revoke_time"]
        [current] = valid(list(rows.values()))
        assert current != crashed
        plane.stop()  # SIGTERM: a clean shutdown
        assert plane.process is not None and plane.process.returncode == 0
        assert valid(local_keys(maos_home)) == []
    finally:
        plane.stop()
