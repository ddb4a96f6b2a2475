"""Queued tasks kept in the database beyond the in-memory window: the ``ix_tasks_spilled`` index.

The single control plane (SQLite) keeps at most ``scheduler.queue_window`` queued tasks in memory;
the others stay in ``tasks`` with ``claimed_by = '~spilled'`` and are taken back best first, per
priority in submit order (see storage/sql/spill.py). This partial index holds only those rows, so
taking back a batch reads a few index pages at any queue depth, and costs nothing elsewhere.

Revision ID: 0020
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHERE = sa.text("claimed_by = '~spilled'")


def upgrade() -> None:
    """Create the partial index on the spilled tasks."""
    op.create_index(
        "ix_tasks_spilled",
        "tasks",
        ["priority", "create_time", "seq"],
        sqlite_where=_WHERE,
        postgresql_where=_WHERE,
    )


def downgrade() -> None:
    """Drop the index; spilled tasks become ordinary unfinished tasks, loaded whole at the next start."""
    op.execute("UPDATE tasks SET claimed_by = NULL WHERE claimed_by = '~spilled'")
    op.drop_index("ix_tasks_spilled", table_name="tasks")
