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
from sqlalchemy import Connection, text

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
