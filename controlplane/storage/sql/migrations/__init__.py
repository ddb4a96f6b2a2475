"""Alembic migrations of the SQLAlchemy backend, run programmatically.

No ``alembic.ini`` is needed: :func:`alembic_config` builds the configuration
in code and hands the caller's connection to ``env.py`` through
``config.attributes["connection"]``. To add a revision during development::

    from alembic import command
    with engine.begin() as conn:
        command.revision(alembic_config(conn), message="...")
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from controlplane.storage.base import SchemaStatus

#: The directory holding ``env.py``, ``script.py.mako`` and ``versions/``.
SCRIPT_LOCATION = Path(__file__).resolve().parent

#: Arbitrary key of the PostgreSQL advisory lock serialising concurrent migrations.
_PG_MIGRATION_LOCK = 0x6D616F73  # "maos"


def alembic_config(connection: Connection) -> Config:
    """An Alembic configuration that migrates through ``connection``.

    Args:
        connection: An open SQLAlchemy connection.

    Returns:
        The configuration, with ``script_location`` set to this package.
    """
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    return config


def migrate(connection: Connection) -> None:
    """Upgrade the schema to the latest revision (a no-op when already there).

    On PostgreSQL, a transaction-scoped advisory lock makes replicas starting
    together migrate one after the other.

    Args:
        connection: An open connection; the caller commits.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    command.upgrade(alembic_config(connection), "head")


def schema_status(connection: Connection | None) -> SchemaStatus:
    """Compare the database's revision with the shipped head (nothing is written).

    Args:
        connection: An open connection, or None for a database known not to exist yet.

    Returns:
        The database's revision, the head revision and whether the former is known.
    """
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head() or ""
    current = None if connection is None else MigrationContext.configure(connection).get_current_revision()
    known = current is None or current in {r.revision for r in script.walk_revisions()}
    return SchemaStatus(current, head, known)
