"""Who sees which webhook and which events, the SSRF policy, and bad inputs (status, field, no change)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from agent_sdk.builtin import EchoAgent
from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError
from agent_sdk.proto.maos.v1 import enums_pb2, messages_pb2
from agent_sdk.proto.maos.v1 import webhook_service_pb2 as webhooks_pb
from agent_sdk.worker import Worker
from controlplane.app import App
from controlplane.webhooks.records import WebhookRecord
from tests.harness.receiver import Receiver
from tests.harness.server import admin_key, make_settings, start_app, stored_audit, wait_for


async def user_key(app: App, email: str, *roles: str) -> str:
    """A new user with ``roles`` and an API key of theirs."""
    async with Client(app.address, token=await admin_key(app)) as admin:
        user = await admin.create_user(email, list(roles))
    _, secret = await app.storage.call(app.access.issue_key_sync, user.name.removeprefix("users/"), "k")
    return secret


async def refused(call: object, code: grpc.StatusCode, field: str | None = None) -> MaosRpcError:
    with pytest.raises(MaosRpcError) as info:
        await call  # type: ignore[misc]
    assert info.value.code == code, info.value
    if field is not None:
        assert field in [f for f, _ in info.value.field_violations], (field, info.value)
    return info.value


@pytest.fixture
async def secured_hooks(maos_home: Path) -> AsyncIterator[App]:
    """A control plane with access control on whose webhooks may call 127.0.0.1."""
    app = await start_app(
        make_settings(
            maos_home,
            **{"security.auth": "required", "webhooks.allow_private": True, "webhooks.poll_interval": 0.1},
        )
    )
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


async def test_owners_see_only_their_webhooks_and_events_of_tasks_they_may_see(
    secured_hooks: App, receiver: Receiver
) -> None:
    app = secured_hooks
    alice_key = await user_key(app, "alice@example.com", "developer")
    bob_key = await user_key(app, "bob@example.com", "developer")
    _, agent_secret = await app.storage.call(app.access.issue_key_sync, "local-agents", "test agent")
    worker = Worker(EchoAgent(), app.address, token=agent_secret, max_backoff=0.5)
    runner = asyncio.get_running_loop().create_task(worker.run())
    await asyncio.wait_for(worker.registered.wait(), 15)
    try:
        async with (
            Client(app.address, token=alice_key) as alice,
            Client(app.address, token=bob_key) as bob,
            Client(app.address, token=await admin_key(app)) as admin,
        ):
            hook, _ = await alice.create_webhook(receiver.url, events=["task.submitted", "task.completed"])
            assert hook.owner == "users/alice"
            await refused(bob.get_webhook(hook.name), grpc.StatusCode.NOT_FOUND)
            await refused(bob.delete_webhook(hook.name), grpc.StatusCode.NOT_FOUND)
            await refused(bob.update_webhook(hook.name, disabled=True), grpc.StatusCode.NOT_FOUND)
            await refused(bob.test_webhook(hook.name), grpc.StatusCode.NOT_FOUND)
            await refused(bob.list_webhook_deliveries(hook.name), grpc.StatusCode.NOT_FOUND)
            assert list((await bob.list_webhooks()).webhooks) == []
            assert [w.name for w in (await alice.list_webhooks()).webhooks] == [hook.name]
            assert [w.name for w in (await admin.list_webhooks()).webhooks] == [hook.name]  # admin sees all
            assert (await admin.get_webhook(hook.name)).owner == "users/alice"

            bobs = await bob.submit_task(description="bob's private work")
            await bob.wait_task(bobs.name, timeout=30)
            mine = await alice.submit_task(description="alice's work")
            await alice.wait_task(mine.name, timeout=30)
            await wait_for(lambda: len(receiver.snapshot()) >= 2, 15, message="alice's two events")
            log = await alice.list_webhook_deliveries(hook.name)
    finally:
        await worker.shutdown(grace=1.0)
        await runner
    got = receiver.snapshot()
    assert {r.event["data"]["task_id"] for r in got} == {mine.name[6:]}  # nothing of bob's task
    assert sorted(r.headers["MAOS-Event"] for r in got) == ["task.completed", "task.submitted"]  # any order
    assert {d.task for d in log.deliveries} == {mine.name}
    assert (await app.storage.call(app.storage.backend.get_webhook, hook.name[9:])).owner == "users/alice"
    records = await stored_audit(app, action="Webhook")
    methods = [(r["method"].rsplit("/", 1)[-1], r["principal"], r["status_code"]) for r in records]
    assert ("CreateWebhook", "users/alice", "OK") in methods
    assert ("DeleteWebhook", "users/bob", "NOT_FOUND") in methods
    assert not any(m == "ListWebhooks" for m, _, _ in methods)  # reads are not audited


async def test_a_webhook_made_with_task_view_all_receives_every_task(
    secured_hooks: App, receiver: Receiver
) -> None:
    app = secured_hooks
    bob_key = await user_key(app, "bob@example.com", "developer")
    async with (
        Client(app.address, token=await admin_key(app)) as admin,
        Client(app.address, token=bob_key) as bob,
    ):
        await admin.create_webhook(receiver.url, events=["task.submitted"])
        task = await bob.submit_task(description="seen by the admin's webhook")
        await wait_for(lambda: receiver.snapshot(), 15, message="the admin's delivery")
    assert receiver.snapshot()[0].event["data"]["task_id"] == task.name[6:]


async def test_webhook_permission_is_needed(secured_hooks: App) -> None:
    viewer_key = await user_key(secured_hooks, "val@example.com", "viewer")
    async with Client(secured_hooks.address, token=viewer_key) as viewer:
        await refused(viewer.list_webhooks(), grpc.StatusCode.PERMISSION_DENIED)
        await refused(
            viewer.create_webhook("http://127.0.0.1:9/x", events=["task.failed"]),
            grpc.StatusCode.PERMISSION_DENIED,
        )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://localhost/hook",
        "https://192.168.1.10/x",
    ],
)
async def test_private_addresses_are_refused_by_default(control_plane: App, url: str) -> None:
    async with Client(control_plane.address) as client:
        error = await refused(
            client.create_webhook(url, events=["task.completed"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "webhook.url",
        )
        assert "webhooks.allow_private" in error.message
        assert list((await client.list_webhooks()).webhooks) == []


async def test_addresses_are_checked_again_at_delivery_time(control_plane: App, receiver: Receiver) -> None:
    # As if the name had resolved to a public address at creation and to 127.0.0.1 now (DNS rebinding).
    record = WebhookRecord(
        id="rebound", owner="users/local", url=receiver.url, secret="whsec_0123456789abcdef"
    )
    await control_plane.storage.call(lambda: control_plane.storage.backend.put_webhook(record, create=True))
    async with Client(control_plane.address) as client:
        delivery = await client.test_webhook("rebound")
    assert not delivery.succeeded and "refused" in delivery.error and delivery.http_status == 0
    assert receiver.snapshot() == []


async def test_bad_inputs_name_the_field_and_change_nothing(control_plane: App) -> None:
    async with Client(control_plane.address) as client:
        cases = [
            (client.create_webhook("ftp://example.com/x", events=["task.failed"]), "webhook.url"),
            (
                client.create_webhook("https://example.com/" + "a" * 3000, events=["task.failed"]),
                "webhook.url",
            ),
            (client.create_webhook("https://example.com/x", events=["task.done"]), "webhook.events"),
            (
                client.create_webhook("https://example.com/x", events=["task.failed"], secret="short"),
                "webhook.secret",
            ),
            (
                client.create_webhook("https://example.com/x", events=["task.failed"], webhook_id="Bad Id!"),
                "webhook_id",
            ),
            (client.list_webhooks(page_size=-1), "page_size"),
            (client.list_webhooks(page_token="garbage"), "page_token"),
            (client.get_webhook("webhooks/../etc"), "name"),
        ]
        for call, field in cases:
            await refused(call, grpc.StatusCode.INVALID_ARGUMENT, field)
        stub = client.webhook_service
        await refused(
            stub.CreateWebhook(
                webhooks_pb.CreateWebhookRequest(
                    webhook=messages_pb2.Webhook(
                        url="https://example.com/x", event_types=[enums_pb2.EVENT_TYPE_AGENT_CONNECTED]
                    )
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "webhook.event_types",
        )
        assert list((await client.list_webhooks()).webhooks) == []
        await refused(client.get_webhook("nope"), grpc.StatusCode.NOT_FOUND)
        record = WebhookRecord(
            id="kept",
            owner="users/local",
            url="https://example.com/x",
            secret="whsec_0123456789abcdef",
            events=["task.failed"],
        )
        await control_plane.storage.call(
            lambda: control_plane.storage.backend.put_webhook(record, create=True)
        )
        await refused(
            stub.UpdateWebhook(
                webhooks_pb.UpdateWebhookRequest(
                    webhook=messages_pb2.Webhook(name="webhooks/kept", disabled=True)
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "update_mask",
        )
        await refused(
            stub.UpdateWebhook(
                webhooks_pb.UpdateWebhookRequest(
                    webhook=messages_pb2.Webhook(name="webhooks/kept", owner="users/evil"),
                    update_mask=field_mask_pb2.FieldMask(paths=["owner"]),
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "update_mask",
        )
        await refused(
            client.update_webhook("kept", url="http://10.0.0.1/"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "webhook.url",
        )
        await refused(
            client.update_webhook("kept", events=["nope"]), grpc.StatusCode.INVALID_ARGUMENT, "webhook.events"
        )
        kept = await client.get_webhook("kept")
        assert (kept.url, list(kept.events), kept.disabled, kept.owner) == (
            "https://example.com/x",
            ["task.failed"],
            False,
            "users/local",
        )


async def test_webhooks_per_owner_are_bounded_and_create_is_idempotent(maos_home: Path) -> None:
    app = await start_app(
        make_settings(maos_home, **{"webhooks.max_per_owner": 3, "webhooks.allow_private": True})
    )
    try:
        async with Client(app.address) as client:
            first, secret = await client.create_webhook(
                "http://127.0.0.1:9/a", events=["*"], request_id="req-1"
            )
            again, secret_again = await client.create_webhook(
                "http://127.0.0.1:9/a", events=["*"], request_id="req-1"
            )
            assert again.name == first.name and secret_again == secret and list(first.events) == []
            await client.create_webhook("http://127.0.0.1:9/b", events=["task.failed"], webhook_id="second")
            await refused(
                client.create_webhook("http://127.0.0.1:9/b", events=["task.failed"], webhook_id="second"),
                grpc.StatusCode.ALREADY_EXISTS,
            )
            await client.create_webhook("http://127.0.0.1:9/c", events=["task.failed"])
            error = await refused(
                client.create_webhook("http://127.0.0.1:9/d", events=["task.failed"]),
                grpc.StatusCode.RESOURCE_EXHAUSTED,
            )
            assert "webhooks.max_per_owner" in error.message
            assert len((await client.list_webhooks()).webhooks) == 3
            page = await client.list_webhooks(page_size=2)
            rest = await client.list_webhooks(page_size=2, page_token=page.next_page_token)
            assert len(page.webhooks) == 2 and len(rest.webhooks) == 1 and not rest.next_page_token
            await client.delete_webhook("second")
            assert len((await client.list_webhooks()).webhooks) == 2
            await refused(client.delete_webhook("second"), grpc.StatusCode.NOT_FOUND)
    finally:
        await app.stop(grace=1.0)


async def test_what_a_webhook_receives_follows_its_owners_current_permissions(
    secured_hooks: App, receiver: Receiver
) -> None:
    app = secured_hooks
    root_key = await user_key(app, "root@example.com", "admin")
    bob_key = await user_key(app, "bob@example.com", "developer")

    async def logged_tasks(hook_id: str) -> list[str]:
        records = await app.storage.call(app.storage.backend.list_deliveries, hook_id)
        return [f"{d.event} {d.task_id}" for d in records]

    async with (
        Client(app.address, token=root_key) as root,
        Client(app.address, token=bob_key) as bob,
        Client(app.address, token=await admin_key(app)) as admin,
    ):
        hook, _ = await root.create_webhook(receiver.url, events=["task.submitted", "task.cancelled"])
        hook_id = hook.name.removeprefix("webhooks/")
        first = (await bob.submit_task(description="seen: root holds task:view-all")).name[6:]
        await admin.update_user("root", roles=["developer"])  # root loses task:view-all
        second = (await bob.submit_task(description="not seen any more")).name[6:]
        own = (await root.submit_task(description="root's own")).name[6:]
        logged = sorted(await logged_tasks(hook_id))
        assert logged == sorted([f"task.submitted {first}", f"task.submitted {own}"])
        await admin.update_user("root", disabled=True)  # a disabled owner's webhooks receive nothing
        await admin.cancel_task(own)
        assert f"task.cancelled {own}" not in await logged_tasks(hook_id)
        await wait_for(lambda: len(receiver.snapshot()) >= 2, 15, message="the two deliveries")
    assert {r.event["data"]["task_id"] for r in receiver.snapshot()} == {first, own}
    assert second not in {r.event["data"]["task_id"] for r in receiver.snapshot()}
