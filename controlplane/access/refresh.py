"""Replicas sharing a database see each other's users, roles and keys within a second.

Each control plane keeps users, roles and API keys in memory (:class:`AccessManager`), changed
through its own calls. With several replicas on one PostgreSQL database, a key created, revoked
or rotated, a user disabled or deleted, or a role changed on one replica must hold on every
other: each replica reads them again every :data:`REFRESH_EVERY` seconds. An unknown key is
looked up at once (:meth:`AccessManager.authenticate`); a revocation takes effect everywhere
within that interval.
"""

from __future__ import annotations

from typing import Any

import pluggy

from controlplane.access.manager import AccessManager
from controlplane.hookspecs import hookimpl
from controlplane.periodic import PeriodicJob

#: Seconds between two reads of users, roles and keys on a shared database.
REFRESH_EVERY = 1.0


class _AccessRefresh:
    """A plugin object running the refresh between startup and shutdown."""

    def __init__(self, access: AccessManager, interval: float):
        self.job = PeriodicJob("access refresh", access.refresh, interval)

    @hookimpl
    async def startup(self, app: Any) -> None:
        self.job.start()

    @hookimpl
    async def shutdown(self, app: Any) -> None:
        await self.job.stop()


def install_access_refresh(
    pm: pluggy.PluginManager, access: AccessManager, interval: float = REFRESH_EVERY
) -> None:
    """Refresh ``access`` from storage every ``interval`` seconds while the app runs."""
    pm.register(_AccessRefresh(access, interval), name="maos-access-refresh")
