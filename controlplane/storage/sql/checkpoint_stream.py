"""Checkpoints streamed in blocks: snapshot reads, payload chunks, and restores staged in the database.

Nothing here holds a whole table or a whole payload: a snapshot is read in
blocks of rows (one repeatable-read transaction, a server-side cursor on
PostgreSQL); a payload is stored as ``checkpoint_chunks`` rows written in
short transactions before the ``checkpoints`` row that makes it visible, which
is inserted only if every chunk is there (a crash leaves chunks without a
checkpoint, removed by a later take once they are :data:`ORPHAN_AGE_S` old, so
that a take in progress elsewhere, another replica or an offline recovery, keeps
its chunks); a restore
copies the checkpoint's rows into temporary tables and compares and upserts
them with set-based SQL, in one transaction.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import LargeBinary, Table, func

from controlplane.errors import Aborted
from controlplane.storage.records import CheckpointRecord, StagedRestore
from controlplane.storage.sql import schema

if TYPE_CHECKING:
    from controlplane.storage.sql.backend import SqlBackend

#: Chunks written per transaction while a payload is stored.
CHUNKS_PER_COMMIT = 8
#: Seconds after which chunks without a checkpoint row are a crashed take's leftovers, not a take in progress.
ORPHAN_AGE_S = 3600.0
#: The reason given when a checkpoint's chunks are not all stored (as for a damaged payload).
CORRUPT = "ERROR_REASON_CHECKPOINT_CORRUPT"
#: KiB of page cache for SQLite's temporary tables during a restore (the default is 2 MiB).
TEMP_CACHE_KIB = 64 * 1024
#: SQLite's default page cache (KiB), restored after a restore.
DEFAULT_TEMP_CACHE_KIB = 2000


def binary_columns(table: Table) -> list[str]:
    """The columns of ``table`` that hold bytes (base64 in the payload)."""
    return [c.name for c in table.columns if isinstance(c.type, LargeBinary)]


def snapshot_blocks(
    backend: SqlBackend, tables: Sequence[str], block_rows: int
) -> Iterator[tuple[str, list[str], list[str], list[tuple[Any, ...]]]]:
    """``(table, columns, binary columns, rows)`` in blocks of ``block_rows``, ordered by primary key,
    all read in one repeatable-read transaction (a table with no rows gives one empty block)."""
    with backend.engine.connect() as conn:
        if backend.kind == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            dbapi: Any = conn.connection.dbapi_connection  # the driver's own (named cursors)
            for n, name in enumerate(tables):
                table = schema.metadata.tables[name]
                columns = [c.name for c in table.columns]
                sql = f"SELECT {', '.join(columns)} FROM {name} ORDER BY " + ", ".join(
                    c.name for c in table.primary_key.columns
                )
                if backend.kind == "postgresql":
                    cursor = dbapi.cursor(name=f"maos_checkpoint_{n}")
                    cursor.itersize = block_rows
                else:
                    cursor = dbapi.cursor()
                try:
                    cursor.execute(sql)
                    binary = binary_columns(table)
                    empty = True
                    while rows := cursor.fetchmany(block_rows):
                        empty = False
                        yield name, columns, binary, rows
                    if empty:
                        yield name, columns, binary, []
                finally:
                    cursor.close()


def store_chunks(backend: SqlBackend, checkpoint_id: str, chunks: Iterable[bytes]) -> None:
    """Write a payload's chunks (a few per transaction); on failure the chunks written are removed."""
    c = schema.checkpoint_chunks
    seq = itertools.count()
    try:
        batches = iter(chunks)
        while batch := list(itertools.islice(batches, CHUNKS_PER_COMMIT)):
            now = time.time()
            with backend._writes.begin() as conn:
                conn.execute(
                    c.insert(),
                    [
                        {"checkpoint_id": checkpoint_id, "seq": next(seq), "data": d, "create_time": now}
                        for d in batch
                    ],
                )
    except BaseException:
        drop_chunks(backend, checkpoint_id)
        raise


