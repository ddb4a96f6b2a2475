"""ALREADY_EXISTS at the RPC level: AccessService on a control plane that requires API keys.

Creating a user or role that exists fails with ALREADY_EXISTS, an ErrorInfo
(domain maos, ERROR_REASON_ALREADY_EXISTS) and a message naming what
exists; the original is left exactly as it was, and the refusal is audited.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from agent_sdk.proto.maos.v1 import access_service_pb2 as access_pb
from agent_sdk.proto.maos.v1 import access_service_pb2_grpc as access_grpc
from agent_sdk.proto.maos.v1 import audit_service_pb2 as audit_pb
from agent_sdk.proto.maos.v1 import audit_service_pb2_grpc as audit_grpc
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from controlplane.app import App
from tests.controlplane.api.test_task_service import assert_failure, rpc_failure
from tests.harness.server import admin_key

ALREADY_EXISTS = grpc.StatusCode.ALREADY_EXISTS
REASON = "ERROR_REASON_ALREADY_EXISTS"


@dataclass
class Admin:
    """AccessService and AuditService stubs calling as an admin."""

    access: access_grpc.AccessServiceStub
    audit: audit_grpc.AuditServiceStub
    metadata: tuple[tuple[str, str], ...]


@pytest.fixture
async def admin(secured: App) -> AsyncIterator[Admin]:
    metadata = (("authorization", f"Bearer {await admin_key(secured)}"),)
    async with grpc.aio.insecure_channel(secured.address) as channel:
        yield Admin(access_grpc.AccessServiceStub(channel), audit_grpc.AuditServiceStub(channel), metadata)


async def stored(app: App, collection: str) -> dict[str, dict]:
    """The access records in the database, by id."""
    return {r["id"]: r for r in await app.storage.call(app.storage.backend.access_list, collection)}


async def audited(admin: Admin, action: str) -> list[str]:
    """Status codes of the audit records of ``action``, once they are durable."""
    reply = await admin.audit.ListAuditRecords(
        audit_pb.ListAuditRecordsRequest(action=action), metadata=admin.metadata, timeout=5
    )
    return [r.status_code for r in reply.records]


async def test_creating_a_user_whose_email_exists(secured: App, admin: Admin) -> None:
    created = await admin.access.CreateUser(
        access_pb.CreateUserRequest(user=msgs.User(email="dev@example.com", roles=["roles/viewer"])),
        metadata=admin.metadata,
        timeout=5,
    )
    before_users, before_stored = dict(secured.access.users), await stored(secured, "users")

    failure = await rpc_failure(
        admin.access.CreateUser(
            access_pb.CreateUserRequest(user=msgs.User(email="dev@example.com", roles=["roles/admin"])),
            metadata=admin.metadata,
            timeout=5,
        )
    )
    assert_failure(failure, ALREADY_EXISTS, REASON)
    assert "dev@example.com" in failure.message and "already exists" in failure.message, failure

    # The original keeps its roles (a duplicate create is no way to become admin); no second user appears.
    got = await admin.access.GetUser(
        access_pb.GetUserRequest(name=created.user.name), metadata=admin.metadata, timeout=5
    )
    assert got.user == created.user
    assert list(got.user.roles) == ["roles/viewer"]
    assert secured.access.users == before_users
    assert await stored(secured, "users") == before_stored
    listed = await admin.access.ListUsers(access_pb.ListUsersRequest(), metadata=admin.metadata, timeout=5)
    assert [u.email for u in listed.users].count("dev@example.com") == 1
    assert await audited(admin, "CreateUser") == ["ALREADY_EXISTS", "OK"]  # newest first


async def test_creating_a_role_that_exists(secured: App, admin: Admin) -> None:
    created = await admin.access.CreateRole(
        access_pb.CreateRoleRequest(
            role_id="auditor", role=msgs.Role(permissions=["audit:view"], description="reads the audit log")
        ),
        metadata=admin.metadata,
        timeout=5,
    )
    before = await stored(secured, "roles")

    failure = await rpc_failure(
        admin.access.CreateRole(
            access_pb.CreateRoleRequest(
                role_id="auditor", role=msgs.Role(permissions=["*"], description="takes over")
            ),
            metadata=admin.metadata,
            timeout=5,
        )
    )
    assert_failure(failure, ALREADY_EXISTS, REASON)
    assert "auditor" in failure.message and "already exists" in failure.message, failure

    got = await admin.access.GetRole(
        access_pb.GetRoleRequest(name="roles/auditor"), metadata=admin.metadata, timeout=5
    )
    assert got.role == created.role
    assert list(got.role.permissions) == ["audit:view"] and got.role.description == "reads the audit log"
    assert await stored(secured, "roles") == before
    assert await audited(admin, "CreateRole") == ["ALREADY_EXISTS", "OK"]


async def test_creating_a_builtin_role_is_already_exists(secured: App, admin: Admin) -> None:
    before = await stored(secured, "roles")
    builtin = dict(secured.access.roles["viewer"])
    failure = await rpc_failure(
        admin.access.CreateRole(
            access_pb.CreateRoleRequest(role_id="viewer", role=msgs.Role(permissions=["*"])),
            metadata=admin.metadata,
            timeout=5,
        )
    )
    assert_failure(failure, ALREADY_EXISTS, REASON)
    assert "viewer" in failure.message, failure
    assert secured.access.roles["viewer"] == builtin
    assert await stored(secured, "roles") == before
