"""What each principal sees and does of other principals' objects, through a real secured server.

Two developers (``dev-a``, ``dev-b``), a viewer, an admin, narrowed keys and
join-token agents: events, log lines, checkpoint contents, agents and keys
of others stay out of reach (docs/security.md), and every refusal is
audited as DENY.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from agent_sdk.client import Client
from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from controlplane.app import App
from controlplane.logbook import LogFilter
from tests.controlplane.access.test_access import fails, user_key
from tests.controlplane.access.test_join_tokens import Stream, join, refused, register, uses
from tests.harness.messages_api import MessagesAPIServer
from tests.harness.server import admin_key, make_settings, start_app, stored_audit, wait_for

P, DENIED = grpc.StatusCode.PERMISSION_DENIED, "ERROR_REASON_PERMISSION_DENIED"
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
async def admin(secured: App) -> AsyncIterator[Client]:
    """An admin client of ``secured``."""
    async with Client(secured.address, token=await admin_key(secured)) as client:
        yield client


@pytest.fixture
async def devs(secured: App, admin: Client) -> AsyncIterator[tuple[Client, Client]]:
    """Clients of two developers, ``users/dev-a`` and ``users/dev-b``; dev-a may also connect agents."""
    await admin.create_role("agent-host", ["agent:connect"])
    a = await user_key(secured, "dev-a@example.com", "developer", "agent-host")
    b = await user_key(secured, "dev-b@example.com", "developer")
    async with Client(secured.address, token=a) as dev_a, Client(secured.address, token=b) as dev_b:
        dev_a.secret, dev_b.secret = a, b  # type: ignore[attr-defined]
        yield dev_a, dev_b


class Events:
    """A WatchEvents stream read in the background into ``seen``."""

    def __init__(self, client: Client):
        self.seen: list[msgs.Event] = []
        self.reader = asyncio.get_running_loop().create_task(self._read(client))

    async def _read(self, client: Client) -> None:
        async for event in client.watch_events(timeout=30):
            self.seen.append(event)

    def tasks(self) -> set[str]:
        """The tasks of the events seen so far."""
        return {e.task for e in self.seen}

    async def close(self) -> None:
        """Stop reading."""
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


# --- 1. WatchEvents -----------------------------------------------------------------------------------


async def test_watch_events_shows_only_the_callers_tasks_without_view_all(
    secured: App, admin: Client, devs: tuple[Client, Client]
) -> None:
    dev_a, dev_b = devs
    mine_events, all_events = Events(dev_a), Events(admin)
    try:
        await wait_for(lambda: len(secured.engine.event_listeners) == 2, message="both watchers")
        theirs = await dev_b.submit_task(description="dev-b's secret plans")
        mine = await dev_a.submit_task(description="dev-a's own work")
        await dev_b.cancel_task(theirs.name)
        await dev_a.cancel_task(mine.name)
        # Events arrive in order: once dev-a's cancellation is in, dev-b's events would have been too.
        for events in (mine_events, all_events):
            await wait_for(
                lambda events=events: any(
                    e.task == mine.name and e.to_status == "TASK_STATUS_CANCELLED" for e in events.seen
                ),
                message="dev-a's cancellation",
            )
        assert mine_events.tasks() == {mine.name}, mine_events.seen
        assert all_events.tasks() == {mine.name, theirs.name}  # the admin (task:view-all) sees both
    finally:
        await mine_events.close()
        await all_events.close()


# --- 2. ListLogs / TailLogs -----------------------------------------------------------------------------


async def _logs(client: Client, **filters: Any) -> list[msgs.LogRecord]:
    response = await client.system.ListLogs(system_pb.ListLogsRequest(page_size=1000, **filters))
    return list(response.records)


async def _agent_logs(stream: Stream, *records: msgs.LogRecord) -> None:
    await stream.call.write(gw.ConnectRequest(logs=gw.AgentLogs(records=list(records))))


async def test_log_lines_of_other_principals_tasks_and_agents_are_hidden(
    secured: App, admin: Client, devs: tuple[Client, Client]
) -> None:
    dev_a, dev_b = devs
    theirs = await dev_b.submit_task(description="dev-b's task", agent_type="reporter")
    mine = await dev_a.submit_task(description="dev-a's task", agent_type="reporter")
    elsewhere = await dev_b.submit_task(description="dev-b's other task", agent_type="nobody")
    # An agent of the admin's runs both tasks and forwards lines about them and one about itself.
    registered, stream = await join(
        secured, register("reporter", max_concurrency=2), bearer=await admin_key(secured)
    )
    agent_id = registered.agent.removeprefix("agents/")
    try:
        await wait_for(
            lambda: all(
                secured.engine.worked_on(agent_id, t.name.removeprefix("tasks/")) for t in (theirs, mine)
            ),
            message="both tasks assigned to the agent",
        )
        # A line about a task it never ran is kept as its own line, not the task's (no forged task logs).
        await _agent_logs(stream, msgs.LogRecord(task=elsewhere.name, message="forged for dev-b", level=2))
        await wait_for(lambda: secured.logbook.query(LogFilter(contains="forged")), message="the forged line")
        assert await _logs(dev_b, task=elsewhere.name) == [] and await _logs(dev_b, contains="forged") == []
        assert [r.agent for r in await _logs(admin, contains="forged")] == [registered.agent]
        tail = dev_a.system.TailLogs(system_pb.TailLogsRequest(tail=1000), timeout=20)
        await _agent_logs(
            stream,
            msgs.LogRecord(task=theirs.name, message="dev-b SECRET-TOKEN-123", level=2),
            msgs.LogRecord(message="agent-only SECRET-TOKEN-456", level=2),
            msgs.LogRecord(task=mine.name, message="dev-a progress", level=2),
        )
        await wait_for(
            lambda: secured.logbook.query(LogFilter(contains="dev-a progress")), message="the forwarded lines"
        )

        # dev-a: its own task's line, never dev-b's (by task= or contains=) nor the admin agent's own.
        assert [r.message for r in await _logs(dev_a, contains="SECRET-TOKEN")] == []
        assert await _logs(dev_a, task=theirs.name) == []
        assert [r.message for r in await _logs(dev_a, task=mine.name)] == ["dev-a progress"]
        seen = []
        async for response in tail:  # the backlog, then live lines: dev-a's line last
            seen.append(response.record.message)
            if response.record.message == "dev-a progress":
                break
        assert not any("SECRET" in m for m in seen), seen
        await tail.aclose()
        await wait_for(lambda: not secured.logbook.subscribers, message="the tail to end")
        # dev-b sees its own line; the admin (task:view-all, agent:manage-all) sees all three.
        assert [r.message for r in await _logs(dev_b, contains="SECRET-TOKEN")] == ["dev-b SECRET-TOKEN-123"]
        assert {r.message for r in await _logs(admin, contains="SECRET-TOKEN")} == {
            "dev-b SECRET-TOKEN-123",
            "agent-only SECRET-TOKEN-456",
        }

        # Live: a TailLogs of dev-a opened now never gets dev-b's next line, and gets its own.
        live: list[str] = []

        async def read_live() -> None:
            async for response in dev_a.system.TailLogs(
                system_pb.TailLogsRequest(contains="live"), timeout=20
            ):
                live.append(response.record.message)

        reader = asyncio.get_running_loop().create_task(read_live())
        try:
            await wait_for(lambda: secured.logbook.subscribers, message="the live tail subscribed")
            await _agent_logs(
                stream,
                msgs.LogRecord(task=theirs.name, message="live dev-b", level=2),
                msgs.LogRecord(task=mine.name, message="live dev-a", level=2),
            )
            await wait_for(lambda: live, message="a live line")
            assert live == ["live dev-a"]
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    finally:
        await stream.close()


# --- 3. checkpoints -------------------------------------------------------------------------------------


async def test_checkpoint_contents_need_admin_level_permissions(
    secured: App, admin: Client, devs: tuple[Client, Client]
) -> None:
    dev_a, _ = devs
    await dev_a.submit_task(description="dev-a's private work")
    checkpoint = await admin.create_checkpoint("nightly")
    meta, payload = await admin.export_checkpoint(checkpoint.name)  # the admin may
    assert payload
    viewer_key = await user_key(secured, "viewer@example.com", "viewer")
    async with Client(secured.address, token=viewer_key) as viewer:
        listed = await viewer.list_checkpoints()  # metadata stays readable
        assert [c.name for c in listed.checkpoints] == [checkpoint.name]
        assert (await viewer.get_checkpoint(checkpoint.name)).sha256 == checkpoint.sha256
        for client in (viewer, dev_a):
            error = await fails(client.export_checkpoint(checkpoint.name), P, DENIED)
            assert "checkpoint:export" in error.message
            error = await fails(client.import_checkpoint(meta, payload), P, DENIED)
            assert "checkpoint:import" in error.message
    assert len((await admin.list_checkpoints()).checkpoints) == 1  # nothing was imported
    denials = [
        r
        for r in await admin.list_audit_records(action="Checkpoint")
        if r.decision == enums.AUDIT_DECISION_DENY
    ]
    assert len(denials) == 4


# --- 4. agents ------------------------------------------------------------------------------------------


async def test_acting_on_another_principals_agent_needs_manage_all(
    secured: App, admin: Client, devs: tuple[Client, Client]
) -> None:
    dev_a, dev_b = devs
    _, admins_stream = await join(secured, register("echo"), bearer=await admin_key(secured))
    _, devs_stream = await join(secured, register("echo"), bearer=dev_a.secret)  # type: ignore[attr-defined]
    try:
        by_owner = {
            a.owner: a for a in (await dev_b.list_agents()).agents
        }  # everyone lists every agent, with its owner
        assert set(by_owner) == {"users/admin", "users/dev-a"}
        admins, dev_as = by_owner["users/admin"].name, by_owner["users/dev-a"].name
        assert (await dev_b.get_agent(admins)).owner == "users/admin"

        for client, agent in ((dev_a, admins), (dev_b, admins), (dev_b, dev_as)):
            for call in (
                client.pause_agent(agent),
                client.drain_agent(agent),
                client.resume_agent(agent),
                client.terminate_agent(agent, force=True),
                client.restart_agent(agent, force=True),
            ):
                error = await fails(call, P, DENIED)
                assert "agent:manage-all" in error.message and agent in error.message
        assert {s.status() for s in secured.engine.sessions.values()} == {enums.AGENT_STATUS_IDLE}
        denials = [
            r
            for r in await stored_audit(secured, principal="users/dev-b")
            if r["method"].endswith(
                ("PauseAgent", "DrainAgent", "ResumeAgent", "TerminateAgent", "RestartAgent")
            )
        ]
        assert len(denials) == 10 and {r["decision"] for r in denials} == {"DENY"}

        # Its owner may; so may the admin (agent:manage-all) and a role holding agent:manage-all.
        assert (await dev_a.pause_agent(dev_as)).status == enums.AGENT_STATUS_PAUSED
        assert (await admin.resume_agent(dev_as)).status == enums.AGENT_STATUS_IDLE
        await admin.create_role("operator", ["agent:view", "agent:manage", "agent:manage-all"])
        async with Client(secured.address, token=await user_key(secured, "op@example.com", "operator")) as op:
            assert (await op.pause_agent(admins)).status == enums.AGENT_STATUS_PAUSED
        assert (await dev_a.terminate_agent(dev_as, force=True)).name == dev_as
    finally:
        await admins_stream.close()
        await devs_stream.close()


async def test_an_agents_session_is_resumed_only_by_its_owner(
    secured: App, devs: tuple[Client, Client]
) -> None:
    dev_a, _ = devs
    admins, stream = await join(secured, register("echo"), bearer=await admin_key(secured))
    await stream.close()
    await wait_for(lambda: not secured.engine.sessions, message="the admin's agent to leave")
    resume = gw.ResumeSession(agent=admins.agent, session_id=admins.session_id)
    taken, stream = await join(secured, register("echo", resume=resume), bearer=dev_a.secret)  # type: ignore[attr-defined]
    await stream.close()
    assert taken.agent != admins.agent  # a new agent of dev-a's, not the admin's under a new owner
    assert secured.engine.agents[admins.agent.removeprefix("agents/")].owner == "users/admin"
    assert secured.engine.agents[taken.agent.removeprefix("agents/")].owner == "users/dev-a"
    again, stream = await join(secured, register("echo", resume=resume), bearer=await admin_key(secured))
    await stream.close()
    assert again.agent == admins.agent  # its owner resumes it


async def test_an_agents_assignments_show_only_tasks_the_caller_may_see(
    secured: App, admin: Client, devs: tuple[Client, Client]
) -> None:
    dev_a, dev_b = devs
    _, stream = await join(secured, register("echo"), bearer=await admin_key(secured))
    try:
        task = await dev_a.submit_task(description="one step", agent_type="echo")
        response = await asyncio.wait_for(stream.call.read(), 10)
        assigned = (
            response.assignment if response.HasField("assignment") else response.assignments.assignments[0]
        )
        assert assigned.task == task.name
        [agent] = (await admin.list_agents()).agents
        assert list((await dev_a.get_agent(agent.name)).assignments) == [assigned.ref.subtask]
        assert list((await admin.get_agent(agent.name)).assignments) == [assigned.ref.subtask]
        assert list((await dev_b.get_agent(agent.name)).assignments) == []
        assert [list(a.assignments) for a in (await dev_b.list_agents()).agents] == [[]]
    finally:
        await stream.close()


async def test_spawned_agents_belong_to_whoever_spawned_them(
    secured: App, admin: Client, devs: tuple[Client, Client]
) -> None:
    dev_a, dev_b = devs
    [agent] = await dev_a.spawn_agents("noop", 1)
    try:
        assert agent.owner == "users/dev-a" and agent.managed
        await fails(dev_b.terminate_agent(agent.name, force=True), P, DENIED)
        assert (await dev_a.drain_agent(agent.name, grace=1)).name == agent.name
    finally:
        await secured.launcher.stop(1.0)


# --- 5. keys never broader than the calling key ---------------------------------------------------------


async def test_a_narrowed_key_cannot_mint_or_rotate_a_broader_key(secured: App, admin: Client) -> None:
    broad = await user_key(secured, "dev@example.com", "developer")
    _, narrow = await secured.storage.call(secured.access.issue_key_sync, "dev", "narrow", ["apikey:manage"])
    async with Client(secured.address, token=broad) as full:
        [broad_key] = [k for k in await full.list_api_keys() if k.display_name == "k"]
    async with Client(secured.address, token=narrow) as client:
        before = sorted(k.name for k in await client.list_api_keys())
        error = await fails(client.create_api_key("everything"), P, DENIED)  # empty: all of the user's
        assert "apikey:manage" in error.message and "every permission" in error.message
        error = await fails(client.create_api_key("tasks", ["task:submit"]), P, DENIED)
        assert "'task:submit'" in error.message
        error = await fails(client.rotate_api_key(broad_key.name), P, DENIED)
        assert "rotate" in error.message
        assert sorted(k.name for k in await client.list_api_keys()) == before
        created = await client.create_api_key("same", ["apikey:manage"])  # as much as it holds is fine
        assert list(created.api_key.permissions) == ["apikey:manage"]
    async with Client(secured.address, token=broad) as full:  # the broad key's secret is unchanged
        assert (await full.get_caller()).principal == "users/dev"
        assert (await full.rotate_api_key(broad_key.name)).secret  # its own key may rotate it
    records = await stored_audit(secured, principal="users/dev")
    refusals = [r for r in records if r["status_code"] == "PERMISSION_DENIED"]
    assert len(refusals) == 3 and {r["decision"] for r in refusals} == {"DENY"}


# --- 6. a typed join token bounds its agents' capabilities ----------------------------------------------


async def test_a_typed_join_token_limits_claimed_capabilities(secured: App, admin: Client) -> None:
    token = await admin.create_join_token(agent_types=["researcher"])
    for claim in (["coder"], ["web_search", "programming"], ["*"]):
        error = await refused(
            secured,
            gw.ConnectRequest(register=register("researcher", token.token, capabilities=claim)),
            P,
            DENIED,
        )
        assert "researcher" in error.message and repr(claim[-1]) in error.message, error.message
        assert "web_search" in error.message  # what it may claim
    assert await uses(secured, token.join_token.name) == 0  # a refused claim spends nothing
    registered, stream = await join(secured, register("researcher", token.token, capabilities=["web_search"]))
    await stream.close()
    agent = await admin.get_agent(registered.agent)
    assert list(agent.capabilities) == ["web_search"] and agent.owner == "users/admin"  # the token's creator
    # Its credential keeps the limit on every later connection.
    await refused(
        secured,
        gw.ConnectRequest(register=register("researcher", capabilities=["coder"])),
        P,
        DENIED,
        bearer=registered.credential,
    )
    again, stream = await join(
        secured, register("researcher", capabilities=["synthesis"]), bearer=registered.credential
    )
    await stream.close()
    assert again.agent == registered.agent
    # A token bound to no type limits nothing.
    untyped = await admin.create_join_token()
    free, stream = await join(secured, register("researcher", untyped.token, capabilities=["coder"]))
    await stream.close()
    assert list((await admin.get_agent(free.agent)).capabilities) == ["coder"]


# --- 7. weak spots --------------------------------------------------------------------------------------


async def test_unknown_or_malformed_permissions_are_refused_in_roles_and_keys(
    secured: App, admin: Client
) -> None:
    for bad in ("task:bogus", "task:view\n", " task:view", "bogus:*", "task", ""):
        error = await fails(admin.create_role("r", ["task:view", bad]), INVALID, "ERROR_REASON_INVALID_FIELD")
        assert repr(bad) in error.message and error.field_violations[0][0] == "role.permissions[1]", error
        error = await fails(admin.create_api_key("k", [bad]), INVALID, "ERROR_REASON_INVALID_FIELD")
        assert repr(bad) in error.message and error.field_violations[0][0] == "api_key.permissions[0]", error
    assert "r" not in {r.name.removeprefix("roles/") for r in await admin.list_roles()}
    assert not [k for k in await admin.list_api_keys() if k.display_name == "k"]
    for good in ("task:*", "agent:manage-all", "checkpoint:export", "*"):
        await admin.create_role(f"ok-{good.replace(':', '-').replace('*', 'all')}", [good])


async def test_emails_are_validated_and_case_insensitive(secured: App, admin: Client) -> None:
    for bad in ("../..@x", "x" * 10_000 + "@example.com", "a@", "no-at-sign", "a b@example.com", "a@b@c"):
        error = await fails(admin.create_user(bad, ["viewer"]), INVALID, "ERROR_REASON_INVALID_FIELD")
        assert len(error.message) < 200, error.message  # never the whole input
    user = await admin.create_user("DEV@Example.com", ["viewer"])
    assert user.email == "dev@example.com"
    await fails(
        admin.create_user("dev@example.com", ["viewer"]),
        grpc.StatusCode.ALREADY_EXISTS,
        "ERROR_REASON_ALREADY_EXISTS",
    )
    # A user stored before emails were lowercased compares case-insensitively too.
    record = {
        "id": "old",
        "email": "Old@Example.com",
        "roles": ["viewer"],
        "disabled": False,
        "create_time": 0.0,
        "uid": "u1",
    }
    await secured.storage.call(secured.storage.backend.access_put, "users", "old", record)
    secured.access.users["old"] = record
    await fails(
        admin.create_user("old@EXAMPLE.com", ["viewer"]),
        grpc.StatusCode.ALREADY_EXISTS,
        "ERROR_REASON_ALREADY_EXISTS",
    )
    assert len(await admin.list_users()) == 5  # admin, the agents' two users, dev, old


async def test_read_only_refusals_inside_a_servicer_are_audited_as_deny(secured: App) -> None:
    token = await user_key(secured, "dev@example.com", "developer")
    async with Client(secured.address, token=token) as dev:
        await fails(dev.list_api_keys(user="users/admin"), P, DENIED)
    [record] = [
        r for r in await stored_audit(secured, principal="users/dev") if r["method"].endswith("ListApiKeys")
    ]
    assert (record["decision"], record["status_code"]) == ("DENY", "PERMISSION_DENIED")


async def test_a_viewers_analyze_never_plans_with_a_model(
    maos_home: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("ANTHROPIC_API_KEY", "CLAUDE_API_KEY", "ANTHROPIC_BASE_URL", "MAOS_CLAUDE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with MessagesAPIServer(api_key="sk-ant-test-key") as api:
        app = await start_app(
            make_settings(
                maos_home,
                **{
                    "security.auth": "required",
                    "claude.api_key": "sk-ant-test-key",
                    "claude.base_url": api.base_url,
                },
            )
        )
        try:
            viewer_key = await user_key(app, "viewer@example.com", "viewer")
            async with Client(app.address, token=viewer_key, timeout=60) as viewer:
                plan = await viewer.analyze_task(description="Research cloud trends, then write a report")
            assert api.requests == []  # no token spent
            assert any("task:submit" in w for w in plan.warnings), plan
            assert plan.subtasks  # the built-in plan
            dev_key = await user_key(app, "dev@example.com", "developer")
            async with Client(app.address, token=dev_key, timeout=60) as dev:
                await dev.analyze_task(description="Research cloud trends, then write a report")
            assert api.requests  # a developer's analysis asks the model
        finally:
            await app.stop(grace=1.0)
