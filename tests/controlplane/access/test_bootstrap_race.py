"""Replicas started together on one database each create the built-in users if missing: one wins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from controlplane.access.manager import ADMIN_USER, AccessManager
from controlplane.errors import AlreadyExists
from controlplane.storage.sql import SqlBackendFactory
from tests.harness.server import make_settings


class SlowerReplica:
    """A backend whose first write of each user loses to another replica that wrote it just before
    (PostgreSQL's unique email index refuses the second insert)."""

    def __init__(self, backend: Any):
        self.backend = backend
        self.lost: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def access_put(self, kind: str, key: str, record: dict[str, Any], create: bool = False) -> None:
        if kind == "users" and key not in self.lost:
            self.lost.append(key)
            self.backend.access_put(kind, key, {**record, "uid": "the-other-replica"})
            raise AlreadyExists("storage conflict: duplicate key value violates unique constraint")
        self.backend.access_put(kind, key, record, create=create)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Any]:
    """A migrated SQLite backend."""
    opened = SqlBackendFactory().open(make_settings(tmp_path).database_url)
    opened.migrate()
    try:
        yield opened
    finally:
        opened.close()


def test_a_replica_losing_the_race_to_create_the_builtin_users_takes_the_winners(backend: Any) -> None:
    slower = SlowerReplica(backend)
    manager = AccessManager(SimpleNamespace(backend=slower))
    manager.bootstrap_sync()
    assert ADMIN_USER in slower.lost
    assert manager.users[ADMIN_USER]["uid"] == "the-other-replica"
    stored = [r["uid"] for r in backend.access_list("users") if r["id"] == ADMIN_USER]
    assert stored == ["the-other-replica"]


def test_a_conflict_that_no_other_replica_explains_is_raised(backend: Any) -> None:
    class Refusing(SlowerReplica):
        def access_put(self, kind: str, key: str, record: dict[str, Any], create: bool = False) -> None:
            raise AlreadyExists("storage conflict: duplicate key value violates unique constraint")

    with pytest.raises(AlreadyExists):
        AccessManager(SimpleNamespace(backend=Refusing(backend))).bootstrap_sync()