def drop_chunks(backend: SqlBackend, checkpoint_id: str | None = None) -> None:
    """Delete the chunks of a checkpoint, or (None) every chunk without a checkpoint row written more
    than :data:`ORPHAN_AGE_S` ago (younger ones may belong to a take still in progress)."""
    c = schema.checkpoint_chunks
    with backend._writes.begin() as conn:
        if checkpoint_id is not None:
            conn.execute(c.delete().where(c.c.checkpoint_id == checkpoint_id))
        else:
            ids = schema.checkpoints.c.id
            conn.execute(
                c.delete().where(
                    c.c.create_time < time.time() - ORPHAN_AGE_S,
                    c.c.checkpoint_id.not_in(ids.table.select().with_only_columns(ids)),
                )
            )


def insert_checkpoint(backend: SqlBackend, record: CheckpointRecord, row: dict[str, Any]) -> None:
    """Insert a checkpoint row; one whose payload is in chunks (``record.payload`` None) only if its
    chunks are all there, numbered from 0 without a gap and ``record.compressed_size`` bytes in all,
    checked in the same transaction (``Aborted`` otherwise, nothing stored)."""
    c = schema.checkpoint_chunks
    with backend._writes.begin() as conn:
        if record.payload is None:
            found = conn.execute(
                c.select()
                .with_only_columns(c.c.seq, func.length(c.c.data))
                .where(c.c.checkpoint_id == record.id)
                .with_for_update(read=True)  # PostgreSQL: not deleted before this commits
            ).all()
            count, size = len(found), sum(n for _, n in found)
            if not found or max(seq for seq, _ in found) != count - 1 or size != record.compressed_size:
                raise Aborted(
                    f"checkpoints/{record.id}: {count} payload chunk(s) of {size} bytes are stored, "
                    f"not the {record.compressed_size} bytes written (removed meanwhile?); nothing was "
                    "stored, take the checkpoint again",
                    reason=CORRUPT,
                    metadata={"checkpoint": f"checkpoints/{record.id}"},
                )
        conn.execute(schema.checkpoints.insert().values(**row))


def read_chunks(backend: SqlBackend, checkpoint_id: str) -> Iterator[bytes]:
    """A stored payload chunk by chunk (one query per chunk); a payload stored whole (before chunks,
    or written there since) is read from its column instead."""
    c, cp = schema.checkpoint_chunks, schema.checkpoints
    with backend.engine.connect() as conn:
        whole = conn.execute(
            cp.select().with_only_columns(cp.c.payload).where(cp.c.id == checkpoint_id)
        ).scalar()
    if whole:
        yield bytes(whole)
        return
    for seq in itertools.count():
        with backend.engine.connect() as conn:
            data = conn.execute(
                c.select()
                .with_only_columns(c.c.data)
                .where(c.c.checkpoint_id == checkpoint_id, c.c.seq == seq)
            ).scalar()
        if data is None:
            return
        yield bytes(data)


# --- restore --------------------------------------------------------------------------------------


def _key_column(table: Table) -> str:
    """The column that names the group a row belongs to: the first primary-key column."""
    return next(iter(table.primary_key.columns)).name


