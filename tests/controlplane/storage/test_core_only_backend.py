"""A storage backend with the core task store alone: it passes the core contract and runs tasks.

Every optional capability is then missing, and what needs one is refused with
FAILED_PRECONDITION naming the backend and the capability, instead of failing on a
missing method.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent_sdk.builtin import EchoAgent
from agent_sdk.proto.maos.v1 import access_service_pb2 as access_pb
from agent_sdk.proto.maos.v1 import access_service_pb2_grpc as access_grpc
from agent_sdk.proto.maos.v1 import audit_service_pb2 as audit_pb
from agent_sdk.proto.maos.v1 import audit_service_pb2_grpc as audit_grpc
from agent_sdk.proto.maos.v1 import checkpoint_service_pb2 as checkpoints_pb
from agent_sdk.proto.maos.v1 import checkpoint_service_pb2_grpc as checkpoints_grpc
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from controlplane import hookimpl
from controlplane.app import App, build_app
from controlplane.errors import FailedPrecondition
from controlplane.plugins import get_plugin_manager
from controlplane.storage.base import (
    StorageBackend,
    StoresAccess,
    StoresAudit,
    StoresCheckpoints,
    StoresJoinTokens,
    StoresWebhooks,
    require,
)
from controlplane.storage.sql import SqlBackend, SqlBackendFactory
from controlplane.storage.testing import StorageContract
from tests.controlplane.api.test_task_service import rpc_failure, running_worker, submit, wait_status
from tests.harness.server import Stubs, make_settings

#: The methods of the core task store (StorageBackend), the only ones the wrapper below has.
CORE_METHODS = (
    "migrate",
    "ping",
    "next_incarnation",
    "next_task_seq",
    "write",
    "load_unfinished",
    "get_task",
    "get_tasks",
    "get_subtasks",
    "list_tasks",
    "get_idempotency",
    "get_agent",
    "list_agents",
    "count_tasks_by_status",
    "state_get",
    "state_put",
    "state_delete",
    "close",
)


class CoreOnlyBackend:
    """A backend offering the core task store and nothing else (the SQL backend underneath)."""

    kind = "core-only"

    def __init__(self, inner: SqlBackend):
        self.inner = inner
        self.batches_written = 0
        self.closed = False


def _delegate(name: str) -> Any:
    def method(self: CoreOnlyBackend, *args: Any, **kwargs: Any) -> Any:
        if name == "write":
            batch = args[0]
            assert not batch.audit and not batch.webhook_deliveries, "given rows it cannot store"
            self.batches_written += 1
        elif name == "close":
            self.closed = True
        return getattr(self.inner, name)(*args, **kwargs)

    method.__name__ = name
    return method


for _name in CORE_METHODS:
    setattr(CoreOnlyBackend, _name, _delegate(_name))


class CoreOnlyPlugin:
    """Registers a factory of ``coreonly:///path`` URLs."""

    def __init__(self) -> None:
        self.opened: list[CoreOnlyBackend] = []

    @hookimpl
    def register_storage_backends(self) -> list[Any]:
        plugin = self

        class Factory:
            name = "core-only"

            def handles(self, url: str) -> bool:
                return url.startswith("coreonly://")

            def open(self, url: str) -> CoreOnlyBackend:
                store = CoreOnlyBackend(
                    SqlBackendFactory().open("sqlite://" + url.removeprefix("coreonly://"))
                )
                plugin.opened.append(store)
                return store

        return [Factory()]


def test_the_core_store_protocol_is_all_the_wrapper_offers(tmp_path: Path) -> None:
    store = CoreOnlyBackend(SqlBackendFactory().open(f"sqlite:///{tmp_path / 'db'}"))
    try:
        assert isinstance(store, StorageBackend)
        for capability in (StoresAccess, StoresJoinTokens, StoresCheckpoints, StoresAudit, StoresWebhooks):
            assert not isinstance(store, capability), capability.__name__
            assert isinstance(store.inner, capability), capability.__name__
    finally:
        store.close()


def test_require_names_the_backend_and_the_missing_capability(tmp_path: Path) -> None:
    store = CoreOnlyBackend(SqlBackendFactory().open(f"sqlite:///{tmp_path / 'db'}"))
    try:
        assert require(store.inner, StoresCheckpoints, "checkpoints") is store.inner
        with pytest.raises(FailedPrecondition) as caught:
            require(store, StoresCheckpoints, "checkpoints")
        assert caught.value.reason == "ERROR_REASON_NOT_SUPPORTED"
        assert str(caught.value) == (
            "the core-only storage backend does not store checkpoints "
            "(it lacks the optional StoresCheckpoints storage capability)"
        )
    finally:
        store.close()


