"""``maos join-token create|list|revoke`` against a control plane that requires API keys."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from agent_sdk.builtin import EchoAgent
from agent_sdk.runner import cli as agent_cli
from agent_sdk.worker import Worker
from controlplane.app import App
from tests.cli.conftest import Maos, stdout_lines
from tests.controlplane.access.test_access import user_key
from tests.harness.server import admin_key, stored_audit

TOKEN_LINE = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")


@pytest.fixture
async def admin_maos(secured: App, maos_home: Path) -> tuple[Maos, str]:
    """The CLI bound to ``secured``, and an admin key to pass as MAOS_TOKEN."""
    return Maos(secured.address, maos_home), await admin_key(secured)


async def test_create_list_revoke(secured: App, admin_maos: tuple[Maos, str]) -> None:
    maos, token = admin_maos
    created = await maos(
        "join-token",
        "create",
        "--agent-types",
        "researcher,coder",
        "--uses",
        "2",
        "--ttl",
        "2h",
        MAOS_TOKEN=token,
    )
    assert created.exit_code == 0, created.output
    lines = stdout_lines(created)
    assert lines[0].startswith("joinTokens/") and "researcher, coder" in lines[0] and "uses 0/2" in lines[0]
    assert TOKEN_LINE.match(lines[1]) and "not shown again" in lines[2]
    token_id = lines[1].split(".")[0]

    as_json = await maos("join-token", "create", "-o", "json", MAOS_TOKEN=token)
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.stdout)
    assert TOKEN_LINE.match(data["token"]) and data["join_token"]["agent_types"] == []
    assert data["join_token"]["max_uses"] == 0 and data["join_token"]["name"].startswith("joinTokens/")

    listed = await maos("join-token", "list", MAOS_TOKEN=token)
    assert listed.exit_code == 0, listed.output
    header, *rows = stdout_lines(listed)
    assert header.split() == ["ID", "AGENT", "TYPES", "USES", "EXPIRES", "STATE", "CREATED"]
    assert len(rows) == 2 and rows[0].startswith(token_id)
    assert "researcher,coder" in rows[0] and "0/2" in rows[0] and "valid" in rows[0]
    assert "any" in rows[1] and "0/unlimited" in rows[1]
    assert lines[1].split(".")[1] not in listed.output and data["token"].split(".")[1] not in listed.output

    revoked = await maos("join-token", "revoke", token_id, MAOS_TOKEN=token)
    assert revoked.exit_code == 0 and revoked.stdout.strip() == f"revoked joinTokens/{token_id}"
    listed = await maos("join-token", "list", "-o", "json", MAOS_TOKEN=token)
    by_name = {t["name"]: t for t in json.loads(listed.stdout)}
    assert by_name[f"joinTokens/{token_id}"]["revoke_time"]
    assert "revoke_time" not in by_name[data["join_token"]["name"]]


async def test_the_printed_token_lets_an_agent_join(secured: App, admin_maos: tuple[Maos, str]) -> None:
    maos, token = admin_maos
    created = await maos(
        "join-token", "create", "--agent-types", "echo", "--uses", "1", "-o", "json", MAOS_TOKEN=token
    )
    worker = Worker(EchoAgent(), secured.address, join_token=json.loads(created.stdout)["token"])
    runner = asyncio.get_running_loop().create_task(worker.run())
    try:
        await asyncio.wait_for(worker.registered.wait(), 15)
        assert worker.credential
    finally:
        await worker.shutdown(grace=0.5)
        await asyncio.wait_for(runner, 15)
    listed = await maos("join-token", "list", MAOS_TOKEN=token)
    assert "1/1" in listed.stdout and "used up" in listed.stdout
    credentials = await maos("api-key", "list", "--user", "joined-agents", MAOS_TOKEN=token)
    assert credentials.exit_code == 0, credentials.output
    [row] = stdout_lines(credentials)[1:]
    assert worker.agent_name in row and "joined-agents" in row


@pytest.mark.parametrize(
    ("args", "exit_code", "text"),
    [
        (["--ttl", "31d"], 4, "30 days"),
        (["--agent-types", "1bad"], 4, "join_token.agent_types[0]"),
        (["--agent-types", "ok,no spaces"], 4, "join_token.agent_types[1]"),
        (["--uses", "-1"], 2, "--uses"),
        (["--ttl", "soon"], 2, "--ttl"),
    ],
)
async def test_bad_input_exits_with_its_code_and_creates_nothing(
    admin_maos: tuple[Maos, str], args: list[str], exit_code: int, text: str
) -> None:
    maos, token = admin_maos
    result = await maos("join-token", "create", *args, MAOS_TOKEN=token)
    assert result.exit_code == exit_code, result.output
    assert text in result.stderr and result.stdout == ""
    listed = await maos("join-token", "list", MAOS_TOKEN=token)
    assert listed.stdout.strip() == "no join tokens"


async def test_unknown_id_and_missing_rights(secured: App, admin_maos: tuple[Maos, str]) -> None:
    maos, token = admin_maos
    unknown = await maos("join-token", "revoke", "abc123", MAOS_TOKEN=token)
    assert unknown.exit_code == 3 and "does not exist" in unknown.stderr
    anonymous = await maos("join-token", "list")
    assert anonymous.exit_code == 7 and "MAOS_TOKEN" in anonymous.stderr
    developer = await user_key(secured, "dev@example.com", "developer")
    denied = await maos("join-token", "create", MAOS_TOKEN=developer)
    assert denied.exit_code == 7 and "agent:join-token" in denied.stderr
    listed = await maos("join-token", "list", MAOS_TOKEN=token)
    assert listed.stdout.strip() == "no join tokens"


async def test_revoking_with_the_whole_token_sends_only_its_id(
    secured: App, admin_maos: tuple[Maos, str]
) -> None:
    """Pasting ``ID.SECRET`` (as create printed it) revokes ID; the secret is sent nowhere, printed nowhere."""
    maos, token = admin_maos
    created = await maos("join-token", "create", "-o", "json", MAOS_TOKEN=token)
    whole = json.loads(created.stdout)["token"]
    token_id, secret = whole.split(".")
    other = json.loads((await maos("join-token", "create", "-o", "json", MAOS_TOKEN=token)).stdout)[
        "join_token"
    ]

    revoked = await maos("join-token", "revoke", whole, MAOS_TOKEN=token)
    assert revoked.exit_code == 0, revoked.output
    assert revoked.stdout.strip() == f"revoked joinTokens/{token_id}"
    assert secret not in revoked.output and "secret (after the '.') is not sent" in revoked.stderr
    listed = {
        t["name"]: t
        for t in json.loads((await maos("join-token", "list", "-o", "json", MAOS_TOKEN=token)).stdout)
    }
    assert listed[f"joinTokens/{token_id}"]["revoke_time"] and "revoke_time" not in listed[other["name"]]
    records = await stored_audit(secured)
    assert records and not any(secret in json.dumps(r) for r in records)


def test_maos_agent_takes_a_token_or_a_join_token_not_both() -> None:
    result = CliRunner().invoke(
        agent_cli,
        ["run", "--type", "echo", "--token", "maos_key_x", "--join-token", "abc123.0123456789abcdef"],
        env={"MAOS_TOKEN": None, "MAOS_JOIN_TOKEN": None},
    )
    assert result.exit_code == 2 and "not both" in result.output
