"""Task counts by status, kept by the database as rows of ``tasks`` change: the ``task_counts`` table.

Triggers on ``tasks`` add and subtract in the same transaction as the change,
whoever makes it (the committer, a checkpoint restore, another replica), so
counting tasks by status reads a few rows instead of scanning the table.
PostgreSQL spreads each status over shards (the writing connection's process
id modulo 16) so concurrent writers of several replicas rarely wait on one row;
SQLite has one writer and one shard. Existing tasks are counted once here.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHARDS = 16


def _sqlite_add(status: str, delta: str) -> str:
    return (
        f"INSERT INTO task_counts (status, shard, n) VALUES ({status}, 0, {delta}) "
        f"ON CONFLICT (status, shard) DO UPDATE SET n = n + {delta};"
    )


SQLITE_TRIGGERS = (
    f"CREATE TRIGGER task_counts_insert AFTER INSERT ON tasks BEGIN {_sqlite_add('new.status', '1')} END",
    f"CREATE TRIGGER task_counts_delete AFTER DELETE ON tasks BEGIN {_sqlite_add('old.status', '-1')} END",
    "CREATE TRIGGER task_counts_update AFTER UPDATE OF status ON tasks WHEN old.status <> new.status "
    f"BEGIN {_sqlite_add('old.status', '-1')} {_sqlite_add('new.status', '1')} END",
)

POSTGRESQL_TRIGGERS = (
    f"""
    CREATE FUNCTION maos_count_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        my_shard integer := pg_backend_pid() % {SHARDS};
    BEGIN
        IF TG_OP <> 'INSERT' THEN
            INSERT INTO task_counts (status, shard, n) VALUES (OLD.status, my_shard, -1)
            ON CONFLICT (status, shard) DO UPDATE SET n = task_counts.n - 1;
        END IF;
        IF TG_OP <> 'DELETE' THEN
            INSERT INTO task_counts (status, shard, n) VALUES (NEW.status, my_shard, 1)
            ON CONFLICT (status, shard) DO UPDATE SET n = task_counts.n + 1;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE FUNCTION maos_uncount_tasks() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM task_counts;
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER task_counts_insert_delete AFTER INSERT OR DELETE ON tasks "
    "FOR EACH ROW EXECUTE FUNCTION maos_count_tasks()",
    "CREATE TRIGGER task_counts_update AFTER UPDATE OF status ON tasks "
    "FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION maos_count_tasks()",
    "CREATE TRIGGER task_counts_truncate AFTER TRUNCATE ON tasks "
    "FOR EACH STATEMENT EXECUTE FUNCTION maos_uncount_tasks()",
)


def upgrade() -> None:
    """Create task_counts, count the tasks there are, and keep counting with triggers."""
    op.create_table(
        "task_counts",
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("status", "shard", name="pk_task_counts"),
    )
    op.execute(
        "INSERT INTO task_counts (status, shard, n) SELECT status, 0, COUNT(*) FROM tasks GROUP BY status"
    )
    postgresql = op.get_bind().dialect.name == "postgresql"
    for statement in POSTGRESQL_TRIGGERS if postgresql else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    """Drop the triggers and task_counts."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS task_counts_truncate ON tasks")
        op.execute("DROP TRIGGER IF EXISTS task_counts_update ON tasks")
        op.execute("DROP TRIGGER IF EXISTS task_counts_insert_delete ON tasks")
        op.execute("DROP FUNCTION IF EXISTS maos_uncount_tasks()")
        op.execute("DROP FUNCTION IF EXISTS maos_count_tasks()")
    else:
        for name in ("task_counts_update", "task_counts_delete", "task_counts_insert"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("task_counts")
