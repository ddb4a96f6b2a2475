"""``maos db``: the control plane's database (works without a running server)."""

from __future__ import annotations

import click

from maos_cli._errors import handle_errors
from maos_cli._options import output_option
from maos_cli._output import emit, message


@click.group()
def db() -> None:
    """Manage the control plane's database."""


@db.command()
@click.option(
    "--url",
    "database_url",
    default=None,
    show_default=False,
    help="Database URL (default: database.primary_url, else SQLite in MAOS_HOME).",
)
@output_option
@handle_errors
def migrate(database_url: str | None) -> None:
    """Upgrade the database schema to the latest revision (idempotent).

    Uses database.primary_url from config.yml or MAOS_DATABASE_PRIMARY_URL;
    when unset, SQLite at $MAOS_HOME/maos.db (the folder is created).
    """
    from controlplane.app import shown_url
    from controlplane.config import load_settings
    from controlplane.home import private_dir
    from controlplane.plugins import get_plugin_manager
    from controlplane.storage.base import open_storage

    overrides = {"database.primary_url": database_url} if database_url else None
    settings = load_settings(overrides=overrides)
    url = settings.database_url
    if url.startswith("sqlite"):
        private_dir(settings.home)
    message(f"migrating {shown_url(url)}")
    backend = open_storage(get_plugin_manager(), url)
    try:
        backend.migrate()
    finally:
        backend.close()
    emit({"database": shown_url(url), "migrated": True}, lambda: f"Database {shown_url(url)} is up to date.")
