"""Which replica holds each task: ``tasks.claimed_by``.

On a database several control planes share (PostgreSQL), a replica claims a task before running
it (``SELECT … FOR UPDATE SKIP LOCKED``, then this column set to its replica id) and keeps it in
memory until it finishes or is released (the column set back to NULL). A task whose holder is lost
(its ``replicas`` row silent past ``replicas.lost_after``, or gone) may be claimed by another.
SQLite is single-process: the column stays NULL there. Existing tasks start unclaimed.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add tasks.claimed_by and an index on it."""
    # A plain ADD COLUMN (no table copy), so the task_counts triggers on tasks stay.
    op.add_column("tasks", sa.Column("claimed_by", sa.String(), nullable=True))
    op.create_index("ix_tasks_claimed_by", "tasks", ["claimed_by"])


def downgrade() -> None:
    """Drop the index and the column."""
    op.drop_index("ix_tasks_claimed_by", table_name="tasks")
    op.drop_column("tasks", "claimed_by")