def staged_restore(
    backend: SqlBackend,
    parts: Iterator[tuple[str, list[str], list[Any]]],
    components: dict[str, tuple[str, ...]],
    *,
    apply: bool,
) -> StagedRestore:
    """Stage a checkpoint's rows, compare them with the stored ones and (``apply``) upsert them.

    ``parts`` yields ``(table, columns, rows)``; rows of tables outside ``components`` are read
    (so that the payload is verified to its end) and skipped. Everything runs in one transaction:
    the write transaction when applying (nothing else writes meanwhile), else a read one that is
    rolled back. ``parts`` raising leaves the database as it was.
    """
    pg = backend.kind == "postgresql"
    mark = "%s" if pg else "?"
    distinct = "IS DISTINCT FROM" if pg else "IS NOT"
    wanted = {t for tables in components.values() for t in tables}
    engine = backend._writes if apply else backend.engine
    result = StagedRestore()
    with engine.connect() as conn, conn.begin() as transaction:
        driver: Any = conn.connection.dbapi_connection
        cursor = driver.cursor()
        stage: dict[str, str] = {}
        try:
            if not pg:  # a larger page cache for the staged tables (spilled to a temporary file beyond)
                cursor.execute(f"PRAGMA temp.cache_size = -{TEMP_CACHE_KIB}")
            for name in sorted(wanted):
                stage[name] = f"maos_stage_{name}"
                if pg:
                    cursor.execute(f"CREATE TEMP TABLE {stage[name]} (LIKE {name}) ON COMMIT DROP")
                else:
                    cursor.execute(f"DROP TABLE IF EXISTS temp.{stage[name]}")
                    cursor.execute(f"CREATE TEMP TABLE {stage[name]} AS SELECT * FROM main.{name} WHERE 0")
            for name, columns, rows in parts:
                if name not in wanted or not rows:
                    continue
                table = schema.metadata.tables[name]
                missing = [c.name for c in table.columns if c.name not in columns]
                if missing:
                    raise ValueError(f"table {name}: the checkpoint lacks columns {missing}")
                if pg:
                    with cursor.copy(f"COPY {stage[name]} ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                else:
                    cursor.executemany(
                        f"INSERT INTO {stage[name]} ({', '.join(columns)}) "
                        f"VALUES ({', '.join([mark] * len(columns))})",
                        rows,
                    )
            for name in wanted:
                table = schema.metadata.tables[name]
                key = ", ".join(c.name for c in table.primary_key.columns)
                cursor.execute(f"CREATE INDEX {stage[name]}_key ON {stage[name]} ({key})")
            for component, tables in components.items():
                result.changes[component] = _compare(cursor, stage, component, tables, pg)
                if component == "tasks":
                    result.later_tasks = _later(cursor, stage, tables)
            if apply:
                if "tasks" in wanted:
                    _move_colliding_seqs(cursor, stage["tasks"], mark)
                for name in [t.name for t in schema.ALL_TABLES if t.name in wanted]:  # parents first
                    table = schema.metadata.tables[name]
                    columns = [c.name for c in table.columns]
                    key_columns = [c.name for c in table.primary_key.columns]
                    others = [c for c in columns if c not in key_columns]
                    # A stored row equal to its staged one is left alone (not written again).
                    cursor.execute(
                        f"INSERT INTO {name} ({', '.join(columns)}) "
                        f"SELECT {', '.join(columns)} FROM {stage[name]} WHERE true "
                        f"ON CONFLICT ({', '.join(key_columns)}) DO "
                        + (
                            "UPDATE SET "
                            + ", ".join(f"{c} = excluded.{c}" for c in others)
                            + " WHERE "
                            + " OR ".join(f"{name}.{c} {distinct} excluded.{c}" for c in others)
                            if others
                            else "NOTHING"
                        )
                    )
            if not pg:
                for name in stage.values():
                    cursor.execute(f"DROP TABLE temp.{name}")
            cursor.close()
            if apply:
                transaction.commit()
            else:
                transaction.rollback()
        except BaseException:
            cursor.close()
            transaction.rollback()  # the staged tables too (SQLite's temporary schema is transactional)
            raise
        finally:
            if not pg:  # the pragma outlives the transaction: reset it on this connection before it is pooled
                driver.execute(f"PRAGMA temp.cache_size = -{DEFAULT_TEMP_CACHE_KIB}")
    if apply:
        backend._next_ord = None  # restored subtasks carry their own ord
    return result


def _groups_sql(stage: dict[str, str], tables: tuple[str, ...], source: str) -> str:
    """SELECT of the distinct group keys of a component's rows, staged (``source="stage"``) or stored."""
    return " UNION ".join(
        f"SELECT {_key_column(schema.metadata.tables[t])} AS k FROM " + (stage[t] if source == "stage" else t)
        for t in tables
    )


def _temp_keys(cursor: Any, name: str, pg: bool, selects: list[str]) -> None:
    """A temporary table ``name`` of distinct keys ``k`` (each SELECT adds its own, duplicates dropped)."""
    if pg:
        cursor.execute(f"CREATE TEMP TABLE {name} (k text PRIMARY KEY) ON COMMIT DROP")
    else:
        cursor.execute(f"DROP TABLE IF EXISTS temp.{name}")
        cursor.execute(f"CREATE TEMP TABLE {name} (k PRIMARY KEY) WITHOUT ROWID")
    for select in selects:
        if pg:
            cursor.execute(f"INSERT INTO {name} (k) {select} ON CONFLICT DO NOTHING")
        else:
            cursor.execute(f"INSERT OR IGNORE INTO {name} (k) {select}")


def _compare(
    cursor: Any, stage: dict[str, str], component: str, tables: tuple[str, ...], pg: bool
) -> tuple[int, int, int]:
    """(restored, changed, unchanged) groups: a group is a row of the component's first table with
    the rows of the others that share its key, compared as a whole."""
    distinct = "IS DISTINCT FROM" if pg else "IS NOT"
    keys, diff = f"maos_keys_{component}", f"maos_diff_{component}"
    stage[keys], stage[diff] = keys, diff  # dropped with the staged tables
    _temp_keys(
        cursor,
        keys,
        pg,
        [f"SELECT {_key_column(schema.metadata.tables[t])} FROM {stage[t]}" for t in tables],
    )
    cursor.execute(f"SELECT count(*) FROM {keys}")
    saved = cursor.fetchone()[0]
    absent = " AND ".join(
        f"NOT EXISTS (SELECT 1 FROM {t} l WHERE l.{_key_column(schema.metadata.tables[t])} = g.k)"
        for t in tables
    )
    cursor.execute(f"SELECT count(*) FROM {keys} g WHERE {absent}")
    restored = cursor.fetchone()[0]
    differing = []
    for t in tables:
        table = schema.metadata.tables[t]
        key = [c.name for c in table.primary_key.columns]
        others = [c.name for c in table.columns if c.name not in key]
        on = " AND ".join(f"s.{k} = l.{k}" for k in key)
        unequal = " OR ".join(f"s.{c} {distinct} l.{c}" for c in others) or "false"
        k0 = key[0]
        # A staged row that is stored differently or not at all; a stored row of a staged group
        # that the checkpoint does not hold.
        differing.append(
            f"SELECT s.{k0} FROM {stage[t]} s LEFT JOIN {t} l ON {on} WHERE l.{k0} IS NULL OR {unequal}"
        )
        differing.append(
            f"SELECT l.{k0} FROM {keys} g JOIN {t} l ON l.{k0} = g.k "
            f"WHERE NOT EXISTS (SELECT 1 FROM {stage[t]} s WHERE {on})"
        )
    _temp_keys(cursor, diff, pg, differing)
    present = " OR ".join(
        f"EXISTS (SELECT 1 FROM {t} l WHERE l.{_key_column(schema.metadata.tables[t])} = d.k)" for t in tables
    )
    cursor.execute(f"SELECT count(*) FROM {diff} d WHERE {present}")
    changed = cursor.fetchone()[0]
    return restored, changed, saved - restored - changed


def _later(cursor: Any, stage: dict[str, str], tables: tuple[str, ...]) -> list[str]:
    """Stored task groups that the checkpoint does not hold: tasks (in id order), then groups of
    subtasks or shared state alone, as ``service.recover`` listed them."""
    keys = stage["maos_keys_tasks"]
    cursor.execute(
        f"SELECT t.id FROM tasks t WHERE NOT EXISTS (SELECT 1 FROM {keys} g WHERE g.k = t.id) ORDER BY t.id"
    )
    found = [row[0] for row in cursor.fetchall()]
    rest = [t for t in tables if t != "tasks"]
    if rest:
        cursor.execute(
            f"SELECT g.k FROM ({_groups_sql(stage, tuple(rest), 'live')}) g "
            f"WHERE NOT EXISTS (SELECT 1 FROM {keys} s WHERE s.k = g.k) "
            "AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = g.k) ORDER BY g.k"
        )
        found += [row[0] for row in cursor.fetchall()]
    return found


def _move_colliding_seqs(cursor: Any, staged: str, mark: str) -> None:
    """Give stored tasks that are not restored but share a restored seq a seq after every other."""
    cursor.execute(
        f"SELECT l.seq, l.id FROM tasks l WHERE l.seq IN (SELECT seq FROM {staged}) "
        f"AND NOT EXISTS (SELECT 1 FROM {staged} s WHERE s.id = l.id) ORDER BY l.seq, l.id"
    )
    movers = cursor.fetchall()
    if not movers:
        return
    cursor.execute(f"SELECT max(seq) FROM (SELECT seq FROM tasks UNION ALL SELECT seq FROM {staged}) q")
    top = cursor.fetchone()[0]
    # Two steps (negative first) so no intermediate state violates the unique index.
    cursor.executemany(
        f"UPDATE tasks SET seq = {mark} WHERE id = {mark}",
        [(-(i + 1), tid) for i, (_, tid) in enumerate(movers)],
    )
    cursor.executemany(
        f"UPDATE tasks SET seq = {mark} WHERE id = {mark}",
        [(top + i + 1, tid) for i, (_, tid) in enumerate(movers)],
    )
