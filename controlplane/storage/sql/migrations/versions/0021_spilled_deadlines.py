"""Queued tasks kept in the database with a deadline: the ``ix_tasks_spilled_deadline`` index (SQLite).

A spilled task (``claimed_by = '~spilled'``, see storage/sql/spill.py) whose clock runs while it
waits (a retried task with a timeout) must time out on time, not when it is next read back. This
partial expression index holds only the spilled tasks with a timeout, keyed by their deadline
(start time + timeout, from the ``data`` JSON), so the lease sweep finds those past it with one
short index walk at any queue depth. SQLite only: the queue window runs on SQLite alone, and the
expression reads SQLite's JSON functions. (Reflection skips expression indexes, so the schema
module does not declare it; ``controlplane.storage.sql.spill`` holds its expression.)

A finished task waits nowhere: the trigger ``tasks_finished_unspilled`` clears the mark in the
transaction of any write that finishes a marked task, whichever path wrote it (SQLite, where the
marks live); marks left on finished rows by earlier versions are cleared here.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | Sequence[str] | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The very text storage/sql/spill.py queries with (SQLite matches an index expression by its text).
_DEADLINE = "json_extract(data, '$.start_time') + json_extract(data, '$.timeout')"
_WITH_DEADLINE = "claimed_by = '~spilled' AND json_extract(data, '$.timeout') > 0"
_FINISHED = "status IN (4, 5, 6)"
UNSPILL_TRIGGER = (
    "CREATE TRIGGER tasks_finished_unspilled AFTER UPDATE OF status ON tasks "
    "WHEN new.claimed_by = '~spilled' AND new.status IN (4, 5, 6) "
    "BEGIN UPDATE tasks SET claimed_by = NULL WHERE id = new.id; END"
)


def upgrade() -> None:
    """Clear the marks of finished tasks; on SQLite, create the deadline index and the trigger."""
    op.execute(f"UPDATE tasks SET claimed_by = NULL WHERE claimed_by = '~spilled' AND {_FINISHED}")
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"CREATE INDEX ix_tasks_spilled_deadline ON tasks (({_DEADLINE})) WHERE {_WITH_DEADLINE}")
        op.execute(UNSPILL_TRIGGER)


def downgrade() -> None:
    """Drop the trigger and the deadline index (the cleared marks stay cleared: nothing needed them)."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS tasks_finished_unspilled")
        op.execute("DROP INDEX IF EXISTS ix_tasks_spilled_deadline")
