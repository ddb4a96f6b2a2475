"""The SQL store of task templates (:class:`~controlplane.storage.base.TemplateStore`): ``templates``."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import Engine, delete, func, select

from controlplane.storage.records import TemplateParameter, TemplateRecord
from controlplane.storage.sql import codec, schema

_T = schema.templates


class SqlTemplateStore:
    """Templates on the backend's engine.

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

    def put_template(self, template: TemplateRecord, *, replace: bool = False) -> TemplateRecord:
        """Insert a template; with ``replace``, overwrite the owner's template of that name, keeping its id."""
        with self.translate(), self.writes.begin() as conn:
            if replace:
                existing = conn.execute(
                    select(_T.c.id, _T.c.create_time)
                    .where(_T.c.owner == template.owner, _T.c.display_name == template.display_name)
                    .with_for_update()
                ).first()
                if existing is not None:
                    template = dataclasses.replace(template, id=existing[0])
                    row = _row(template)
                    del row["create_time"]
                    conn.execute(_T.update().where(_T.c.id == template.id).values(**row))
                    return dataclasses.replace(template, create_time=existing[1])
            conn.execute(_T.insert().values(**_row(template)))
            return template

    def get_template(self, template_id: str) -> TemplateRecord | None:
        """One template, or None."""
        return self._one(_T.c.id == template_id)

    def find_template(self, owner: str, display_name: str) -> TemplateRecord | None:
        """The owner's template of that name, or None."""
        return self._one(_T.c.owner == owner, _T.c.display_name == display_name)

    def _one(self, *where: Any) -> TemplateRecord | None:
        with self.translate(), self.engine.connect() as conn:
            row = conn.execute(select(_T).where(*where)).mappings().first()
        return _template(row) if row is not None else None

    def list_templates(self, owner: str | None, offset: int, limit: int) -> list[TemplateRecord]:
        """Templates by name, then owner (``owner`` None: everyone's), at most ``limit`` after ``offset``."""
        stmt = select(_T).order_by(_T.c.display_name, _T.c.owner, _T.c.id).offset(offset).limit(limit)
        if owner is not None:
            stmt = stmt.where(_T.c.owner == owner)
        with self.translate(), self.engine.connect() as conn:
            return [_template(row) for row in conn.execute(stmt).mappings().all()]

    def count_templates(self, owner: str) -> int:
        """How many templates the owner has."""
        with self.translate(), self.engine.connect() as conn:
            return int(
                conn.execute(select(func.count()).select_from(_T).where(_T.c.owner == owner)).scalar_one()
            )

    def delete_template(self, template_id: str) -> bool:
        """Delete a template; whether it existed."""
        with self.translate(), self.writes.begin() as conn:
            return conn.execute(delete(_T).where(_T.c.id == template_id)).rowcount == 1


def _row(t: TemplateRecord) -> dict[str, Any]:
    data = {
        "description": t.description,
        "source_task": t.source_task,
        "parameters": [dataclasses.asdict(p) for p in t.parameters],
        "task": codec.task_to_row(t.task),
    }
    return {
        "id": t.id,
        "owner": t.owner,
        "display_name": t.display_name,
        "create_time": t.create_time,
        "data": codec.dumps(data),
    }


def _template(row: Any) -> TemplateRecord:
    data = orjson.loads(row["data"])
    return TemplateRecord(
        id=row["id"],
        display_name=row["display_name"],
        owner=row["owner"],
        create_time=row["create_time"],
        description=data.get("description") or "",
        source_task=data.get("source_task") or "",
        parameters=[TemplateParameter(**p) for p in data.get("parameters") or []],
        task=codec.task_from_row(data["task"]),
    )
