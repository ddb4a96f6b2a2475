"""Credentials never shown: ``maos config get/set``, ``maos db``, health and the control plane's logs."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from agent_sdk.agent import Agent
from agent_sdk.client import Client
from agent_sdk.context import Context
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import system_service_pb2_grpc as system_grpc
from agent_sdk.proto.maos.v1 import task_service_pb2 as t
from agent_sdk.worker import Worker
from controlplane.app import build_app
from controlplane.redaction import redact, redact_url, shown_setting
from maos_cli.main import cli
from tests.harness.server import admin_key, make_settings, wait_for

QUERY_SECRET = "q-hunter2-secret"
USERINFO_SECRET = "u-hunter2-secret"
API_KEY = "sk-ant-api03-hunter2-secret"


def with_query_password(url: str) -> str:
    """The session's PostgreSQL database as a URL whose every credential is a query parameter.

    No ``@`` in it (what the issue found shown); libpq ignores the password under trust authentication.
    """
    parsed = make_url(url)
    return (
        f"postgresql:///{parsed.database}?host={parsed.host}&port={parsed.port or 5432}"
        f"&user={parsed.username}&password={QUERY_SECRET}&sslmode=disable"
    )


async def user_key(app, email: str, *roles: str) -> str:
    async with Client(app.address, token=await admin_key(app)) as admin:
        user = await admin.create_user(email, list(roles))
    _, secret = await app.storage.call(app.access.issue_key_sync, user.name.removeprefix("users/"), "k")
    return secret


def maos(home: Path, *args: str, **env: str):
    return CliRunner().invoke(
        cli,
        list(args),
        env={
            "MAOS_HOME": str(home),
            "MAOS_DATABASE_PRIMARY_URL": None,
            "MAOS_TOKEN": None,
            "NO_COLOR": "1",
            **env,
        },
        catch_exceptions=False,
    )


async def test_config_get_as_a_viewer_shows_no_credential(
    tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """GetConfig shows settings with every credential form masked, to a viewer and an admin alike."""
    settings = make_settings(
        tmp_path / "home",
        **{
            "security.auth": "required",
            "database.primary_url": with_query_password(postgres_url),
            "redis.url": f"redis://:{USERINFO_SECRET}@127.0.0.1:6379/0",
            "claude.api_key": API_KEY,
        },
    )
    app = build_app(settings)
    with caplog.at_level(logging.DEBUG):
        await app.start("127.0.0.1:0")
    try:
        token = await user_key(app, "viewer@example.com", "viewer")
        result = await asyncio.to_thread(
            maos, tmp_path / "cli", "--addr", app.address, "--token", token, "-o", "json", "config", "get"
        )
        assert result.exit_code == 0, result.output
        shown = {v["key"]: v["value"] for v in json.loads(result.stdout)}
        for secret in (QUERY_SECRET, USERINFO_SECRET, API_KEY):
            assert secret not in result.output
        assert shown["claude.api_key"] == "(set)"
        assert (
            "password=***" in shown["database.primary_url"]
            and "sslmode=disable" in shown["database.primary_url"]
        )
        assert shown["redis.url"] == "redis://:***@127.0.0.1:6379/0"
        health = await asyncio.to_thread(
            maos,
            tmp_path / "cli",
            "--addr",
            app.address,
            "--token",
            token,
            "-o",
            "json",
            "status",
            "--detailed",
            "--resources",
        )
        assert health.exit_code == 0, health.output
        assert QUERY_SECRET not in health.output and USERINFO_SECRET not in health.output
        logging.getLogger("controlplane.test").warning("connecting to %s", settings.database_url)
        written = [r.getMessage() for r in caplog.records if r.name.startswith("controlplane")]
        assert any("connecting to" in m for m in written) and not any(QUERY_SECRET in m for m in written)
        async with grpc.aio.insecure_channel(app.address) as channel:
            logs = await system_grpc.SystemServiceStub(channel).ListLogs(
                system_pb.ListLogsRequest(contains="connecting to"),
                timeout=5,
                metadata=[("authorization", f"Bearer {await admin_key(app)}")],
            )
        assert logs.records and all(
            "password=***" in r.message and QUERY_SECRET not in r.message for r in logs.records
        )
    finally:
        await app.stop(grace=1.0)


def test_config_set_does_not_echo_a_secret(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = maos(home, "config", "set", "claude.api_key", API_KEY)
    assert result.exit_code == 0, result.output
    assert API_KEY not in result.output and "claude.api_key = (set)" in result.output
    url = f"postgresql://maos:{USERINFO_SECRET}@db.example:5432/maos?sslpassword={QUERY_SECRET}"
    result = maos(home, "-o", "json", "config", "set", "database.primary_url", url)
    assert result.exit_code == 0, result.output
    assert USERINFO_SECRET not in result.output and QUERY_SECRET not in result.output
    assert json.loads(result.stdout)["value"] == "postgresql://maos:***@db.example:5432/maos?sslpassword=***"


def test_db_migrate_shows_the_url_without_credentials(tmp_path: Path, postgres_url: str) -> None:
    result = maos(
        tmp_path / "home", "-o", "json", "db", "migrate", "--url", with_query_password(postgres_url)
    )
    assert result.exit_code == 0, result.output
    assert QUERY_SECRET not in result.output
    assert "password=***" in json.loads(result.stdout)["database"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql://h/db?password=pw&sslpassword=pw2&sslmode=require",
            "postgresql://h/db?password=***&sslpassword=***&sslmode=require",
        ),
        ("redis://h:6379/0?token=t&key=k&secret=s", "redis://h:6379/0?token=***&key=***&secret=***"),
        ("https://example.com/path?q=1", "https://example.com/path?q=1"),
        ("host=db user=u password=pw dbname=m", "host=db user=u password=*** dbname=m"),
        ("max_tokens=4096 tokens=12", "max_tokens=4096 tokens=12"),
        (
            "failed: connection to postgresql://u:pw@h/db refused",
            "failed: connection to postgresql://u:***@h/db refused",
        ),
    ],
)
def test_redact_masks_every_credential_form(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact_url(text) == expected


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [
        ("claude.api_key", "sk-1", "(set)"),
        ("claude.api_key", "", ""),
        ("webhooks.signing_secret", "s", "(set)"),
        ("x.join_token", "a.b", "(set)"),
        ("db.password", "p", "(set)"),
        ("server.tls.key_file", "/etc/k.pem", "/etc/k.pem"),
        ("security.auth", "required", "required"),
    ],
)
def test_secret_looking_settings_are_never_shown(key: str, value: str, shown: str) -> None:
    assert shown_setting(key, value) == shown


class Leaky(Agent):
    """Logs a database URL with its password, as a careless agent might."""

    agent_type = "leaky"
    capabilities = ["*"]

    async def handle(self, ctx: Context) -> str:
        ctx.log.info("using postgresql://maos:%s@db/maos", USERINFO_SECRET)
        return "done"


async def test_agent_log_lines_are_kept_without_credentials(control_plane, stubs) -> None:
    worker = Worker(Leaky(), control_plane.address)
    runner = asyncio.get_running_loop().create_task(worker.run())
    try:
        await asyncio.wait_for(worker.registered.wait(), 10)
        await stubs.tasks.SubmitTask(t.SubmitTaskRequest(task=m.Task(description="leak")), timeout=5)

        async def forwarded():
            logs = await stubs.system.ListLogs(
                system_pb.ListLogsRequest(contains="using postgresql"), timeout=5
            )
            return logs.records

        [record] = await wait_for(forwarded, 15, message="the agent's log line")
        assert record.message == "using postgresql://maos:***@db/maos"
    finally:
        await worker.shutdown(0.5)
        await runner
