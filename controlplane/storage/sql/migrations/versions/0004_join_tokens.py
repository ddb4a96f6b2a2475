"""Agent join tokens: the ``join_tokens`` table (secrets stored as SHA-256 digests only).

Revision ID: 0004
Revises: 0003
Create Date: 2025-04-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create join_tokens."""
    op.create_table(
        "join_tokens",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("agent_types", sa.String(), nullable=False),
        sa.Column("max_uses", sa.BigInteger(), nullable=False),
        sa.Column("uses", sa.BigInteger(), nullable=False),
        sa.Column("create_time", sa.Double(), nullable=False),
        sa.Column("expire_time", sa.Double(), nullable=False),
        sa.Column("revoke_time", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_join_tokens"),
    )


def downgrade() -> None:
    """Drop join_tokens."""
    op.drop_table("join_tokens")
