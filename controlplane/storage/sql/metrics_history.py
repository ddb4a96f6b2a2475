"""The metrics history of the SQLAlchemy backend (the ``metrics_samples`` table) and the database's size.

One row per sample and replica: the time, and the figures as compact JSON. The
table stays small (a sample a minute for a week is about 10,000 rows) and is
pruned by the sampler (:mod:`controlplane.observability.history`).
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, delete, select, text

from controlplane.storage.sql import schema
from controlplane.storage.sql.backend import translate_errors

_T = schema.metrics_samples


class SqlMetricsHistory:
    """:class:`~controlplane.storage.base.MetricsHistory` on a SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def put_metrics_sample(self, time: float, replica: str, values: dict[str, float]) -> None:
        """Store one sample (another of the same replica at the same time is dropped, not replaced)."""
        data = json.dumps(values, separators=(",", ":"))
        with translate_errors(), self.engine.begin() as conn:
            exists = conn.execute(select(_T.c.time).where(_T.c.time == time, _T.c.replica == replica)).first()
            if exists is None:
                conn.execute(_T.insert().values(time=time, replica=replica, data=data))

    def list_metrics_samples(
        self, since: float, until: float, limit: int
    ) -> list[tuple[float, dict[str, float]]]:
        """Samples with ``since <= time < until``, oldest first, the newest ``limit`` of them."""
        query = (
            select(_T.c.time, _T.c.data)
            .where(_T.c.time >= since, _T.c.time < until)
            .order_by(_T.c.time.desc(), _T.c.replica.desc())
            .limit(limit)
        )
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(row.time, json.loads(row.data)) for row in reversed(rows)]

    def prune_metrics_samples(self, before: float) -> int:
        """Delete samples older than ``before``."""
        with translate_errors(), self.engine.begin() as conn:
            return conn.execute(delete(_T).where(_T.c.time < before)).rowcount or 0


def database_size_bytes(engine: Engine) -> int:
    """The size of the database: its files (SQLite, with the WAL) or ``pg_database_size`` (PostgreSQL)."""
    if engine.dialect.name == "postgresql":
        with translate_errors(), engine.connect() as conn:
            return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar() or 0)
    database = engine.url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return 0
    path = Path(database).expanduser()
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
