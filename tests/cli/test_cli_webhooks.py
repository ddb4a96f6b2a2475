"""``maos webhook ...`` through the real CLI against a real control plane and a real HTTP receiver."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.app import App
from controlplane.webhooks import signing
from maos_cli._errors import EXIT_GENERIC, EXIT_INVALID_ARGUMENT, EXIT_NOT_FOUND, EXIT_USAGE
from tests.cli.conftest import Maos
from tests.harness.receiver import Receiver
from tests.harness.server import make_settings, start_app, wait_for


@pytest.fixture
async def hooked(maos_home: Path) -> AsyncIterator[App]:
    """A control plane whose webhooks may call the receiver on 127.0.0.1."""
    app = await start_app(
        make_settings(
            maos_home,
            **{
                "webhooks.allow_private": True,
                "webhooks.poll_interval": 0.1,
                "webhooks.retry_initial_backoff": 30,
            },
        )
    )
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


async def test_create_list_show_test_update_deliveries_delete(
    hooked: App, maos_home: Path, receiver: Receiver
) -> None:
    maos = Maos(hooked.address, maos_home)
    result = await maos("webhook", "create", "--url", receiver.url, "--events", "task.completed,task.failed")
    assert result.exit_code == 0, result.output
    hook_id = result.stdout.strip()
    assert hook_id.startswith("wh") and "\n" not in hook_id
    secret = result.stderr.rsplit(" ", 1)[-1].strip()
    assert secret.startswith("whsec_") and "shown only now" in result.stderr

    result = await maos("webhook", "list")
    assert (
        result.exit_code == 0 and hook_id in result.stdout and "task.completed,task.failed" in result.stdout
    )
    result = await maos("-o", "json", "webhook", "show", hook_id)
    shown = json.loads(result.stdout)
    assert shown["url"] == receiver.url and shown["events"] == ["task.completed", "task.failed"]
    assert "secret" not in json.dumps(shown) or shown.get("secret") == ""

    result = await maos("webhook", "test", hook_id)
    assert result.exit_code == 0, result.output
    assert "delivered webhook.test: HTTP 200" in result.stdout
    [r] = receiver.snapshot()
    assert signing.verify(secret, r.body, r.headers["MAOS-Signature"])

    receiver.default = 500
    result = await maos("webhook", "test", hook_id)
    assert (
        result.exit_code == EXIT_GENERIC
        and "HTTP 500" in result.stderr
        and "next attempt at" in result.stderr
    )
    receiver.default = 200

    result = await maos("webhook", "update", hook_id, "--disable", "--events", "*")
    assert result.exit_code == 0, result.output
    assert "disabled" in result.stdout and "Events:   *" in result.stdout
    result = await maos("-o", "json", "webhook", "update", hook_id, "--enable", "--rotate-secret")
    rotated = json.loads(result.stdout)
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
    assert rotated["webhook"]["disabled"] is False
    assert (await maos("webhook", "test", hook_id)).exit_code == 0
    assert signing.verify(
        rotated["secret"], receiver.snapshot()[-1].body, receiver.snapshot()[-1].headers["MAOS-Signature"]
    )

    result = await maos("webhook", "deliveries", hook_id)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split()[:6] == ["DELIVERY", "EVENT", "STATUS", "ATTEMPTS", "HTTP", "LATENCY"]
    assert "SUCCEEDED" in result.stdout and "PENDING" in result.stdout and "HTTP 500" in result.stdout
    result = await maos("-o", "json", "webhook", "deliveries", hook_id)
    states = sorted(d["state"] for d in json.loads(result.stdout)["deliveries"])
    assert states == [
        "PENDING",
        "SUCCEEDED",
        "SUCCEEDED",
    ]

    result = await maos("webhook", "delete", hook_id)
    assert result.exit_code == 0 and f"deleted webhooks/{hook_id}" in result.stderr
    assert (await maos("webhook", "show", hook_id)).exit_code == EXIT_NOT_FOUND
    assert (await maos("webhook", "deliveries", hook_id)).exit_code == EXIT_NOT_FOUND


async def test_bad_inputs(hooked: App, maos_home: Path, receiver: Receiver) -> None:
    maos = Maos(hooked.address, maos_home)
    result = await maos("webhook", "create", "--url", "ftp://example.com/x", "--events", "task.failed")
    assert result.exit_code == EXIT_INVALID_ARGUMENT and "webhook.url" in result.stderr
    result = await maos("webhook", "create", "--url", receiver.url, "--events", "task.exploded")
    assert result.exit_code == EXIT_INVALID_ARGUMENT and "task.exploded" in result.stderr
    result = await maos(
        "webhook", "create", "--url", receiver.url, "--events", "task.failed", "--secret", "short"
    )
    assert result.exit_code == EXIT_INVALID_ARGUMENT and "webhook.secret" in result.stderr
    assert (
        await maos("webhook", "create", "--url", receiver.url)
    ).exit_code == EXIT_USAGE  # --events required
    hook_id = (await maos("webhook", "create", "--url", receiver.url, "--events", "*")).stdout.strip()
    assert (await maos("webhook", "update", hook_id)).exit_code == EXIT_USAGE
    assert (
        await maos("webhook", "update", hook_id, "--secret", "x" * 20, "--rotate-secret")
    ).exit_code == EXIT_USAGE
    assert (await maos("webhook", "show", "nope")).exit_code == EXIT_NOT_FOUND
    assert receiver.snapshot() == []


async def test_webhook_receives_a_task_submitted_from_the_cli(
    hooked: App, maos_home: Path, receiver: Receiver
) -> None:
    maos = Maos(hooked.address, maos_home)
    assert (
        await maos(
            "webhook",
            "create",
            "--url",
            receiver.url,
            "--events",
            "task.submitted",
            "--secret",
            "whsec_cli-secret-123456",
        )
    ).exit_code == 0
    task_id = (await maos("task", "submit", "Summarize the benefits of tests")).stdout.strip()
    await wait_for(lambda: receiver.snapshot(), 15, message="the delivery")
    [r] = receiver.snapshot()
    assert r.event["data"]["task_id"] == task_id and r.headers["MAOS-Event"] == "task.submitted"
    assert signing.verify("whsec_cli-secret-123456", r.body, r.headers["MAOS-Signature"])
