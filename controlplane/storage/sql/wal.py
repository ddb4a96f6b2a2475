"""Checkpoints of an SQLite write-ahead log, on a thread of their own.

Left to itself, SQLite checkpoints inside whichever commit takes the log past
``wal_autocheckpoint`` pages; with ``synchronous=NORMAL`` that checkpoint is the
only fsync, so one commit in a few hundred takes milliseconds instead of a
fraction of one, and every call waiting on that commit waits with it. The
control plane's connections therefore leave checkpoints to a
:class:`WalCheckpointer`, which copies the log into the database from its own
connection and thread. Its checkpoints are PASSIVE: they never wait for a
writer and never make one wait. (The connections still checkpoint by
themselves past AUTOCHECKPOINT_FRAMES, should the thread ever fall that far
behind, so the log stays bounded whatever happens.)

A log is only reused from its start by a commit that finds every earlier
frame already copied, which concurrent checkpoints rarely leave behind under
steady writes. So once the log holds RESTART_FRAMES frames, one RESTART
checkpoint copies the few frames left, holding writers back for that moment,
and the next commit starts the log over: the log stays bounded, and one
commit in thousands, not one in hundreds, waits for a checkpoint.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

#: Frames (pages) in the log beyond which a checkpoint also restarts it (about 34 MB).
RESTART_FRAMES = 8192

#: ``wal_autocheckpoint`` of the committing connections: a safety net far above RESTART_FRAMES.
AUTOCHECKPOINT_FRAMES = 4 * RESTART_FRAMES


class WalCheckpointer:
    """Checkpoints one SQLite database after every ``every`` counted commits, and every ``interval`` seconds.

    The periodic checkpoint also covers writes nobody counted; when there is
    nothing to copy it costs a few system calls.

    Args:
        database: The database file.
        every: Counted commits that make a checkpoint due at once.
        interval: Seconds between checkpoints otherwise.
    """

    def __init__(self, database: str, *, every: int = 100, interval: float = 1.0) -> None:
        self._database = database
        self._every = every
        self._interval = interval
        self._pending = 0
        self._due = threading.Event()
        self._closed = False
        self.checkpoints = 0  # completed checkpoint runs (for tests and diagnostics)
        self.restarts = 0  # of which restarted the log
        self._thread = threading.Thread(target=self._run, name="maos-wal-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """Count one commit written to the log (cheap: called by the committing thread)."""
        self._pending += 1
        if self._pending >= self._every:
            self._due.set()

    def close(self) -> None:
        """Stop the thread once the checkpoint under way, if any, ends."""
        self._closed = True
        self._due.set()
        self._thread.join()

    def _run(self) -> None:
        connection = sqlite3.connect(self._database, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("PRAGMA busy_timeout=5000")
            while not self._closed:
                self._due.wait(self._interval)
                self._due.clear()
                self._pending = 0
                self._checkpoint(connection)
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            _busy, frames, _copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames >= RESTART_FRAMES:
                connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                self.restarts += 1
            self.checkpoints += 1
        except sqlite3.Error as exc:  # a locked or vanished database: the next round tries again
            log.warning("WAL checkpoint failed: %s", exc)
