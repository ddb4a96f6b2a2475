"""Running a control plane in the foreground until SIGTERM/SIGINT (what ``maos start`` does)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping

from controlplane.app import App, build_app
from controlplane.config import Settings
from controlplane.errors import FailedPrecondition
from controlplane.home import PRIVATE_UMASK, open_private, private_dir
from controlplane.pool import check_pool, the_pool
from controlplane.replicas.sqlite_lock import hold_sqlite_database
from maos_common.heap import settle_heap
from maos_common.redaction import RedactingFilter

log = logging.getLogger(__name__)


def configure_logging(settings: Settings) -> None:
    """Log to stderr and to ``$MAOS_HOME/logs/controlplane.log``."""
    logs = private_dir(settings.home / "logs")
    open_private(
        logs / "controlplane.log"
    ).close()  # created 0600; build_app tightens an older one, saying so
    handlers: list[logging.Handler] = [
        logging.StreamHandler(sys.stderr),
        logging.FileHandler(logs / "controlplane.log"),
    ]
    for handler in handlers:
        handler.addFilter(RedactingFilter())  # no credential reaches a log line
    logging.basicConfig(
        level=settings["system.log_level"].upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


async def serve(
    settings: Settings,
    pool: Mapping[str, int] | None = None,
    address: str | None = None,
    on_ready: Callable[[App], None] | None = None,
) -> None:
    """Start a control plane with a local agent pool and run until a stop signal.

    The pool is ``agents.pool`` when set, else the default pool (Claude agents when an API key is set,
    else offline echo agents; see :func:`controlplane.pool.default_pool`). Unknown types and types that
    cannot run here (a Claude type without a key) fail before anything starts. The process's umask
    becomes 0077: the files it and its agents create are their owner's only.
    """
    os.umask(PRIVATE_UMASK)
    lock = hold_sqlite_database(settings.database_url, address or settings["server.address"])
    try:
        await _serve(settings, pool, address, on_ready)
    finally:
        if lock is not None:
            lock.release()


async def _serve(
    settings: Settings,
    pool: Mapping[str, int] | None,
    address: str | None,
    on_ready: Callable[[App], None] | None,
) -> None:
    app = build_app(settings)
    pool = the_pool(app.pm, settings) if pool is None else dict(pool)
    check_pool(app.pm, settings, pool)
    if settings["scaling.enabled"]:
        if not settings["scaling.types"]:
            raise FailedPrecondition(
                "scaling.enabled is true but scaling.types names no agent type to scale; "
                "set it, for example `scaling.types: {echo: {min: 1, max: 4}}`, or turn "
                "scaling.enabled off"
            )
        check_pool(app.pm, settings, {name: 1 for name in settings["scaling.types"]}, field="scaling.types")
    app.engine.supply.enabled = False  # nothing launched on demand until the pool is
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app.on_fenced = lambda why: stop.set()  # a replica that fenced itself stops, as on SIGTERM
    await app.start(address)
    try:
        for name, count in pool.items():
            for _ in range(count):
                await app.launcher.spawn(name)
        app.engine.supply.enabled = True
        app.start_autoscaling()
        settle_heap()
        if on_ready:
            on_ready(app)
        await stop.wait()
        log.info("stopping: draining agents and committing pending work")
    finally:
        await app.stop(grace=10.0)
