"""The SQL store of batches (:class:`~controlplane.storage.base.BatchStore`): ``batches`` and ``batch_tasks``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import Engine, delete, func, select

from controlplane.domain.model import Task
from controlplane.storage.records import BatchRecord, BatchSchedule
from controlplane.storage.sql import codec, schema

_B, _E = schema.batches, schema.batch_tasks
#: Values of ``batches.submitted``.
OPEN, SUBMITTED, SUBMITTING = 0, 1, 2


class SqlBatchStore:
    """Batches on the backend's engine.

    Args:
        engine: The backend's engine (reads).
        writes: The engine for transactions that write (SQLite takes the write lock at BEGIN).
        translate: The backend's error translation (a context manager factory).
    """

    def __init__(
        self, engine: Engine, writes: Engine, translate: Callable[[], contextlib.AbstractContextManager[None]]
    ):
        self.engine = engine
        self.writes = writes
        self.translate = translate

    def create_batch(self, batch: BatchRecord) -> None:
        """Insert an OPEN batch (``AlreadyExists`` if its id, or its owner's name, is taken)."""
        with self.translate(), self.writes.begin() as conn:
            conn.execute(_B.insert().values(**_batch_row(batch)))

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        """One batch, or None."""
        return self._one(_B.c.id == batch_id)

    def find_batch(self, owner: str, display_name: str) -> BatchRecord | None:
        """The owner's batch of that name, or None."""
        return self._one(_B.c.owner == owner, _B.c.display_name == display_name)

    def _one(self, *where: Any) -> BatchRecord | None:
        with self.translate(), self.engine.connect() as conn:
            row = conn.execute(select(_B, _count()).where(*where)).mappings().first()
        return _batch(row) if row is not None else None

    def list_batches(self, owner: str | None, offset: int, limit: int) -> list[BatchRecord]:
        """Batches newest first (``owner`` None: everyone's), at most ``limit`` after ``offset``."""
        stmt = (
            select(_B, _count()).order_by(_B.c.create_time.desc(), _B.c.id.desc()).offset(offset).limit(limit)
        )
        if owner is not None:
            stmt = stmt.where(_B.c.owner == owner)
        with self.translate(), self.engine.connect() as conn:
            return [_batch(row) for row in conn.execute(stmt).mappings().all()]

    def count_batches(self, owner: str) -> int:
        """How many batches the owner has."""
        with self.translate(), self.engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(_B).where(_B.c.owner == owner)).scalar_one()
            )

    def add_batch_task(self, batch_id: str, task: Task, request_id: str = "") -> int | None:
        """Append a task to an OPEN batch in one transaction; the batch's task count afterwards (None: not OPEN)."""
        with self.translate(), self.writes.begin() as conn:
            locked = select(_B.c.submitted).where(_B.c.id == batch_id).with_for_update()
            submitted = conn.execute(locked).scalar_one_or_none()
            if submitted != OPEN:
                return None
            count = int(
                conn.execute(
                    select(func.count()).select_from(_E).where(_E.c.batch_id == batch_id)
                ).scalar_one()
            )
            if request_id:
                seen = conn.execute(
                    select(_E.c.position).where(_E.c.batch_id == batch_id, _E.c.request_id == request_id)
                ).first()
                if seen is not None:
                    return count
            conn.execute(
                _E.insert().values(
                    batch_id=batch_id,
                    position=count,
                    request_id=request_id,
                    data=codec.dumps(codec.task_to_row(task)),
                )
            )
            return count + 1

    def batch_tasks(self, batch_id: str) -> list[Task]:
        """The tasks added to a batch, in the order they were added."""
        stmt = select(_E.c.data).where(_E.c.batch_id == batch_id).order_by(_E.c.position)
        with self.translate(), self.engine.connect() as conn:
            return [codec.task_from_row(orjson.loads(data)) for (data,) in conn.execute(stmt).all()]

    def claim_batch_submit(
        self,
        batch_id: str,
        task_ids: Sequence[str],
        schedule: BatchSchedule,
        when: float,
        stale_before: float,
    ) -> BatchRecord | None:
        """Claim the submission of an OPEN batch, or of one whose submitter stopped before ``stale_before``."""
        with self.translate(), self.writes.begin() as conn:
            row = conn.execute(
                select(_B.c.submitted, _B.c.data).where(_B.c.id == batch_id).with_for_update()
            ).first()
            if row is None:
                return None
            submitted, data = row[0], orjson.loads(row[1])
            if submitted == OPEN:
                data.update(task_ids=list(task_ids), schedule=int(schedule), claim_time=when)
            elif submitted == SUBMITTING and (data.get("claim_time") or 0) < stale_before:
                data["claim_time"] = when
            if data.get("claim_time") == when:
                conn.execute(
                    _B.update()
                    .where(_B.c.id == batch_id)
                    .values(submitted=SUBMITTING, data=codec.dumps(data))
                )
            found = conn.execute(select(_B, _count()).where(_B.c.id == batch_id)).mappings().one()
            return _batch(found)

    def release_batch_claim(self, batch_id: str, when: float) -> None:
        """Make a batch claimed at ``when`` OPEN again."""
        with self.translate(), self.writes.begin() as conn:
            row = conn.execute(
                select(_B.c.data).where(_B.c.id == batch_id, _B.c.submitted == SUBMITTING).with_for_update()
            ).first()
            if row is None or orjson.loads(row[0]).get("claim_time") != when:
                return
            data = {**orjson.loads(row[0]), "task_ids": [], "schedule": None, "claim_time": None}
            conn.execute(
                _B.update().where(_B.c.id == batch_id).values(submitted=OPEN, data=codec.dumps(data))
            )

    def mark_batch_submitted(self, batch_id: str, schedule: BatchSchedule, when: float) -> bool:
        """Record the submission of a batch claimed at ``when``; its added tasks are deleted (they are tasks now)."""
        with self.translate(), self.writes.begin() as conn:
            row = conn.execute(
                select(_B.c.data).where(_B.c.id == batch_id, _B.c.submitted == SUBMITTING).with_for_update()
            ).first()
            if row is None or orjson.loads(row[0]).get("claim_time") != when:
                return False
            data = {
                **orjson.loads(row[0]),
                "schedule": int(schedule),
                "submit_time": when,
                "claim_time": None,
            }
            conn.execute(
                _B.update().where(_B.c.id == batch_id).values(submitted=SUBMITTED, data=codec.dumps(data))
            )
            conn.execute(delete(_E).where(_E.c.batch_id == batch_id))
            return True

    def delete_batch(self, batch_id: str) -> bool:
        """Delete a batch and its added tasks (not the submitted tasks); whether it existed."""
        with self.translate(), self.writes.begin() as conn:
            conn.execute(delete(_E).where(_E.c.batch_id == batch_id))
            return conn.execute(delete(_B).where(_B.c.id == batch_id)).rowcount == 1


