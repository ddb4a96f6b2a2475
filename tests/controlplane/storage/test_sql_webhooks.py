"""The webhook outbox of the SQL backend on SQLite and PostgreSQL: claims, leases, fencing, the log."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.domain.model import Task
from controlplane.errors import AlreadyExists
from controlplane.storage.base import StoresWebhooks, WriteBatch
from controlplane.storage.sql.backend import SqlBackend, SqlBackendFactory
from controlplane.webhooks.records import FAILED, PENDING, SUCCEEDED, DeliveryRecord, WebhookRecord
from tests.controlplane.storage.test_sql_backend import _truncate_all, migrated_postgres_url  # noqa: F401


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlBackend]:
    """A migrated, empty backend: a fresh SQLite file, or the truncated session PostgreSQL database."""
    if request.param == "sqlite":
        store = SqlBackendFactory().open(f"sqlite:///{tmp_path / 'maos.db'}")
        store.migrate()
    else:
        store = SqlBackendFactory().open(request.getfixturevalue("migrated_postgres_url"))
        _truncate_all(store)
    yield store
    store.close()


def delivery(n: int, due: float, webhook: str = "w1") -> DeliveryRecord:
    return DeliveryRecord(
        id=f"dlv_{n:04d}",
        webhook_id=webhook,
        event="task.completed",
        event_id=f"evt_{n}",
        payload='{"x":1}',
        task_id="t1",
        create_time=due,
        next_attempt_time=due,
    )


def test_the_backend_has_the_capability(backend: SqlBackend) -> None:
    assert isinstance(backend, StoresWebhooks)


def test_webhooks_round_trip_owner_listing_and_duplicates(backend: SqlBackend) -> None:
    hook = WebhookRecord(
        id="w1",
        owner="users/a",
        url="https://example.com/x",
        secret="whsec_x" * 3,
        events=["task.failed"],
        view_all=True,
        create_time=1.0,
        update_time=2.0,
        request_id="r1",
    )
    backend.put_webhook(hook, create=True)
    backend.put_webhook(
        WebhookRecord(id="w2", owner="users/b", url="https://e.com", secret="s" * 16, create_time=3.0),
        create=True,
    )
    with pytest.raises(AlreadyExists):
        backend.put_webhook(hook, create=True)
    assert backend.get_webhook("w1") == hook
    assert backend.find_webhook("users/a", "r1") == hook and backend.find_webhook("users/b", "r1") is None
    assert [w.id for w in backend.list_webhooks("users/a")] == ["w1"]
    assert [w.id for w in backend.list_webhooks(None, 1, 10)] == ["w2"]
    assert backend.count_webhooks("users/a") == 1
    backend.add_deliveries([delivery(1, 1.0)])
    assert backend.delete_webhook("w1") and not backend.delete_webhook("w1")
    assert backend.list_deliveries("w1") == [] and backend.get_webhook("w1") is None


def test_deliveries_join_the_write_batch_once(backend: SqlBackend) -> None:
    record = delivery(1, 5.0)
    backend.write(WriteBatch(tasks=[Task(id="t1", description="x", seq=1)], webhook_deliveries=[record]))
    backend.write(WriteBatch(webhook_deliveries=[record]))  # a retried commit inserts nothing twice
    [stored] = backend.list_deliveries("w1")
    assert stored.id == "dlv_0001" and stored.status == PENDING and stored.payload == ""  # listed without it
    assert backend.get_task("t1") is not None and backend.next_delivery_due() == 5.0


def test_claims_are_disjoint_leased_and_fenced(backend: SqlBackend) -> None:
    backend.add_deliveries([delivery(n, float(n)) for n in range(40)])
    claimed: dict[str, list[DeliveryRecord]] = {}

    def claim(token: str) -> None:
        got: list[DeliveryRecord] = []
        while True:
            batch = backend.claim_deliveries(token, 100.0, 30.0, 3)
            if not batch:
                break
            got += batch
        claimed[token] = got

    threads = [threading.Thread(target=claim, args=(f"replica-{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [r.id for got in claimed.values() for r in got]
    assert sorted(ids) == [f"dlv_{n:04d}" for n in range(40)]  # each row to exactly one claimant
    assert backend.claim_deliveries("late", 100.0, 30.0, 10) == []  # leased until 130
    token, [first, *_] = next((k, v) for k, v in claimed.items() if v)
    first.status, first.attempts, first.http_status, first.latency = SUCCEEDED, 1, 200, 0.01
    assert not backend.finish_attempt(first, "someone-else")  # fenced: not its claim
    assert backend.finish_attempt(first, token)
    again = backend.claim_deliveries("after-lease", 131.0, 30.0, 100)  # the rest came back after the lease
    assert len(again) == 39 and first.id not in {r.id for r in again}
    assert again[0].payload == '{"x":1}'


def test_next_due_and_prune(backend: SqlBackend) -> None:
    now = time.time()
    done, pending = delivery(1, now - 100), delivery(2, now + 50)
    backend.add_deliveries([done, pending])
    [claimed] = backend.claim_deliveries("c", now, 10.0, 5)
    claimed.status, claimed.attempts = FAILED, 3
    assert backend.finish_attempt(claimed, "c")
    assert backend.next_delivery_due() == pytest.approx(now + 50)
    assert backend.prune_deliveries(now) == 1  # only finished ones
    assert [d.id for d in backend.list_deliveries("w1")] == [pending.id]