# --- the core contract holds without any capability ---------------------------------


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[CoreOnlyBackend]:
    store = CoreOnlyBackend(SqlBackendFactory().open(f"sqlite:///{tmp_path / 'maos.db'}"))
    store.migrate()
    yield store
    store.close()


class TestCoreOnlyStorageContract(StorageContract):
    """The core contract asks for no optional capability."""


# --- a control plane on it -------------------------------------------------------------------


@pytest.fixture
async def core_only_app(tmp_path: Path) -> AsyncIterator[tuple[App, CoreOnlyPlugin]]:
    pm = get_plugin_manager(load_entrypoints=False)
    plugin = CoreOnlyPlugin()
    pm.register(plugin, name="core-only")
    settings = make_settings(
        tmp_path / "home", **{"database.primary_url": f"coreonly:///{tmp_path / 'maos.db'}"}
    )
    app = build_app(settings, pm)
    await app.start("127.0.0.1:0")
    try:
        yield app, plugin
    finally:
        await app.stop(grace=0.5)


async def test_a_core_only_backend_runs_tasks(core_only_app: tuple[App, CoreOnlyPlugin]) -> None:
    app, plugin = core_only_app
    assert app.storage.backend is plugin.opened[0]
    stubs = Stubs(app.address)
    try:
        async with running_worker(EchoAgent(), app.address):
            submitted = await submit(stubs, "work on a core-only store")
            done = await wait_status(
                stubs, submitted.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED
            )
        assert done.status == enums.TASK_STATUS_COMPLETED, done.failure
        stored = plugin.opened[0].inner.get_task(submitted.name.removeprefix("tasks/"))
        assert stored is not None and plugin.opened[0].batches_written > 0
    finally:
        await stubs.close()


async def test_what_needs_a_missing_capability_is_refused_by_name(
    core_only_app: tuple[App, CoreOnlyPlugin],
) -> None:
    app, plugin = core_only_app
    channel = grpc.aio.insecure_channel(app.address)
    try:
        checkpoints = checkpoints_grpc.CheckpointServiceStub(channel)
        access = access_grpc.AccessServiceStub(channel)
        audit = audit_grpc.AuditServiceStub(channel)
        cases = [
            (checkpoints.CreateCheckpoint(checkpoints_pb.CreateCheckpointRequest()), "StoresCheckpoints"),
            (checkpoints.ListCheckpoints(checkpoints_pb.ListCheckpointsRequest()), "StoresCheckpoints"),
            (
                access.CreateUser(access_pb.CreateUserRequest(user=msgs.User(email="ann@example.com"))),
                "StoresAccess",
            ),
            (audit.ListAuditRecords(audit_pb.ListAuditRecordsRequest()), "StoresAudit"),
            (access.CreateJoinToken(access_pb.CreateJoinTokenRequest()), "StoresJoinTokens"),
            (access.ListJoinTokens(access_pb.ListJoinTokensRequest()), "StoresJoinTokens"),
        ]
        for call, capability in cases:
            failure = await rpc_failure(call)
            assert failure.code == grpc.StatusCode.FAILED_PRECONDITION, (capability, failure)
            assert failure.reason == "ERROR_REASON_NOT_SUPPORTED"
            assert failure.message.startswith("the core-only storage backend does not store ")
            assert f"lacks the optional {capability} storage capability" in failure.message
    finally:
        await channel.close()
    assert plugin.opened[0].inner.list_checkpoints(0, 10) == []  # nothing was written past the wrapper


def test_access_control_needs_a_backend_that_stores_it(tmp_path: Path) -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    plugin = CoreOnlyPlugin()
    pm.register(plugin, name="core-only")
    settings = make_settings(
        tmp_path / "home",
        **{"database.primary_url": f"coreonly:///{tmp_path / 'maos.db'}", "security.auth": "required"},
    )
    with pytest.raises(FailedPrecondition, match="does not store users, roles and API keys .*StoresAccess"):
        build_app(settings, pm)
    assert plugin.opened[0].closed  # refused before anything used it
