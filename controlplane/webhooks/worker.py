"""The delivery worker: claims due deliveries from the outbox, POSTs them, records the outcome.

Any number of control-plane processes may run one against the same database:
a delivery is claimed for a lease (twice ``webhooks.timeout`` plus 10 s) by one
of them (:meth:`~controlplane.storage.base.StoresWebhooks.claim_deliveries`),
and comes back to the others if that one dies before recording the outcome.
Pending deliveries left by a stopped or crashed control plane are therefore
picked up again after a restart: a clean stop releases its claims at once,
a crash within the lease. New events wake the worker as soon as their commit
lands; retries and other processes' rows are found by looking at the outbox
every ``webhooks.poll_interval`` (or sooner, when the next retry is due).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from controlplane.errors import MaosError
from controlplane.storage.base import StoresWebhooks
from controlplane.webhooks import sender, signing
from controlplane.webhooks.records import FAILED, PENDING, SUCCEEDED, DeliveryRecord, WebhookRecord
from controlplane.webhooks.retry import RetrySchedule
from controlplane.webhooks.urls import parse_url, refused, resolve

log = logging.getLogger(__name__)

#: Seconds a claim outlives its attempt's two timeouts (resolving, then sending) for recording the outcome.
LEASE_MARGIN = 10.0
#: Seconds between reloads of the webhooks (changes made by other processes).
RELOAD_EVERY = 10.0
#: Seconds between prunes of the delivery log.
PRUNE_EVERY = 3600.0


class DeliveryWorker:
    """Delivers what the outbox holds, at most ``webhooks.concurrency`` at once.

    Args:
        storage: The StorageExecutor, whose backend has the ``StoresWebhooks`` capability.
        settings: The settings (``webhooks.*``).
        replica: This process's replica id (part of its claim token).
        reload: Refreshes the caller's view of the webhooks (called every :data:`RELOAD_EVERY` s).
        metrics: The control plane's :class:`~controlplane.metrics.Metrics` (or None).
    """

    def __init__(
        self, storage: Any, settings: Any, replica: str, reload: Callable[[], Any], metrics: Any = None
    ):
        self.storage = storage
        self.backend: StoresWebhooks = storage.backend
        self.timeout: float = settings["webhooks.timeout"]
        self.allow_private: bool = settings["webhooks.allow_private"]
        self.concurrency: int = settings["webhooks.concurrency"]
        self.poll_interval: float = settings["webhooks.poll_interval"]
        self.retention: float = settings["webhooks.delivery_retention"]
        self.schedule = RetrySchedule(
            settings["webhooks.retry_initial_backoff"],
            settings["webhooks.retry_max_backoff"],
            settings["webhooks.retry_window"],
        )
        self.lease = 2 * self.timeout + LEASE_MARGIN
        #: Marks this process's claims; a new one at every start.
        self.claim = f"{replica}/{uuid.uuid4().hex[:12]}"
        self._reload = reload
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._in_flight: dict[str, tuple[asyncio.Task[Any], DeliveryRecord]] = {}
        self._runner: asyncio.Task[None] | None = None
        self._random = random.Random()

    def start(self) -> None:
        """Start the worker on the running loop."""
        self._runner = asyncio.get_running_loop().create_task(self._run(), name="maos-webhook-deliveries")

    def wake(self) -> None:
        """Look at the outbox now (new deliveries were committed)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop; deliveries being attempted are released for the next claimant, untouched."""
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        cut = list(self._in_flight.values())
        for task, _ in cut:
            task.cancel()
        await asyncio.gather(*(task for task, _ in cut), return_exceptions=True)  # cancelled: released below
        for _, record in cut:
            if record.status == PENDING:
                record.next_attempt_time = time.time()
                try:
                    await self.storage.call(self.backend.finish_attempt, record, self.claim)
                except MaosError as exc:  # the lease frees it later
                    log.warning("could not release webhook delivery %s: %s", record.id, exc)
        self._in_flight.clear()

    async def _run(self) -> None:
        reloaded = pruned = 0.0
        while True:
            wait = self.poll_interval
            try:
                now = time.time()
                if now - reloaded >= RELOAD_EVERY:
                    await self._reload()
                    reloaded = now
                if now - pruned >= PRUNE_EVERY:
                    await self.storage.call(self.backend.prune_deliveries, now - self.retention)
                    pruned = now
                due = await self.storage.call(self.backend.next_delivery_due)
                if due is not None and due <= now:
                    await self._claim(now)
                    due = await self.storage.call(self.backend.next_delivery_due)
                # With every slot busy, a finishing attempt wakes the worker: no need to look sooner.
                if due is not None and len(self._in_flight) < self.concurrency:
                    wait = min(wait, max(0.01, due - time.time()))
            except MaosError as exc:  # storage down: try again on the next round
                log.warning("webhook deliveries: %s", exc)
            except Exception:
                log.exception("webhook delivery round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            self._wake.clear()

    async def _claim(self, now: float) -> None:
        free = self.concurrency - len(self._in_flight)
        if free <= 0:
            return
        for record in await self.storage.call(
            self.backend.claim_deliveries, self.claim, now, self.lease, free
        ):
            self._spawn(record)

    def _spawn(self, record: DeliveryRecord) -> asyncio.Task[DeliveryRecord]:
        task = asyncio.get_running_loop().create_task(self.attempt(record))
        self._in_flight[record.id] = (task, record)

        def done(_: asyncio.Task[Any]) -> None:
            self._in_flight.pop(record.id, None)
            self._wake.set()  # a slot is free

        task.add_done_callback(done)
        return task

    async def attempt_now(self, record: DeliveryRecord) -> DeliveryRecord:
        """Attempt a delivery this process has just inserted, claimed (TestWebhook), and wait for it."""
        return await self._spawn(record)

    async def attempt(self, record: DeliveryRecord) -> DeliveryRecord:
        """One attempt of a claimed delivery; the outcome is recorded and ``record`` updated."""
        hook = await self.storage.call(self.backend.get_webhook, record.webhook_id)
        started = time.time()
        if hook is None or hook.disabled:  # deleted (a delivery committed just after) or disabled meanwhile
            record.status, record.next_attempt_time = FAILED, started
            record.error = "the webhook was deleted" if hook is None else "the webhook is disabled"
        else:
            outcome = await self._send(hook, record)
            record.attempts += 1
            record.last_attempt_time = started
            record.http_status, record.error, record.latency = (
                outcome.http_status,
                outcome.error,
                outcome.latency,
            )
            if outcome.ok:
                record.status, record.next_attempt_time = SUCCEEDED, started
            else:
                retry = self.schedule.next_attempt(
                    record.create_time, time.time(), record.attempts, self._random
                )
                if retry is None:
                    record.status, record.next_attempt_time = FAILED, time.time()
                else:
                    record.next_attempt_time = retry
            if self._metrics is not None:
                outcome_name = "retrying" if record.status == PENDING else record.status
                self._metrics.webhook_attempt(outcome_name, outcome.latency)
        recorded = await self.storage.call(self.backend.finish_attempt, record, self.claim)
        if not recorded and hook is not None:
            log.warning("webhook delivery %s was claimed by another process meanwhile", record.id)
        return record

    async def _send(self, hook: WebhookRecord, record: DeliveryRecord) -> sender.Outcome:
        try:
            target = parse_url(hook.url)
            addresses = await asyncio.wait_for(resolve(target), self.timeout)
        except TimeoutError:
            return sender.Outcome(0, f"the host did not resolve within {self.timeout:g} s", self.timeout)
        except (MaosError, OSError) as exc:
            return sender.Outcome(
                0, f"cannot resolve the URL's host: {getattr(exc, 'message', exc)}"[:200], 0.0
            )
        bad = refused(addresses, self.allow_private)
        if bad:
            return sender.Outcome(
                0,
                f"refused: {target.host} resolves to {bad[0]}, a private address "
                "(webhooks.allow_private is off)",
                0.0,
            )
        body = record.payload.encode()
        headers = {
            "MAOS-Event": record.event,
            "MAOS-Delivery": record.id,
            "MAOS-Signature": signing.signature_header(hook.secret, body),
        }
        return await sender.post(target, addresses, body, headers, self.timeout)
