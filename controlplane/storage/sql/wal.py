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
commit in thousands, not one in hundreds, waits for a checkpoint. A RESTART
waits at most RESTART_WAIT_MS for readers still using the log (a backup, a shell
on the database); when that is not enough it gives up, holds nothing, and is
not tried again for RESTART_BACKOFF seconds.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

log = logging.getLogger(__name__)

#: Frames (pages) in the log beyond which a checkpoint also restarts it (about 34 MB).
RESTART_FRAMES = 8192

#: ``wal_autocheckpoint`` of the committing connections: a safety net far above RESTART_FRAMES.
AUTOCHECKPOINT_FRAMES = 4 * RESTART_FRAMES

#: The longest a RESTART checkpoint waits for readers (and so holds writers back), in milliseconds.
RESTART_WAIT_MS = 50

#: Seconds before a RESTART that could not finish is tried again.
RESTART_BACKOFF = 10.0


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
        self.restarts = 0  # RESTART checkpoints that finished
        self._restart_after = 0.0  # monotonic time before which no RESTART is tried
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
        connection: sqlite3.Connection | None = None
        try:
            while not self._closed:
                self._due.wait(self._interval)
                self._due.clear()
                self._pending = 0
                try:
                    if connection is None:
                        connection = sqlite3.connect(
                            self._database, isolation_level=None, check_same_thread=False
                        )
                        # Only a RESTART waits (PASSIVE never does): for readers, this long at most.
                        connection.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
                    self._checkpoint(connection)
                except sqlite3.Error as exc:  # a locked or vanished database: the next round tries again
                    log.warning("WAL checkpoint failed: %s", exc)
        finally:
            if connection is not None:
                connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        _busy, frames, _copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames >= RESTART_FRAMES and time.monotonic() >= self._restart_after:
            busy, _, _ = connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            if busy:  # a reader kept using the log: leave it be for a while
                self._restart_after = time.monotonic() + RESTART_BACKOFF
            else:
                self.restarts += 1
        self.checkpoints += 1
