"""Access control end to end: a real control plane with ``security.auth: required``.

Each denial gets the right status and reason and changes nothing; allowed
mutating calls and denials leave audit records.
"""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError
from controlplane.access import keys
from controlplane.app import App
from controlplane.errors import NotFound
from tests.harness.server import admin_key, wait_for


async def user_key(app: App, email: str, *roles: str) -> str:
    """A new user with ``roles`` and an API key of theirs."""
    async with Client(app.address, token=await admin_key(app)) as admin:
        user = await admin.create_user(email, roles)
    _, secret = await app.storage.call(app.access.issue_key_sync, user.name.removeprefix("users/"), "k")
    return secret


async def fails(call, code: grpc.StatusCode, reason: str) -> MaosRpcError:
    with pytest.raises(MaosRpcError) as info:
        await call
    assert info.value.code == code, info.value
    assert info.value.reason == reason
    return info.value


async def task_count(app: App) -> int:
    counts = await app.storage.call(app.storage.backend.count_tasks_by_status)
    return sum(counts.values())


async def test_unauthenticated_calls_are_refused_audited_and_change_nothing(secured: App) -> None:
    async with Client(secured.address) as anonymous:
        await fails(
            anonymous.submit_task(description="x"),
            grpc.StatusCode.UNAUTHENTICATED,
            "ERROR_REASON_UNAUTHENTICATED",
        )
        await fails(anonymous.list_tasks(), grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_UNAUTHENTICATED")
    assert await task_count(secured) == 0
    async with Client(secured.address, token=await admin_key(secured)) as admin:
        records = await admin.list_audit_records(action="SubmitTask")
    assert [(r.principal, r.status_code, r.decision) for r in records] == [("", "UNAUTHENTICATED", 2)]


async def test_health_needs_no_credentials(secured: App) -> None:
    async with grpc.aio.insecure_channel(secured.address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_malformed_or_bad_checksum_key_is_unauthenticated(secured: App) -> None:
    good = await admin_key(secured)
    assert keys.parse(good) is not None
    tampered = good[:-1] + ("0" if good[-1] != "0" else "1")
    assert keys.parse(tampered) is None
    for token in (tampered, "not-a-key", keys.generate()):  # the last is well formed but unknown
        async with Client(secured.address, token=token) as client:
            await fails(client.get_caller(), grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_UNAUTHENTICATED")


async def test_wrong_permission_is_denied_and_changes_nothing(secured: App) -> None:
    token = await user_key(secured, "viewer@example.com", "viewer")
    async with Client(secured.address, token=token) as viewer:
        assert (await viewer.list_tasks()).tasks == []  # task:view is granted
        await fails(
            viewer.submit_task(description="x"),
            grpc.StatusCode.PERMISSION_DENIED,
            "ERROR_REASON_PERMISSION_DENIED",
        )
        await fails(
            viewer.create_user("x@example.com", ["admin"]),
            grpc.StatusCode.PERMISSION_DENIED,
            "ERROR_REASON_PERMISSION_DENIED",
        )
    assert await task_count(secured) == 0
    assert not any(u["email"] == "x@example.com" for u in secured.access.users.values())
    async with Client(secured.address, token=await admin_key(secured)) as admin:
        denied = await admin.list_audit_records(principal="users/viewer")
    assert {(r.method.rsplit("/", 1)[1], r.status_code) for r in denied} == {
        ("SubmitTask", "PERMISSION_DENIED"),
        ("CreateUser", "PERMISSION_DENIED"),
    }
    assert all(r.key_id and r.peer for r in denied)


async def test_key_permissions_narrow_the_users(secured: App) -> None:
    async with Client(secured.address, token=await user_key(secured, "dev@example.com", "developer")) as dev:
        narrow = await dev.create_api_key("read only", ["task:view"])
        await fails(
            dev.create_api_key("too much", ["*"]),
            grpc.StatusCode.PERMISSION_DENIED,
            "ERROR_REASON_PERMISSION_DENIED",
        )
    async with Client(secured.address, token=narrow.secret) as client:
        assert (await client.get_caller()).permissions == ["task:view"]
        await fails(
            client.submit_task(description="x"),
            grpc.StatusCode.PERMISSION_DENIED,
            "ERROR_REASON_PERMISSION_DENIED",
        )


async def test_expired_key(secured: App) -> None:
    token = await user_key(secured, "dev@example.com", "developer")
    secured.access.api_keys[keys.parse(token)]["expire_time"] = time.time() - 1
    async with Client(secured.address, token=token) as client:
        await fails(client.list_tasks(), grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_CREDENTIAL_EXPIRED")


async def test_revoked_key_fails_on_the_next_call(secured: App) -> None:
    async with Client(secured.address, token=await user_key(secured, "dev@example.com", "developer")) as dev:
        created = await dev.create_api_key("ci", ttl=3600)
        assert created.secret.startswith("maos_key_") and created.api_key.prefix in created.secret
        async with Client(secured.address, token=created.secret) as ci:
            await ci.list_tasks()
            await dev.revoke_api_key(created.api_key.name)
            await fails(ci.list_tasks(), grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_CREDENTIAL_REVOKED")
        listed = await dev.list_api_keys(include_revoked=True)
        assert created.api_key.name in [k.name for k in listed]
        assert created.api_key.name not in [k.name for k in await dev.list_api_keys()]
    stored = {r["id"]: r for r in await secured.storage.call(secured.storage.backend.access_list, "api_keys")}
    assert stored[keys.parse(created.secret)]["digest"] == keys.digest(created.secret)  # only the hash
    assert created.secret not in str(stored)


async def test_rotated_key_overlap(secured: App) -> None:
    async with Client(secured.address, token=await user_key(secured, "dev@example.com", "developer")) as dev:
        created = await dev.create_api_key("svc")
        rotated = await dev.rotate_api_key(created.api_key.name, overlap=0.5)
    assert keys.parse(rotated.secret) == keys.parse(created.secret)
    async with (
        Client(secured.address, token=created.secret) as old,
        Client(secured.address, token=rotated.secret) as new,
    ):
        await old.list_tasks()  # within the overlap
        await new.list_tasks()

        async def expired() -> bool:
            try:
                await old.list_tasks()
            except MaosRpcError:
                return True
            return False

        await wait_for(expired, 5, interval=0.05, message="the end of the overlap")
        await fails(old.list_tasks(), grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_CREDENTIAL_EXPIRED")
        await new.list_tasks()


async def test_another_users_task_is_not_found_and_unchanged(secured: App) -> None:
    alice = Client(secured.address, token=await user_key(secured, "alice@example.com", "developer"))
    bob = Client(secured.address, token=await user_key(secured, "bob@example.com", "developer"))
    admin = Client(secured.address, token=await admin_key(secured))
    try:
        task = await alice.submit_task(description="alice's work")
        assert task.owner == "users/alice"
        await fails(bob.get_task(task.name), grpc.StatusCode.NOT_FOUND, "ERROR_REASON_TASK_NOT_FOUND")
        await fails(
            bob.tasks.CancelTask(
                __import__("agent_sdk.proto.maos.v1.task_service_pb2", fromlist=["x"]).CancelTaskRequest(
                    name=task.name
                )
            ),
            grpc.StatusCode.NOT_FOUND,
            "ERROR_REASON_TASK_NOT_FOUND",
        )
        assert (await bob.list_tasks()).tasks == []
        assert (await bob.list_tasks(owner="users/alice")).tasks == []
        with pytest.raises(MaosRpcError) as watched:  # no snapshot, no events of alice's task
            async for update in bob.watch_task(task.name):
                pytest.fail(f"bob saw alice's task: {update}")
        assert watched.value.code == grpc.StatusCode.NOT_FOUND
        assert watched.value.reason == "ERROR_REASON_TASK_NOT_FOUND"
        after = (await alice.get_task(task.name)).task
        assert after.status == task.status and after.update_time == task.update_time
        assert [t.name for t in (await admin.list_tasks()).tasks] == [task.name]  # admin sees all
        records = await admin.list_audit_records(action="SubmitTask")
        assert [(r.principal, r.status_code, r.decision) for r in records] == [("users/alice", "OK", 1)]
        cancels = await admin.list_audit_records(action="CancelTask")
        assert [(r.principal, r.status_code, r.resource) for r in cancels] == [
            ("users/bob", "NOT_FOUND", task.name)
        ]
    finally:
        for client in (alice, bob, admin):
            await client.close()


async def test_roles_and_get_caller(secured: App) -> None:
    async with Client(secured.address, token=await admin_key(secured)) as admin:
        caller = await admin.get_caller()
        assert caller.principal == "users/admin" and caller.permissions == ["*"]
        role = await admin.create_role("submitter", ["task:submit", "task:view"])
        assert role.name == "roles/submitter"
        await fails(
            admin.create_role("bad", ["nonsense"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_INVALID_FIELD",
        )
        await fails(
            admin.update_role("admin", ["task:view"]),
            grpc.StatusCode.FAILED_PRECONDITION,
            "ERROR_REASON_NOT_SUPPORTED",
        )
        await admin.update_role("submitter", ["task:submit"])
        names = {r.name: r for r in await admin.list_roles()}
        assert {"roles/viewer", "roles/developer", "roles/admin", "roles/agent"} <= set(names)
        assert list(names["roles/submitter"].permissions) == ["task:submit"]
        await fails(
            admin.create_user("x@example.com", ["nope"]),
            grpc.StatusCode.NOT_FOUND,
            "ERROR_REASON_ROLE_NOT_FOUND",
        )
    token = await user_key(secured, "s@example.com", "submitter")
    async with Client(secured.address, token=token) as submitter:
        await submitter.submit_task(description="ok")
        await fails(
            submitter.list_tasks(), grpc.StatusCode.PERMISSION_DENIED, "ERROR_REASON_PERMISSION_DENIED"
        )


# --- updating and deleting users and roles ------------------------------------------------


async def access_snapshot(app: App) -> tuple[object, ...]:
    """Users, roles and keys as stored and as held in memory (without keys' last use)."""

    def rows(records: object) -> list[str]:
        return sorted(str({k: v for k, v in r.items() if k != "last_used_time"}) for r in records)

    stored = [
        rows(await app.storage.call(app.storage.backend.access_list, kind))
        for kind in ("users", "roles", "api_keys")
    ]
    return (
        stored,
        rows(app.access.users.values()),
        rows(app.access.roles.values()),
        rows(app.access.api_keys.values()),
    )


async def test_update_user_roles_and_disabled(secured: App) -> None:
    token = await user_key(secured, "dev@example.com", "developer")
    async with (
        Client(secured.address, token=await admin_key(secured)) as admin,
        Client(secured.address, token=token) as dev,
    ):
        await dev.submit_task(description="allowed")
        viewer = await admin.update_user("dev", roles=["viewer", "viewer"])
        assert list(viewer.roles) == ["roles/viewer"] and not viewer.disabled
        await fails(
            dev.submit_task(description="x"),
            grpc.StatusCode.PERMISSION_DENIED,
            "ERROR_REASON_PERMISSION_DENIED",
        )
        assert (await admin.update_user("users/dev", disabled=True)).disabled
        await fails(dev.list_tasks(), grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_UNAUTHENTICATED")
        enabled = await admin.update_user("dev", disabled=False, roles=["developer"])
        assert list(enabled.roles) == ["roles/developer"] and not enabled.disabled
        await dev.submit_task(description="allowed again")
        assert (await admin.get_user("dev")) == enabled
    stored = {u["id"]: u for u in await secured.storage.call(secured.storage.backend.access_list, "users")}
    assert stored["dev"]["roles"] == ["developer"] and stored["dev"]["disabled"] is False
    async with Client(secured.address, token=await admin_key(secured)) as admin:
        records = await admin.list_audit_records(action="UpdateUser")
    assert [(r.principal, r.status_code) for r in records] == [("users/admin", "OK")] * 3


async def test_update_user_mask_without_paths_takes_the_fields_that_are_set(secured: App) -> None:
    from agent_sdk.proto.maos.v1 import access_service_pb2 as access_pb
    from agent_sdk.proto.maos.v1 import messages_pb2 as msgs

    await user_key(secured, "dev@example.com", "developer")
    async with Client(secured.address, token=await admin_key(secured)) as admin:
        reply = await admin.access.UpdateUser(
            access_pb.UpdateUserRequest(user=msgs.User(name="users/dev", roles=["roles/viewer"]))
        )
        assert list(reply.user.roles) == ["roles/viewer"] and not reply.user.disabled
        reply = await admin.access.UpdateUser(
            access_pb.UpdateUserRequest(
                user=msgs.User(name="users/dev", disabled=True), update_mask={"paths": ["*"]}
            )
        )
        assert list(reply.user.roles) == [] and reply.user.disabled


async def test_bad_user_updates_are_refused_and_change_nothing(secured: App) -> None:
    from agent_sdk.proto.maos.v1 import access_service_pb2 as access_pb
    from agent_sdk.proto.maos.v1 import messages_pb2 as msgs

    await user_key(secured, "dev@example.com", "developer")
    async with Client(secured.address, token=await admin_key(secured)) as admin:
        before = await access_snapshot(secured)
        await fails(
            admin.update_user("nobody", disabled=True),
            grpc.StatusCode.NOT_FOUND,
            "ERROR_REASON_USER_NOT_FOUND",
        )
        await fails(
            admin.update_user("dev", roles=["viewer", "no-such-role"]),
            grpc.StatusCode.NOT_FOUND,
            "ERROR_REASON_ROLE_NOT_FOUND",
        )
        for paths in (["email"], ["roles", "name"], ["create_time"], ["user.roles"]):
            error = await fails(
                admin.access.UpdateUser(
                    access_pb.UpdateUserRequest(
                        user=msgs.User(name="users/dev", email="evil@example.com", disabled=True),
                        update_mask={"paths": paths},
                    )
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "ERROR_REASON_INVALID_FIELD",
            )
            assert error.field_violations[0][0] == "update_mask"
            assert all(p in error.message for p in paths if p != "roles")
        await fails(
            admin.access.UpdateUser(
                access_pb.UpdateUserRequest(
                    user=msgs.User(disabled=True), update_mask={"paths": ["disabled"]}
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_INVALID_FIELD",
        )
        await fails(
            admin.update_user("admin", disabled=True),
            grpc.StatusCode.FAILED_PRECONDITION,
            "ERROR_REASON_NOT_SUPPORTED",
        )  # yourself
        await fails(
            admin.update_user("admin", roles=["viewer"]),
            grpc.StatusCode.FAILED_PRECONDITION,
            "ERROR_REASON_NOT_SUPPORTED",
        )
        assert await access_snapshot(secured) == before


async def test_deleted_users_keys_fail_on_the_next_call(secured: App) -> None:
    token = await user_key(secured, "dev@example.com", "developer")
    async with (
        Client(secured.address, token=await admin_key(secured)) as admin,
        Client(secured.address, token=token) as dev,
    ):
        second = await dev.create_api_key("second")
        await dev.list_tasks()
        await admin.delete_user("dev")
        await fails(dev.list_tasks(), grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_CREDENTIAL_REVOKED")
        async with Client(secured.address, token=second.secret) as other:
            await fails(
                other.list_tasks(), grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_CREDENTIAL_REVOKED"
            )
        await fails(admin.get_user("dev"), grpc.StatusCode.NOT_FOUND, "ERROR_REASON_USER_NOT_FOUND")
        await fails(admin.delete_user("dev"), grpc.StatusCode.NOT_FOUND, "ERROR_REASON_USER_NOT_FOUND")
        # A new user with the same email gets the same id, but none of the old keys.
        again = await admin.create_user("dev@example.com", ["developer"])
        assert again.name == "users/dev"
        await fails(dev.list_tasks(), grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_CREDENTIAL_REVOKED")
    assert "dev" in {
        u["id"] for u in await secured.storage.call(secured.storage.backend.access_list, "users")
    }
    revoked = [
        k
        for k in await secured.storage.call(secured.storage.backend.access_list, "api_keys")
        if k["user"] == "dev"
    ]
    assert len(revoked) == 2 and all(k["revoke_time"] for k in revoked)


async def test_bad_user_deletes_are_refused_and_change_nothing(secured: App) -> None:
    from agent_sdk.proto.maos.v1 import access_service_pb2 as access_pb

    other_admin = await user_key(secured, "root@example.com", "admin")
    async with (
        Client(secured.address, token=await admin_key(secured)) as admin,
        Client(secured.address, token=other_admin) as root,
    ):
        before = await access_snapshot(secured)
        for built_in in ("admin", "local-agents"):
            await fails(
                root.delete_user(built_in), grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_NOT_SUPPORTED"
            )
        await fails(
            root.delete_user("root"), grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_NOT_SUPPORTED"
        )
        await fails(root.delete_user("nobody"), grpc.StatusCode.NOT_FOUND, "ERROR_REASON_USER_NOT_FOUND")
        await fails(
            root.access.DeleteUser(access_pb.DeleteUserRequest()),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_INVALID_FIELD",
        )
        assert await access_snapshot(secured) == before
        await admin.delete_user("root")  # another admin can
    assert "root" not in secured.access.users


async def test_delete_role(secured: App) -> None:
    from agent_sdk.proto.maos.v1 import access_service_pb2 as access_pb

    async with Client(secured.address, token=await admin_key(secured)) as admin:
        await admin.create_role("submitter", ["task:submit"])
        await admin.create_role("unused", ["task:view"])
        await admin.create_user("a@example.com", ["submitter"])
        await admin.create_user("b@example.com", ["viewer", "submitter"])
        before = await access_snapshot(secured)
        held = await fails(
            admin.delete_role("submitter"), grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_NOT_SUPPORTED"
        )
        assert "users/a" in held.message and "users/b" in held.message
        for built_in in ("viewer", "developer", "admin", "agent"):
            await fails(
                admin.delete_role(built_in), grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_NOT_SUPPORTED"
            )
        await fails(admin.delete_role("nope"), grpc.StatusCode.NOT_FOUND, "ERROR_REASON_ROLE_NOT_FOUND")
        await fails(
            admin.access.DeleteRole(access_pb.DeleteRoleRequest()),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_INVALID_FIELD",
        )
        assert await access_snapshot(secured) == before

        await admin.delete_role("roles/unused")
        await admin.update_user("a", roles=[])
        await admin.update_user("b", roles=["viewer"])
        await admin.delete_role("submitter")
        assert {r.name for r in await admin.list_roles()} == {
            "roles/viewer",
            "roles/developer",
            "roles/admin",
            "roles/agent",
        }
        await fails(
            admin.create_user("c@example.com", ["submitter"]),
            grpc.StatusCode.NOT_FOUND,
            "ERROR_REASON_ROLE_NOT_FOUND",
        )
    stored = {r["id"] for r in await secured.storage.call(secured.storage.backend.access_list, "roles")}
    assert not stored & {"submitter", "unused"}


async def test_only_admins_update_or_delete_users_and_roles(secured: App) -> None:
    await user_key(secured, "other@example.com", "viewer")
    token = await user_key(secured, "dev@example.com", "developer")
    before = await access_snapshot(secured)
    async with Client(secured.address, token=token) as dev:
        for call in (
            dev.update_user("other", disabled=True),
            dev.delete_user("other"),
            dev.delete_role("viewer"),
            dev.update_user("dev", roles=["admin"]),
        ):
            await fails(call, grpc.StatusCode.PERMISSION_DENIED, "ERROR_REASON_PERMISSION_DENIED")
    assert await access_snapshot(secured) == before


async def test_a_whole_key_given_as_a_key_name_is_refused_unechoed_and_unaudited(secured: App) -> None:
    """RevokeApiKey/RotateApiKey with a pasted secret: INVALID_ARGUMENT, the secret nowhere, nothing changed."""
    from agent_sdk.proto.maos.v1 import access_service_pb2 as access_pb

    async with Client(secured.address, token=await admin_key(secured)) as admin:
        created = await admin.create_api_key("ci")
        secret = created.secret
        before = await access_snapshot(secured)
        for name in (
            secret,
            f"apiKeys/{secret}",
            f"apiKeys/{secret}\n",
            "apiKeys/" + secret[9:21] + "x",
            "",
            "apiKeys/abc.def",
            "apiKeys/" + secret[9:21] + "\n",
        ):
            for call in (
                admin.access.RevokeApiKey(access_pb.RevokeApiKeyRequest(name=name)),
                admin.access.RotateApiKey(access_pb.RotateApiKeyRequest(name=name)),
            ):
                error = await fails(call, grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_FIELD")
                assert [f for f, _ in error.field_violations] == ["name"]
                assert secret not in error.message and secret[9:] not in error.message
        # The SDK refuses to send one at all.
        for call in (admin.revoke_api_key, admin.rotate_api_key):
            with pytest.raises(ValueError) as refused:
                await call(secret)
            assert secret not in str(refused.value)
        assert await access_snapshot(secured) == before
        records = await admin.list_audit_records(action="ApiKey", page_size=100)
        refused = [r for r in records if r.status_code == "INVALID_ARGUMENT"]
        assert len(refused) == 14 and not any(secret[9:] in str(r) for r in records)
        assert {r.resource for r in refused} == {"<malformed>", ""}
        # The key's id (its name) is what works, and is what the log keeps.
        await admin.revoke_api_key(created.api_key.name)
        [record] = await admin.list_audit_records(action="RevokeApiKey", page_size=1)
        assert record.resource == created.api_key.name and record.status_code == "OK"


async def test_a_key_created_while_its_user_is_deleted_is_revoked(secured: App) -> None:
    """create_key and delete_user are serialized: the key is revoked with the others, or never created."""
    await secured.access.create_user("dev@example.com", ["developer"])
    admin = secured.access.caller_of(secured.access.users["admin"])
    created, deleted = await asyncio.gather(
        secured.access.create_key(admin, "dev", "racing", [], None),
        secured.access.delete_user(admin, "dev"),
        return_exceptions=True,
    )
    assert deleted is None, deleted
    if isinstance(created, BaseException):  # delete_user went first: the user was gone
        assert isinstance(created, NotFound), created
    stored = [
        k
        for k in await secured.storage.call(secured.storage.backend.access_list, "api_keys")
        if k["user"] == "dev"
    ]
    assert all(k["revoke_time"] for k in stored) and all(
        k["revoke_time"] for k in secured.access.api_keys.values() if k["user"] == "dev"
    )
    if not isinstance(created, BaseException):
        async with Client(secured.address, token=created[1]) as racing:
            await fails(
                racing.list_tasks(), grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_CREDENTIAL_REVOKED"
            )


async def test_a_recreated_user_never_inherits_a_key_of_the_old_one(secured: App) -> None:
    """Even a key that escaped revocation (another process, an older control plane) is not the new user's."""
    token = await user_key(secured, "dev@example.com", "developer")
    old_uid = secured.access.users["dev"]["uid"]
    # The user disappears without its key being revoked, as the create/delete race allowed.
    await secured.storage.call(secured.storage.backend.access_delete, "users", "dev")
    del secured.access.users["dev"]
    again = await secured.access.create_user("dev@example.com", ["developer"])
    assert again["id"] == "dev" and again["uid"] != old_uid
    async with Client(secured.address, token=token) as old:
        error = await fails(old.list_tasks(), grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_UNAUTHENTICATED")
        assert "disabled or deleted" in error.message
    async with Client(secured.address, token=await admin_key(secured)) as admin:
        fresh = await admin.create_api_key("new", user="dev")
    async with Client(secured.address, token=fresh.secret) as new:
        assert (await new.get_caller()).principal == "users/dev"


async def test_a_role_id_with_a_trailing_newline_is_refused(secured: App) -> None:
    async with Client(secured.address, token=await admin_key(secured)) as admin:
        await admin.get_caller()  # the key's first use is recorded before the snapshot
        before = await access_snapshot(secured)
        error = await fails(
            admin.create_role("reviewer\n", ["task:view"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_INVALID_FIELD",
        )
    assert [f for f, _ in error.field_violations] == ["role_id"]
    assert await access_snapshot(secured) == before
