"""The built-in storage backend: SQLAlchemy Core over SQLite or PostgreSQL (psycopg 3).

Every method opens a short connection from the engine's pool and runs inside
:func:`translate_errors`, which maps connection problems to
:class:`~controlplane.errors.Unavailable` and integrity conflicts to
:class:`~controlplane.errors.AlreadyExists`. :meth:`SqlBackend.write` — the
hot path — upserts each table of a batch with one ``executemany`` of a
dialect ``INSERT ... ON CONFLICT DO UPDATE``, all in one transaction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Engine, Insert, Table, create_engine, delete, event, func, or_, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.pool import QueuePool, StaticPool

from controlplane.domain.model import AgentInfo, Subtask, Task, TaskStatus
from controlplane.errors import Aborted, AlreadyExists, Unavailable
from controlplane.home import PRIVATE_DIR, create_private_file
from controlplane.storage.base import (
    IdempotencyRecord,
    SchemaStatus,
    StateValue,
    TaskQuery,
    WriteBatch,
)
from controlplane.storage.records import CheckpointRecord, JoinTokenRecord, StagedRestore
from controlplane.storage.sql import checkpoint_merge, checkpoint_stream, codec, raw_writes, schema, wal
from controlplane.storage.sql.batches import SqlBatchStore
from controlplane.storage.sql.migrations import migrate as run_migrations
from controlplane.storage.sql.migrations import schema_status
from controlplane.storage.sql.templates import SqlTemplateStore
from controlplane.storage.sql.wal import WalCheckpointer
from controlplane.storage.sql.webhooks import SqlWebhooks, delivery_row

if TYPE_CHECKING:
    from controlplane.storage.sql.held_connection import HeldConnection

_T = TypeVar("_T")

try:
    import psycopg
except ImportError:  # without the ``postgres`` extra only SQLite URLs are served
    psycopg = None  # type: ignore[assignment]

#: What the raw DB-API write paths raise for a unique-constraint violation / a lost connection.
_INTEGRITY_ERRORS: tuple[type[Exception], ...] = (
    IntegrityError,
    sqlite3.IntegrityError,
    *((psycopg.IntegrityError,) if psycopg else ()),
)
_CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    sqlite3.OperationalError,
    sqlite3.InterfaceError,
    *((psycopg.OperationalError, psycopg.InterfaceError) if psycopg else ()),
)

#: URL schemes served by :class:`SqlBackendFactory`.
SCHEMES = frozenset({"sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg"})

# ``status IN (unfinished)`` rather than ``NOT IN (finished)``: an index can serve it.
_UNFINISHED = tuple(int(s) for s in TaskStatus if not s.finished)
#: The statuses of the partial indexes ``ix_tasks_claimable`` and ``ix_tasks_ended`` (migrations 0019,
#: 0024), and the terms naming them as the indexes do: SQLite uses a partial index only for a query whose
#: WHERE holds the index's own term, with the values written out (not bound as parameters).
_ENDED = (int(TaskStatus.FAILED), int(TaskStatus.CANCELLED))
_IN_CLAIMABLE = text(f"tasks.status IN ({', '.join(map(str, _UNFINISHED))})")
_IN_ENDED = text(f"tasks.status IN ({', '.join(map(str, _ENDED))})")
_IN_CHUNK = 500  # ids per ``IN (...)``, well under every SQLite variable limit
_STORAGE_UNAVAILABLE = "ERROR_REASON_STORAGE_UNAVAILABLE"


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Translate SQLAlchemy errors raised in the block into domain errors.

    Raises:
        Unavailable: The database cannot be reached (connection refused or
            lost, pool exhausted, database locked).
        AlreadyExists: A write violated a unique constraint.
    """
    try:
        yield
    except _INTEGRITY_ERRORS as exc:
        raise AlreadyExists(f"storage conflict: {_first_line(exc)}") from exc
    except _CONNECTION_ERRORS as exc:  # raised by the raw DB-API write path
        raise Unavailable(f"storage unavailable: {_first_line(exc)}", reason=_STORAGE_UNAVAILABLE) from exc
    except (DBAPIError, PoolTimeoutError) as exc:
        connection_problem = isinstance(exc, (OperationalError, InterfaceError, PoolTimeoutError)) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated
        )
        if not connection_problem:
            raise
        raise Unavailable(f"storage unavailable: {_first_line(exc)}", reason=_STORAGE_UNAVAILABLE) from exc


def _serialization_failure(exc: BaseException | None) -> bool:
    """Whether a database error is a serialization failure (SQLSTATE 40001: try again)."""
    cause = getattr(exc, "orig", None) or exc
    return getattr(cause, "sqlstate", None) == "40001"


def _first_line(exc: Exception) -> str:
    """The driver's message without SQLAlchemy's statement and parameters."""
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


def _latest(items: Iterable[_T], key: Callable[[_T], Hashable]) -> list[_T]:
    """``items`` with one element per key: the last, at the first one's position."""
    return list({key(item): item for item in items}.values())


def _upsert(
    insert: Callable[[Table], postgresql.Insert | sqlite.Insert], table: Table, *, keep: Sequence[str] = ()
) -> Insert:
    """``INSERT ... ON CONFLICT (pk) DO UPDATE`` of every column but the key and ``keep``."""
    stmt = insert(table)
    key = [c.name for c in table.primary_key.columns]
    unchanged = {*key, *keep}
    return stmt.on_conflict_do_update(
        index_elements=key,
        set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in unchanged},
    )


