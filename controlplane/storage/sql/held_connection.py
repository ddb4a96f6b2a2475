"""PostgreSQL: the engine's writes on one connection kept for them, one network round trip per commit.

The storage thread commits every batch of the group committer. Checking a connection out of the
pool for each batch costs Python work, and letting SQLAlchemy commit after the statements costs
a second round trip to the server: the statements' pipeline is synced first, then COMMIT is
sent on its own. :class:`HeldConnection` keeps one pooled connection checked out for these
writes, in autocommit mode: a write that is one statement is its own transaction, and a longer
one sends BEGIN, its statements and COMMIT in one pipeline. Either way such a commit waits for the
network once (and for the server's WAL flush); a write whose later statements depend on the rows of
its first (:meth:`HeldConnection.decide`) waits twice.

A failed write (a connection the server dropped, a constraint violated) invalidates the
connection: the next write checks out a fresh one, so no broken or half-finished transaction is
ever reused, and nothing pings the server before a write. The write itself fails as the driver
reported it, for the caller to translate and retry: the committer keeps the batch and writes it
again, and every row of it is an upsert or an insert-if-absent (audit records excepted, which a
commit lost in flight may then hold twice).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from psycopg import Connection, RawCursor
from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection

#: Seconds a held connection is used before it goes back to the pool, which replaces
#: it (``pool_recycle``): idle-connection timeouts commonly cut connections older than this.
RECYCLE_SECONDS = 1800.0


class HeldConnection:
    """One pooled psycopg connection kept by the storage thread for its writes (in autocommit mode).

    Not thread-safe: one thread (the storage thread) writes through it.

    Args:
        engine: A PostgreSQL (psycopg) engine.
        recycle: Seconds before the connection is given back and a new one checked out.
    """

    def __init__(self, engine: Engine, recycle: float = RECYCLE_SECONDS) -> None:
        self._engine = engine
        self._recycle = recycle
        self._proxy: PoolProxiedConnection | None = None
        self._since = 0.0

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        """Run one statement (``$n`` marks) as its own transaction (committed when this returns).

        Raises:
            Exception: What the driver raised (the connection is then dropped).
        """
        connection = _driver(self._checkout())
        try:
            with RawCursor(connection) as cursor:
                cursor.execute(sql, params)
        except BaseException:
            self.drop()
            raise

    def transaction(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> None:
        """Run ``statements`` (text with ``$n`` marks, parameters) between BEGIN and COMMIT, in one pipeline.

        Raises:
            Exception: What the driver raised (the connection is then dropped).
        """
        connection = _driver(self._checkout())
        try:
            with connection.pipeline(), RawCursor(connection) as cursor:
                cursor.execute("BEGIN")
                for sql, params in statements:
                    cursor.execute(sql, params)
                cursor.execute("COMMIT")  # the pipeline syncs once, at its end
        except BaseException:
            self.drop()
            raise

    def decide(
        self,
        sql: str,
        params: Sequence[Any],
        then: Callable[[list[tuple[Any, ...]]], Iterable[tuple[str, Sequence[Any]]]],
    ) -> None:
        """In one transaction: run ``sql`` and, given its rows, the statements ``then`` returns.

        Two round trips, in one pipeline: BEGIN and the first statement, whose rows decide the rest
        (fetching them flushes the pipeline); then the rest and COMMIT.

        Raises:
            Exception: What the driver raised (the connection is then dropped).
        """
        connection = _driver(self._checkout())
        try:
            with connection.pipeline(), RawCursor(connection) as cursor:
                cursor.execute("BEGIN")
                cursor.execute(sql, params)
                rows = cursor.fetchall()
                for statement, values in then(rows):
                    cursor.execute(statement, values)
                cursor.execute("COMMIT")  # the pipeline syncs once, at its end
        except BaseException:
            self.drop()
            raise

    def drop(self) -> None:
        """Close the held connection for good (a new one is checked out by the next write)."""
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            proxy.invalidate()

    def close(self) -> None:
        """Give the held connection back to the pool (a transaction is never open between writes)."""
        proxy, self._proxy = self._proxy, None
        if proxy is not None:
            try:
                _driver(proxy).autocommit = False  # as the pool's other users expect
            except Exception:  # a connection that cannot say so is not given back
                proxy.invalidate()
                return
            proxy.close()

    def _checkout(self) -> PoolProxiedConnection:
        proxy = self._proxy
        now = time.monotonic()
        if proxy is not None and now - self._since > self._recycle:
            self.close()
            proxy = None
        if proxy is None:
            proxy = self._engine.raw_connection()
            try:
                # Each statement is its own transaction unless BEGIN starts one.
                _driver(proxy).autocommit = True
            except BaseException:
                proxy.invalidate()
                raise
            self._proxy, self._since = proxy, now
        return proxy


def _driver(proxy: PoolProxiedConnection) -> Connection[Any]:
    """The psycopg connection behind a pooled one."""
    connection = proxy.driver_connection
    assert connection is not None  # None only once the pool closed it
    return connection  # type: ignore[no-any-return]
