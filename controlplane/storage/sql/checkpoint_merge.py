"""A restore by key-ordered merge: only the rows that differ are staged in the database.

A checkpoint whose payload lists each table's rows in code-point order of their key (the header's
``key_order``, written by every take since) is compared with the stored tables read in that same
order, a block of each side at a time, row by row in Python: two sorted streams merged, nothing
held but the current blocks. What is written to temporary tables is only what differs:

- the checkpoint's rows stored differently or not at all (upserted when the restore applies), and
- one *flag* per row that differs, whichever side holds it, with its group key: the checkpoint holds
  it (``st``), it is stored (``lv``), it is a stored row of the component's first table the checkpoint
  lacks (``lf``: a task accepted later).

Groups are what :func:`~controlplane.storage.sql.checkpoint_stream._compare` counts: a row of the
component's first table with the rows of its other tables that share its key. A group with no flag
is equal on both sides, so counted from the first table's equal rows; a flagged group also gets the
equal rows it has (the stored ones that are not flagged), counted in the database by key. A row of
another table whose group has no row in the first table (on neither side) is flagged even when
equal, so that its group is counted once.

Checkpoints without ``key_order`` (taken before) are restored by staging every row
(:func:`~controlplane.storage.sql.checkpoint_stream.staged_restore`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from sqlalchemy.pool import StaticPool

from controlplane.errors import FailedPrecondition
from controlplane.storage.records import StagedRestore
from controlplane.storage.sql import schema
from controlplane.storage.sql.checkpoint_stream import (
    CORRUPT,
    check_columns,
    code_point_default,
    create_stage,
    key_order,
    move_colliding_seqs,
    stage_rows,
    tally_groups,
    upsert,
)

if TYPE_CHECKING:
    from controlplane.storage.sql.backend import SqlBackend

#: Stored rows read per fetch while merging.
LIVE_BLOCK_ROWS = 5000
#: The temporary table of the flags (one per differing row).
FLAGS = "maos_merge_flags"


def _stored_rows(driver: Any, pg: bool, sql: str, name: str) -> tuple[Any, Iterator[Any]]:
    """A cursor over ``sql`` and its rows, read a block at a time (a server-side cursor on PostgreSQL)."""
    if pg:
        cursor = driver.cursor(name=name)
        cursor.itersize = LIVE_BLOCK_ROWS
        cursor.execute(sql, binary=True)
    else:
        cursor = driver.cursor()
        cursor.execute(sql)

    blocks = iter(lambda: cursor.fetchmany(LIVE_BLOCK_ROWS), [])
    return cursor, itertools.chain.from_iterable(blocks)  # no Python frame per row


def _advance(stored: Iterator[Any], stored_key: Callable[[Any], Any], key: Any, name: str) -> tuple[Any, Any]:
    """The next stored row of table ``name`` and its key, after ``key`` (None, None at the end)."""
    live = next(stored, None)
    if live is None:
        return None, None
    following = stored_key(live)
    if not key < following:
        raise _not_in_order(name)
    return live, following


def _not_in_order(name: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"table {name}: the stored rows do not come in code-point order of their key (a column "
        'collation other than "C"?); restore from a checkpoint taken before this one',
        reason="ERROR_REASON_NOT_SUPPORTED",
    )


class _TableMerge:
    """The merge of one table's checkpoint rows with its stored ones.

    A stored row is read with a first column: whether the component's first table stores its group
    (always 1 for the first table), which tells an equal row of a group of its own (flagged).
    """

    def __init__(self, merge: _Merge, name: str, columns: list[str], position: int):
        self.merge, self.name, self.columns, self.position = merge, name, columns, position
        table = schema.metadata.tables[name]
        key = [c.name for c in table.primary_key.columns]
        self.key = itemgetter(*[columns.index(k) for k in key])
        self.group = itemgetter(columns.index(key[0]))
        # The same of a stored row, read after its first column.
        self.stored_key = itemgetter(*[columns.index(k) + 1 for k in key])
        self.stored_group = itemgetter(columns.index(key[0]) + 1)
        self.first = position == 0
        if self.first:
            grouped = "1"
        else:
            first = schema.metadata.tables[merge.first_tables[merge.component_of[name]]]
            own = first.primary_key.columns[0].name
            grouped = f"CASE WHEN EXISTS (SELECT 1 FROM {first.name} f WHERE f.{own} = s.{key[0]}) THEN 1 ELSE 0 END"
        self.cursor, self.rows = _stored_rows(
            merge.driver,
            merge.pg,
            f"SELECT {grouped}, {', '.join(f's.{c}' for c in columns)} FROM {name} s "
            f"ORDER BY {key_order(table, merge.code_point, 's.')}",
            f"maos_merge_{name}",
        )
        self.live: Any = next(self.rows, None)
        self.live_key: Any = None if self.live is None else self.stored_key(self.live)
        self.previous: Any = None
        self.equal = 0

    def block(self, rows: list[Any]) -> tuple[list[Any], list[tuple[Any, ...]]]:
        """Merge one block of checkpoint rows: (rows to stage, flags)."""
        key, group, first, name = self.key, self.group, int(self.first), self.name
        stored_key, stored_group = self.stored_key, self.stored_group
        c, t, stored = self.merge.index[name], self.position, self.rows
        live, live_key, previous, equal = self.live, self.live_key, self.previous, self.equal
        staged: list[Any] = []
        flags: list[tuple[Any, ...]] = []
        for row in rows:
            k = key(row)
            if previous is not None and not previous < k:
                raise FailedPrecondition(
                    f"the checkpoint is corrupt: its rows of table {name} are not in key order; "
                    "nothing was changed",
                    reason=CORRUPT,
                )
            previous = k
            while live_key is not None and live_key < k:  # stored only
                flags.append((c, t, stored_group(live), 0, 1, 1, first))
                if len(flags) >= LIVE_BLOCK_ROWS:  # a long run of them: written as it goes
                    self.merge.write_flags(flags)
                    flags = []
                live, live_key = _advance(stored, stored_key, live_key, name)
            if live_key == k:
                if tuple(row) != live[1:]:
                    staged.append(row)
                    flags.append((c, t, group(row), 1, 1, 1, 0))
                elif first:
                    equal += 1
                elif not live[0]:  # equal, of a group with no row in the first table
                    flags.append((c, t, group(row), 1, 1, 0, 0))
                live, live_key = _advance(stored, stored_key, live_key, name)
            else:  # in the checkpoint only
                staged.append(row)
                flags.append((c, t, group(row), 1, 0, 1, 0))
        self.live, self.live_key, self.previous, self.equal = live, live_key, previous, equal
        return staged, flags

    def finish(self) -> None:
        """Write the flags of the stored rows after the checkpoint's last, a block at a time."""
        c, t, first = self.merge.index[self.name], self.position, int(self.first)
        group = self.stored_group
        while block := list(itertools.islice(self.rows, LIVE_BLOCK_ROWS)):
            if self.live is not None:
                block.insert(0, self.live)
                self.live = None
            self.merge.write_flags([(c, t, group(live), 0, 1, 1, first) for live in block])
        if self.live is not None:
            self.merge.write_flags([(c, t, group(self.live), 0, 1, 1, first)])
            self.live = None
        self.cursor.close()


