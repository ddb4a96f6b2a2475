"""Webhooks of one control plane: who may manage which, and which events become deliveries.

:class:`Webhooks` owns the webhooks' in-memory view (reloaded from storage so
changes made by other processes arrive within seconds), the engine tap that
turns a task's state change into outbox rows of the *same* commit, and the
:class:`~controlplane.webhooks.worker.DeliveryWorker`. It knows no gRPC: the
servicer hands it an :class:`Actor`.
"""

from __future__ import annotations

import asyncio
import builtins
import re
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from controlplane.domain.events import Event
from controlplane.domain.model import Task
from controlplane.domain.tasks import validate_request_id
from controlplane.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from controlplane.storage.base import StoresWebhooks
from controlplane.webhooks import events, signing
from controlplane.webhooks.records import DeliveryRecord, WebhookRecord
from controlplane.webhooks.urls import check_url
from controlplane.webhooks.worker import DeliveryWorker

_ID = re.compile(r"[a-z][a-z0-9-]{0,62}")
MIN_SECRET, MAX_SECRET = 16, 256
#: The fields UpdateWebhook may change (``event_types`` is the proto's older spelling of ``events``).
UPDATABLE = ("url", "events", "event_types", "secret", "disabled")
_NOT_FOUND = "ERROR_REASON_WEBHOOK_NOT_FOUND"


@dataclass(frozen=True)
class Actor:
    """Who is calling, and what they may do beyond their own webhooks."""

    principal: str
    views_all_webhooks: bool = False  # webhook:view-all
    manages_all_webhooks: bool = False  # admin
    views_all_tasks: bool = False  # task:view-all: the webhooks it makes may receive every task's events


@dataclass
class Changes:
    """The new values of an UpdateWebhook (only those named in ``paths`` apply)."""

    paths: Sequence[str]
    url: str = ""
    events: Sequence[str] = ()
    secret: str = ""
    disabled: bool = False


def validate_secret(secret: str, field: str = "webhook.secret") -> None:
    """A secret is 16-256 printable ASCII characters without spaces."""
    if not MIN_SECRET <= len(secret) <= MAX_SECRET or not all("!" <= c <= "~" for c in secret):
        raise InvalidArgument(
            f"{field} must be {MIN_SECRET}-{MAX_SECRET} printable ASCII characters without "
            "spaces (leave it empty to have one generated)",
            field=field,
        )


