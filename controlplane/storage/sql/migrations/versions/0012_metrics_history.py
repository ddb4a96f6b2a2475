"""The history of the control plane's summary figures: the ``metrics_samples`` table.

Revision ID: 0012
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create metrics_samples."""
    op.create_table(
        "metrics_samples",
        sa.Column("time", sa.Double(), nullable=False),
        sa.Column("replica", sa.String(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("time", "replica", name="pk_metrics_samples"),
    )


def downgrade() -> None:
    """Drop metrics_samples."""
    op.drop_table("metrics_samples")