class _Merge:
    """The state of one merged restore: its connection, its components and the tables merged so far."""

    def __init__(self, backend: SqlBackend, driver: Any, components: dict[str, tuple[str, ...]]):
        self.backend, self.driver = backend, driver
        self.pg = backend.kind == "postgresql"
        self.code_point = code_point_default(driver) if self.pg else True
        self.components = components
        self.index = {t: i for i, tables in enumerate(components.values()) for t in tables}
        self.component_of = {t: c for c, tables in components.items() for t in tables}
        self.first_tables = {c: tables[0] for c, tables in components.items()}
        self.position = {t: i for tables in components.values() for i, t in enumerate(tables)}
        #: Writes flags to the flags table (set by :func:`merged_restore`, which owns the cursor).
        self.write_flags: Callable[[list[tuple[Any, ...]]], None] = lambda flags: None


def merged_restore(
    backend: SqlBackend,
    parts: Iterator[tuple[str, list[str], list[Any]]],
    components: dict[str, tuple[str, ...]],
    *,
    apply: bool,
) -> StagedRestore:
    """Compare a key-ordered checkpoint with the stored rows and (``apply``) upsert those that differ.

    As :func:`~controlplane.storage.sql.checkpoint_stream.staged_restore`, in one transaction (the
    write one when applying), nothing written to a stored table before ``parts`` is exhausted (its
    checksum verified), and the same counts; rows of a table not in key order make the checkpoint
    corrupt.
    """
    pg = backend.kind == "postgresql"
    mark = "%s" if pg else "?"
    distinct = "IS DISTINCT FROM" if pg else "IS NOT"
    engine = backend._writes if apply else backend.engine
    shared = not pg and isinstance(engine.pool, StaticPool)
    result = StagedRestore()
    with engine.connect() as conn, conn.begin() as transaction:
        driver: Any = conn.connection.dbapi_connection
        cursor = driver.cursor()
        merge = _Merge(backend, driver, components)
        stage: dict[str, str] = {}
        types: dict[str, dict[str, int]] = {}
        staged_any: set[str] = set()
        equal_first: dict[int, int] = {}
        try:
            if pg:  # compiling the long scans' plans costs more than it saves
                cursor.execute("SET LOCAL jit = off")
            flags = "(c INTEGER, t INTEGER, k TEXT, st INTEGER, lv INTEGER, df INTEGER, lf INTEGER)"
            if pg:
                cursor.execute(f"CREATE TEMP TABLE {FLAGS} {flags} ON COMMIT DROP")
            else:
                cursor.execute(f"DROP TABLE IF EXISTS temp.{FLAGS}")
                cursor.execute(f"CREATE TEMP TABLE {FLAGS} {flags}")
            for name in sorted(merge.index):
                stage[name], types[name] = create_stage(cursor, name, pg)

            def write(name: str, columns: list[str], rows: list[Any], flags: list[tuple[Any, ...]]) -> None:
                if rows:
                    staged_any.add(name)
                    stage_rows(cursor, pg, stage[name], types[name], columns, rows)
                if flags:
                    write_flags(flags)

            def write_flags(flags: list[tuple[Any, ...]]) -> None:
                if pg:
                    with cursor.copy(f"COPY {FLAGS} FROM STDIN") as copy:
                        for flag in flags:
                            copy.write_row(flag)
                else:
                    cursor.executemany(f"INSERT INTO {FLAGS} VALUES ({', '.join([mark] * 7)})", flags)

            merge.write_flags = write_flags

            current: _TableMerge | None = None
            done: set[str] = set()

            def close(table: _TableMerge) -> None:
                table.finish()
                equal_first[merge.index[table.name]] = (
                    equal_first.get(merge.index[table.name], 0) + table.equal
                )
                done.add(table.name)

            for name, columns, rows in parts:
                if name not in merge.index:
                    continue
                if current is None or current.name != name:
                    if current is not None:
                        close(current)
                    if name in done:
                        raise FailedPrecondition(
                            f"the checkpoint is corrupt: table {name} comes twice; nothing was changed",
                            reason=CORRUPT,
                        )
                    check_columns(name, columns)
                    current = _TableMerge(merge, name, columns, merge.position[name])
                if rows:
                    write(name, columns, *current.block(rows))
            if current is not None:
                close(current)
            for name in merge.index:  # a table the checkpoint does not hold: every stored row differs
                if name not in done:
                    columns = [c.name for c in schema.metadata.tables[name].columns]
                    close(_TableMerge(merge, name, columns, merge.position[name]))
            cursor.execute(f"CREATE INDEX {FLAGS}_key ON {FLAGS} (c, k, t)")
            for component, tables in components.items():
                c = merge.index[tables[0]]
                result.changes[component], later = _count(cursor, c, tables, equal_first.get(c, 0), mark)
                if component == "tasks":
                    result.later_tasks = later
            if apply:
                for name in staged_any:  # the upsert and the seq check look rows up by key
                    key = ", ".join(c.name for c in schema.metadata.tables[name].primary_key.columns)
                    cursor.execute(f"CREATE INDEX {stage[name]}_key ON {stage[name]} ({key})")
                if "tasks" in staged_any:
                    move_colliding_seqs(cursor, stage["tasks"], mark)
                for name in [t.name for t in schema.ALL_TABLES if t.name in staged_any]:  # parents first
                    upsert(cursor, name, stage[name], distinct)
            if apply and shared:  # else a rollback drops them, or the connection is discarded with them
                for name in [*stage.values(), FLAGS]:
                    cursor.execute(f"DROP TABLE temp.{name}")
            cursor.close()
            if apply:
                transaction.commit()
            else:
                transaction.rollback()
        except BaseException:
            cursor.close()
            transaction.rollback()
            raise
        finally:
            if not pg and not shared:  # its temporary tables go with it
                conn.invalidate()
    if apply:
        backend._next_ord = None  # restored subtasks carry their own ord
    return result