class Webhooks:
    """Webhook management, the event tap and the delivery worker of one control plane.

    Args:
        storage: The StorageExecutor.
        settings: The settings (``webhooks.*``).
        committer: The engine's committer (deliveries join its commits).
        replica: This process's replica id.
        owner_reach: What a principal may see now: ``all`` tasks, its ``own``, or ``none``.
        metrics: The control plane's metrics (delivery attempts and their duration), or None.
    """

    def __init__(
        self,
        storage: Any,
        settings: Any,
        committer: Any,
        replica: str,
        owner_reach: Callable[[str], str],
        metrics: Any = None,
    ):
        self.storage = storage
        self.settings = settings
        self.committer = committer
        self.owner_reach = owner_reach
        backend = storage.backend
        self.backend: StoresWebhooks | None = backend if isinstance(backend, StoresWebhooks) else None
        self.hooks: dict[str, WebhookRecord] = {}
        self.worker = (
            DeliveryWorker(storage, settings, replica, self.reload, metrics) if self.backend else None
        )
        self._creating = asyncio.Lock()
        self._wake_pending = -1  # the committer generation already set to wake the worker

    # --- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Load the webhooks and start delivering (nothing without the storage capability)."""
        if self.worker is not None:
            await self.reload()
            self.worker.start()

    async def stop(self) -> None:
        """Stop delivering."""
        if self.worker is not None:
            await self.worker.stop()

    async def reload(self) -> None:
        """Refresh the in-memory view of every webhook from storage."""
        backend = self._backend()
        records = await self.storage.call(backend.list_webhooks, None, 0, 1_000_000)
        self.hooks = {r.id: r for r in records}

    def _backend(self) -> StoresWebhooks:
        if self.backend is None:
            raise FailedPrecondition(
                f"the storage backend {self.storage.backend.kind!r} does not store webhooks",
                reason="ERROR_REASON_NOT_SUPPORTED",
            )
        return self.backend

    # --- the engine tap ------------------------------------------------------------

    def tap(self, event: Event, task: Task) -> None:
        """Add a delivery to the outbox, in the commit of ``event``'s change, for each webhook taking it."""
        if not self.hooks:
            return
        name = events.event_name(event)
        if name is None:
            return
        reach: dict[str, str] = {}
        targets = []
        for hook in self.hooks.values():
            if not events.subscribed(hook, name):
                continue
            if hook.owner not in reach:
                reach[hook.owner] = self.owner_reach(hook.owner)
            if events.may_receive(hook, task.owner, reach[hook.owner]):
                targets.append(hook)
        if not targets:
            return
        created = time.time()
        event_id = "evt_" + uuid.uuid4().hex
        payload = events.task_payload(
            event_id, name, created, task, event.from_status, self.settings["webhooks.max_payload_bytes"]
        )
        for hook in targets:
            self.committer.webhook_delivery(
                DeliveryRecord(
                    id="dlv_" + uuid.uuid4().hex,
                    webhook_id=hook.id,
                    event=name,
                    event_id=event_id,
                    payload=payload,
                    task_id=task.id,
                    create_time=created,
                    next_attempt_time=created,
                )
            )
        if self._wake_pending != self.committer.generation_id and self.worker is not None:
            self._wake_pending = self.committer.generation_id
            self.committer.after_commit(self.worker.wake)

    # --- management ---------------------------------------------------------------

    async def create(
        self,
        actor: Actor,
        *,
        url: str,
        event_names: Sequence[str],
        secret: str = "",
        disabled: bool = False,
        webhook_id: str = "",
        request_id: str = "",
    ) -> tuple[WebhookRecord, str]:
        """A new webhook of ``actor``; returns it and the generated secret ("" when one was given)."""
        backend = self._backend()
        validate_request_id(request_id)
        if request_id:
            earlier = await self.storage.call(backend.find_webhook, actor.principal, request_id)
            if earlier is not None:
                shown = (
                    earlier.secret if earlier.secret.startswith(signing.SECRET_PREFIX) and not secret else ""
                )
                return earlier, shown
        if webhook_id and not _ID.fullmatch(webhook_id):
            raise InvalidArgument(
                "webhook_id must be 1-63 characters of a-z, 0-9 and '-', starting with a letter",
                field="webhook_id",
            )
        names = events.validate_events(event_names)
        if secret:
            validate_secret(secret)
        await check_url(url, self.settings["webhooks.allow_private"])
        generated = "" if secret else signing.generate_secret()
        now = time.time()
        record = WebhookRecord(
            id=webhook_id or f"wh{int(now * 1000):x}{secrets.token_hex(4)}",
            owner=actor.principal,
            url=url,
            secret=secret or generated,
            events=names,
            disabled=disabled,
            view_all=actor.views_all_tasks,
            create_time=now,
            update_time=now,
            request_id=request_id,
        )
        async with self._creating:
            limit = self.settings["webhooks.max_per_owner"]
            if await self.storage.call(backend.count_webhooks, actor.principal) >= limit:
                raise ResourceExhausted(
                    f"{actor.principal} has {limit} webhooks, the most allowed "
                    "(webhooks.max_per_owner); delete one first",
                    metadata={"limit": "webhooks.max_per_owner"},
                )
            await self.storage.call(lambda: backend.put_webhook(record, create=True))
        self.hooks[record.id] = record
        return record, generated

    async def get(self, actor: Actor, webhook_id: str) -> WebhookRecord:
        """A webhook ``actor`` may see (NOT_FOUND otherwise, whether it exists or not)."""
        record: WebhookRecord | None = await self.storage.call(self._backend().get_webhook, webhook_id)
        if record is None or (record.owner != actor.principal and not actor.views_all_webhooks):
            raise NotFound(f"webhooks/{webhook_id} does not exist", reason=_NOT_FOUND)
        return record

    async def _changeable(self, actor: Actor, webhook_id: str) -> WebhookRecord:
        record = await self.get(actor, webhook_id)
        if record.owner != actor.principal and not actor.manages_all_webhooks:
            raise PermissionDenied(
                f"webhooks/{webhook_id} belongs to {record.owner}; changing another owner's "
                "webhook needs admin",
                metadata={"permission": "admin"},
            )
        return record

    async def list(self, actor: Actor, offset: int, limit: int) -> list[WebhookRecord]:
        """Webhooks ``actor`` may see, oldest first."""
        owner = None if actor.views_all_webhooks else actor.principal
        records: list[WebhookRecord] = await self.storage.call(
            self._backend().list_webhooks, owner, offset, limit
        )
        return records

    async def update(self, actor: Actor, webhook_id: str, changes: Changes) -> tuple[WebhookRecord, str]:
        """Apply ``changes``; returns the webhook and a generated secret ("" unless rotated to one)."""
        backend = self._backend()
        if not changes.paths:
            raise InvalidArgument(
                f"update_mask is required: name the fields to change ({', '.join(UPDATABLE)})",
                field="update_mask",
            )
        unknown = [p for p in changes.paths if p not in UPDATABLE]
        if unknown:
            raise InvalidArgument(
                f"update_mask: {', '.join(map(repr, unknown))} cannot be changed; use {', '.join(UPDATABLE)}",
                field="update_mask",
            )
        record = await self._changeable(actor, webhook_id)
        updated, generated = replace(record), ""
        if "url" in changes.paths:
            await check_url(changes.url, self.settings["webhooks.allow_private"])
            updated.url = changes.url
        if "events" in changes.paths or "event_types" in changes.paths:
            updated.events = events.validate_events(changes.events)
        if "secret" in changes.paths:
            if changes.secret:
                validate_secret(changes.secret)
            generated = "" if changes.secret else signing.generate_secret()
            updated.secret = changes.secret or generated
        if "disabled" in changes.paths:
            updated.disabled = changes.disabled
        if record.owner == actor.principal:
            updated.view_all = actor.views_all_tasks
        updated.update_time = time.time()
        await self.storage.call(backend.put_webhook, updated)
        self.hooks[updated.id] = updated
        return updated, generated

    async def delete(self, actor: Actor, webhook_id: str) -> None:
        """Delete a webhook and its delivery log."""
        record = await self._changeable(actor, webhook_id)
        await self.storage.call(self._backend().delete_webhook, record.id)
        self.hooks.pop(record.id, None)

    async def deliveries(
        self, actor: Actor, webhook_id: str, offset: int, limit: int
    ) -> builtins.list[DeliveryRecord]:
        """Deliveries of a webhook ``actor`` may see, newest first."""
        record = await self.get(actor, webhook_id)
        deliveries: builtins.list[DeliveryRecord] = await self.storage.call(
            self._backend().list_deliveries, record.id, offset, limit
        )
        return deliveries

    async def test(self, actor: Actor, webhook_id: str) -> DeliveryRecord:
        """Send a ``webhook.test`` event now; the delivery after its first attempt (retried if it failed)."""
        record = await self._changeable(actor, webhook_id)
        assert self.worker is not None
        now = time.time()
        event_id = "evt_" + uuid.uuid4().hex
        delivery = DeliveryRecord(
            id="dlv_" + uuid.uuid4().hex,
            webhook_id=record.id,
            event=events.TEST_EVENT,
            event_id=event_id,
            payload=events.test_payload(event_id, now, record.id, record.owner),
            create_time=now,
            next_attempt_time=now + self.worker.lease,
            claim=self.worker.claim,
        )
        await self.storage.call(self._backend().add_deliveries, [delivery])
        return await self.worker.attempt_now(delivery)
