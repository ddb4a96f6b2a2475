"""Checkpoints streamed in blocks: snapshot reads, payload chunks, and restores staged in the database.

Nothing here holds a whole table or a whole payload: a snapshot is read in
blocks of rows (one repeatable-read transaction, a server-side cursor on
PostgreSQL); a payload is stored as ``checkpoint_chunks`` rows written in
short transactions before the ``checkpoints`` row that makes it visible, which
is inserted only if every chunk is there (a crash leaves chunks without a
checkpoint, removed by a later take once they are :data:`ORPHAN_AGE_S` old, so
that a take in progress elsewhere, another replica or an offline recovery, keeps
its chunks); a restore of a checkpoint without a key order (taken before
:mod:`~controlplane.storage.sql.checkpoint_merge`, which merges the others)
copies the checkpoint's rows into temporary tables (binary COPY on PostgreSQL),
compares them with the stored ones in one grouping query per component, and
writes only the staged rows that differ, in one transaction.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import LargeBinary, String, Table, func
from sqlalchemy.pool import StaticPool

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
#: KiB of memory PostgreSQL may give each join or grouping of a restore (the default is 4 MiB).
WORK_MEM_KIB = 64 * 1024
#: SQLite's default page cache (KiB), restored after a restore.
DEFAULT_TEMP_CACHE_KIB = 2000


def binary_columns(table: Table) -> list[str]:
    """The columns of ``table`` that hold bytes (base64 in the payload)."""
    return [c.name for c in table.columns if isinstance(c.type, LargeBinary)]


def key_order(table: Table, code_point: bool, prefix: str = "") -> str:
    """The ORDER BY terms of ``table``'s primary key in code-point order of its text (Python's order of
    ``str``): as stored unless the database's collation orders text otherwise (``code_point`` False)."""
    return ", ".join(
        prefix + c.name if code_point or not isinstance(c.type, String) else f'{prefix}{c.name} COLLATE "C"'
        for c in table.primary_key.columns
    )


def code_point_default(driver: Any) -> bool:
    """Whether PostgreSQL's database collation orders text by code point (C, POSIX or C.UTF-8 of libc)."""
    cursor = driver.cursor()
    try:  # every column: datlocprovider exists from PostgreSQL 15 on (libc only before)
        cursor.execute("SELECT * FROM pg_database WHERE datname = current_database()")
        row = dict(zip([d.name for d in cursor.description], cursor.fetchone(), strict=True))
    finally:
        cursor.close()
    provider = str(row.get("datlocprovider", "c"))
    return provider == "c" and str(row["datcollate"]).lower() in ("c", "posix", "c.utf-8", "c.utf8")


def check_columns(name: str, columns: list[str]) -> None:
    """A checkpoint's columns of table ``name`` are the table's (in any order); ValueError otherwise."""
    table = schema.metadata.tables[name]
    missing = [c.name for c in table.columns if c.name not in columns]
    if missing:
        raise ValueError(f"table {name}: the checkpoint lacks columns {missing}")
    unknown = [c for c in columns if c not in table.columns]
    if unknown:
        raise ValueError(f"table {name}: the checkpoint has columns it lacks: {unknown}")


