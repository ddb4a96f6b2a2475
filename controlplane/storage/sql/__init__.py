"""The built-in SQLAlchemy storage backend (SQLite by default, PostgreSQL in production)."""

from controlplane.storage.sql.backend import SqlBackend, SqlBackendFactory

__all__ = ["SqlBackend", "SqlBackendFactory"]
