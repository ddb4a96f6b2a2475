"""Deliveries join the very commit of the change they report, and a failed commit sends nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agent_sdk.client import Client
from controlplane.app import App
from controlplane.domain.model import TaskStatus
from controlplane.errors import Unavailable
from controlplane.storage.base import WriteBatch
from controlplane.webhooks.records import FAILED, DeliveryRecord
from tests.harness.receiver import Receiver
from tests.harness.server import make_settings, start_app, wait_for


@pytest.fixture
async def hooked(maos_home: Path) -> AsyncIterator[App]:
    """A control plane whose webhooks may call 127.0.0.1."""
    app = await start_app(
        make_settings(maos_home, **{"webhooks.allow_private": True, "webhooks.poll_interval": 0.1})
    )
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


def record_writes(app: App, fail_first_outbox: bool = False) -> list[WriteBatch]:
    """Every batch the committer writes (the first one holding a delivery fails when asked)."""
    written: list[WriteBatch] = []
    real = app.storage.write
    failed: list[bool] = []

    async def write(batch: WriteBatch) -> Any:
        if fail_first_outbox and batch.webhook_deliveries and not failed:
            failed.append(True)
            raise Unavailable("storage unavailable: injected")
        written.append(batch)
        return await real(batch)

    app.storage.write = write  # type: ignore[method-assign]
    return written


async def test_a_delivery_is_written_in_the_commit_of_its_change(hooked: App, receiver: Receiver) -> None:
    written = record_writes(hooked)
    async with Client(hooked.address) as client:
        await client.create_webhook(receiver.url, events=["task.submitted", "task.cancelled"])
        task = await client.submit_task(description="x")  # no agent: it stays queued until cancelled
        await client.cancel_task(task.name)
        await wait_for(lambda: len(receiver.snapshot()) >= 2, 15, message="two deliveries")
    task_id = task.name[6:]
    # A batch holds each task in its latest state: the submitted task may already be queued in it.
    for event, statuses in (
        ("task.submitted", {TaskStatus.PENDING, TaskStatus.QUEUED}),
        ("task.cancelled", {TaskStatus.CANCELLED}),
    ):
        [batch] = [b for b in written if any(d.event == event for d in b.webhook_deliveries)]
        assert any(t.id == task_id and t.status in statuses for t in batch.tasks), event


async def test_a_failed_commit_sends_nothing_until_it_is_written(hooked: App, receiver: Receiver) -> None:
    written = record_writes(hooked, fail_first_outbox=True)
    async with Client(hooked.address) as client:
        await client.create_webhook(receiver.url, events=["task.submitted"])
        # Its first commit fails; the committer keeps the records and writes the task and its delivery
        # together on its next try (the client's retry of UNAVAILABLE, same request_id, gets that task).
        await client.submit_task(description="x")
        await wait_for(lambda: receiver.snapshot(), 15, message="the delivery once committed")
    [r] = receiver.snapshot()
    [batch] = [b for b in written if b.webhook_deliveries]
    assert [d.id for d in batch.webhook_deliveries] == [r.delivery]
    assert [t.id for t in batch.tasks] == [r.event["data"]["task_id"]]


async def test_a_delivery_of_a_deleted_webhook_is_marked_failed_not_retried_forever(hooked: App) -> None:
    backend = hooked.storage.backend
    now = time.time()
    orphan = DeliveryRecord(
        id="dlv_orphan",
        webhook_id="ghost",
        event="task.failed",
        event_id="evt_x",
        payload="{}",
        create_time=now,
        next_attempt_time=now,
    )
    await hooked.storage.call(backend.add_deliveries, [orphan])

    async def settled() -> bool:
        [row] = await hooked.storage.call(backend.list_deliveries, "ghost")
        return row.status == FAILED and row.error == "the webhook was deleted"

    await wait_for(settled, 10, message="the orphan delivery marked failed")