def snapshot_blocks(
    backend: SqlBackend, tables: Sequence[str], block_rows: int
) -> Iterator[tuple[str, list[str], list[str], list[tuple[Any, ...]]]]:
    """``(table, columns, binary columns, rows)`` in blocks of ``block_rows``, ordered by primary key
    (text in code-point order: see :func:`key_order`), all read in one repeatable-read transaction
    (a table with no rows gives one empty block)."""
    with backend.engine.connect() as conn:
        if backend.kind == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            dbapi: Any = conn.connection.dbapi_connection  # the driver's own (named cursors)
            code_point = backend.kind != "postgresql" or code_point_default(dbapi)
            if backend.kind == "postgresql":  # compiling the long scans' plans costs more than it saves
                conn.exec_driver_sql("SET LOCAL jit = off")
            for n, name in enumerate(tables):
                table = schema.metadata.tables[name]
                columns = [c.name for c in table.columns]
                sql = f"SELECT {', '.join(columns)} FROM {name} ORDER BY {key_order(table, code_point)}"
                if backend.kind == "postgresql":
                    cursor = dbapi.cursor(name=f"maos_checkpoint_{n}")
                    cursor.itersize = block_rows
                else:
                    cursor = dbapi.cursor()
                try:
                    if backend.kind == "postgresql":  # rows in binary: less to format and parse
                        cursor.execute(sql, binary=True)
                    else:
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
    # SQLite's one shared connection (a database in memory) is kept; another is closed after a restore.
    shared = not pg and isinstance(engine.pool, StaticPool)
    with engine.connect() as conn, conn.begin() as transaction:
        driver: Any = conn.connection.dbapi_connection
        cursor = driver.cursor()
        stage: dict[str, str] = {}
        types: dict[str, dict[str, int]] = {}  # PostgreSQL: each staged column's type
        try:
            if not pg:  # a larger page cache for the staged tables (spilled to a temporary file beyond)
                cursor.execute(f"PRAGMA temp.cache_size = -{TEMP_CACHE_KIB}")
            else:  # the joins and the grouping of a large restore in memory rather than in batches on disk
                cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM_KIB}kB'")
            for name in sorted(wanted):
                stage[name], types[name] = create_stage(cursor, name, pg)
            for name, columns, rows in parts:
                if name not in wanted or not rows:
                    continue
                check_columns(name, columns)
                stage_rows(cursor, pg, stage[name], types[name], columns, rows)
            for name in wanted:
                table = schema.metadata.tables[name]
                key = ", ".join(c.name for c in table.primary_key.columns)
                cursor.execute(f"CREATE INDEX {stage[name]}_key ON {stage[name]} ({key})")
                if pg:  # temporary tables are never analysed on their own: plan the joins on real counts
                    cursor.execute(f"ANALYZE {stage[name]}")
            for component, tables in components.items():
                result.changes[component], later = _compare(cursor, stage, tables, pg)
                if component == "tasks":
                    result.later_tasks = later
            if apply:
                # Only the tables of components with a group restored or changed; of those, only the
                # staged rows stored differently or not at all (a stored row equal to its staged one
                # is not written again).
                differing = {
                    t for c, tables in components.items() if sum(result.changes[c][:2]) for t in tables
                }
                if "tasks" in differing:
                    move_colliding_seqs(cursor, stage["tasks"], mark)
                for name in [t.name for t in schema.ALL_TABLES if t.name in differing]:  # parents first
                    upsert(cursor, name, stage[name], distinct)
            if apply and shared:  # else a rollback drops them, or the connection is discarded with them
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
            if not pg and not shared:  # its temporary file goes with it: cheaper than dropping the tables
                conn.invalidate()
            elif (
                not pg
            ):  # the pragma outlives the transaction: reset it on this connection before it is pooled
                driver.execute(f"PRAGMA temp.cache_size = -{DEFAULT_TEMP_CACHE_KIB}")
    if apply:
        backend._next_ord = None  # restored subtasks carry their own ord
    return result


def create_stage(cursor: Any, name: str, pg: bool) -> tuple[str, dict[str, int]]:
    """Create the empty temporary table that stages the rows of table ``name``: its name, and
    (PostgreSQL) each of its columns' type, for binary COPY."""
    staged = f"maos_stage_{name}"
    if pg:
        cursor.execute(f"CREATE TEMP TABLE {staged} (LIKE {name}) ON COMMIT DROP")
        cursor.execute(
            "SELECT attname, atttypid FROM pg_attribute WHERE attrelid = %s::regclass "
            "AND attnum > 0 AND NOT attisdropped",
            (staged,),
        )
        return staged, dict(cursor.fetchall())
    cursor.execute(f"DROP TABLE IF EXISTS temp.{staged}")
    cursor.execute(f"CREATE TEMP TABLE {staged} AS SELECT * FROM main.{name} WHERE 0")
    return staged, {}


