"""Webhook deliveries end to end: a real control plane, a real echo agent and a real HTTP receiver.

The receiver listens on 127.0.0.1, so these control planes set ``webhooks.allow_private: true``;
retry timings are shortened through the ``webhooks.*`` settings.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_sdk.builtin import EchoAgent
from agent_sdk.client import Client
from agent_sdk.proto.maos.v1 import webhook_service_pb2 as webhooks_pb
from agent_sdk.worker import Worker
from controlplane.app import App
from controlplane.webhooks import signing
from tests.harness.receiver import Receiver
from tests.harness.server import ControlPlaneProcess, empty_postgres, make_settings, start_app, wait_for

SECRET = "whsec_a-test-secret-of-ours"
FAST = {
    "webhooks.allow_private": True,
    "webhooks.retry_initial_backoff": 0.2,
    "webhooks.retry_max_backoff": 0.5,
    "webhooks.poll_interval": 0.1,
    "webhooks.timeout": 2.0,
}


def verified(secret: str, r: object) -> bool:
    """What a receiver does (docs/webhooks.md): HMAC-SHA256 of "<t>.<raw body>", compared in constant time."""
    header = r.headers["MAOS-Signature"]  # type: ignore[attr-defined]
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), fields["t"].encode() + b"." + r.body, hashlib.sha256).hexdigest()  # type: ignore[attr-defined]
    return hmac.compare_digest(expected, fields["v1"]) and signing.verify(secret, r.body, header)  # type: ignore[attr-defined]


@pytest.fixture
async def hooked(maos_home: Path) -> AsyncIterator[App]:
    """A control plane whose webhooks may call 127.0.0.1, with fast retries."""
    app = await start_app(make_settings(maos_home, **FAST))
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


async def run_echo(app: App) -> tuple[Worker, asyncio.Task[None]]:
    worker = Worker(EchoAgent(), app.address, max_backoff=0.5)
    runner = asyncio.get_running_loop().create_task(worker.run())
    await asyncio.wait_for(worker.registered.wait(), 15)
    return worker, runner


async def test_task_events_are_delivered_signed_with_their_headers_and_logged(
    hooked: App, receiver: Receiver
) -> None:
    worker, runner = await run_echo(hooked)
    try:
        async with Client(hooked.address) as client:
            hook, generated = await client.create_webhook(
                receiver.url, secret=SECRET, events=["task.submitted", "task.started", "task.completed"]
            )
            assert generated == ""  # a secret was given: nothing to show
            task = await client.submit_task(description="What is 2+2?")
            await client.wait_task(task.name, timeout=30)
            await wait_for(lambda: len(receiver.snapshot()) >= 3, 15, message="three deliveries")
            log = await client.list_webhook_deliveries(hook.name)
    finally:
        await worker.shutdown(grace=1.0)
        await runner
    got = receiver.snapshot()
    # Deliveries run concurrently, so they may arrive in any order (docs/webhooks.md says so).
    assert sorted(r.headers["MAOS-Event"] for r in got) == [
        "task.completed",
        "task.started",
        "task.submitted",
    ]
    for r in got:
        assert verified(SECRET, r), r.headers
        assert r.event["event"] == r.headers["MAOS-Event"] and r.event["data"]["task_id"] == task.name[6:]
        assert r.headers["Content-Type"] == "application/json" and r.path == "/hook"
    assert len({r.delivery for r in got}) == 3 and all(r.delivery.startswith("dlv_") for r in got)
    [completed] = [r for r in got if r.headers["MAOS-Event"] == "task.completed"]
    assert completed.event["data"]["status"] == "COMPLETED" and completed.event["data"]["output"]
    assert not verified("whsec_some-other-secret", got[0])
    assert [d.event for d in log.deliveries] == [
        "task.completed",
        "task.started",
        "task.submitted",
    ]  # newest first
    assert {d.id for d in log.deliveries} == {r.delivery for r in got}
    for d in log.deliveries:
        assert d.state == webhooks_pb.WEBHOOK_DELIVERY_STATE_SUCCEEDED and d.succeeded
        assert d.http_status == 200 and d.attempt == 1 and d.HasField("latency") and d.task == task.name
        assert not d.HasField("next_attempt_time")


async def test_a_500_is_retried_with_the_same_delivery_id(hooked: App, receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    async with Client(hooked.address) as client:
        hook, _ = await client.create_webhook(receiver.url, secret=SECRET, events=["task.submitted"])
        await client.submit_task(description="retry me")
        await wait_for(
            lambda: any(r.answered == 200 for r in receiver.snapshot()), 15, message="a successful retry"
        )
        log = await client.list_webhook_deliveries(hook.name)
    got = receiver.snapshot()
    assert [r.answered for r in got] == [500, 503, 200]
    assert len({r.delivery for r in got}) == 1 and len({r.body for r in got}) == 1
    assert all(verified(SECRET, r) for r in got)
    [d] = log.deliveries
    assert d.succeeded and d.attempt == 3 and d.http_status == 200 and d.error == ""
    scraped = {
        s.labels["outcome"]: s.value
        for m in hooked.metrics.registry.collect()
        if m.name == "maos_webhook_delivery_attempts"
        for s in m.samples
        if s.name.endswith("_total")
    }
    assert scraped == {"succeeded": 1, "retrying": 2, "failed": 0}


async def test_failing_deliveries_show_status_error_and_next_retry(
    maos_home: Path, receiver: Receiver
) -> None:
    receiver.default = 500
    app = await start_app(
        make_settings(
            maos_home, **{**FAST, "webhooks.retry_initial_backoff": 30, "webhooks.retry_max_backoff": 60}
        )
    )
    try:
        async with Client(app.address) as client:
            hook, _ = await client.create_webhook(receiver.url, events=["task.submitted"])
            await client.submit_task(description="x")
            await wait_for(lambda: receiver.snapshot(), 15, message="the first attempt")

            async def recorded() -> object:
                page = await client.list_webhook_deliveries(hook.name)
                return page.deliveries and page.deliveries[0].attempt == 1 and page.deliveries[0]

            d = await wait_for(recorded, 10, message="the attempt recorded")
    finally:
        await app.stop(grace=1.0)
    assert d.state == webhooks_pb.WEBHOOK_DELIVERY_STATE_PENDING and d.http_status == 500 and "500" in d.error
    assert d.HasField("next_attempt_time") and 20 < d.next_attempt_time.seconds - d.time.seconds <= 31


async def test_deliveries_survive_a_control_plane_crash_with_the_same_delivery_id(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.default = 500
    proc = ControlPlaneProcess(
        tmp_path / "home",
        MAOS_WEBHOOKS_ALLOW_PRIVATE="true",
        MAOS_WEBHOOKS_RETRY_INITIAL_BACKOFF="3",
        MAOS_WEBHOOKS_POLL_INTERVAL="0.1",
        MAOS_WEBHOOKS_TIMEOUT="2",
    )
    proc.start()
    try:
        await proc.wait_ready()
        async with Client(proc.address) as client:
            hook, secret = await client.create_webhook(receiver.url, events=["task.submitted"])
            await client.submit_task(description="survive me")
            await wait_for(lambda: receiver.snapshot(), 15, message="the first attempt")

            async def attempted() -> bool:
                page = await client.list_webhook_deliveries(hook.name)
                return bool(page.deliveries) and page.deliveries[0].attempt >= 1

            await wait_for(attempted, 10, message="the failed attempt recorded")
        proc.kill()  # SIGKILL between two attempts: only the database remembers the delivery
        before = len(receiver.snapshot())
        receiver.default = 200
        proc.start()
        await proc.wait_ready()
        # Within the retry delay, or within a claim's lease (14 s here) if the kill cut an attempt short.
        await wait_for(
            lambda: any(r.answered == 200 for r in receiver.snapshot()),
            30,
            message="the delivery retried by the restarted control plane",
        )
        async with Client(proc.address) as client:
            [d] = (await client.list_webhook_deliveries(hook.name)).deliveries
    finally:
        proc.stop()
    got = receiver.snapshot()
    assert len(got) > before and got[-1].answered == 200
    assert len({r.delivery for r in got}) == 1 and all(verified(secret, r) for r in got)
    assert d.succeeded and d.attempt == len(got)


async def test_the_outbox_on_postgresql(maos_home: Path, postgres_url: str, receiver: Receiver) -> None:
    from controlplane.app import build_app

    receiver.statuses = [500]
    app = build_app(make_settings(maos_home, **{**FAST, "database.primary_url": postgres_url}))
    empty_postgres(postgres_url)
    await app.start("127.0.0.1:0")
    try:
        async with Client(app.address) as client:
            hook, secret = await client.create_webhook(receiver.url, events=["task.submitted"])
            task = await client.submit_task(description="on postgres")
            await wait_for(
                lambda: any(r.answered == 200 for r in receiver.snapshot()),
                15,
                message="the retried delivery",
            )
            [d] = (await client.list_webhook_deliveries(hook.name)).deliveries
    finally:
        await app.stop(grace=1.0)
    got = receiver.snapshot()
    assert [r.answered for r in got] == [500, 200] and len({r.delivery for r in got}) == 1
    assert all(verified(secret, r) for r in got) and got[0].event["data"]["task_id"] == task.name[6:]
    assert d.succeeded and d.attempt == 2 and d.id == got[0].delivery


async def test_test_event_is_sent_now_and_a_disabled_webhook_gets_nothing(
    hooked: App, receiver: Receiver
) -> None:
    async with Client(hooked.address) as client:
        hook, secret = await client.create_webhook(receiver.url, events=["task.submitted"])
        assert secret.startswith("whsec_")
        delivery = await client.test_webhook(hook.name)
        assert delivery.succeeded and delivery.event == "webhook.test" and delivery.http_status == 200
        [r] = receiver.snapshot()
        assert r.headers["MAOS-Event"] == "webhook.test" and r.delivery == delivery.id and verified(secret, r)
        await client.update_webhook(hook.name, disabled=True)
        await client.submit_task(description="nobody hears this")
        disabled = await client.test_webhook(hook.name)
        assert not disabled.succeeded and disabled.state == webhooks_pb.WEBHOOK_DELIVERY_STATE_FAILED
        assert "disabled" in disabled.error
        _, rotated = await client.update_webhook(hook.name, disabled=False, rotate_secret=True)
        assert rotated.startswith("whsec_") and rotated != secret
        assert (await client.test_webhook(hook.name)).succeeded
    got = receiver.snapshot()
    assert [r.headers["MAOS-Event"] for r in got] == ["webhook.test", "webhook.test"]
    assert verified(rotated, got[-1]) and not verified(secret, got[-1])
