"""SQLite is the single-process embedded default: one control plane per database file.

:func:`hold_sqlite_database` takes an exclusive OS lock (``flock``) on ``<database>.lock`` next
to the database file and keeps it for the life of the process; the kernel releases it when the
process ends, however it ends (``SIGKILL`` included), so a stale lock never blocks a restart. A
second ``maos start`` on the same file while the first lives is refused with a message saying
why, and what to use for several replicas (PostgreSQL and Redis).
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from sqlalchemy.engine import make_url

from controlplane.errors import FailedPrecondition

try:
    import fcntl
except ImportError:  # not on POSIX: nothing to lock with
    fcntl = None  # type: ignore[assignment]


def sqlite_file(url: str) -> Path | None:
    """The database file of an SQLite URL naming one on disk, else None (another database, memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if not database or database == ":memory:" or parsed.query.get("uri") or database.startswith("file:"):
        return None
    return Path(database).expanduser().absolute()


class SqliteLock:
    """The held lock of one SQLite database file (release it, or let the process end)."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        """Give the lock up (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def hold_sqlite_database(url: str, address: str = "") -> SqliteLock | None:
    """Lock the SQLite database file of ``url`` for this process (None for other databases).

    Args:
        url: The database URL (``Settings.database_url``).
        address: The gRPC address this process will serve on, written in the lock file for the
            message a second process gets.

    Raises:
        FailedPrecondition: Another live process holds the database.
    """
    database = sqlite_file(url)
    if database is None or fcntl is None:
        return None
    path = database.with_name(database.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = ""
        with contextlib.suppress(OSError):
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
        os.close(fd)
        raise FailedPrecondition(
            f"another control plane ({holder or 'a running process'}) is using the SQLite database "
            f"{database}: SQLite is the single-process embedded default, so only one `maos start` may "
            "use it at a time. Stop the other one (`maos stop`), give this one its own MAOS_HOME, or, "
            "for several replicas, use PostgreSQL (database.primary_url) and Redis (redis.url)",
            reason="ERROR_REASON_ALREADY_EXISTS",
            metadata={"database": str(database), "holder": holder[:200]},
        ) from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
    os.pwrite(fd, f"pid {os.getpid()}, {address or 'starting'}, since {started}".encode(), 0)
    return SqliteLock(path, fd)