def _count() -> Any:
    """The number of added tasks of the selected batch (a correlated subquery)."""
    return (
        select(func.count())
        .select_from(_E)
        .where(_E.c.batch_id == _B.c.id)
        .scalar_subquery()
        .label("entry_count")
    )


def _batch_row(batch: BatchRecord) -> dict[str, Any]:
    data = {
        "schedule": int(batch.schedule) if batch.schedule else None,
        "submit_time": batch.submit_time,
        "task_ids": batch.task_ids,
        "request_id": batch.request_id,
        "claim_time": batch.claim_time,
    }
    return {
        "id": batch.id,
        "owner": batch.owner,
        "display_name": batch.display_name,
        "create_time": batch.create_time,
        "submitted": SUBMITTED if batch.submitted else SUBMITTING if batch.claim_time else OPEN,
        "data": codec.dumps(data),
    }


def _batch(row: Any) -> BatchRecord:
    data = orjson.loads(row["data"])
    task_ids = list(data.get("task_ids") or [])
    schedule = data.get("schedule")
    submitted = row["submitted"] == SUBMITTED
    return BatchRecord(
        id=row["id"],
        display_name=row["display_name"],
        owner=row["owner"],
        create_time=row["create_time"],
        submitted=submitted,
        schedule=BatchSchedule(schedule) if schedule else None,
        submit_time=data.get("submit_time"),
        task_ids=task_ids,
        entry_count=len(task_ids) if submitted else int(row["entry_count"]),
        request_id=data.get("request_id") or "",
        claim_time=data.get("claim_time") if row["submitted"] == SUBMITTING else None,
    )