class SqlBackend(SqlWebhooks):
    """A :class:`~controlplane.storage.base.StorageBackend` on a SQLAlchemy engine.

    It offers every optional capability of :mod:`controlplane.storage.base`: access
    records, join tokens, checkpoints and the audit log here, ``StoresWebhooks`` in
    :mod:`controlplane.storage.sql.webhooks`, batches and templates in their own modules.

    Subtasks carry a storage-assigned ``ord`` that only new rows keep, so
    :meth:`get_subtasks` returns them in the order they were first written
    (the engine writes a plan's subtasks in plan order). The next ``ord`` is
    read from the table on the first write and then counted in memory.

    Args:
        engine: An engine for SQLite or PostgreSQL, as made by
            :func:`create_sql_engine`.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: The engine for transactions that write: on SQLite they take the write lock at BEGIN
        #: (see :func:`_begin_sqlite_transaction`).
        self._writes = engine.execution_options(maos_writes=True)
        self.kind: str = engine.dialect.name
        insert = postgresql.insert if self.kind == "postgresql" else sqlite.insert
        meta = schema.control_meta
        bump = insert(meta).values(key="incarnation", value=1)
        self._bump_incarnation = bump.on_conflict_do_update(
            index_elements=[meta.c.key], set_={"value": meta.c.value + 1}
        ).returning(meta.c.value)
        self._next_ord: int | None = None  # next subtasks.ord; read from the table once
        mark = "%s" if self.kind == "postgresql" else "?"
        # A stored task's immutable columns are not set again: SQLite rewrites the index
        # entries of every column an UPDATE sets, changed or not.
        #: The replica id written to ``tasks.claimed_by`` of the tasks this process writes (see
        #: :mod:`controlplane.storage.sql.claims`); None (SQLite, or claims off): NULL, unfenced.
        self.claimant: str | None = None
        self._raw_tasks = raw_writes.upsert(
            schema.tasks, mark, keep=(*schema.TASK_IMMUTABLE_COLUMNS, "claimed_by")
        )
        # With claims, a replica's write of a task another replica claimed since changes nothing.
        self._raw_claimed_tasks = dataclasses.replace(
            self._raw_tasks,
            tail=self._raw_tasks.tail
            + " WHERE tasks.claimed_by IS NULL OR tasks.claimed_by = excluded.claimed_by",
        )
        # A task given up is marked leaving (storage/sql/claims.py): claimable by the replica a wake-up tells.
        self._raw_release = f"UPDATE tasks SET claimed_by = {mark} WHERE id = {mark} AND claimed_by = {mark}"
        # (Run like the inserts, by ``executemany`` of its ``sql``: head + row + tail.)
        self._raw_spill = raw_writes.RawInsert(
            ("id",), f"UPDATE tasks SET claimed_by = '{schema.SPILLED}' WHERE id = ", "", mark
        )
        self._raw_subtasks = raw_writes.upsert(schema.subtasks, mark, keep=("ord",))
        self._fenced_for = ""
        self._raw_fenced_subtasks = self._raw_subtasks
        self._raw_agents = raw_writes.upsert(schema.agents, mark)
        self._raw_idempotency = raw_writes.upsert(schema.idempotency, mark, update=False)
        self._raw_deliveries = raw_writes.upsert(schema.webhook_deliveries, mark, update=False)
        self._raw_audit = raw_writes.plain("audit_records", ("time", "principal", "method", "data"), mark)
        self._checkpointer: WalCheckpointer | None = None  # started by the first write to an SQLite file
        self._now_connection: sqlite3.Connection | None = None  # write_now's own, made on first use
        self._writer_connection: sqlite3.Connection | None = None  # write's own on an SQLite file
        self._writer_lock = threading.Lock()
        self._closed = False
        #: PostgreSQL: the connection :meth:`write` commits on, kept checked out.
        self._held: HeldConnection | None = None
        if self.kind == "postgresql":
            from controlplane.storage.sql.held_connection import HeldConnection  # needs psycopg

            self._held = HeldConnection(engine)
        #: Optional capabilities (storage.base.StoresBatches, StoresTemplates), in their own modules.
        self.batches = SqlBatchStore(engine, self._writes, translate_errors)
        self.templates = SqlTemplateStore(engine, self._writes, translate_errors)

    def __repr__(self) -> str:
        return f"SqlBackend({self.engine.url!r})"

    @property
    def concurrent_reads(self) -> bool:
        """Whether reads may run on another thread beside the writes (PostgreSQL): see
        :meth:`~controlplane.storage.executor.StorageExecutor.quick_read`. Not SQLite: a control plane
        reading an SQLite file on a second thread while another process read it too was killed by
        SIGBUS at its stop, so SQLite reads stay on the storage thread."""
        return self.kind == "postgresql"

    # --- lifecycle -----------------------------------------------------------

    def migrate(self) -> None:
        """Upgrade the schema to the latest revision (idempotent); ANALYZE on PostgreSQL."""
        with translate_errors():
            with self._writes.begin() as conn:
                run_migrations(conn)
            if self.kind == "postgresql":
                names = ", ".join(table.name for table in schema.ALL_TABLES)
                with self._writes.begin() as conn:
                    conn.execute(text(f"ANALYZE {names}"))

    def schema_status(self) -> SchemaStatus:
        """The database's schema revision against the one this version needs (read only).

        An SQLite file that does not exist has no schema and is not created here, so
        a server that refuses to start leaves nothing behind.
        """
        url = self.engine.url
        if (
            self.kind == "sqlite"
            and _sqlite_plain_file(url)
            and not Path(url.database or "").expanduser().exists()
        ):
            return schema_status(None)
        with translate_errors(), self.engine.connect() as conn:
            return schema_status(conn)

    def metrics_history(self) -> Any:
        """The ``metrics_samples`` table (the optional ``KeepsMetricsHistory`` capability)."""
        from controlplane.storage.sql.metrics_history import SqlMetricsHistory

        return SqlMetricsHistory(self._writes)

    def database_size_bytes(self) -> int:
        """The database's size (the optional ``ReportsSize`` capability)."""
        from controlplane.storage.sql.metrics_history import database_size_bytes

        return database_size_bytes(self.engine)

    def ping(self) -> None:
        """Raise ``Unavailable`` unless a trivial query succeeds."""
        with translate_errors(), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        """Stop the WAL checkpoints, then close every pooled connection."""
        self._closed = True
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        for connection in (self._now_connection, self._writer_connection):
            if connection is not None:
                connection.close()
        self._now_connection = self._writer_connection = None
        if self._held is not None:
            self._held.close()
        self.engine.dispose()

    def _wal_checkpointer(self) -> WalCheckpointer | None:
        """The checkpointer of an SQLite file database (started on first use), else None.

        Called after commits, which the committer makes one at a time.
        """
        if self._checkpointer is None and self.can_write_now():
            self._checkpointer = WalCheckpointer(self.engine.url.database or "")
        return self._checkpointer

    # --- counters ------------------------------------------------------------

    def next_incarnation(self) -> int:
        """Atomically increment and return the incarnation counter (1 the first time)."""
        with translate_errors(), self._writes.begin() as conn:
            return int(conn.execute(self._bump_incarnation).scalar_one())

    def page_token_key(self) -> bytes:
        """The key page tokens are signed with, the same for every replica on this database:
        drawn once (four random 64-bit values in ``control_meta``, the first writer's kept), then
        read (see :mod:`controlplane.api.paging`)."""
        meta = schema.control_meta
        names = [f"page_token_key.{n}" for n in range(4)]
        insert = postgresql.insert if self.kind == "postgresql" else sqlite.insert
        drawn = [
            {"key": name, "value": int.from_bytes(secrets.token_bytes(8), "big", signed=True)}
            for name in names
        ]

        def draw_or_read() -> dict[str, int]:
            with translate_errors(), self._writes.begin() as conn:
                conn.execute(insert(meta).values(drawn).on_conflict_do_nothing(index_elements=[meta.c.key]))
                rows = conn.execute(select(meta.c.key, meta.c.value).where(meta.c.key.in_(names))).all()
                return {str(key): int(value) for key, value in rows}

        try:
            stored = draw_or_read()
        except Unavailable as exc:
            # Under default_transaction_isolation=repeatable read, a replica drawing at the same
            # moment as another fails to serialize; the other's key is committed by then: read it.
            if not _serialization_failure(exc.__cause__):
                raise
            stored = draw_or_read()
        return b"".join(stored[name].to_bytes(8, "big", signed=True) for name in names)

    def next_task_seq(self) -> int:
        """The highest task seq stored, or 0."""
        with translate_errors(), self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(schema.tasks.c.seq), 0))).scalar_one())

    # --- writes --------------------------------------------------------------

    def write(self, batch: WriteBatch) -> None:
        """Upsert every row of the batch in one transaction.

        Args:
            batch: Rows in their latest state; for a repeated key the last wins.

        Raises:
            AlreadyExists: Two tasks would share a seq.
            Unavailable: The database cannot be reached; nothing was written.
        """
        batch.refused = set()
        rows = self._rows(batch)
        if rows is None:
            return
        if self._held is not None:
            # PostgreSQL, on the connection kept for writes: a small write is one statement
            # (its own transaction), a larger one its inserts and COMMIT in one pipeline.
            # Either way one network round trip; a write with request ids first inserts
            # their records and learns which were stored already (one more round trip).
            with translate_errors():
                claimant = self.claimant
                released = batch.released if claimant is not None else ()
                release = raw_writes.numbered(self._raw_release)
                mark = schema.leaving(claimant or "")
                releases = [(release, [mark, task_id, claimant]) for task_id in released]
                if batch.idempotency:
                    claim = self._claim_statement(rows[3])

                    def rest(stored: list[tuple[Any, ...]]) -> list[tuple[str, list[Any]]]:
                        kept = self._refuse(batch, {tuple(key) for key in stored}, rows)
                        return [*raw_writes.in_chunks(self._parts(batch, *kept)), *releases]

                    self._held.decide(*claim, rest)
                    return
                written = self._parts(batch, *rows)
                statement = None if released else raw_writes.one_statement(written)
                if statement is not None:
                    self._held.execute(*statement)
                else:  # tasks given up are released with the state they are left in, in one transaction
                    self._held.transaction([*raw_writes.in_chunks(written), *releases])
            return

        def parts(cursor: Any) -> list[tuple[raw_writes.RawInsert, list[Any]]]:
            return self._parts(batch, *self._claimed_here(cursor, batch, rows))

        # (One thread writes in production; tests may write from several.)
        with self._writer_lock:
            connection = self._thread_connection()
            if connection is not None:  # an SQLite file: the storage thread's own connection
                with translate_errors():
                    _commit(connection, "BEGIN IMMEDIATE", parts)  # waits out busy_timeout for the lock
        if connection is not None:
            self._committed()
            return
        with translate_errors(), self._writes.begin() as conn:
            dbapi = conn.connection.dbapi_connection
            assert dbapi is not None  # a connection just checked out of the pool is live
            cursor = dbapi.cursor()
            self._insert(cursor, parts(cursor))
        self._committed()

    # --- calls with a request_id: the database decides which call of one key wins -------------

    def _claim_statement(self, idempotency_rows: list[dict[str, Any]]) -> tuple[str, list[Any]]:
        """PostgreSQL: insert the records if absent (in key order, so two writes never wait on each
        other in a cycle) and return the keys inserted."""
        insert = self._raw_idempotency
        ordered = sorted(idempotency_rows, key=lambda r: (r["principal"], r["method"], r["request_id"]))
        sql = insert.rows_sql(len(ordered)) + " RETURNING principal, method, request_id"
        return raw_writes.numbered(sql), [row[c] for row in ordered for c in insert.columns]

    def _claimed_here(
        self, cursor: Any, batch: WriteBatch, rows: tuple[list[Any], ...]
    ) -> tuple[list[Any], ...]:
        """SQLite: insert the records of ``batch`` if absent, one by one, and leave out what was refused."""
        if not batch.idempotency:
            return rows
        insert = self._raw_idempotency
        stored = set()
        for row in rows[3]:
            cursor.execute(insert.sql, tuple(row[c] for c in insert.columns))
            if cursor.rowcount == 1:
                stored.add((row["principal"], row["method"], row["request_id"]))
        return self._refuse(batch, stored, rows)

    @staticmethod
    def _refuse(
        batch: WriteBatch, stored: set[tuple[Any, ...]], rows: tuple[list[Any], ...]
    ) -> tuple[list[Any], ...]:
        """The rows of ``batch`` without its records (inserted already) and without the tasks of the
        records not ``stored`` (whose keys go to ``batch.refused``)."""
        refused = {r.key for r in batch.idempotency} - stored
        batch.refused = refused
        task_rows, subtask_rows, agent_rows, _ = rows
        if refused:
            dropped = {t for r in batch.idempotency if r.key in refused for t in r.resource.split(",")}
            task_rows = [row for row in task_rows if row["id"] not in dropped]
            subtask_rows = [row for row in subtask_rows if row["task_id"] not in dropped]
        return task_rows, subtask_rows, agent_rows, []

    def _thread_connection(self) -> sqlite3.Connection | None:
        """The connection :meth:`write` keeps on an SQLite file (made on first use), else None.

        Plain ``sqlite3`` with the pool's settings: a checkout and SQLAlchemy's transaction
        cost more than a small write.
        """
        connection = self._writer_connection
        if connection is None and self.can_write_now():
            connection = self._writer_connection = _sqlite_file_connection(self.engine.url)
        return connection

    def can_write_now(self) -> bool:
        """Whether :meth:`write_now` can commit: an open backend on an SQLite file on disk."""
        return not self._closed and self.kind == "sqlite" and _sqlite_plain_file(self.engine.url)

    def write_now(self, batch: WriteBatch) -> bool:
        """Write like :meth:`write` on the calling thread, unless the SQLite file is locked.

        Only a database file on disk offers this. Its own connection waits for
        no lock (a locked database returns False at once, having written
        nothing), and its commits neither checkpoint the log (the
        :class:`WalCheckpointer` does) nor, with ``synchronous=NORMAL``, sync
        it. PostgreSQL, whose commits wait on the network and the server,
        always returns False.
        """
        connection = self._now_connection
        if connection is None:
            if not self.can_write_now():
                return False
            connection = self._now_connection = _sqlite_file_connection(self.engine.url)
            connection.execute("PRAGMA busy_timeout=0")  # a lock held by another writer fails at once
        batch.refused = set()
        rows = self._rows(batch)
        if rows is None:
            return True

        def parts(cursor: Any) -> list[tuple[raw_writes.RawInsert, list[Any]]]:
            return self._parts(batch, *self._claimed_here(cursor, batch, rows))

        try:
            with translate_errors():
                _commit(connection, "BEGIN", parts)
        except Unavailable as exc:
            if _sqlite_locked(exc):
                return False
            raise
        self._committed()
        return True

    def _rows(self, batch: WriteBatch) -> tuple[list[Any], ...] | None:
        """The DB-API rows of tasks, subtasks, agents and idempotency records of ``batch`` (None: nothing to write)."""
        if not batch:
            return None
        task_rows = [codec.task_to_row(t) for t in _latest(batch.tasks, lambda t: t.id)]
        for row in task_rows:
            row["claimed_by"] = self.claimant
        agent_rows = [codec.agent_to_row(a) for a in _latest(batch.agents, lambda a: a.id)]
        idempotency_rows = [codec.idempotency_to_row(r) for r in batch.idempotency]
        with translate_errors():
            subtask_rows = self._subtask_rows(_latest(batch.subtasks, lambda s: (s.task_id, s.id)))
        return task_rows, subtask_rows, agent_rows, idempotency_rows

    def _parts(
        self,
        batch: WriteBatch,
        task_rows: list[Any],
        subtask_rows: list[Any],
        agent_rows: list[Any],
        idempotency_rows: list[Any],
    ) -> list[tuple[raw_writes.RawInsert, list[tuple[Any, ...]]]]:
        """Each insert of one write with the DB-API parameters of its rows (maybe none)."""
        raw_tasks, raw_subtasks = self._raw_tasks, self._raw_subtasks
        if self.claimant is not None:  # fenced: a task another replica claimed since is not written
            raw_tasks, raw_subtasks = self._raw_claimed_tasks, self._fenced_subtasks(self.claimant)
        parts = [
            (insert, [tuple(row[c] for c in insert.columns) for row in rows])
            for insert, rows in (
                (raw_tasks, task_rows),
                (raw_subtasks, subtask_rows),
                (self._raw_agents, agent_rows),
                (self._raw_idempotency, idempotency_rows),
            )
        ]
        parts.append((self._raw_audit, _audit_rows(batch.audit)))
        if batch.released and self.claimant is None and self.kind == "sqlite":
            # Alone on SQLite, a task given up stays queued in the database (storage/sql/spill.py),
            # marked after its latest state in the same transaction.
            parts.append((self._raw_spill, [(task_id,) for task_id in batch.released]))
        # The outbox: in the same transaction as what the events report.
        columns = self._raw_deliveries.columns
        deliveries = [tuple(row[c] for c in columns) for row in map(delivery_row, batch.webhook_deliveries)]
        parts.append((self._raw_deliveries, deliveries))
        return parts

    @staticmethod
    def _insert(cursor: Any, parts: list[tuple[raw_writes.RawInsert, list[tuple[Any, ...]]]]) -> None:
        """The statements of one write, on a DB-API cursor inside a transaction.

        Plain DB-API executemany of pre-built statements: SQLAlchemy's
        per-call compilation costs more than the inserts.
        """
        try:
            for insert, rows in parts:
                if rows:
                    cursor.executemany(insert.sql, rows)
        finally:
            cursor.close()

    def _fenced_subtasks(self, claimant: str) -> raw_writes.RawInsert:
        """The subtask upsert that changes a stored subtask only while its task is ``claimant``'s (or nobody's)."""
        if self._fenced_for != claimant:
            literal = "'" + claimant.replace("'", "''") + "'"
            self._fenced_for = claimant
            self._raw_fenced_subtasks = dataclasses.replace(
                self._raw_subtasks,
                tail=self._raw_subtasks.tail
                + " WHERE EXISTS (SELECT 1 FROM tasks t WHERE t.id = excluded.task_id "
                f"AND (t.claimed_by IS NULL OR t.claimed_by = {literal}))",
            )
        return self._raw_fenced_subtasks

    def _committed(self) -> None:
        checkpointer = self._wal_checkpointer()
        if checkpointer is not None:
            checkpointer.committed()

    def _subtask_rows(self, subtasks: list[Subtask]) -> list[dict[str, Any]]:
        """Rows of ``subtasks`` with fresh ``ord`` values (kept only by new rows)."""
        if not subtasks:
            return []
        if self._next_ord is None:
            with self.engine.connect() as conn:
                highest = conn.execute(select(func.coalesce(func.max(schema.subtasks.c.ord), 0)))
                self._next_ord = int(highest.scalar_one()) + 1
        rows = [codec.subtask_to_row(s) for s in subtasks]
        for ord_, row in enumerate(rows, start=self._next_ord):
            row["ord"] = ord_
        self._next_ord += len(rows)
        return rows

    # --- reads ---------------------------------------------------------------

    def load_unfinished(self) -> tuple[list[Task], list[Subtask]]:
        """Every unfinished task (by seq) and every subtask of those tasks (in plan order), but those
        queued in the database beyond the window (storage/sql/spill.py: they are taken back in order)."""
        t, s = schema.tasks, schema.subtasks
        unfinished = _IN_CLAIMABLE & or_(t.c.claimed_by.is_(None), t.c.claimed_by != schema.SPILLED)
        with translate_errors(), self.engine.connect() as conn:
            # (By ``seq + 0``: ordered by ix_tasks_seq, SQLite would walk every task, finished ones too.)
            tasks = conn.execute(select(t).where(unfinished).order_by(t.c.seq + 0)).mappings()
            task_list = [codec.task_from_row(row) for row in tasks]
            ids = select(t.c.id).where(unfinished)
            subtasks = conn.execute(select(s).where(s.c.task_id.in_(ids)).order_by(s.c.task_id, s.c.ord))
            return task_list, [codec.subtask_from_row(row) for row in subtasks.mappings()]

    def get_task(self, task_id: str) -> Task | None:
        """One task, or None."""
        with translate_errors(), self.engine.connect() as conn:
            row = conn.execute(select(schema.tasks).where(schema.tasks.c.id == task_id)).mappings().first()
        return None if row is None else codec.task_from_row(row)

    def get_tasks(self, task_ids: Sequence[str]) -> list[Task]:
        """The tasks that exist among ``task_ids``, in the order of ``task_ids``."""
        wanted = list(dict.fromkeys(task_ids))
        found: dict[str, Task] = {}
        with translate_errors(), self.engine.connect() as conn:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                rows = conn.execute(select(schema.tasks).where(schema.tasks.c.id.in_(chunk))).mappings()
                found.update((row["id"], codec.task_from_row(row)) for row in rows)
        return [found[i] for i in wanted if i in found]

    def get_subtasks(self, task_id: str) -> list[Subtask]:
        """The subtasks of a task, in plan order (the order they were first written)."""
        s = schema.subtasks
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(select(s).where(s.c.task_id == task_id).order_by(s.c.ord)).mappings()
            return [codec.subtask_from_row(row) for row in rows]

    def list_tasks(self, query: TaskQuery) -> list[Task]:
        """Tasks matching ``query``, highest seq first, at most ``query.limit``."""
        t = schema.tasks
        stmt = select(t).order_by(t.c.seq.desc()).limit(max(query.limit, 0))
        if query.statuses:
            statuses = {int(s) for s in query.statuses}
            stmt = stmt.where(t.c.status.in_(sorted(statuses)))
            # The partial index holding every status asked for, if one does (finished ones: COMPLETED
            # tasks, most of the table, are met soon enough walking ix_tasks_seq from the newest).
            if statuses <= set(_UNFINISHED):  # the queue, sorted (not every task walked in seq order)
                stmt = stmt.where(_IN_CLAIMABLE).order_by(None).order_by((t.c.seq + 0).desc())
            elif statuses <= set(_ENDED):
                stmt = stmt.where(_IN_ENDED)
        if query.task_types:
            stmt = stmt.where(t.c.task_type.in_(list(query.task_types)))
        if query.priorities:
            stmt = stmt.where(t.c.priority.in_([int(p) for p in query.priorities]))
        if query.since is not None:
            stmt = stmt.where(t.c.create_time >= query.since)
        if query.owner is not None:
            stmt = stmt.where(t.c.owner == query.owner)
        if query.batch is not None:
            stmt = stmt.where(t.c.batch == query.batch)
            if query.batch:  # ix_tasks_batch holds the tasks of a batch alone
                stmt = stmt.where(text("tasks.batch <> ''"))
        if query.before_seq is not None:
            stmt = stmt.where(t.c.seq < query.before_seq)
        with translate_errors(), self.engine.connect() as conn:
            return [codec.task_from_row(row) for row in conn.execute(stmt).mappings()]

    def get_idempotency(self, principal: str, method: str, request_id: str) -> IdempotencyRecord | None:
        """The record of an earlier call with that request_id, or None."""
        i = schema.idempotency
        stmt = select(i).where(i.c.principal == principal, i.c.method == method, i.c.request_id == request_id)
        with translate_errors(), self.engine.connect() as conn:
            row = conn.execute(stmt).mappings().first()
        return None if row is None else codec.idempotency_from_row(row)

    def settled_idempotency_records(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], IdempotencyRecord]:
        """The records among ``keys`` (principal, method, request_id) once no transaction writing them
        can still commit, by key.

        After a commit whose outcome is unknown (its connection dropped under it), a plain read
        may run before the server finishes that commit. On PostgreSQL this inserts the keys first
        (in key order, as commits do: the two never wait on each other in a cycle), which waits for
        any transaction still inserting one of them (at most ``lock_timeout``, 5 s, then it raises
        and the caller asks again), then rolls back: nothing is ever written. A key inserted has no
        record, and none can appear from that commit any more. Called on a thread of its own
        (:meth:`~controlplane.storage.executor.StorageExecutor.settling_read`): it may wait.
        """
        if self.kind != "postgresql":  # one process, committing on its own thread: nothing in flight
            return self.get_idempotency_records(keys)
        ordered = sorted(set(keys))
        if not ordered:
            return {}
        i = schema.idempotency
        probe = (
            postgresql.insert(i)
            .values(
                [
                    {
                        "principal": principal,
                        "method": method,
                        "request_id": request_id,
                        "request_hash": "",
                        "resource": "",
                        "create_time": 0.0,
                    }
                    for principal, method, request_id in ordered
                ]
            )
            .on_conflict_do_nothing()
            .returning(i.c.principal, i.c.method, i.c.request_id)
        )
        with translate_errors(), self._writes.connect() as conn:
            transaction = conn.begin()
            try:
                conn.execute(text("SET LOCAL lock_timeout = '5s'"))
                absent = {(r[0], r[1], r[2]) for r in conn.execute(probe)}
                present = [key for key in ordered if key not in absent]
                found: dict[tuple[str, str, str], IdempotencyRecord] = {}
                if present:
                    stored = select(i).where(tuple_(i.c.principal, i.c.method, i.c.request_id).in_(present))
                    for row in conn.execute(stored).mappings():
                        record = codec.idempotency_from_row(row)
                        found[(record.principal, record.method, record.request_id)] = record
            finally:
                transaction.rollback()
        return found

    def idempotency_keys(self) -> tuple[int, Iterator[tuple[str, str, str]]]:
        """How many idempotency records are stored, and their keys (principal, method, request_id),
        read a block at a time while the iterator is consumed (on this thread)."""
        i = schema.idempotency
        with translate_errors(), self.engine.connect() as conn:
            count = int(conn.execute(select(func.count()).select_from(i)).scalar_one())

        def keys() -> Iterator[tuple[str, str, str]]:
            with translate_errors(), self.engine.connect() as conn:
                rows = conn.execution_options(yield_per=10_000).execute(
                    select(i.c.principal, i.c.method, i.c.request_id)
                )
                yield from ((row[0], row[1], row[2]) for row in rows)

        return count, keys()

    def get_idempotency_records(
        self, keys: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], IdempotencyRecord]:
        """The records of earlier calls among ``keys`` (principal, method, request_id), by key.

        One statement per (principal, method) pair, each on the primary key's prefix.
        """
        i = schema.idempotency
        groups: dict[tuple[str, str], list[str]] = {}
        for principal, method, request_id in keys:
            groups.setdefault((principal, method), []).append(request_id)
        found: dict[tuple[str, str, str], IdempotencyRecord] = {}
        with translate_errors(), self.engine.connect() as conn:
            for (principal, method), request_ids in groups.items():
                stmt = select(i).where(
                    i.c.principal == principal, i.c.method == method, i.c.request_id.in_(request_ids)
                )
                for row in conn.execute(stmt).mappings():
                    record = codec.idempotency_from_row(row)
                    found[(record.principal, record.method, record.request_id)] = record
        return found

    def get_agent(self, agent_id: str) -> AgentInfo | None:
        """One agent, or None."""
        with translate_errors(), self.engine.connect() as conn:
            row = conn.execute(select(schema.agents).where(schema.agents.c.id == agent_id)).mappings().first()
        return None if row is None else codec.agent_from_row(row)

    def list_agents(self) -> list[AgentInfo]:
        """Every stored agent, by id."""
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(select(schema.agents).order_by(schema.agents.c.id)).mappings()
            return [codec.agent_from_row(row) for row in rows]

    def count_tasks_by_status(self) -> dict[TaskStatus, int]:
        """How many tasks are in each state (every state present, zeros included).

        Reads ``task_counts``, which triggers keep as tasks change: a few rows at any table size.
        """
        c = schema.task_counts
        counts = dict.fromkeys(TaskStatus, 0)
        with translate_errors(), self.engine.connect() as conn:
            for status, count in conn.execute(select(c.c.status, func.sum(c.c.n)).group_by(c.c.status)):
                if status in TaskStatus._value2member_map_:
                    counts[TaskStatus(status)] = int(count)
        return counts

    # --- shared state ---------------------------------------------------------

    def state_get(self, task_id: str, key: str) -> StateValue | None:
        """The value and version of a key of a task's shared state, or None."""
        st = schema.shared_state
        with translate_errors(), self.engine.connect() as conn:
            row = conn.execute(
                select(st.c.value, st.c.version).where(st.c.task_id == task_id, st.c.key == key)
            ).first()
        return None if row is None else StateValue(bytes(row.value), int(row.version))

    def state_put(self, task_id: str, key: str, value: bytes, expected_version: int | None) -> int:
        """Write a key (compare-and-set when ``expected_version`` is given); returns the new version.

        Two first writes of one key at once (from two replicas) both find no row to lock: the
        one whose insert loses is decided again against the row the other committed.
        """
        try:
            return self._state_put(task_id, key, value, expected_version)
        except AlreadyExists:
            return self._state_put(task_id, key, value, expected_version)

    def _state_put(self, task_id: str, key: str, value: bytes, expected_version: int | None) -> int:
        st = schema.shared_state
        where = (st.c.task_id == task_id, st.c.key == key)
        with translate_errors(), self._writes.begin() as conn:
            row = conn.execute(select(st.c.version).where(*where).with_for_update()).first()
            current = 0 if row is None else int(row.version)
            if expected_version is not None and expected_version != current:
                raise _conflict(key, expected_version, current)
            if row is None:
                conn.execute(st.insert().values(task_id=task_id, key=key, value=value, version=1))
                return 1
            conn.execute(st.update().where(*where).values(value=value, version=current + 1))
            return current + 1

    def state_delete(self, task_id: str, key: str, expected_version: int | None) -> bool:
        """Delete a key (compare-and-set when ``expected_version`` is given); whether it existed."""
        st = schema.shared_state
        where = (st.c.task_id == task_id, st.c.key == key)
        with translate_errors(), self._writes.begin() as conn:
            row = conn.execute(select(st.c.version).where(*where).with_for_update()).first()
            current = 0 if row is None else int(row.version)
            if expected_version is not None and expected_version != current:
                raise _conflict(key, expected_version, current)
            if row is None:
                return False
            conn.execute(st.delete().where(*where))
            return True

    # --- checkpoints ----------------------------------------------------------

    def put_checkpoint(self, record: CheckpointRecord) -> None:
        """Store a checkpoint with its payload (``AlreadyExists`` if the id is taken).

        A record without a payload (None) is one whose chunks :meth:`put_checkpoint_chunks` wrote:
        it is stored only if they are all there (``Aborted`` otherwise).
        """
        row = {**vars(record), "automatic": int(record.automatic), "components": ",".join(record.components)}
        if row["payload"] is None:
            row["payload"] = b""
        with translate_errors():
            checkpoint_stream.insert_checkpoint(self, record, row)

    def snapshot_blocks(
        self, tables: Sequence[str], block_rows: int
    ) -> Iterator[tuple[str, list[str], list[str], list[tuple[Any, ...]]]]:
        """``(table, columns, binary columns, rows)`` in blocks, in one repeatable-read transaction."""
        with translate_errors():
            yield from checkpoint_stream.snapshot_blocks(self, tables, block_rows)

    def put_checkpoint_chunks(self, checkpoint_id: str, chunks: Iterable[bytes]) -> None:
        """Store a payload chunk by chunk ahead of its :meth:`put_checkpoint` (which makes it visible);
        chunks left over an hour ago by a checkpoint that never got its row are removed first."""
        with translate_errors():
            checkpoint_stream.drop_chunks(self)
            checkpoint_stream.store_chunks(self, checkpoint_id, chunks)

    def drop_checkpoint_chunks(self, checkpoint_id: str) -> None:
        """Remove the chunks of a checkpoint that will not be stored (e.g. skipped as unchanged)."""
        with translate_errors():
            checkpoint_stream.drop_chunks(self, checkpoint_id)

    def checkpoint_chunks(self, checkpoint_id: str) -> Iterator[bytes]:
        """A stored payload, chunk by chunk."""
        with translate_errors():
            yield from checkpoint_stream.read_chunks(self, checkpoint_id)

    def restore_staged(
        self,
        parts: Iterator[tuple[str, list[str], list[Any]]],
        components: dict[str, tuple[str, ...]],
        apply: bool,
        ordered: bool = False,
    ) -> StagedRestore:
        """Compare a checkpoint's rows with the stored ones and (``apply``) upsert them, in one transaction;
        rows ``ordered`` by key are merged with the stored ones, the others staged whole first."""
        with translate_errors():
            if ordered:
                return checkpoint_merge.merged_restore(self, parts, components, apply=apply)
            return checkpoint_stream.staged_restore(self, parts, components, apply=apply)

    def get_checkpoint(self, checkpoint_id: str, with_payload: bool = False) -> CheckpointRecord | None:
        """One checkpoint (``"latest"``: the newest), or None."""
        c = schema.checkpoints
        columns = [col for col in c.columns if with_payload or col.name != "payload"]
        stmt = select(*columns)
        if checkpoint_id == "latest":
            stmt = stmt.order_by(c.c.create_time.desc(), c.c.id.desc()).limit(1)
        else:
            stmt = stmt.where(c.c.id == checkpoint_id)
        with translate_errors(), self.engine.connect() as conn:
            row = conn.execute(stmt).mappings().first()
        record = None if row is None else self._checkpoint_from_row(row)
        if record is not None and with_payload and not record.payload:  # stored in chunks
            record.payload = b"".join(self.checkpoint_chunks(record.id))
        return record

    def list_checkpoints(self, offset: int = 0, limit: int = 50) -> list[CheckpointRecord]:
        """Checkpoints newest first, without payloads."""
        c = schema.checkpoints
        stmt = (
            select(*[col for col in c.columns if col.name != "payload"])
            .order_by(c.c.create_time.desc(), c.c.id.desc())
            .offset(max(offset, 0))
            .limit(max(limit, 0))
        )
        with translate_errors(), self.engine.connect() as conn:
            return [self._checkpoint_from_row(row) for row in conn.execute(stmt).mappings()]

    def delete_checkpoint(self, checkpoint_id: str) -> bool:
        """Delete a checkpoint; whether it existed."""
        c = schema.checkpoints
        with translate_errors(), self._writes.begin() as conn:
            conn.execute(
                schema.checkpoint_chunks.delete().where(
                    schema.checkpoint_chunks.c.checkpoint_id == checkpoint_id
                )
            )
            return conn.execute(c.delete().where(c.c.id == checkpoint_id)).rowcount > 0

    @staticmethod
    def _checkpoint_from_row(row: Any) -> CheckpointRecord:
        """A :class:`CheckpointRecord` from a ``checkpoints`` row (payload only if selected)."""
        data = dict(row)
        data["automatic"] = bool(data["automatic"])
        data["components"] = [c for c in data["components"].split(",") if c]
        if data.get("payload") is not None:
            data["payload"] = bytes(data["payload"])
        return CheckpointRecord(**data)

    # --- access control (users, roles, API keys, audit) ------------------------

    def _access_table(self, kind: str) -> Table:
        return {"users": schema.users, "roles": schema.roles, "api_keys": schema.api_keys}[kind]

    def access_put(self, kind: str, row_id: str, data: dict[str, Any], *, create: bool = False) -> None:
        """Insert (``create``: ``AlreadyExists`` if taken) or upsert one user, role or API key.

        ``data`` is the whole record as JSON-able values; users need ``email``,
        API keys need ``user``.
        """
        table = self._access_table(kind)
        row: dict[str, Any] = {"id": row_id, "data": json.dumps(data, separators=(",", ":"))}
        if kind == "users":
            row["email"] = data["email"]
        if kind == "api_keys":
            row["user"] = data["user"]
        with translate_errors(), self._writes.begin() as conn:
            if create:
                conn.execute(table.insert().values(**row))
            else:
                stmt = _upsert(postgresql.insert if self.kind == "postgresql" else sqlite.insert, table)
                conn.execute(stmt, [row])

    def access_list(self, kind: str) -> list[dict[str, Any]]:
        """Every user, role or API key as stored by :meth:`access_put` (with ``id``)."""
        table = self._access_table(kind)
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(select(table.c.id, table.c.data).order_by(table.c.id)).all()
        return [{**json.loads(data), "id": row_id} for row_id, data in rows]

    def access_delete(self, kind: str, row_id: str) -> bool:
        """Delete a user, role or API key; whether it existed."""
        table = self._access_table(kind)
        with translate_errors(), self._writes.begin() as conn:
            return conn.execute(table.delete().where(table.c.id == row_id)).rowcount > 0

    # --- join tokens --------------------------------------------------------------

    def put_join_token(self, record: JoinTokenRecord) -> None:
        """Insert a join token (``AlreadyExists`` if its id is taken)."""
        row = {**dataclasses.asdict(record), "agent_types": ",".join(record.agent_types)}
        with translate_errors(), self._writes.begin() as conn:
            conn.execute(schema.join_tokens.insert().values(**row))

    def get_join_token(self, token_id: str) -> JoinTokenRecord | None:
        """One join token, or None."""
        j = schema.join_tokens
        with translate_errors(), self.engine.connect() as conn:
            row = conn.execute(select(j).where(j.c.id == token_id)).mappings().first()
        return _join_token(row) if row is not None else None

    def list_join_tokens(self) -> list[JoinTokenRecord]:
        """Every join token, oldest first."""
        j = schema.join_tokens
        with translate_errors(), self.engine.connect() as conn:
            rows = conn.execute(select(j).order_by(j.c.create_time, j.c.id)).mappings().all()
        return [_join_token(row) for row in rows]

    def revoke_join_token(self, token_id: str, when: float) -> JoinTokenRecord | None:
        """Set ``revoke_time`` unless already set; the token afterwards, or None if unknown."""
        j = schema.join_tokens
        with translate_errors(), self._writes.begin() as conn:
            conn.execute(
                j.update().where(j.c.id == token_id, j.c.revoke_time.is_(None)).values(revoke_time=when)
            )
            row = conn.execute(select(j).where(j.c.id == token_id)).mappings().first()
        return _join_token(row) if row is not None else None

    def use_join_token(self, token_id: str, now: float) -> JoinTokenRecord | None:
        """Count one use if the token is unrevoked, unexpired at ``now`` and not used up, in one statement.

        Returns the token with the use counted, or None (nothing changed).
        """
        j = schema.join_tokens
        counted = (
            j.update()
            .where(
                j.c.id == token_id,
                j.c.revoke_time.is_(None),
                j.c.expire_time > now,
                or_(j.c.max_uses == 0, j.c.uses < j.c.max_uses),
            )
            .values(uses=j.c.uses + 1)
        )
        with translate_errors(), self._writes.begin() as conn:
            if conn.execute(counted).rowcount != 1:
                return None
            row = conn.execute(select(j).where(j.c.id == token_id)).mappings().one()
        return _join_token(row)

    # --- audit ----------------------------------------------------------------------

    def list_audit(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        principal: str = "",
        action: str = "",
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Audit records newest first (each with its ``seq``), filtered."""
        a = schema.audit_records
        stmt = select(a.c.seq, a.c.data).order_by(a.c.seq.desc()).limit(limit)
        if since is not None:
            stmt = stmt.where(a.c.time >= since)
        if until is not None:
            stmt = stmt.where(a.c.time < until)
        if principal:
            stmt = stmt.where(a.c.principal == principal)
        if action:
            stmt = stmt.where(a.c.method.contains(action, autoescape=True))
        if before_seq is not None:
            stmt = stmt.where(a.c.seq < before_seq)
        with translate_errors(), self.engine.connect() as conn:
            return [{**json.loads(data), "seq": seq} for seq, data in conn.execute(stmt).all()]

    def delete_audit_before(self, time: float) -> int:
        """Delete audit records older than ``time`` (``audit.retention_days``); how many went."""
        a = schema.audit_records
        with translate_errors(), self._writes.begin() as conn:
            return conn.execute(delete(a).where(a.c.time < time)).rowcount


def _commit(
    connection: sqlite3.Connection,
    begin: str,
    parts: Callable[[Any], list[tuple[raw_writes.RawInsert, list[Any]]]],
) -> None:
    """The inserts ``parts(cursor)`` gives in one transaction on a plain ``sqlite3`` connection (autocommit mode)."""
    connection.execute(begin)
    try:
        cursor = connection.cursor()
        SqlBackend._insert(cursor, parts(cursor))
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:  # (SQLite rolls back by itself after some errors)
            connection.execute("ROLLBACK")
        raise


def _audit_rows(records: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """DB-API parameters of the audit insert for each record."""
    return [(r["time"], r["principal"], r["method"], codec.dumps(r)) for r in records]


def _join_token(row: Any) -> JoinTokenRecord:
    """A :class:`JoinTokenRecord` from a ``join_tokens`` row."""
    data = dict(row)
    data["agent_types"] = tuple(t for t in data["agent_types"].split(",") if t)
    return JoinTokenRecord(**data)


def _conflict(key: str, expected: int, actual: int) -> Aborted:
    return Aborted(
        f"shared state {key!r} is at version {actual}, not {expected}; read it again and retry",
        reason="ERROR_REASON_VERSION_CONFLICT",
        metadata={"key": key, "expected_version": str(expected), "actual_version": str(actual)},
    )


# --- engines -------------------------------------------------------------------


def normalize_url(url: str | URL) -> URL:
    """The URL with a bare ``postgresql://`` pinned to psycopg 3.

    Args:
        url: A SQLAlchemy database URL.

    Returns:
        The parsed URL; ``postgresql`` becomes ``postgresql+psycopg``.
    """
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def create_sql_engine(url: str | URL) -> Engine:
    """An engine configured for the control plane's access pattern.

    Args:
        url: A ``sqlite``/``sqlite+pysqlite`` or ``postgresql``/``postgresql+psycopg`` URL.

    Returns:
        The engine (no connection is made yet).

    Raises:
        ValueError: The URL names another database or driver.
    """
    parsed = normalize_url(url)
    if parsed.drivername not in SCHEMES:
        raise ValueError(f"unsupported database URL scheme: {parsed.drivername}")
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    if psycopg is None:
        raise ValueError("a PostgreSQL URL needs the psycopg driver: pip install 'maos[postgres]'")
    return _postgresql_engine(parsed)


def _sqlite_in_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or "mode=memory" in database


def _sqlite_plain_file(url: URL) -> bool:
    """A database file named by path (not in memory, not a ``file:`` URI): its log is checkpointed by a WalCheckpointer."""
    return not _sqlite_in_memory(url) and not url.query.get("uri")


def _sqlite_locked(exc: Unavailable) -> bool:
    """Whether ``exc`` was SQLite's "database is locked" (SQLITE_BUSY or SQLITE_LOCKED)."""
    cause = exc.__cause__
    cause = getattr(cause, "orig", None) or cause
    return (getattr(cause, "sqlite_errorcode", 0) & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _sqlite_engine(url: URL) -> Engine:
    plain_file = _sqlite_plain_file(url)
    if plain_file:
        Path(url.database or "").expanduser().parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    pool: dict[str, Any] = (
        {"poolclass": StaticPool}  # one shared connection, or each would see its own database
        if _sqlite_in_memory(url)
        else {"poolclass": QueuePool, "pool_size": 1, "max_overflow": 4}
    )
    engine = create_engine(url, connect_args={"check_same_thread": False}, **pool)
    event.listen(engine, "connect", _configure_sqlite_connection)
    if plain_file:
        event.listen(engine, "do_connect", _private_database_file)
        event.listen(engine, "connect", _no_checkpoint_on_commit)
    event.listen(engine, "begin", _begin_sqlite_transaction)
    return engine


def _sqlite_file_connection(url: URL) -> sqlite3.Connection:
    """A plain ``sqlite3`` connection to the database file of ``url``, set up as the pool's are."""
    connection = sqlite3.connect(url.database or "", isolation_level=None, check_same_thread=False)
    _configure_sqlite_connection(connection, None)
    _no_checkpoint_on_commit(connection, None)
    return connection


def _private_database_file(
    _dialect: Any, _record: Any, cargs: tuple[Any, ...], _cparams: dict[str, Any]
) -> None:
    """Before SQLite opens (and maybe creates) the file: make it, and its ``-wal``/``-shm``, 0600.

    SQLite gives the ``-wal`` and ``-shm`` files the database file's mode, so creating that
    file 0600 first keeps all three private whatever the umask. Done at connection time, so
    merely checking a schema creates nothing.
    """
    database = Path(str(cargs[0]) if cargs else "").expanduser()
    logs = [database.with_name(database.name + suffix) for suffix in ("-wal", "-shm")]
    for path in (database, *logs):
        if path == database or path.exists():
            create_private_file(path)


def _configure_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    """Pragmas for every new SQLite connection; SQLAlchemy, not sqlite3, emits BEGIN."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=5000")
    finally:
        cursor.close()


def _no_checkpoint_on_commit(dbapi_connection: Any, _record: Any) -> None:
    """Commits leave checkpoints to the backend's :class:`WalCheckpointer`, off the committing thread.

    (Unless it falls far behind; SQLite also checkpoints when the last connection to the database closes.)
    """
    dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={wal.AUTOCHECKPOINT_FRAMES}")


def _begin_sqlite_transaction(conn: Any) -> None:
    """Start a real transaction, so that reads are repeatable and DDL is transactional.

    A transaction that writes (begun through ``SqlBackend._writes``) takes the
    write lock at once (``BEGIN IMMEDIATE``, waiting out ``busy_timeout``). A
    deferred one that read first could not write afterwards if another
    connection (``write_now``'s) had committed in between: SQLite refuses that
    upgrade at once, whatever the busy timeout.
    """
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("maos_writes") else "BEGIN")


def _postgresql_engine(url: URL) -> Engine:
    # No server-side prepared statements: a plan prepared while a freshly
    # migrated table is empty would otherwise be reused after it fills up.
    connect_args: dict[str, Any] = {"prepare_threshold": None}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = 10
    # No ping before every checkout (a round trip on every write): a connection found dead
    # when used is invalidated by SQLAlchemy (the rollback after the failed statement notices)
    # and that one call fails as UNAVAILABLE, to be retried; connections are also
    # replaced after half an hour, before idle-connection timeouts commonly cut them.
    return create_engine(url, pool_recycle=1800, connect_args=connect_args)


class SqlBackendFactory:
    """Opens :class:`SqlBackend` for SQLite and PostgreSQL URLs."""

    name = "sqlalchemy"

    def handles(self, url: str) -> bool:
        """Whether ``url`` is a sqlite, sqlite+pysqlite, postgresql or postgresql+psycopg URL."""
        scheme, sep, _ = url.partition(":")
        return bool(sep) and scheme.lower() in SCHEMES

    def open(self, url: str) -> SqlBackend:
        """Open (without migrating) a backend for ``url``."""
        return SqlBackend(create_sql_engine(url))
