"""Users and keys across replicas on one PostgreSQL database.

A key revoked, or a user disabled, on one replica is refused by every other within the refresh
interval; a key created on one works on another at once; and a replica starting leaves the
local-agents keys of the replicas still running valid (their launched agents use them).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError
from controlplane.access.manager import AGENT_USER, LOCAL_AGENTS_KEY
from controlplane.app import App, build_app
from tests.harness.server import empty_postgres, make_settings, start_app, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
async def two(tmp_path: Path, postgres_url: str) -> AsyncIterator[tuple[App, App, str]]:
    """Replicas A and B on one PostgreSQL database with access control on, and an admin key."""
    shared = {"database.primary_url": postgres_url, "security.auth": "required"}
    build_app(make_settings(tmp_path / "migrate", **shared)).storage.close()
    empty_postgres(postgres_url)
    a = await start_app(make_settings(tmp_path / "a", **shared))
    _, admin = await a.storage.call(a.access.issue_key_sync, "admin", "admin")
    b = await start_app(make_settings(tmp_path / "b", **shared))
    try:
        yield a, b, admin
    finally:
        await b.stop(grace=1.0)
        await a.stop(grace=1.0)


async def _refused(address: str, token: str) -> bool:
    """Whether the replica at ``address`` refuses the key (a key it accepts may still lack a permission)."""
    async with Client(address, token=token) as client:
        try:
            await client.list_tasks()
        except MaosRpcError as exc:
            assert exc.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED), exc
            return exc.code == grpc.StatusCode.UNAUTHENTICATED
    return False


async def test_a_key_made_on_one_replica_works_on_another_and_its_revocation_holds_there(
    two: tuple[App, App, str],
) -> None:
    a, b, admin = two
    async with Client(a.address, token=admin) as client:
        made = await client.create_api_key("short-lived")
        key = made.secret
        assert not await _refused(b.address, key)  # created on A, accepted by B at once
        await client.revoke_api_key(made.api_key.name)
    assert await _refused(a.address, key)
    await wait_for(lambda: _refused(b.address, key), 10, message="B refusing the key A revoked")


async def test_a_user_disabled_on_one_replica_is_refused_on_another(two: tuple[App, App, str]) -> None:
    a, b, admin = two
    async with Client(a.address, token=admin) as client:
        user = await client.create_user("ops@example.com", ["viewer"])
        key = (await client.create_api_key("ops", user=user.name)).secret
        assert not await _refused(b.address, key)
        await client.update_user(user.name, disabled=True)
    await wait_for(lambda: _refused(b.address, key), 10, message="B refusing the disabled user's key")


async def test_a_starting_replica_keeps_the_local_agents_keys_of_running_ones(
    two: tuple[App, App, str],
) -> None:
    a, b, _ = two
    assert a.launcher.token and b.launcher.token and a.launcher.token != b.launcher.token
    await asyncio.gather(a.access.refresh(), b.access.refresh())
    local = [
        r
        for r in b.access.api_keys.values()
        if r["user"] == AGENT_USER and r.get("display_name") == LOCAL_AGENTS_KEY and not r.get("revoke_time")
    ]
    assert sorted(r["replica"] for r in local) == sorted([a.engine.replica, b.engine.replica])
    for app in (a, b):  # each start's agents still connect, to either replica
        assert not await _refused(a.address, app.launcher.token)
        assert not await _refused(b.address, app.launcher.token)
