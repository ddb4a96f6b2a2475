"""Fewer index entries written per task: partial indexes for ``batch``, ``claimed_by`` and ended statuses.

Every task row is written at least twice (accepted, then finished), and every secondary index of
``tasks`` is one more B-tree page in each commit's write-ahead log. Three indexes held an entry for
every task though their queries only look for a few:

* ``ix_tasks_batch`` held every task, nearly all with ``batch = ''``; only tasks of a batch are looked
  up by batch, so it now holds those (``WHERE batch <> ''``).
* ``ix_tasks_claimed_by`` held every task, ``claimed_by`` NULL on SQLite and for most tasks on
  PostgreSQL; every query by it names a replica or a mark, so it now holds the claimed tasks
  (``WHERE claimed_by IS NOT NULL``). Unclaimed unfinished tasks are found through
  ``ix_tasks_claimable``.
* ``ix_tasks_status`` (every task, moved on every change of status) gives way to
  ``ix_tasks_ended`` on ``seq`` holding only the FAILED and CANCELLED tasks. Lists of unfinished
  tasks by status read ``ix_tasks_claimable`` (the queue), of FAILED or CANCELLED ones this index,
  newest first; COMPLETED tasks, most of the table, are found walking ``ix_tasks_seq`` from the
  newest. Counts by status come from ``task_counts`` (migration 0013).

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | Sequence[str] | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IN_BATCH = sa.text("batch <> ''")
CLAIMED = sa.text("claimed_by IS NOT NULL")
#: FAILED and CANCELLED, as storage/sql/backend.py's list query spells them.
ENDED = sa.text("status IN (5, 6)")


def upgrade() -> None:
    """Replace the three indexes (on SQLite and PostgreSQL alike: the same schema everywhere)."""
    op.drop_index("ix_tasks_batch", table_name="tasks")
    op.create_index("ix_tasks_batch", "tasks", ["batch"], postgresql_where=IN_BATCH, sqlite_where=IN_BATCH)
    op.drop_index("ix_tasks_claimed_by", table_name="tasks")
    op.create_index(
        "ix_tasks_claimed_by", "tasks", ["claimed_by"], postgresql_where=CLAIMED, sqlite_where=CLAIMED
    )
    op.drop_index("ix_tasks_status", table_name="tasks")
    op.create_index("ix_tasks_ended", "tasks", ["seq"], postgresql_where=ENDED, sqlite_where=ENDED)


def downgrade() -> None:
    """Put the indexes of every task back."""
    op.drop_index("ix_tasks_ended", table_name="tasks")
    op.create_index("ix_tasks_status", "tasks", ["status"])
    op.drop_index("ix_tasks_claimed_by", table_name="tasks")
    op.create_index("ix_tasks_claimed_by", "tasks", ["claimed_by"])
    op.drop_index("ix_tasks_batch", table_name="tasks")
    op.create_index("ix_tasks_batch", "tasks", ["batch"])
