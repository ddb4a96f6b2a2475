"""DB-API text of the write path's inserts: one row per statement, or every row of a write in one statement.

The group committer's writes skip SQLAlchemy's per-call compilation: each table's insert (an
upsert, an insert-if-absent or a plain insert) is built once as text. SQLite runs each with
``executemany``. PostgreSQL runs a small write as one statement (:func:`one_statement`): every
table's insert becomes a data-modifying ``WITH`` clause of one ``INSERT``, which the server
runs atomically as its own transaction, so the write costs one network round trip and one call
into the driver, with no BEGIN or COMMIT. A larger write runs multi-row inserts
(:func:`in_chunks`) in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table

#: The most parameters :func:`one_statement` puts in one statement (PostgreSQL takes at most
#: 65,535); a larger write runs its inserts one table at a time in a transaction.
MAX_PARAMETERS = 30_000

#: Statement texts of :func:`one_statement` by the number of rows of each insert (a few shapes recur).
_STATEMENTS: dict[tuple[tuple[RawInsert, int], ...], str] = {}
_MAX_STATEMENTS = 256


@dataclass(frozen=True)
class RawInsert:
    """An insert of every column of a table, as DB-API text around its ``VALUES`` rows."""

    columns: tuple[str, ...]
    head: str  # "INSERT INTO t (a, b) VALUES "
    tail: str  # " ON CONFLICT ..." or ""
    row: str  # "(?, ?)"

    @property
    def sql(self) -> str:
        """The statement inserting one row (for ``executemany``)."""
        return self.head + self.row + self.tail

    def rows_sql(self, count: int) -> str:
        """The statement inserting ``count`` rows."""
        return self.head + ", ".join([self.row] * count) + self.tail


def upsert(table: Table, mark: str, *, keep: Sequence[str] = (), update: bool = True) -> RawInsert:
    """An upsert of every column but the key and ``keep`` (or, ``update=False``, an insert-if-absent)."""
    columns = tuple(c.name for c in table.columns)
    key = [c.name for c in table.primary_key.columns]
    unchanged = {*key, *keep}
    tail = f" ON CONFLICT ({', '.join(key)}) DO "
    if update:
        tail += "UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in columns if c not in unchanged)
    else:
        tail += "NOTHING"
    return _insert(table.name, columns, mark, tail)


def plain(table: str, columns: Sequence[str], mark: str) -> RawInsert:
    """A plain insert of ``columns``."""
    return _insert(table, tuple(columns), mark, "")


def _insert(table: str, columns: tuple[str, ...], mark: str, tail: str) -> RawInsert:
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
    return RawInsert(columns, head, tail, "(" + ", ".join([mark] * len(columns)) + ")")


def one_statement(
    parts: Sequence[tuple[RawInsert, Sequence[tuple[Any, ...]]]],
) -> tuple[str, list[Any]] | None:
    """One PostgreSQL statement making every insert of ``parts`` (``$n`` marks), and its parameters.

    Each part is an insert and its rows; parts without rows are left out. None when
    there is nothing to write or the statement would take more than
    :data:`MAX_PARAMETERS` parameters.

    Only for tables whose rows of one write do not depend on each other (no foreign keys
    between them): the clauses of one statement all see the database as it was before it.
    A key must appear at most once in an upsert's rows.
    """
    shape = tuple((insert, len(rows)) for insert, rows in parts if rows)
    if not shape or sum(len(insert.columns) * count for insert, count in shape) > MAX_PARAMETERS:
        return None
    sql = _STATEMENTS.get(shape)
    if sql is None:
        *clauses, last = [insert.rows_sql(count) for insert, count in shape]
        named = ", ".join(f"w{index} AS ({text})" for index, text in enumerate(clauses))
        sql = numbered(f"WITH {named} {last}" if clauses else last)
        if len(_STATEMENTS) >= _MAX_STATEMENTS:
            _STATEMENTS.clear()
        _STATEMENTS[shape] = sql
    return sql, [value for _, rows in parts for row in rows for value in row]


def numbered(sql: str) -> str:
    """``sql`` with its ``%s`` marks numbered the PostgreSQL way (``$1``, ``$2``...).

    For a ``psycopg.RawCursor``, which passes the text to the server as it is: psycopg
    parses every other statement for its marks, which costs more than the write for a
    statement of many rows. The write path's texts hold no ``%s`` but their marks.
    """
    pieces = sql.split("%s")
    return "".join(f"{piece}${index}" for index, piece in enumerate(pieces[:-1], start=1)) + pieces[-1]


def in_chunks(
    parts: Sequence[tuple[RawInsert, Sequence[tuple[Any, ...]]]],
) -> Iterator[tuple[str, list[Any]]]:
    """Multi-row inserts of ``parts`` (``$n`` marks), each with at most :data:`MAX_PARAMETERS` parameters."""
    for insert, rows in parts:
        per_statement = max(1, MAX_PARAMETERS // len(insert.columns))
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            yield numbered(insert.rows_sql(len(chunk))), [value for row in chunk for value in row]
