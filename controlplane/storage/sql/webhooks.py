"""Webhooks and their delivery outbox in the SQLAlchemy backend (the ``StoresWebhooks`` capability).

:class:`SqlWebhooks` is a mixin of :class:`~controlplane.storage.sql.backend.SqlBackend`,
which provides ``engine``, ``_writes`` and ``kind``. Deliveries reach the
outbox through the backend's group commit (:func:`delivery_row`, inserted by
``SqlBackend.write`` in the same transaction as the change they report) or
through :meth:`SqlWebhooks.add_deliveries`. A claim is one ``UPDATE ... WHERE
id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``: on PostgreSQL
concurrent claimants skip each other's rows; SQLite serialises writers anyway.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from controlplane.storage.records import PENDING, DeliveryRecord, WebhookRecord
from controlplane.storage.sql import schema

if TYPE_CHECKING:
    from sqlalchemy import Engine

_W, _D = schema.webhooks, schema.webhook_deliveries
#: Columns of a delivery listing: everything but the payload.
_LISTED = [c for c in _D.columns if c.name != "payload"]


@contextmanager
def _translated() -> Iterator[None]:
    from controlplane.storage.sql.backend import translate_errors  # the backend imports this module

    with translate_errors():
        yield


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


def webhook_to_row(r: WebhookRecord) -> dict[str, Any]:
    """The row of a webhook."""
    return {
        "id": r.id,
        "owner": r.owner,
        "request_id": r.request_id,
        "create_time": r.create_time,
        "data": _dumps(
            {
                "url": r.url,
                "secret": r.secret,
                "events": r.events,
                "disabled": r.disabled,
                "view_all": r.view_all,
                "update_time": r.update_time,
            }
        ),
    }


def webhook_from_row(row: Mapping[Any, Any]) -> WebhookRecord:
    """A webhook from its row."""
    data = json.loads(row["data"])
    return WebhookRecord(
        id=row["id"],
        owner=row["owner"],
        request_id=row["request_id"],
        create_time=row["create_time"],
        url=data["url"],
        secret=data["secret"],
        events=list(data.get("events") or []),
        disabled=bool(data.get("disabled")),
        view_all=bool(data.get("view_all")),
        update_time=data.get("update_time") or 0.0,
    )


def _delivery_data(r: DeliveryRecord) -> str:
    return _dumps(
        {
            "event": r.event,
            "event_id": r.event_id,
            "task_id": r.task_id,
            "attempts": r.attempts,
            "last_attempt_time": r.last_attempt_time,
            "http_status": r.http_status,
            "error": r.error,
            "latency": r.latency,
        }
    )


def delivery_row(r: DeliveryRecord) -> dict[str, Any]:
    """The row of a delivery."""
    return {
        "id": r.id,
        "webhook_id": r.webhook_id,
        "status": r.status,
        "next_attempt_time": r.next_attempt_time,
        "claim": r.claim,
        "create_time": r.create_time,
        "data": _delivery_data(r),
        "payload": r.payload,
    }


def delivery_from_row(row: Mapping[Any, Any]) -> DeliveryRecord:
    """A delivery from its row (``payload`` empty when the row was listed without it)."""
    data = json.loads(row["data"])
    return DeliveryRecord(
        id=row["id"],
        webhook_id=row["webhook_id"],
        status=row["status"],
        next_attempt_time=row["next_attempt_time"],
        claim=row["claim"],
        create_time=row["create_time"],
        payload=row.get("payload") or "",
        event=data["event"],
        event_id=data["event_id"],
        task_id=data.get("task_id") or "",
        attempts=int(data.get("attempts") or 0),
        last_attempt_time=data.get("last_attempt_time"),
        http_status=int(data.get("http_status") or 0),
        error=data.get("error") or "",
        latency=data.get("latency"),
    )


class SqlWebhooks:
    """The ``StoresWebhooks`` methods of the SQLAlchemy backend (a mixin of ``SqlBackend``)."""

    engine: Engine
    _writes: Engine
    kind: str

    def put_webhook(self, record: WebhookRecord, *, create: bool = False) -> None:
        """Insert (``create``: ``AlreadyExists`` if taken) or replace a webhook."""
        row = webhook_to_row(record)
        with _translated(), self._writes.begin() as conn:
            if create:
                conn.execute(_W.insert().values(row))
            else:
                conn.execute(_W.update().where(_W.c.id == record.id).values(row))

    def get_webhook(self, webhook_id: str) -> WebhookRecord | None:
        """One webhook, or None."""
        with _translated(), self.engine.connect() as conn:
            row = conn.execute(select(_W).where(_W.c.id == webhook_id)).mappings().first()
        return None if row is None else webhook_from_row(row)

    def list_webhooks(
        self, owner: str | None = None, offset: int = 0, limit: int = 1000
    ) -> list[WebhookRecord]:
        """Webhooks oldest first (of ``owner`` only, unless None)."""
        stmt = select(_W).order_by(_W.c.create_time, _W.c.id).offset(max(offset, 0)).limit(max(limit, 0))
        if owner is not None:
            stmt = stmt.where(_W.c.owner == owner)
        with _translated(), self.engine.connect() as conn:
            return [webhook_from_row(row) for row in conn.execute(stmt).mappings()]

    def count_webhooks(self, owner: str) -> int:
        """How many webhooks ``owner`` has."""
        with _translated(), self.engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(_W).where(_W.c.owner == owner)).scalar_one()
            )

    def find_webhook(self, owner: str, request_id: str) -> WebhookRecord | None:
        """The webhook ``owner`` created with ``request_id``, or None."""
        stmt = select(_W).where(_W.c.owner == owner, _W.c.request_id == request_id)
        with _translated(), self.engine.connect() as conn:
            row = conn.execute(stmt).mappings().first()
        return None if row is None else webhook_from_row(row)

    def delete_webhook(self, webhook_id: str) -> bool:
        """Delete a webhook and its deliveries; whether it existed."""
        with _translated(), self._writes.begin() as conn:
            conn.execute(_D.delete().where(_D.c.webhook_id == webhook_id))
            return bool(conn.execute(_W.delete().where(_W.c.id == webhook_id)).rowcount)

    def add_deliveries(self, records: Sequence[DeliveryRecord]) -> None:
        """Insert deliveries (test events) in one transaction."""
        if not records:
            return
        with _translated(), self._writes.begin() as conn:
            conn.execute(_D.insert(), [delivery_row(r) for r in records])

    def claim_deliveries(self, claim: str, now: float, lease: float, limit: int) -> list[DeliveryRecord]:
        """Claim up to ``limit`` due pending deliveries for ``lease`` seconds (see ``StoresWebhooks``)."""
        due = (
            select(_D.c.id)
            .where(_D.c.status == PENDING, _D.c.next_attempt_time <= now)
            .order_by(_D.c.next_attempt_time)
            .limit(max(limit, 0))
            .with_for_update(skip_locked=True)
        )
        stmt = (
            _D.update()
            .where(_D.c.id.in_(due.scalar_subquery()))
            .values(claim=claim, next_attempt_time=now + lease)
            .returning(*_D.columns)
        )
        with _translated(), self._writes.begin() as conn:
            rows = conn.execute(stmt).mappings().all()
        return sorted((delivery_from_row(row) for row in rows), key=lambda r: (r.create_time, r.id))

    def finish_attempt(self, record: DeliveryRecord, claim: str) -> bool:
        """Record an attempt and release the claim, if ``claim`` still holds the row."""
        values = {
            "status": record.status,
            "next_attempt_time": record.next_attempt_time,
            "claim": "",
            "data": _delivery_data(record),
        }
        with _translated(), self._writes.begin() as conn:
            result = conn.execute(_D.update().where(_D.c.id == record.id, _D.c.claim == claim).values(values))
            return bool(result.rowcount)

    def list_deliveries(self, webhook_id: str, offset: int = 0, limit: int = 50) -> list[DeliveryRecord]:
        """Deliveries of a webhook, newest first, without payloads."""
        stmt = (
            select(*_LISTED)
            .where(_D.c.webhook_id == webhook_id)
            .order_by(_D.c.create_time.desc(), _D.c.id.desc())
            .offset(max(offset, 0))
            .limit(max(limit, 0))
        )
        with _translated(), self.engine.connect() as conn:
            return [delivery_from_row(row) for row in conn.execute(stmt).mappings()]

    def next_delivery_due(self) -> float | None:
        """The earliest due time of a pending delivery, or None."""
        stmt = select(func.min(_D.c.next_attempt_time)).where(_D.c.status == PENDING)
        with _translated(), self.engine.connect() as conn:
            value = conn.execute(stmt).scalar_one()
        return None if value is None else float(value)

    def prune_deliveries(self, before: float) -> int:
        """Delete finished deliveries created before ``before``."""
        with _translated(), self._writes.begin() as conn:
            return int(
                conn.execute(_D.delete().where(_D.c.status != PENDING, _D.c.create_time < before)).rowcount
            )
