"""``maos user update|delete`` and ``maos role delete`` against a server that requires API keys,
and how the CLI reports a rate limit (exit code 8 and when to retry)."""

from __future__ import annotations

import json
from pathlib import Path

from agent_sdk.client import Client
from controlplane.app import App
from tests.cli.conftest import Maos
from tests.harness.server import admin_key, make_settings, start_app, stored_audit


async def test_user_update_and_delete(secured: App, maos_home: Path) -> None:
    token = await admin_key(secured)
    maos = Maos(secured.address, maos_home)
    async with Client(secured.address, token=token) as admin:
        await admin.create_user("bob@example.com", ["developer"])

    result = await maos(
        "user", "update", "bob@example.com", "--role", "viewer,developer", "--disable", MAOS_TOKEN=token
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "users/bob (bob@example.com): roles viewer, developer, disabled"
    result = await maos("-o", "json", "user", "update", "bob", "--enable", MAOS_TOKEN=token)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["roles"] == ["roles/viewer", "roles/developer"] and not data.get("disabled")

    nothing = await maos("user", "update", "bob", MAOS_TOKEN=token)
    assert nothing.exit_code == 2 and "--role, --disable or --enable" in nothing.output
    unknown = await maos("user", "update", "nobody@example.com", "--disable", MAOS_TOKEN=token)
    assert unknown.exit_code == 3 and "no user has the email nobody@example.com" in unknown.stderr
    no_role = await maos("user", "update", "bob", "--role", "wizard", MAOS_TOKEN=token)
    assert no_role.exit_code == 3 and "wizard" in no_role.stderr
    yourself = await maos("user", "update", "admin", "--disable", MAOS_TOKEN=token)
    assert yourself.exit_code == 5 and "yourself" in yourself.stderr

    deleted = await maos("user", "delete", "bob@example.com", MAOS_TOKEN=token)
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stderr.strip() == "deleted users/bob; its API keys are revoked" and deleted.stdout == ""
    assert "bob" not in secured.access.users
    again = await maos("user", "delete", "bob", MAOS_TOKEN=token)
    assert again.exit_code == 3
    built_in = await maos("user", "delete", "local-agents", MAOS_TOKEN=token)
    assert built_in.exit_code == 5 and "built in" in built_in.stderr


async def test_role_delete(secured: App, maos_home: Path) -> None:
    token = await admin_key(secured)
    maos = Maos(secured.address, maos_home)
    async with Client(secured.address, token=token) as admin:
        await admin.create_role("reviewer", ["task:view"])
        await admin.create_user("carol@example.com", ["reviewer"])

    held = await maos("role", "delete", "reviewer", MAOS_TOKEN=token)
    assert held.exit_code == 5 and "users/carol" in held.stderr
    built_in = await maos("role", "delete", "viewer", MAOS_TOKEN=token)
    assert built_in.exit_code == 5
    missing = await maos("role", "delete", "nope", MAOS_TOKEN=token)
    assert missing.exit_code == 3

    assert (await maos("user", "update", "carol", "--role", "viewer", MAOS_TOKEN=token)).exit_code == 0
    deleted = await maos("role", "delete", "roles/reviewer", MAOS_TOKEN=token)
    assert deleted.exit_code == 0, deleted.output
    assert deleted.stderr.strip() == "deleted roles/reviewer"
    assert "reviewer" not in secured.access.roles


async def test_help_lists_the_commands(secured: App, maos_home: Path) -> None:
    maos = Maos(secured.address, maos_home)
    users = await maos("user", "--help")
    assert "update" in users.stdout and "delete" in users.stdout
    update = " ".join((await maos("user", "update", "--help")).stdout.split())  # unwrapped
    assert "--disable / --enable" in update and "replacing the current ones" in update
    assert "delete" in (await maos("role", "--help")).stdout


async def test_rate_limited_call_exits_8_and_says_when_to_retry(maos_home: Path) -> None:
    app = await start_app(
        make_settings(
            maos_home,
            **{"security.auth": "required", "security.rate_limit.rate": 0.01, "security.rate_limit.burst": 1},
        )
    )
    try:
        token = await admin_key(app)
        maos = Maos(app.address, maos_home)
        assert (await maos("task", "list", MAOS_TOKEN=token)).exit_code == 0
        limited = await maos("task", "list", MAOS_TOKEN=token)
        assert limited.exit_code == 8, limited.output
        assert "exceeded its call rate" in limited.stderr and "retry after" in limited.stderr
    finally:
        await app.stop(grace=1.0)


async def test_api_key_revoke_and_rotate_take_a_pasted_key_by_its_id(secured: App, maos_home: Path) -> None:
    """The id is derived locally: the secret is not sent, printed or audited; a malformed one is a usage error."""
    token = await admin_key(secured)
    maos = Maos(secured.address, maos_home)
    async with Client(secured.address, token=token) as admin:
        rotated, revoked = await admin.create_api_key("rotated"), await admin.create_api_key("revoked")

    result = await maos("api-key", "rotate", rotated.secret, "--overlap", "0", MAOS_TOKEN=token)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(rotated.api_key.name) and rotated.secret not in result.output
    assert rotated.secret[9:21] in result.stderr and "not sent" in result.stderr
    result = await maos("api-key", "revoke", f"apiKeys/{revoked.secret}", MAOS_TOKEN=token)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"revoked {revoked.api_key.name}" and revoked.secret not in result.output

    before = {k["id"]: dict(k) for k in secured.access.api_keys.values()}
    typo = revoked.secret[:-1] + ("0" if revoked.secret[-1] != "0" else "1")  # the checksum no longer matches
    for command in ("revoke", "rotate"):
        result = await maos("api-key", command, typo, MAOS_TOKEN=token)
        assert result.exit_code == 2 and "malformed" in result.stderr, result.output
        assert typo not in result.output and typo[9:21] not in result.output
    assert {k["id"]: dict(k) for k in secured.access.api_keys.values()} == before
    records = await stored_audit(secured)
    assert not any(s[9:] in json.dumps(r) for r in records for s in (rotated.secret, revoked.secret, typo))
    assert {r["resource"] for r in records if r["method"].endswith(("RotateApiKey", "RevokeApiKey"))} == {
        rotated.api_key.name,
        revoked.api_key.name,
    }
