"""Plugins: built-ins go through the same hooks a third party uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane import hookimpl
from controlplane.app import build_app, open_storage
from controlplane.errors import InvalidArgument
from controlplane.plugins import DEFAULT_PLUGINS, get_plugin_manager
from controlplane.storage.sql import SqlBackendFactory
from tests.harness.server import make_settings


class FileStoreFactory:
    """A third-party backend for ``filestore://NAME`` URLs (SQLite underneath)."""

    name = "filestore"

    def __init__(self, root: Path):
        self.root = root
        self.opened: list[str] = []

    def handles(self, url: str) -> bool:
        return url.startswith("filestore://")

    def open(self, url: str):
        self.opened.append(url)
        return SqlBackendFactory().open(f"sqlite:///{self.root / url.removeprefix('filestore://')}.db")


class FileStorePlugin:
    def __init__(self, factory: FileStoreFactory):
        self.factory = factory

    @hookimpl
    def register_storage_backends(self):
        return [self.factory]


def test_builtins_are_registered_plugins() -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    names = {name for name, _ in pm.list_name_plugin()}
    assert set(DEFAULT_PLUGINS) <= names
    assert [f.name for group in pm.hook.register_storage_backends() for f in group] == ["sqlalchemy"]


async def test_a_third_party_storage_backend_is_chosen_by_url(tmp_path: Path) -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    factory = FileStoreFactory(tmp_path)
    pm.register(FileStorePlugin(factory), name="filestore")
    settings = make_settings(tmp_path / "home", **{"database.primary_url": "filestore://tasks"})
    app = build_app(settings, pm)
    try:
        await app.start("127.0.0.1:0")
        assert factory.opened == ["filestore://tasks"]
        assert (tmp_path / "tasks.db").exists()
    finally:
        await app.stop(grace=0.5)


def test_an_unknown_scheme_names_the_known_backends(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no storage backend handles 'mongodb' URLs; known: sqlalchemy"):
        open_storage(get_plugin_manager(load_entrypoints=False), "mongodb://x")
