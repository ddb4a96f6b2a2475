"""``MAOS_HOME`` is private: the folder and its sub-folders 0700, every file in it 0600.

It holds the database (``maos.db`` and SQLite's ``-wal``/``-shm``), the pid file, logs,
``config.yml`` (which may hold keys), ``credentials`` and custom agent types. What MAOS
creates there it creates private (:func:`private_dir`, :func:`write_private`,
:func:`open_private`, and a 0077 umask in the control plane's process); what an earlier
version or a person left readable by others is tightened at start by :func:`secure_home`,
with a log line naming what changed.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
#: The umask of the control plane's process: nothing it creates is readable by group or others.
PRIVATE_UMASK = 0o077


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents as 0700 (existing folders are :func:`secure_home`'s)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        os.chmod(folder, PRIVATE_DIR)  # whatever the umask
    return path


def write_private(path: Path, data: str | bytes) -> Path:
    """Write (replace) ``path`` with mode 0600, whatever the umask and the file's earlier mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as out:
        out.write(data.encode() if isinstance(data, str) else data)
    return path


def open_private(path: Path) -> IO[bytes]:
    """Open ``path`` for appending bytes, creating it 0600 (an existing file keeps its mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE)
    return os.fdopen(fd, "ab")


def create_private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist; tighten it if it does.

    SQLite creates a database's ``-wal`` and ``-shm`` files with the database file's mode,
    so creating the database file 0600 first keeps all three private.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & PRIVATE_UMASK:
            os.fchmod(fd, mode & ~PRIVATE_UMASK)
            log.warning(
                "tightened the permissions of %s from %o to %o (readable by its owner only)",
                path,
                mode,
                mode & ~PRIVATE_UMASK,
            )
    finally:
        os.close(fd)


def _tighten(path: Path) -> bool:
    """Remove group and other access from ``path`` (not following links); True when it changed."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(st.st_mode):
        return False
    mode = stat.S_IMODE(st.st_mode)
    new = (mode & ~PRIVATE_UMASK) | (PRIVATE_DIR if stat.S_ISDIR(st.st_mode) else 0)
    if new == mode:
        return False
    try:
        os.chmod(path, new)
    except OSError as exc:  # another user's file in a shared folder: say so, do not refuse to start
        log.warning("cannot make %s private (mode %o): %s", path, mode, exc.strerror)
        return False
    return True


def secure_home(home: Path) -> list[Path]:
    """Make ``home`` 0700 and everything in it private (group and other access removed).

    Symbolic links are neither followed nor changed. Logs one warning naming how many
    paths were tightened, so an existing install's change is visible.

    Returns:
        The paths whose mode changed.
    """
    changed: list[Path] = []
    private_dir(home)
    if _tighten(home):
        changed.append(home)
    for folder, dirs, files in os.walk(home):
        for name in dirs:
            if _tighten(Path(folder, name)):
                changed.append(Path(folder, name))
        for name in files:
            if _tighten(Path(folder, name)):
                changed.append(Path(folder, name))
    if changed:
        shown = ", ".join(str(p.relative_to(home)) if p != home else "." for p in changed[:10])
        more = f" and {len(changed) - 10} more" if len(changed) > 10 else ""
        log.warning("tightened permissions in %s (group and other access removed): %s%s", home, shown, more)
    return changed