def stage_rows(
    cursor: Any, pg: bool, staged: str, types: dict[str, int], columns: list[str], rows: list[Any]
) -> None:
    """Add ``rows`` (values of ``columns``) to the staging table ``staged`` (see :func:`create_stage`)."""
    if pg:  # binary: about half the time of text, on both sides
        with cursor.copy(f"COPY {staged} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([types[c] for c in columns])
            for row in rows:
                copy.write_row(row)
    else:
        cursor.executemany(
            f"INSERT INTO {staged} ({', '.join(columns)}) VALUES ({', '.join(['?'] * len(columns))})", rows
        )


def _compare(
    cursor: Any, stage: dict[str, str], tables: tuple[str, ...], pg: bool
) -> tuple[tuple[int, int, int], list[str]]:
    """(restored, changed, unchanged) groups, and the stored groups the checkpoint does not hold.

    A group is a row of the component's first table with the rows of the others that share its key,
    compared as a whole. One query joins every staged table with its stored one (and the stored rows
    with no staged one), flags each row, and folds the flags per group: held by the checkpoint,
    stored, differing, stored in the first table. The groups the checkpoint does not hold come back
    one by one (those of the first table first, each part in key order, as ``recover`` lists them);
    the others only as counts.
    """
    distinct = "IS DISTINCT FROM" if pg else "IS NOT"
    rows = []
    for i, t in enumerate(tables):
        table = schema.metadata.tables[t]
        key = [c.name for c in table.primary_key.columns]
        others = [c.name for c in table.columns if c.name not in key]
        on = " AND ".join(f"s.{k} = l.{k}" for k in key)
        unequal = " OR ".join(f"s.{c} {distinct} l.{c}" for c in others) or "false"
        k0, first = key[0], int(i == 0)
        # A staged row: stored (equal or not) or not; a stored row with no staged one.
        rows.append(
            f"SELECT s.{k0} AS k, 1 AS st, CASE WHEN l.{k0} IS NULL THEN 0 ELSE 1 END AS lv, "
            f"CASE WHEN l.{k0} IS NULL OR {unequal} THEN 1 ELSE 0 END AS df, 0 AS lf "
            f"FROM {stage[t]} s LEFT JOIN {t} l ON {on}"
        )
        rows.append(
            f"SELECT l.{k0} AS k, 0 AS st, 1 AS lv, 1 AS df, {first} AS lf FROM {t} l "
            f"WHERE NOT EXISTS (SELECT 1 FROM {stage[t]} s WHERE {on})"
        )
    groups = (
        "SELECT k, max(st) AS st, max(lv) AS lv, max(df) AS df, max(lf) AS lf "
        f"FROM ({' UNION ALL '.join(rows)}) r GROUP BY k"
    )
    return tally_groups(cursor, groups)


def tally_groups(cursor: Any, groups: str) -> tuple[tuple[int, int, int], list[str]]:
    """Count the groups of a compare: ``groups`` selects one row per key with flags ``st`` (in the
    checkpoint), ``lv`` (stored), ``df`` (differs) and ``lf`` (has a first-table row). The groups
    restored (only in the checkpoint), changed and unchanged, and the keys stored but not in the
    checkpoint (later tasks), first-table ones first."""
    later_key = "CASE WHEN st = 0 THEN k END"
    cursor.execute(
        f"SELECT st, lv, df, {later_key} AS later, max(lf), count(*) FROM ({groups}) g "
        f"GROUP BY st, lv, df, {later_key} ORDER BY 5 DESC, 4"
    )
    restored = changed = unchanged = 0
    later = []
    for st, lv, df, key, _, n in cursor.fetchall():
        if not st:
            later.append(key)
        elif not lv:
            restored += n
        elif df:
            changed += n
        else:
            unchanged += n
    return (restored, changed, unchanged), later


def upsert(cursor: Any, name: str, staged: str, distinct: str) -> None:
    """Write the staged rows of table ``name`` that are stored differently or not at all."""
    table = schema.metadata.tables[name]
    columns = [c.name for c in table.columns]
    key = [c.name for c in table.primary_key.columns]
    others = [c for c in columns if c not in key]
    on = " AND ".join(f"s.{k} = l.{k}" for k in key)
    unequal = " OR ".join(f"s.{c} {distinct} l.{c}" for c in others) or "false"
    cursor.execute(
        f"INSERT INTO {name} ({', '.join(columns)}) "
        f"SELECT {', '.join(f's.{c}' for c in columns)} FROM {staged} s LEFT JOIN {name} l ON {on} "
        f"WHERE l.{key[0]} IS NULL OR {unequal} "
        f"ON CONFLICT ({', '.join(key)}) DO "
        + (
            "UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in others)
            + " WHERE "
            + " OR ".join(f"{name}.{c} {distinct} excluded.{c}" for c in others)
            if others
            else "NOTHING"
        )
    )


def move_colliding_seqs(cursor: Any, staged: str, mark: str) -> None:
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
