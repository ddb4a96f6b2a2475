"""A PostgreSQL server of a test's own, to restart while replicas use it.

The machine's PostgreSQL serves every other test running at the same time, so a test that
restarts the database starts its own server instead: ``initdb`` into a temporary folder, then
``pg_ctl start`` on a free port of 127.0.0.1 with trust authentication, and
:meth:`PrivatePostgres.restart` (``pg_ctl restart -m fast`` or ``-m immediate``, the latter a
crash and a recovery from the WAL). The binaries are found under ``/usr/lib/postgresql/*/bin``
(or the ``MAOS_TEST_PG_BIN`` folder).

PostgreSQL refuses to run as root; run as root (as in CI), the server runs as the ``postgres``
user (``runuser -u postgres --``), in a folder that user owns. Whatever keeps the server from
starting raises :class:`PrivatePostgresUnavailable` with the reason, for the fixture to fail
under CI or skip elsewhere (:func:`tests.harness.services.fail_or_skip`).

``fsync`` is off: the server is killed, never the machine, so what it wrote is still in the
kernel's page cache for its recovery to find; every commit still waits for its WAL write.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: The user the server runs as when the tests run as root.
SERVER_USER = "postgres"


class PrivatePostgresUnavailable(Exception):
    """The machine cannot run a private PostgreSQL server (the message says why)."""


def find_bin() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl`` (the newest version installed).

    Raises:
        PrivatePostgresUnavailable: None is installed.
    """
    configured = os.environ.get("MAOS_TEST_PG_BIN")
    candidates = (
        [configured]
        if configured
        else sorted(
            glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name or 0), reverse=True
        )
    )
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    raise PrivatePostgresUnavailable(
        "no PostgreSQL server binaries (initdb, pg_ctl) under /usr/lib/postgresql/*/bin; install the "
        "postgresql package or set MAOS_TEST_PG_BIN to their folder"
    )


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivatePostgres:
    """One PostgreSQL server in a temporary folder (see the module docstring).

    Args:
        bin_dir: Where ``initdb`` and ``pg_ctl`` are (default: :func:`find_bin`).
    """

    def __init__(self, bin_dir: Path | None = None):
        self.bin = bin_dir or find_bin()
        self.port = free_port()
        self.as_user: list[str] = []
        owner = None
        if os.geteuid() == 0:  # initdb and postgres refuse root
            try:
                owner = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PrivatePostgresUnavailable(
                    f"the tests run as root and there is no {SERVER_USER!r} user to run PostgreSQL as"
                ) from None
            if shutil.which("runuser") is None:
                raise PrivatePostgresUnavailable("the tests run as root and runuser is not installed")
            self.as_user = ["runuser", "-u", SERVER_USER, "--"]
        self.folder = Path(tempfile.mkdtemp(prefix="maos-pg-"))
        if owner is not None:
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"

    @property
    def admin_url(self) -> str:
        """The libpq URL of its ``postgres`` database (user postgres, no password)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        done = subprocess.run(
            [*self.as_user, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=self.folder,
        )
        if done.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise PrivatePostgresUnavailable(
                f"{Path(args[0]).name} exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}"
                + (f"\nserver log:\n{log}" if log else "")
            )

    def init(self) -> None:
        """``initdb`` (trust authentication, superuser ``postgres``)."""
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def _options(self) -> str:
        return f"-p {self.port} -h 127.0.0.1 -k {self.folder} -c fsync=off -c max_connections=200"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            self._options(),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m mode`` (``fast``: clean; ``immediate``: a crash, recovered at the next start)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", "-m", mode, "stop")

    def restart(self, mode: str = "fast") -> None:
        """Stop the server with ``mode`` and start it again (on the same port)."""
        self.stop(mode)
        self.start()

    def remove(self) -> None:
        """Stop the server if it runs (immediately) and delete its folder."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(PrivatePostgresUnavailable, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private server, stopped and deleted at the end.

    Raises:
        PrivatePostgresUnavailable: It could not be made or started (the message says why).
    """
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()
