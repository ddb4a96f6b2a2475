"""Join tokens remember who created them: the owner of the agents that join with them.

Revision ID: 0007
Revises: 0004
Create Date: 2025-06-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add join_tokens.creator (empty for tokens made before: their agents are owned by no one)."""
    with op.batch_alter_table("join_tokens") as batch:
        batch.add_column(sa.Column("creator", sa.String(), nullable=False, server_default=""))


def downgrade() -> None:
    """Drop join_tokens.creator."""
    with op.batch_alter_table("join_tokens") as batch:
        batch.drop_column("creator")