def _count(
    cursor: Any, c: int, tables: tuple[str, ...], equal_first: int, mark: str
) -> tuple[tuple[int, int, int], list[str]]:
    """(restored, changed, unchanged) groups of component ``c``, and the stored groups it lacks."""
    equal = []  # a flagged group has an equal row of table t: more stored rows than flagged stored ones
    for t, name in enumerate(tables):
        column = schema.metadata.tables[name].primary_key.columns[0].name
        equal.append(
            f"(SELECT count(*) FROM {name} WHERE {column} = d.k) > "
            f"(SELECT count(*) FROM {FLAGS} f WHERE f.c = {c} AND f.k = d.k AND f.t = {t} AND f.lv = 1)"
        )
    keys = f"(SELECT DISTINCT k FROM {FLAGS} WHERE c = {c}) d"
    groups = (
        "SELECT k, max(st) AS st, max(lv) AS lv, max(df) AS df, max(lf) AS lf FROM ("
        f"SELECT k, st, lv, df, lf FROM {FLAGS} WHERE c = {c} "
        f"UNION ALL SELECT d.k, 1, 1, 0, 0 FROM {keys} WHERE {' OR '.join(equal)}"
        ") r GROUP BY k"
    )
    (restored, changed, unchanged), later = tally_groups(cursor, groups)
    cursor.execute(f"SELECT count(*) FROM {keys} WHERE {equal[0]}")
    flagged_equal_first = cursor.fetchone()[0]
    return (restored, changed, unchanged + equal_first - flagged_equal_first), later
