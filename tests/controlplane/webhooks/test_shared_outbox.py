"""Two delivery workers (as two control-plane replicas would run) share one outbox on PostgreSQL."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from controlplane.storage.executor import StorageExecutor
from controlplane.storage.sql.backend import SqlBackendFactory
from controlplane.webhooks.records import SUCCEEDED, DeliveryRecord, WebhookRecord
from controlplane.webhooks.worker import DeliveryWorker
from tests.harness.receiver import Receiver
from tests.harness.server import empty_postgres, make_settings, wait_for


async def test_each_delivery_goes_out_once_across_two_workers(
    tmp_path: Path, postgres_url: str, receiver: Receiver
) -> None:
    settings = make_settings(
        tmp_path,
        **{
            "database.primary_url": postgres_url,
            "webhooks.concurrency": 3,
            "webhooks.allow_private": True,
            "webhooks.poll_interval": 0.05,
        },
    )
    executors = []
    for _ in range(2):
        backend = SqlBackendFactory().open(postgres_url)
        backend.migrate()
        executors.append(StorageExecutor(backend))
    empty_postgres(postgres_url)
    backend = executors[0].backend
    hook = WebhookRecord(id="shared", owner="users/local", url=receiver.url, secret="whsec_shared-0123456789")
    backend.put_webhook(hook, create=True)
    now = time.time()
    backend.add_deliveries(
        [
            DeliveryRecord(
                id=f"dlv_{n:03d}",
                webhook_id="shared",
                event="task.completed",
                event_id=f"evt_{n}",
                payload=f'{{"n":{n}}}',
                create_time=now,
                next_attempt_time=now,
            )
            for n in range(30)
        ]
    )

    async def reload() -> None:
        return None

    claimed: Counter[str] = Counter()
    for i, ex in enumerate(executors):
        real = ex.backend.claim_deliveries

        def counting(claim: str, *args: object, _real=real, _name=f"replica-{i}") -> list[DeliveryRecord]:
            rows = _real(claim, *args)
            claimed[_name] += len(rows)
            return rows

        ex.backend.claim_deliveries = counting  # type: ignore[method-assign]
    workers = [DeliveryWorker(ex, settings, f"replica-{i}", reload) for i, ex in enumerate(executors)]
    for worker in workers:
        worker.start()
    try:
        await wait_for(lambda: len(receiver.snapshot()) >= 30, 20, message="thirty deliveries")

        async def all_recorded() -> bool:
            rows = await executors[0].call(backend.list_deliveries, "shared", 0, 100)
            return all(r.status == SUCCEEDED for r in rows)

        await wait_for(all_recorded, 10, message="every outcome recorded")
    finally:
        for worker in workers:
            await worker.stop()
        for ex in executors:
            ex.close()
    counts = Counter(r.delivery for r in receiver.snapshot())
    assert len(counts) == 30 and set(counts.values()) == {1}  # each once, none twice
    # Each claimed only what it delivered, and with 3 slots each for 30 rows both took part.
    assert sum(claimed.values()) == 30 and len(claimed) == 2, claimed
