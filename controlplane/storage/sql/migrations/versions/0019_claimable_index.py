"""An index of the unfinished tasks in the order a claim takes them: ``ix_tasks_claimable``.

Replicas sharing PostgreSQL claim the best claimable tasks (``storage/sql/claims.py``): unfinished
ones, by priority and then age. The index holds only unfinished tasks (a partial index), so it stays
the size of the queue however many finished tasks the table keeps, and per priority it gives them in
claiming order: a claim reads a few rows per priority instead of sorting the whole queue.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The unfinished statuses (PENDING, QUEUED, RUNNING), as the claim statements spell them.
UNFINISHED = sa.text("status IN (1, 2, 3)")


def upgrade() -> None:
    """Create the partial index (on SQLite too: the same schema everywhere)."""
    op.create_index(
        "ix_tasks_claimable",
        "tasks",
        ["priority", "create_time", "seq"],
        postgresql_where=UNFINISHED,
        sqlite_where=UNFINISHED,
    )


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_tasks_claimable", table_name="tasks")
