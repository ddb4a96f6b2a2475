"""Alembic environment: migrates through the connection the caller provides.

Run migrations through :func:`controlplane.storage.sql.migrations.migrate`
(or the backend's ``migrate()``), which sets ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from controlplane.storage.sql.schema import metadata


def run_migrations_online() -> None:
    """Run the pending revisions on the caller's connection."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "no connection: run migrations through controlplane.storage.sql.migrations.migrate()"
        )
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")
run_migrations_online()
