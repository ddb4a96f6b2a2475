"""Registers the SQLAlchemy backend as a storage plugin (last, so plugins can override it)."""

from __future__ import annotations

from controlplane.hookspecs import hookimpl
from controlplane.storage.base import StorageBackendFactory
from controlplane.storage.sql.backend import SqlBackendFactory


@hookimpl(trylast=True)
def register_storage_backends() -> list[StorageBackendFactory]:
    """Register the SQLAlchemy backend factory (SQLite and PostgreSQL URLs).

    Returns:
        A one-element list with a :class:`SqlBackendFactory`.
    """
    return [SqlBackendFactory()]
