"""The CLI against a secured server: another principal's agent, a narrowed key, a viewer's export.

Each refusal exits 7 (UNAUTHENTICATED / PERMISSION_DENIED) with a message that names what is
missing, and changes nothing.
"""

from __future__ import annotations

from pathlib import Path

from agent_sdk.client import Client
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from controlplane.app import App
from maos_cli._errors import EXIT_UNAUTHENTICATED
from tests.cli.conftest import Maos
from tests.controlplane.access.test_access import user_key
from tests.controlplane.access.test_join_tokens import join, register
from tests.harness.server import admin_key


async def test_another_principals_agent_cannot_be_paused_or_killed(secured: App, maos_home: Path) -> None:
    maos = Maos(secured.address, maos_home)
    dev = await user_key(secured, "dev@example.com", "developer")
    registered, stream = await join(secured, register("echo"), bearer=await admin_key(secured))
    agent_id = registered.agent.removeprefix("agents/")
    try:
        shown = await maos("agent", "status", agent_id, MAOS_TOKEN=dev)
        assert shown.exit_code == 0, shown.output
        assert any(line.split() == ["Owner:", "users/admin"] for line in shown.stdout.splitlines()), (
            shown.stdout
        )
        for command in (
            ["agent", "pause", agent_id],
            ["agent", "drain", agent_id],
            ["agent", "kill", agent_id],
        ):
            result = await maos(*command, MAOS_TOKEN=dev)
            assert result.exit_code == EXIT_UNAUTHENTICATED, result.output
            assert "users/admin" in result.stderr and "agent:manage-all" in result.stderr, result.stderr
        assert secured.engine.sessions[agent_id].status() == enums.AGENT_STATUS_IDLE
    finally:
        await stream.close()


async def test_a_narrowed_key_cannot_mint_a_key_with_every_permission(secured: App, maos_home: Path) -> None:
    maos = Maos(secured.address, maos_home)
    await user_key(secured, "dev@example.com", "developer")
    _, narrow = await secured.storage.call(secured.access.issue_key_sync, "dev", "narrow", ["apikey:manage"])
    before = set(secured.access.api_keys)
    result = await maos("api-key", "create", "--name", "everything", MAOS_TOKEN=narrow)
    assert result.exit_code == EXIT_UNAUTHENTICATED, result.output
    assert "limited to apikey:manage" in result.stderr and "every permission" in result.stderr
    assert set(secured.access.api_keys) == before
    bogus = await maos("api-key", "create", "--name", "x", "--permissions", "task:bogus", MAOS_TOKEN=narrow)
    assert bogus.exit_code != 0 and "'task:bogus' is not a known permission" in bogus.stderr


async def test_a_viewer_cannot_export_a_checkpoint(secured: App, maos_home: Path, tmp_path: Path) -> None:
    maos = Maos(secured.address, maos_home)
    async with Client(secured.address, token=await admin_key(secured)) as admin:
        checkpoint = await admin.create_checkpoint("nightly")
    viewer = await user_key(secured, "viewer@example.com", "viewer")
    listed = await maos("checkpoint", "list", MAOS_TOKEN=viewer)
    assert listed.exit_code == 0 and checkpoint.name.removeprefix("checkpoints/") in listed.stdout
    target = tmp_path / "out.ckpt"
    result = await maos("checkpoint", "export", checkpoint.name, "--output", str(target), MAOS_TOKEN=viewer)
    assert result.exit_code == EXIT_UNAUTHENTICATED, result.output
    assert "checkpoint:export" in result.stderr
    assert not target.exists()
