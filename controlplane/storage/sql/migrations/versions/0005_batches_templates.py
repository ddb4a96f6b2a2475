"""Batches and task templates: the ``batches``, ``batch_tasks`` and ``templates`` tables, and tasks by batch.

Revision ID: 0005
Revises: 0004
Create Date: 2025-05-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create batches, batch_tasks and templates; index tasks.batch."""
    op.create_table(
        "batches",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("create_time", sa.Double(), nullable=False),
        sa.Column("submitted", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_batches"),
    )
    op.create_index("ix_batches_owner_display_name", "batches", ["owner", "display_name"], unique=True)
    op.create_index("ix_batches_create_time", "batches", ["create_time"])
    op.create_table(
        "batch_tasks",
        sa.Column("batch_id", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "position", name="pk_batch_tasks"),
    )
    op.create_table(
        "templates",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("display_name", sa.String(), nullable=False),
        sa.Column("create_time", sa.Double(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_templates"),
    )
    op.create_index("ix_templates_owner_display_name", "templates", ["owner", "display_name"], unique=True)
    op.create_index("ix_tasks_batch", "tasks", ["batch"])


def downgrade() -> None:
    """Drop them again."""
    op.drop_index("ix_tasks_batch", table_name="tasks")
    op.drop_index("ix_templates_owner_display_name", table_name="templates")
    op.drop_table("templates")
    op.drop_table("batch_tasks")
    op.drop_index("ix_batches_create_time", table_name="batches")
    op.drop_index("ix_batches_owner_display_name", table_name="batches")
    op.drop_table("batches")
