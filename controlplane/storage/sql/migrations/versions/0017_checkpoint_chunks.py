"""Checkpoint payloads in chunks: the ``checkpoint_chunks`` table.

A checkpoint is written and read a chunk at a time, so neither its payload nor
its tables are ever whole in memory. Checkpoints stored before keep their
payload in ``checkpoints.payload`` and are read from there. A chunk's ``create_time``
tells a crashed take's leftovers (old) from a take in progress.

Revision ID: 0017
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the checkpoint_chunks table."""
    op.create_table(
        "checkpoint_chunks",
        sa.Column("checkpoint_id", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("create_time", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("checkpoint_id", "seq"),
    )


def downgrade() -> None:
    """Drop the checkpoint_chunks table."""
    op.drop_table("checkpoint_chunks")
