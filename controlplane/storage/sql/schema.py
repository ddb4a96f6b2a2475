"""The relational schema of the SQLAlchemy backend (SQLAlchemy Core).

Rows are lean: the columns that queries filter, order or join on, plus one
``data`` text column holding the rest of the record as compact JSON (see
:mod:`controlplane.storage.sql.codec`). The Alembic revisions under
``migrations/versions`` create exactly this schema; a test compares the two.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)

#: Constraint names match the ones the migrations create.
metadata = MetaData(naming_convention={"pk": "pk_%(table_name)s"})

tasks = Table(
    "tasks",
    metadata,
    Column("id", String, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("owner", String, nullable=False),
    Column("status", Integer, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("task_type", String, nullable=False),
    Column("create_time", Double, nullable=False),
    Column("batch", String, nullable=False),
    Column("data", Text, nullable=False),
    # The replica holding the task (migration 0018; PostgreSQL only, NULL on SQLite): see storage/sql/claims.py.
    Column("claimed_by", String, nullable=True),
    Index("ix_tasks_seq", "seq", unique=True),
    Index("ix_tasks_owner_seq", "owner", "seq"),
    Index("ix_tasks_create_time", "create_time"),
    # Partial indexes hold only the rows their queries look for (migration 0024): each index entry is
    # written in the commit of every task it holds.
    Index("ix_tasks_batch", "batch", sqlite_where=text("batch <> ''"), postgresql_where=text("batch <> ''")),
    Index(
        "ix_tasks_claimed_by",
        "claimed_by",
        sqlite_where=text("claimed_by IS NOT NULL"),
        postgresql_where=text("claimed_by IS NOT NULL"),
    ),
    # FAILED and CANCELLED tasks, newest first by seq (see SqlBackend.list_tasks).
    Index(
        "ix_tasks_ended",
        "seq",
        sqlite_where=text("status IN (5, 6)"),
        postgresql_where=text("status IN (5, 6)"),
    ),
    # Unfinished tasks in claiming order per priority (migration 0019): see storage/sql/claims.py.
    Index(
        "ix_tasks_claimable",
        "priority",
        "create_time",
        "seq",
        postgresql_where=text("status IN (1, 2, 3)"),
        sqlite_where=text("status IN (1, 2, 3)"),
    ),
    # Queued tasks kept in the database beyond scheduler.queue_window (migration 0020), best first
    # within each priority: see storage/sql/spill.py.
    Index(
        "ix_tasks_spilled",
        "priority",
        "create_time",
        "seq",
        sqlite_where=text("claimed_by = '~spilled'"),
        postgresql_where=text("claimed_by = '~spilled'"),
    ),
)

#: ``tasks.claimed_by`` of a queued task the single process keeps in the database rather than in memory
#: (beyond ``scheduler.queue_window``; SQLite): see :mod:`controlplane.storage.sql.spill`.
SPILLED = "~spilled"
#: ``tasks.claimed_by`` of a task its holder gave up and has not let go yet: this + the holder's id
#: (replicas on PostgreSQL): see :mod:`controlplane.storage.sql.claims`.
LEAVING = "~leaving:"


def leaving(holder: str) -> str:
    """The ``claimed_by`` of a task ``holder`` gave up and has not let go yet."""
    return LEAVING + holder


#: How many tasks are in each status (summed over shards), kept by triggers on ``tasks`` that run in the
#: transaction of every change (migration 0013); never written by the control plane itself.
task_counts = Table(
    "task_counts",
    metadata,
    Column("status", Integer, primary_key=True),
    Column("shard", Integer, primary_key=True),
    Column("n", BigInteger, nullable=False),
)

#: Columns of ``tasks`` fixed when a task is accepted, never written again.
TASK_IMMUTABLE_COLUMNS = ("seq", "owner", "task_type", "create_time", "batch")

subtasks = Table(
    "subtasks",
    metadata,
    Column("task_id", String, primary_key=True),
    Column("id", String, primary_key=True),
    # Position in the order the subtasks were first written (plan order).
    Column("ord", BigInteger, nullable=False),
    Column("status", Integer, nullable=False),
    Column("checkpoint", LargeBinary, nullable=True),
    Column("data", Text, nullable=False),
)

agents = Table(
    "agents",
    metadata,
    Column("id", String, primary_key=True),
    Column("data", Text, nullable=False),
)

idempotency = Table(
    "idempotency",
    metadata,
    Column("principal", String, primary_key=True),
    Column("method", String, primary_key=True),
    Column("request_id", String, primary_key=True),
    Column("request_hash", String, nullable=False),
    Column("resource", String, nullable=False),
    Column("create_time", Double, nullable=False),
    Index("ix_idempotency_create_time", "create_time"),
)

control_meta = Table(
    "control_meta",
    metadata,
    Column("key", String, primary_key=True),
    Column("value", BigInteger, nullable=False),
)

shared_state = Table(
    "shared_state",
    metadata,
    Column("task_id", String, primary_key=True),
    Column("key", String, primary_key=True),
    Column("value", LargeBinary, nullable=False),
    Column("version", BigInteger, nullable=False),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", String, primary_key=True),
    Column("display_name", String, nullable=False),
    Column("description", Text, nullable=False),
    Column("create_time", Double, nullable=False),
    Column("automatic", Integer, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("compressed_size", BigInteger, nullable=False),
    Column("sha256", String, nullable=False),
    # Digest of the uncompressed content: the interval job skips unchanged state.
    Column("content_sha256", String, nullable=False),
    Column("components", String, nullable=False),  # comma-separated
    Column("task_count", BigInteger, nullable=False),
    Column("format_version", String, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Index("ix_checkpoints_create_time", "create_time"),
)

#: A checkpoint's payload in order, in chunks of about 1 MiB (``checkpoints.payload`` is then empty;
#: checkpoints stored before chunks keep their payload there).
checkpoint_chunks = Table(
    "checkpoint_chunks",
    metadata,
    Column("checkpoint_id", String, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False),
    Column("create_time", Double, nullable=False),  # when written: orphans are removed only once old
)

users = Table(
    "users",
    metadata,
    Column("id", String, primary_key=True),
    Column("email", String, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_users_email", "email", unique=True),
)

roles = Table(
    "roles",
    metadata,
    Column("id", String, primary_key=True),
    Column("data", Text, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String, primary_key=True),
    Column("user", String, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_api_keys_user", "user"),
)

#: Agent join tokens (the SHA-256 of the secret only); ``uses`` is counted in SQL, atomically.
join_tokens = Table(
    "join_tokens",
    metadata,
    Column("id", String, primary_key=True),
    Column("digest", String, nullable=False),
    Column("agent_types", String, nullable=False),  # comma-separated; empty: any
    Column("max_uses", BigInteger, nullable=False),  # 0: unlimited
    Column("uses", BigInteger, nullable=False),
    Column("create_time", Double, nullable=False),
    Column("expire_time", Double, nullable=False),
    Column("revoke_time", Double, nullable=True),
    Column("creator", String, nullable=False, server_default=""),  # the principal; owns the agents that join
)

#: Append-only: rows are inserted, never updated or deleted by the control plane.
audit_records = Table(
    "audit_records",
    metadata,
    Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("time", Double, nullable=False),
    Column("principal", String, nullable=False),
    Column("method", String, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_audit_records_time", "time"),
)

#: The control plane's summary figures over time (``maos metrics --timeframe``), pruned after
#: ``metrics.history.retention``; written by :mod:`controlplane.storage.sql.metrics_history`.
metrics_samples = Table(
    "metrics_samples",
    metadata,
    Column("time", Double, primary_key=True),
    Column("replica", String, primary_key=True),
    Column("data", Text, nullable=False),
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String, primary_key=True),
    Column("owner", String, nullable=False),
    Column("request_id", String, nullable=False),  # "" when created without one
    Column("create_time", Double, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_webhooks_owner", "owner", "create_time"),
)

#: The webhook outbox and delivery log: rows join the commit of the change they report.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String, primary_key=True),
    Column("webhook_id", String, nullable=False),
    Column("status", String, nullable=False),  # pending, succeeded, failed
    # When the next attempt is due (while claimed: when the claim's lease ends).
    Column("next_attempt_time", Double, nullable=False),
    Column("claim", String, nullable=False),  # "" or the claimant's token
    Column("create_time", Double, nullable=False),
    Column("data", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Index("ix_webhook_deliveries_due", "status", "next_attempt_time"),
    Index("ix_webhook_deliveries_webhook", "webhook_id", "create_time"),
)

#: Batches: ``submitted`` 0 (OPEN), 1 (submitted) or 2 (a submit holds it); the rest (schedule, task ids,
#: claim time, ...) in ``data``.
batches = Table(
    "batches",
    metadata,
    Column("id", String, primary_key=True),
    Column("owner", String, nullable=False),
    Column("display_name", String, nullable=False),
    Column("create_time", Double, nullable=False),
    Column("submitted", Integer, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_batches_owner_display_name", "owner", "display_name", unique=True),
    Index("ix_batches_create_time", "create_time"),
)

#: The tasks added to a batch before it is submitted (``data``: a task as in ``tasks``).
batch_tasks = Table(
    "batch_tasks",
    metadata,
    Column("batch_id", String, primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("request_id", String, nullable=False),
    Column("data", Text, nullable=False),
)

#: Task templates (``data``: description, parameters, source task and the task).
templates = Table(
    "templates",
    metadata,
    Column("id", String, primary_key=True),
    Column("owner", String, nullable=False),
    Column("display_name", String, nullable=False),
    Column("create_time", Double, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_templates_owner_display_name", "owner", "display_name", unique=True),
)

#: The control-plane processes sharing this database (migration 0014; see controlplane.replicas).
replicas = Table(
    "replicas",
    metadata,
    Column("id", String, primary_key=True),
    Column("address", String, nullable=False),
    Column("version", String, nullable=False),
    Column("started_at", Double, nullable=False),
    Column("heartbeat_at", Double, nullable=False),
    Column("data", Text, nullable=False),  # JSON: connected agents, leases held
)

#: Periodic jobs run by one replica at a time: who holds each, its fencing token, until when.
job_leases = Table(
    "job_leases",
    metadata,
    Column("name", String, primary_key=True),
    Column("holder", String, nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("expires_at", Double, nullable=False),
)

#: Every table of the schema, parents first.
ALL_TABLES: tuple[Table, ...] = tuple(metadata.sorted_tables)
