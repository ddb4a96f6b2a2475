"""Agent join tokens end to end on a control plane with ``security.auth: required``.

The RPCs (create, list, revoke) with good and bad input; the exchange of a
token for a per-agent credential at Register, by real ``maos-agent`` processes
and by raw Connect streams; every refused token gets its status and reason and
changes nothing (use count, agents, keys); the credential is bound to its agent
and can do nothing but connect.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from typing import Any

import grpc
import pytest

from agent_sdk.builtin import EchoAgent
from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError, from_rpc_error
from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import agent_gateway_pb2_grpc as gw_grpc
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.worker import Worker
from controlplane.access import join_tokens
from controlplane.access.join_tokens import JoinTokenRecord
from controlplane.access.manager import JOINED_AGENTS_USER
from controlplane.app import App
from tests.controlplane.access.test_access import fails, user_key
from tests.harness.server import admin_key, make_settings, start_app, wait_for

TOKEN_FORMAT = re.compile(r"[a-z0-9]{6}\.[a-z0-9]{16}")
CONNECT_TIMEOUT = 10.0


@pytest.fixture
async def admin(secured: App) -> Any:
    """An admin client of ``secured``."""
    async with Client(secured.address, token=await admin_key(secured)) as client:
        yield client


def register(agent_type: str = "echo", join_token: str = "", **fields: Any) -> gw.Register:
    """A valid Register (unless ``fields`` say otherwise)."""
    return gw.Register(
        **{
            "agent_type": agent_type,
            "max_concurrency": 1,
            "language": "python",
            "join_token": join_token,
            **fields,
        }
    )


class Stream:
    """A raw AgentGateway.Connect stream: what a first Register gets back."""

    def __init__(self, address: str, bearer: str | None = None):
        self.channel = grpc.aio.insecure_channel(address)
        metadata = (("authorization", f"Bearer {bearer}"),) if bearer else None
        self.call = gw_grpc.AgentGatewayStub(self.channel).Connect(metadata=metadata, timeout=CONNECT_TIMEOUT)

    async def first(self, message: gw.ConnectRequest | None) -> gw.Registered:
        """Send ``message`` (None: half-close at once); the Registered, or MaosRpcError."""
        try:
            await (self.call.write(message) if message is not None else self.call.done_writing())
            response = await self.call.read()
            if response is grpc.aio.EOF:
                raise AssertionError(f"the stream ended with {await self.call.code()} and no Registered")
            return response.registered
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None

    async def status(self) -> None:
        """Wait for the end of a stream the server refuses without reading (MaosRpcError).

        Writing to such a stream races with its refusal: grpc aio clients then report INTERNAL
        instead of the server's status (grpc/grpc#36066).
        """
        try:
            response = await self.call.read()
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None
        raise AssertionError(f"the stream was not refused: {response}")

    async def close(self) -> None:
        """Cancel the stream and close the channel."""
        self.call.cancel()
        await self.channel.close()


async def join(app: App, reg: gw.Register, bearer: str | None = None) -> tuple[gw.Registered, Stream]:
    """Register on a new stream that stays open; (Registered, the stream)."""
    stream = Stream(app.address, bearer)
    try:
        return await stream.first(gw.ConnectRequest(register=reg)), stream
    except BaseException:
        await stream.close()
        raise


async def refused(
    app: App, message: gw.ConnectRequest | None, code: grpc.StatusCode, reason: str, bearer: str | None = None
) -> MaosRpcError:
    """The first message is refused with ``code``/``reason``."""
    stream = Stream(app.address, bearer)
    try:
        return await fails(stream.first(message), code, reason)
    finally:
        await stream.close()


async def state(app: App) -> tuple[Any, ...]:
    """What a refused join must not change: tokens (and their uses), agents, sessions, keys."""
    tokens = await app.storage.call(app.storage.backend.list_join_tokens)
    stored_keys = await app.storage.call(app.storage.backend.access_list, "api_keys")
    return (
        tokens,
        sorted(app.engine.agents),
        sorted(app.engine.sessions),
        sorted(k["id"] for k in stored_keys),
        sorted(app.access.api_keys),
    )


async def uses(app: App, name: str) -> int:
    """The stored use count of a token."""
    record = await app.storage.call(app.storage.backend.get_join_token, name.removeprefix("joinTokens/"))
    assert record is not None
    return record.uses


async def connect_audit(admin: Client) -> list[Any]:
    """Audit records of AgentGateway.Connect, newest first."""
    return await admin.list_audit_records(action="AgentGateway/Connect")


# --- the RPCs -----------------------------------------------------------------------------------------


async def test_create_list_revoke(secured: App, admin: Client) -> None:
    created = await admin.create_join_token(["researcher", "coder", "researcher"], max_uses=3, ttl=3600)
    token, record = created.token, created.join_token
    assert TOKEN_FORMAT.fullmatch(token), token
    assert record.name == f"joinTokens/{token.split('.')[0]}"
    assert list(record.agent_types) == ["researcher", "coder"]  # duplicates dropped
    assert (record.max_uses, record.uses) == (3, 0)
    assert record.expire_time.seconds - record.create_time.seconds in (3599, 3600)
    assert not record.HasField("revoke_time")

    default = (await admin.create_join_token()).join_token
    assert list(default.agent_types) == [] and default.max_uses == 0
    assert default.expire_time.seconds - default.create_time.seconds in (86399, 86400)  # 24 h

    listed = await admin.list_join_tokens()
    assert [t.name for t in listed] == [record.name, default.name]
    secret = token.split(".")[1]
    assert secret not in str(listed)
    stored = await secured.storage.call(secured.storage.backend.get_join_token, token.split(".")[0])
    assert stored is not None and stored.digest == join_tokens.digest(secret) and secret not in repr(stored)

    revoked = await admin.revoke_join_token(record.name)
    assert revoked.HasField("revoke_time") and revoked.uses == 0
    again = await admin.revoke_join_token(token.split(".")[0])  # a bare id works too; idempotent
    assert again.revoke_time == revoked.revoke_time
    listed = {t.name: t for t in await admin.list_join_tokens()}
    assert listed[record.name].HasField("revoke_time") and not listed[default.name].HasField("revoke_time")

    audited = {
        (r.method.rsplit("/", 1)[1], r.principal, r.status_code) for r in await admin.list_audit_records()
    }
    assert {("CreateJoinToken", "users/admin", "OK"), ("RevokeJoinToken", "users/admin", "OK")} <= audited


async def test_ttl_zero_means_the_default(secured: App, admin: Client) -> None:
    """As for CreateApiKey: an unset and a zero ttl both mean the default lifetime, 24 h."""
    from agent_sdk.proto.maos.v1 import access_service_pb2 as access_pb

    request = access_pb.CreateJoinTokenRequest()
    request.ttl.FromSeconds(0)
    assert request.HasField("ttl")
    for made in (await admin.access.CreateJoinToken(request), await admin.create_join_token(ttl=0)):
        record = made.join_token
        assert record.expire_time.seconds - record.create_time.seconds in (86399, 86400)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"ttl": -5}, "ttl"),
        ({"ttl": 30 * 86400 + 1}, "ttl"),
        ({"ttl": 2.0**40}, "ttl"),
        ({"agent_types": [""]}, "join_token.agent_types[0]"),
        ({"agent_types": ["coder", "1st"]}, "join_token.agent_types[1]"),
        ({"agent_types": ["has space"]}, "join_token.agent_types[0]"),
        ({"agent_types": ["x" * 64]}, "join_token.agent_types[0]"),
        ({"agent_types": ["a,b"]}, "join_token.agent_types[0]"),
        ({"agent_types": [f"t{i}" for i in range(65)]}, "join_token.agent_types"),
    ],
)
async def test_bad_create_input_is_invalid_argument_and_creates_nothing(
    secured: App, admin: Client, kwargs: dict[str, Any], field: str
) -> None:
    error = await fails(
        admin.create_join_token(**kwargs), grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_FIELD"
    )
    assert [f for f, _ in error.field_violations] == [field]
    assert await admin.list_join_tokens() == []


async def test_revoke_unknown_or_malformed(secured: App, admin: Client) -> None:
    from agent_sdk.proto.maos.v1 import access_service_pb2 as access_pb

    existing = await admin.create_join_token()
    before = await state(secured)
    # The client sends only the id of a whole token: an unknown id is NOT_FOUND.
    for name in ("joinTokens/abc123", "zzzzzz", "joinTokens/abc123.secret", "abc123.0123456789abcdef"):
        error = await fails(
            admin.revoke_join_token(name), grpc.StatusCode.NOT_FOUND, "ERROR_REASON_JOIN_TOKEN_NOT_FOUND"
        )
        assert "does not exist" in error.message and "secret" not in error.message
    # A name that is no id is INVALID_ARGUMENT, and the message does not repeat it (it may hold a secret).
    secret = existing.token.split(".")[1]
    for name in (
        "",
        "joinTokens/../x",
        "joinTokens/ABCDEF",
        existing.token,
        f"joinTokens/{existing.token}",
        "joinTokens/abc1234",
        "joinTokens/abc123\n",
        f"apiKeys/{existing.token}",
    ):
        error = await fails(
            admin.access.RevokeJoinToken(access_pb.RevokeJoinTokenRequest(name=name)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "ERROR_REASON_INVALID_FIELD",
        )
        assert [f for f, _ in error.field_violations] == ["name"]
        assert secret not in error.message and (not name or name not in error.message)
    assert await state(secured) == before
    assert not (await admin.list_join_tokens())[0].HasField("revoke_time")
    # Nor does the audit log keep it: the resource of a malformed name is "<malformed>".
    records = await admin.list_audit_records(action="RevokeJoinToken", page_size=100)
    assert len(records) == 12 and not any(secret in str(r) for r in records)
    assert {r.resource for r in records} == {"joinTokens/abc123", "joinTokens/zzzzzz", "<malformed>", ""}
    error = await fails(
        admin.access.ListJoinTokens(access_pb.ListJoinTokensRequest(page_size=-1)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "ERROR_REASON_INVALID_FIELD",
    )
    assert [f for f, _ in error.field_violations] == ["page_size"]


async def test_list_pages(secured: App, admin: Client) -> None:
    from agent_sdk.proto.maos.v1 import access_service_pb2 as access_pb

    names = [(await admin.create_join_token()).join_token.name for _ in range(3)]
    first = await admin.access.ListJoinTokens(access_pb.ListJoinTokensRequest(page_size=2))
    second = await admin.access.ListJoinTokens(
        access_pb.ListJoinTokensRequest(page_size=2, page_token=first.next_page_token)
    )
    assert [t.name for t in [*first.join_tokens, *second.join_tokens]] == names
    assert first.next_page_token and not second.next_page_token
    await fails(
        admin.access.ListJoinTokens(access_pb.ListJoinTokensRequest(page_token="x")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "ERROR_REASON_INVALID_PAGE_TOKEN",
    )


async def test_join_token_rpcs_need_agent_join_token_permission(secured: App, admin: Client) -> None:
    existing = (await admin.create_join_token()).join_token
    async with Client(secured.address, token=await user_key(secured, "dev@example.com", "developer")) as dev:
        for call in (dev.create_join_token(), dev.list_join_tokens(), dev.revoke_join_token(existing.name)):
            await fails(call, grpc.StatusCode.PERMISSION_DENIED, "ERROR_REASON_PERMISSION_DENIED")
    async with Client(secured.address) as anonymous:
        await fails(
            anonymous.create_join_token(), grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_UNAUTHENTICATED"
        )
    assert [t.name for t in await admin.list_join_tokens()] == [existing.name]
    assert not (await admin.list_join_tokens())[0].HasField("revoke_time")

    await admin.create_role("joiner", ["agent:join-token"])
    async with Client(secured.address, token=await user_key(secured, "ops@example.com", "joiner")) as ops:
        made = await ops.create_join_token(["echo"], max_uses=1)
        assert made.join_token.name in [t.name for t in await ops.list_join_tokens()]
        await ops.revoke_join_token(made.join_token.name)
    denied = await admin.list_audit_records(principal="users/dev")
    assert {r.method.rsplit("/", 1)[1] for r in denied} == {
        "CreateJoinToken",
        "ListJoinTokens",
        "RevokeJoinToken",
    }


async def test_tokens_survive_a_restart(maos_home: Any) -> None:
    settings = make_settings(maos_home, **{"security.auth": "required"})
    app = await start_app(settings)
    try:
        async with Client(app.address, token=await admin_key(app)) as admin:
            created = await admin.create_join_token(["echo"], max_uses=2)
    finally:
        await app.stop(grace=1.0)
    app = await start_app(settings)
    try:
        async with Client(app.address, token=await admin_key(app)) as admin:
            [listed] = await admin.list_join_tokens()
            assert listed == created.join_token
        registered, stream = await join(app, register(join_token=created.token))
        await stream.close()
        assert registered.credential and await uses(app, created.join_token.name) == 1
    finally:
        await app.stop(grace=1.0)


# --- joining ---------------------------------------------------------------------------------------


async def test_agent_process_joins_runs_work_and_reconnects_with_its_credential(
    secured: App, admin: Client, agent_processes: Any
) -> None:
    created = await admin.create_join_token(["echo"], max_uses=1)
    process = agent_processes(secured.address, "echo", "--join-token", created.token)
    await wait_for(lambda: len(secured.engine.sessions) == 1, 30, message="the agent to join")
    [agent_id] = secured.engine.sessions
    assert await uses(secured, created.join_token.name) == 1

    task = await admin.submit_task(description="hello from a joined agent", agent_type="echo")
    done = await admin.wait_task(task.name, timeout=20)
    assert done.status == enums.TASK_STATUS_COMPLETED
    assert (await admin.get_results(task.name)).output == "hello from a joined agent"

    # Its credential: one key of users/joined-agents, bound to the agent, used on reconnection.
    [key] = [k for k in await admin.list_api_keys(user=JOINED_AGENTS_USER)]
    assert key.display_name == f"agents/{agent_id}" and list(key.permissions) == ["agent:connect"]
    old = secured.engine.sessions[agent_id]
    old.close()  # the control plane ends the stream: the agent reconnects (the token is used up by now)
    await wait_for(
        lambda: secured.engine.sessions.get(agent_id) not in (None, old), 15, message="the agent to reconnect"
    )
    assert process.process.poll() is None
    assert await uses(secured, created.join_token.name) == 1
    again = await admin.submit_task(description="after reconnecting", agent_type="echo")
    assert (await admin.wait_task(again.name, timeout=20)).status == enums.TASK_STATUS_COMPLETED

    [joined] = [r for r in await connect_audit(admin) if r.decision == enums.AUDIT_DECISION_ALLOW]
    assert (joined.principal, joined.resource, joined.status_code) == (
        f"agents/{agent_id}",
        created.join_token.name,
        "OK",
    )
    assert joined.key_id == key.name.removeprefix("apiKeys/")


async def test_join_token_from_the_environment(
    secured: App, admin: Client, agent_processes: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await admin.create_join_token(["echo"], max_uses=1)
    monkeypatch.setenv("MAOS_JOIN_TOKEN", created.token)
    monkeypatch.delenv("MAOS_TOKEN", raising=False)
    agent_processes(secured.address, "echo")
    await wait_for(lambda: len(secured.engine.sessions) == 1, 30, message="the agent to join")
    assert await uses(secured, created.join_token.name) == 1


async def test_a_second_agent_with_a_single_use_token_exits(
    secured: App, admin: Client, agent_processes: Any
) -> None:
    created = await admin.create_join_token(max_uses=1)
    _, stream = await join(secured, register(join_token=created.token))
    await stream.close()
    before = await state(secured)
    second = agent_processes(secured.address, "echo", "--join-token", created.token)
    await wait_for(lambda: second.process.poll() is not None, 30, message="the second agent to give up")
    assert second.process.returncode == 1
    assert await state(secured) == before


async def test_concurrent_joins_share_the_uses_exactly(secured: App, admin: Client) -> None:
    created = await admin.create_join_token(max_uses=2)
    outcomes = await asyncio.gather(
        *(join(secured, register(join_token=created.token)) for _ in range(8)), return_exceptions=True
    )
    joined = [o for o in outcomes if not isinstance(o, BaseException)]
    denied = [o for o in outcomes if isinstance(o, MaosRpcError)]
    for _, stream in joined:
        await stream.close()
    assert len(joined) == 2 and len(denied) == 6, outcomes
    assert all(e.code == grpc.StatusCode.PERMISSION_DENIED for e in denied)
    assert await uses(secured, created.join_token.name) == 2
    assert len({r.agent for r, _ in joined}) == 2 and len(secured.engine.agents) == 2


async def expired_token(app: App) -> str:
    """A token that expired a minute ago (stored directly, as time would have made it)."""
    now = time.time()
    await app.storage.call(
        app.storage.backend.put_join_token,
        JoinTokenRecord(
            id="old000",
            digest=join_tokens.digest("s" * 16),
            agent_types=(),
            max_uses=0,
            uses=0,
            create_time=now - 3600,
            expire_time=now - 60,
        ),
    )
    return "old000." + "s" * 16


async def test_refused_tokens_get_their_status_and_change_nothing(secured: App, admin: Client) -> None:
    researcher_only = await admin.create_join_token(["researcher"], max_uses=5)
    revoked = await admin.create_join_token()
    await admin.revoke_join_token(revoked.join_token.name)
    used_up = await admin.create_join_token(max_uses=1)
    _, stream = await join(secured, register(join_token=used_up.token))
    await stream.close()
    expired = await expired_token(secured)
    good = await admin.create_join_token(max_uses=1)
    unknown_secret = good.token.split(".")[0] + "." + "0" * 16

    U, P = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
    cases = [
        (expired, U, "ERROR_REASON_CREDENTIAL_EXPIRED"),
        (revoked.token, U, "ERROR_REASON_CREDENTIAL_REVOKED"),
        (used_up.token, P, "ERROR_REASON_PERMISSION_DENIED"),
        (researcher_only.token, P, "ERROR_REASON_PERMISSION_DENIED"),  # registering as echo
        (unknown_secret, U, "ERROR_REASON_JOIN_TOKEN_NOT_FOUND"),  # right id, wrong secret
        ("zzzzzz." + "a" * 16, U, "ERROR_REASON_JOIN_TOKEN_NOT_FOUND"),
        ("not-a-token", U, "ERROR_REASON_UNAUTHENTICATED"),
        (good.token.upper(), U, "ERROR_REASON_UNAUTHENTICATED"),
        (good.token + "x", U, "ERROR_REASON_UNAUTHENTICATED"),
        (good.token.replace(".", ":"), U, "ERROR_REASON_UNAUTHENTICATED"),
        (" " + good.token, U, "ERROR_REASON_UNAUTHENTICATED"),
    ]
    before = await state(secured)
    for token, code, reason in cases:
        error = await refused(secured, gw.ConnectRequest(register=register(join_token=token)), code, reason)
        if reason == "ERROR_REASON_PERMISSION_DENIED":
            assert error.metadata.get("join_token", "").startswith("joinTokens/"), error
        assert await state(secured) == before, token
    assert (
        await uses(secured, good.join_token.name) == 0 and await uses(secured, used_up.join_token.name) == 1
    )

    denials = [r for r in await connect_audit(admin) if r.decision == enums.AUDIT_DECISION_DENY]
    assert len(denials) == len(cases)
    by_resource = {r.resource: r.status_code for r in denials}
    assert by_resource[revoked.join_token.name] == "UNAUTHENTICATED"
    assert by_resource[researcher_only.join_token.name] == "PERMISSION_DENIED"
    assert all(r.principal == "" for r in denials)


async def test_connect_without_credentials_is_refused(secured: App) -> None:
    before = await state(secured)
    U, reason = grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_UNAUTHENTICATED"
    await refused(secured, gw.ConnectRequest(register=register()), U, reason)  # no token, no bearer
    await refused(secured, gw.ConnectRequest(heartbeat=gw.Heartbeat()), U, reason)  # not even a Register
    await refused(secured, None, U, reason)  # nothing at all
    await refused(secured, gw.ConnectRequest(register=register(max_concurrency=0)), U, reason)  # invalid too
    assert await state(secured) == before


async def test_a_silent_stream_without_credentials_times_out(
    secured: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controlplane.api.admission import AgentAdmission

    monkeypatch.setattr(AgentAdmission, "register_timeout", 0.2)
    stream = Stream(secured.address)
    try:
        await fails(stream.status(), grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_UNAUTHENTICATED")
    finally:
        await stream.close()


async def test_a_bearer_decides_and_its_join_token_is_ignored(secured: App, admin: Client) -> None:
    created = await admin.create_join_token(max_uses=1)
    before = await state(secured)
    stream = Stream(secured.address, bearer="maos_key_garbage")  # refused on its metadata alone
    try:
        await fails(stream.status(), grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_UNAUTHENTICATED")
    finally:
        await stream.close()
    assert await state(secured) == before
    # An API key holding agent:connect registers as usual; the token is not counted, no credential issued.
    agent_key = (await admin.create_api_key("agents", ["agent:connect"])).secret
    registered, stream = await join(secured, register(join_token=created.token), bearer=agent_key)
    await stream.close()
    assert registered.agent and registered.credential == ""
    assert await uses(secured, created.join_token.name) == 0


async def test_invalid_register_with_a_valid_token_uses_nothing(secured: App, admin: Client) -> None:
    created = await admin.create_join_token(max_uses=1)
    before = await state(secured)
    error = await refused(
        secured,
        gw.ConnectRequest(register=register(join_token=created.token, max_concurrency=0)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "ERROR_REASON_INVALID_FIELD",
    )
    assert [f for f, _ in error.field_violations] == ["register.max_concurrency"]
    assert await state(secured) == before


# --- the credential --------------------------------------------------------------------------------


async def test_the_credential_can_only_connect(secured: App, admin: Client) -> None:
    created = await admin.create_join_token(["echo"])
    registered, stream = await join(secured, register(join_token=created.token))
    try:
        async with Client(secured.address, token=registered.credential) as agent:
            caller = await agent.get_caller()
            assert caller.principal == registered.agent and list(caller.permissions) == ["agent:connect"]
            assert caller.roles == ["roles/agent"]
            for call in (
                agent.submit_task(description="x"),
                agent.list_tasks(),
                agent.list_agents(),
                agent.create_join_token(),
                agent.create_api_key("more"),
                agent.list_audit_records(),
            ):
                await fails(call, grpc.StatusCode.PERMISSION_DENIED, "ERROR_REASON_PERMISSION_DENIED")
        assert (await admin.list_tasks()).tasks == []
        audited = await admin.list_audit_records(principal=registered.agent)
        denied = [r for r in audited if r.decision == enums.AUDIT_DECISION_DENY]
        assert {r.method.rsplit("/", 1)[1] for r in denied} == {
            "SubmitTask",
            "ListTasks",
            "ListAgents",
            "CreateJoinToken",
            "CreateApiKey",
            "ListAuditRecords",
        }
        assert {r.status_code for r in denied} == {"PERMISSION_DENIED"}
    finally:
        await stream.close()


async def test_the_credential_is_bound_to_its_agent_and_type(secured: App, admin: Client) -> None:
    created = await admin.create_join_token()
    registered, first = await join(secured, register(join_token=created.token))
    await first.close()
    other, stream = await join(secured, register(join_token=created.token))
    await stream.close()
    before = await state(secured)
    credential = registered.credential
    P, reason = grpc.StatusCode.PERMISSION_DENIED, "ERROR_REASON_PERMISSION_DENIED"
    await refused(secured, gw.ConnectRequest(register=register("researcher")), P, reason, bearer=credential)
    hijack = register(resume=gw.ResumeSession(agent=other.agent, session_id=other.session_id))
    await refused(secured, gw.ConnectRequest(register=hijack), P, reason, bearer=credential)
    assert await state(secured) == before

    # Resuming its own session, or starting a new one without resume: the same agent either way.
    resumed, stream = await join(
        secured,
        register(resume=gw.ResumeSession(agent=registered.agent, session_id=registered.session_id)),
        bearer=credential,
    )
    assert resumed.agent == registered.agent and resumed.credential == ""
    fresh, newer = await join(secured, register(), bearer=credential)
    assert fresh.agent == registered.agent and fresh.session_id != resumed.session_id
    assert (
        secured.engine.sessions[registered.agent.removeprefix("agents/")].info.session_id == fresh.session_id
    )
    await stream.close()
    await newer.close()
    assert await uses(secured, created.join_token.name) == 2


async def run_worker(worker: Worker) -> asyncio.Task[None]:
    """Start ``worker.run()``; returns once it registered."""
    runner = asyncio.get_running_loop().create_task(worker.run())
    registered = asyncio.get_running_loop().create_task(worker.registered.wait())
    await asyncio.wait([runner, registered], timeout=15, return_when=asyncio.FIRST_COMPLETED)
    if runner.done():
        runner.result()
    assert worker.registered.is_set(), "the worker did not register"
    return runner


async def test_revoking_the_token_keeps_joined_agents_revoking_the_credential_stops_them(
    secured: App, admin: Client
) -> None:
    created = await admin.create_join_token(["echo"])
    worker = Worker(EchoAgent(), secured.address, join_token=created.token, max_backoff=0.2)
    runner = await run_worker(worker)
    try:
        agent_id = worker.agent_name.removeprefix("agents/")
        assert worker.credential and worker.credential != created.token

        await admin.revoke_join_token(created.join_token.name)
        session = secured.engine.sessions[agent_id]
        session.close()  # reconnects with its credential: the revoked token does not matter
        await wait_for(
            lambda: secured.engine.sessions.get(agent_id) not in (None, session),
            15,
            message="the agent to reconnect",
        )
        task = await admin.submit_task(description="still here", agent_type="echo")
        assert (await admin.wait_task(task.name, timeout=20)).status == enums.TASK_STATUS_COMPLETED

        [key] = await admin.list_api_keys(user=JOINED_AGENTS_USER)
        await admin.revoke_api_key(key.name)
        assert agent_id in secured.engine.sessions  # the open stream is not cut
        secured.engine.sessions[agent_id].close()  # its next connection is refused
        with pytest.raises(MaosRpcError) as info:  # Worker.run() raises the SDK's typed errors
            await asyncio.wait_for(runner, 15)
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert info.value.reason == "ERROR_REASON_CREDENTIAL_REVOKED"
        assert agent_id not in secured.engine.sessions
    finally:
        await worker.shutdown(grace=0.5)
        if not runner.done():
            runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_joining_is_off_when_access_control_is_off(control_plane: App) -> None:
    """Without access control anyone connects; a join token is neither needed nor counted."""
    registered, stream = await join(control_plane, register(join_token="whatever.notchecked"))
    await stream.close()
    assert registered.agent and registered.credential == ""


# --- nothing else is reachable without credentials -----------------------------------------------------


async def test_no_other_method_is_reachable_without_credentials(secured: App) -> None:
    from agent_sdk.proto.maos.v1 import (
        access_service_pb2,
        agent_service_pb2,
        audit_service_pb2,
        batch_service_pb2,
        checkpoint_service_pb2,
        system_service_pb2,
        task_service_pb2,
        template_service_pb2,
        webhook_service_pb2,
    )

    served = {
        "TaskService",
        "AgentService",
        "SystemService",
        "CheckpointService",
        "AccessService",
        "AuditService",
        "WebhookService",
        "BatchService",
        "TemplateService",
    }
    modules = (
        access_service_pb2,
        agent_service_pb2,
        audit_service_pb2,
        batch_service_pb2,
        checkpoint_service_pb2,
        system_service_pb2,
        task_service_pb2,
        template_service_pb2,
        webhook_service_pb2,
    )
    methods = [
        (service.name, f"/{service.full_name}/{m.name}")
        for module in modules
        for service in module.DESCRIPTOR.services_by_name.values()
        for m in service.methods
    ]
    assert len(methods) > 50
    async with grpc.aio.insecure_channel(secured.address) as channel:
        for service, method in methods:
            try:  # any arity: the interceptor refuses before a message is read
                async for _ in channel.unary_stream(method)(b"", timeout=5):
                    pass
                code = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
            if service in served:  # after 30 failures the address is told to slow down instead
                assert code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED), method
            else:
                assert code == grpc.StatusCode.UNIMPLEMENTED, method


# --- ids ---------------------------------------------------------------------------------------------


async def test_a_clash_of_token_ids_is_aborted_and_stores_nothing(
    secured: App, admin: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three random ids in a row taken: ABORTED (retryable), not ALREADY_EXISTS; nothing is stored."""
    first = await admin.create_join_token()
    taken = first.join_token.name.removeprefix("joinTokens/")
    monkeypatch.setattr(join_tokens, "_random", lambda length: taken if length == 6 else "s" * length)
    before = await state(secured)
    error = await fails(admin.create_join_token(), grpc.StatusCode.ABORTED, "ERROR_REASON_ALREADY_EXISTS")
    assert "try again" in error.message
    assert await state(secured) == before


