"""``maos init``: the admin user and an admin API key in ``$MAOS_HOME/credentials`` (mode 0600)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from controlplane.access.manager import ADMIN_USER, AccessManager
from controlplane.home import private_dir

CREDENTIALS_FILE = "credentials"


def credentials_path(home: Path) -> Path:
    """Where the CLI's default API key lives."""
    return home / CREDENTIALS_FILE


def read_token(home: Path) -> str | None:
    """The ``token:`` of the credentials file, or None."""
    path = credentials_path(home)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    token = data.get("token") if isinstance(data, dict) else None
    return str(token) if token else None


def credentials_database(home: Path) -> str | None:
    """The database (URL without password) whose admin key the credentials file holds; None if unrecorded."""
    try:
        data = yaml.safe_load(credentials_path(home).read_text())
    except (OSError, yaml.YAMLError):
        return None
    database = data.get("database") if isinstance(data, dict) else None
    return str(database) if database else None


def write_credentials(home: Path, token: str, key_name: str, database: str = "") -> Path:
    """Write (replace) the credentials file, readable by its owner only.

    ``database`` (the URL without its password) records where the key lives, so that a
    later switch of ``database.primary_url`` is noticed: the key is unknown there.
    """
    path = credentials_path(home)
    private_dir(home)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        yaml.safe_dump(
            {"token": token, "api_key": key_name, **({"database": database} if database else {})}, out
        )
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def bootstrap_admin(settings: Any, force: bool = False) -> Path | None:
    """Create users/admin and an admin key, unless the credentials file already holds one of this database.

    A credentials file of another database (``database.primary_url`` changed since) is
    replaced by a key of the configured one; ``force`` always issues a new key.

    Returns:
        The credentials file written, or None when one was kept.
    """
    from controlplane.plugins import get_plugin_manager
    from controlplane.redaction import redact_url
    from controlplane.storage.base import open_storage
    from controlplane.storage.executor import StorageExecutor

    database = redact_url(settings.database_url)
    if (
        credentials_path(settings.home).exists()
        and not force
        and credentials_database(settings.home) in (None, database)
    ):
        return None
    backend = open_storage(get_plugin_manager(), settings.database_url)
    storage = StorageExecutor(backend)
    try:
        backend.migrate()
        access = AccessManager(storage)
        access.bootstrap_sync()
        record, secret = access.issue_key_sync(ADMIN_USER, "maos init", ttl=365 * 86400.0)
    finally:
        storage.close()
    return write_credentials(settings.home, secret, f"apiKeys/{record['id']}", database)