def test_agent_ids_have_64_random_bits() -> None:
    from controlplane.domain.model import new_agent_id

    ids = {new_agent_id("echo") for _ in range(1000)}
    assert len(ids) == 1000 and all(re.fullmatch(r"echo-[0-9a-f]{16}", i) for i in ids)


async def test_a_joining_agent_never_gets_an_id_in_use(
    secured: App, admin: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connected, stored or credential-bound ids are skipped; when every pick is taken the join is ABORTED."""
    created = await admin.create_join_token()
    connected, stream = await join(secured, register(join_token=created.token))
    await stream.close()
    connected_id = connected.agent.removeprefix("agents/")
    info = secured.engine.agents[connected_id]
    in_memory = "echo-00000000000000aa"  # registered, not committed yet
    secured.engine.agents[in_memory] = dataclasses.replace(info, id=in_memory)
    stored = "echo-00000000000000bb"  # in the database only (an agent long gone)
    secured.engine.committer.agent(dataclasses.replace(info, id=stored))
    await secured.engine.committer.durable()
    bound = "echo-00000000000000cc"  # a credential's agent
    await secured.access.issue_agent_credential(bound, "echo", created.join_token.name)
    picks = iter([connected_id, in_memory, stored, bound, "echo-00000000000000dd"])
    monkeypatch.setattr(join_tokens, "new_agent_id", lambda agent_type: next(picks))
    try:
        before = await state(secured)
        await fails(
            join(secured, register(join_token=created.token)),
            grpc.StatusCode.ABORTED,
            "ERROR_REASON_ALREADY_EXISTS",
        )  # three picks, all taken
        assert await state(secured) == before and await uses(secured, created.join_token.name) == 1

        registered, stream = await join(secured, register(join_token=created.token))
        await stream.close()
        assert registered.agent == "agents/echo-00000000000000dd"
        assert await uses(secured, created.join_token.name) == 2
    finally:
        secured.engine.agents.pop(in_memory, None)


# --- renewal -------------------------------------------------------------------------------------------


async def test_a_credential_near_its_expiry_is_renewed_at_register_and_the_worker_adopts_it(
    secured: App, admin: Client
) -> None:
    from controlplane.access import keys
    from controlplane.access.manager import AGENT_CREDENTIAL_TTL

    created = await admin.create_join_token(["echo"], max_uses=1)
    worker = Worker(EchoAgent(), secured.address, join_token=created.token, max_backoff=0.2)
    runner = await run_worker(worker)
    try:
        agent_id = worker.agent_name.removeprefix("agents/")
        first = worker.credential
        key_id = keys.parse(first)
        assert key_id is not None
        # Reconnecting with more than a third of its life left: no renewal.
        session = secured.engine.sessions[agent_id]
        session.close()
        await wait_for(
            lambda: secured.engine.sessions.get(agent_id) not in (None, session),
            15,
            message="the agent to reconnect",
        )
        assert worker.credential == first
        # A quarter of its life left (as after 67 days): the next Register renews it.
        soon = time.time() + AGENT_CREDENTIAL_TTL / 4
        secured.access.api_keys[key_id]["expire_time"] = soon
        session = secured.engine.sessions[agent_id]
        session_id = worker.session_id
        session.close()
        await wait_for(
            lambda: (
                worker.credential != first and secured.engine.sessions.get(agent_id) not in (None, session)
            ),
            15,
            message="the agent to reconnect with a renewed credential",
        )
        renewed = worker.credential
        assert keys.parse(renewed) == key_id  # the same key (its listing, its revocation), a new secret
        record = secured.access.api_keys[key_id]
        assert record["digest"] == keys.digest(renewed) and record["old_digest"] == keys.digest(first)
        assert record["expire_time"] - time.time() > AGENT_CREDENTIAL_TTL - 60
        assert record["old_expire_time"] == soon  # the old secret works until its own expiry, no longer
        stored = {
            r["id"]: r for r in await secured.storage.call(secured.storage.backend.access_list, "api_keys")
        }
        assert stored[key_id]["digest"] == keys.digest(renewed) and renewed not in str(stored)
        assert worker.session_id != session_id and worker.agent_name == f"agents/{agent_id}"
        for credential in (first, renewed):
            async with Client(secured.address, token=credential) as agent:
                assert (await agent.get_caller()).principal == f"agents/{agent_id}"
        # The worker reconnects with the renewed one, which is not renewed again.
        session = secured.engine.sessions[agent_id]
        session.close()
        await wait_for(
            lambda: secured.engine.sessions.get(agent_id) not in (None, session),
            15,
            message="the agent to reconnect",
        )
        assert worker.credential == renewed
        renewals = [r for r in await connect_audit(admin) if r.resource == f"apiKeys/{key_id}"]
        assert len(renewals) == 1 and renewals[0].principal == f"agents/{agent_id}"
        assert await uses(secured, created.join_token.name) == 1
    finally:
        await worker.shutdown(grace=0.5)
        await asyncio.wait_for(runner, 15)


async def test_an_agent_that_missed_its_renewal_connects_with_the_old_secret_and_gets_another(
    secured: App, admin: Client
) -> None:
    from controlplane.access import keys
    from controlplane.access.manager import AGENT_CREDENTIAL_TTL

    created = await admin.create_join_token()
    joined, stream = await join(secured, register(join_token=created.token))
    await stream.close()
    key_id = keys.parse(joined.credential)
    assert key_id is not None
    soon = time.time() + AGENT_CREDENTIAL_TTL / 4
    secured.access.api_keys[key_id]["expire_time"] = soon
    lost, stream = await join(secured, register(), bearer=joined.credential)  # this Registered never arrives
    await stream.close()
    assert lost.credential and lost.agent == joined.agent
    again, stream = await join(secured, register(), bearer=joined.credential)
    await stream.close()
    assert again.credential not in ("", lost.credential) and again.agent == joined.agent
    record = secured.access.api_keys[key_id]
    assert record["digest"] == keys.digest(again.credential)
    assert record["old_digest"] == keys.digest(joined.credential)
    assert record["old_expire_time"] == soon
    async with Client(secured.address, token=lost.credential) as superseded:
        await fails(superseded.get_caller(), grpc.StatusCode.UNAUTHENTICATED, "ERROR_REASON_UNAUTHENTICATED")
