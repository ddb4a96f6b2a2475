"""ListLogs pages (and the other lists' pages) across replicas.

With Redis, a ListLogs page token names a record of the shared stream of log records: a listing
paged on replica A continues on replica B with exactly the records that follow, in the same order,
each once, filtered for the caller as on A. Tokens are signed with a key the replicas read from the
database, bound to the filters and the caller: another caller's token, a forged one, or one whose
record is no longer kept is refused precisely. Without Redis, a token from another replica or from
before a restart is refused precisely too (never a wrong page).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError
from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from controlplane.api.context import LOCAL_PRINCIPAL
from controlplane.api.log_pages import LOCAL
from controlplane.api.paging import PageTokens
from controlplane.app import App, build_app
from controlplane.logbook import LogEntry
from tests.controlplane.api.test_stream_resume import reason_of
from tests.controlplane.replicas.test_routing import RPC, Replicas, _agent_on, _replicas
from tests.harness.server import Stubs, admin_key, empty_postgres, make_settings, wait_for

pytestmark = pytest.mark.slow

MARK = "page-across"  # in the messages of the records the listings page through


@pytest.fixture
async def b_runs_echo(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str
) -> AsyncIterator[Replicas]:
    """Replicas A and B (``maos start`` processes) on PostgreSQL and Redis; B launched an echo agent."""
    async for made in _replicas(
        tmp_path, postgres_url, "echo=1", MAOS_REDIS_URL=redis_url, MAOS_REDIS_KEY_PREFIX=redis_namespace
    ):
        yield made


async def _listed(stubs: Stubs, request: system_pb.ListLogsRequest) -> list[tuple[str, str]]:
    reply = await stubs.system.ListLogs(request, timeout=RPC)
    return [(r.id, r.message) for r in reply.records]


async def _paged_alternately(
    sides: list[Stubs], order_by: str, size: int
) -> tuple[list[tuple[str, str]], list[int]]:
    """Every page of a listing, page 1 on sides[0], page 2 on sides[1], ...; the page lengths."""
    found: list[tuple[str, str]] = []
    lengths: list[int] = []
    token = ""
    for turn in range(100):
        request = system_pb.ListLogsRequest(
            contains=MARK, order_by=order_by, page_size=size, page_token=token
        )
        reply = await sides[turn % len(sides)].system.ListLogs(request, timeout=RPC)
        found.extend((r.id, r.message) for r in reply.records)
        lengths.append(len(reply.records))
        token = reply.next_page_token
        if not token:
            return found, lengths
    raise AssertionError("the listing did not end")


async def test_a_listing_paged_on_one_replica_continues_on_the_other(b_runs_echo: Replicas) -> None:
    r = b_runs_echo
    for n in range(7):
        task = msgs.Task(description=f"echo {n}", metadata={"echo_log": f"{MARK} {n}"})
        await r.stubs_b.tasks.SubmitTask(tasks_pb.SubmitTaskRequest(task=task), timeout=RPC)

    everything = system_pb.ListLogsRequest(contains=MARK, page_size=1000)

    async def all_kept_on_both() -> bool:
        on_a, on_b = await _listed(r.stubs_a, everything), await _listed(r.stubs_b, everything)
        return len(on_a) >= 7 and on_a == on_b

    await wait_for(all_kept_on_both, timeout=60, interval=0.2, message="B's agent's records on both replicas")
    reference = await _listed(r.stubs_a, everything)
    ids = [record_id for record_id, _ in reference]
    assert all("-" in i and "." not in i for i in ids)  # stream ids, valid on every replica
    for message in (f"{MARK} {n}" for n in range(7)):
        assert any(message in text for _, text in reference), message

    for order_by, expected in (("", reference), ("time desc", reference[::-1])):
        for sides in ([r.stubs_a, r.stubs_b], [r.stubs_b, r.stubs_a]):
            paged, lengths = await _paged_alternately(sides, order_by, size=2)
            assert paged == expected, (order_by, sides[0] is r.stubs_a)  # none skipped, none twice
            assert lengths[:-1] == [2] * (len(lengths) - 1)

    # A token from a listing with other filters, or altered, is refused on the other replica.
    first = await r.stubs_a.system.ListLogs(
        system_pb.ListLogsRequest(contains=MARK, page_size=2), timeout=RPC
    )
    token = first.next_page_token
    assert token
    altered = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    for request in (
        system_pb.ListLogsRequest(contains=MARK + "x", page_size=2, page_token=token),
        system_pb.ListLogsRequest(contains=MARK, order_by="time desc", page_size=2, page_token=token),
        system_pb.ListLogsRequest(contains=MARK, page_size=2, page_token=altered),
        system_pb.ListLogsRequest(contains=MARK, page_size=2, page_token="not a token"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await r.stubs_b.system.ListLogs(request, timeout=RPC)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason_of(caught.value) == "ERROR_REASON_INVALID_PAGE_TOKEN"
        assert "start again from the first page" in (caught.value.details() or "")


async def test_task_and_agent_pages_continue_on_another_replica(
    b_runs_echo: Replicas, agent_processes: Any
) -> None:
    """ListTasks (keyset on the database's order) and ListAgents (one order on every replica)."""
    r = b_runs_echo
    for n in range(5):
        task = msgs.Task(description=f"echo {n}")
        await r.stubs_a.tasks.SubmitTask(tasks_pb.SubmitTaskRequest(task=task), timeout=RPC)
    reference = [t.name for t in await r.stubs_b.all_tasks()]
    assert len(reference) == 5
    paged: list[str] = []
    token = ""
    for turn in range(10):
        stubs = (r.stubs_a, r.stubs_b)[turn % 2]
        reply = await stubs.tasks.ListTasks(
            tasks_pb.ListTasksRequest(page_size=2, page_token=token), timeout=RPC
        )
        paged.extend(t.name for t in reply.tasks)
        token = reply.next_page_token
        if not token:
            break
    assert paged == reference

    # One agent on each replica (B launched one, one joins A): every replica lists them in one
    # order (before, each listed its own first), so page 2 on the other replica continues page 1.
    await _agent_on(r.stubs_b, agent_processes, r.a.address)
    everyone = agents_pb.ListAgentsRequest(page_size=1000)

    async def both_listed() -> bool:
        on_a = await r.stubs_a.agents.ListAgents(everyone, timeout=RPC)
        on_b = await r.stubs_b.agents.ListAgents(everyone, timeout=RPC)
        live = [a for a in on_a.agents if a.status == enums.AGENT_STATUS_IDLE]
        return len(live) == 2 and [a.name for a in on_a.agents] == [a.name for a in on_b.agents]

    await wait_for(both_listed, timeout=30, interval=0.2, message="both agents listed alike on A and B")
    reference_agents = [a.name for a in (await r.stubs_a.agents.ListAgents(everyone, timeout=RPC)).agents]
    for sides in ((r.stubs_a, r.stubs_b), (r.stubs_b, r.stubs_a)):
        names: list[str] = []
        token = ""
        for turn in range(10):
            reply = await sides[turn % 2].agents.ListAgents(
                agents_pb.ListAgentsRequest(page_size=1, page_token=token), timeout=RPC
            )
            names.extend(a.name for a in reply.agents)
            token = reply.next_page_token
            if not token:
                break
        assert names == reference_agents


# --- callers and visibility (two in-process replicas with access control) -------------------------


async def _two_secured(tmp_path: Path, **settings: Any) -> tuple[App, App]:
    settings = {**settings, "security.auth": "required"}
    build_app(make_settings(tmp_path / "migrate", **settings)).storage.close()
    empty_postgres(settings["database.primary_url"])
    a = build_app(make_settings(tmp_path / "a", **settings))
    await a.start("127.0.0.1:0")
    b = build_app(make_settings(tmp_path / "b", **settings))
    try:
        await b.start("127.0.0.1:0")
    except BaseException:
        await a.stop(grace=1.0)
        raise
    return a, b


async def _user_key(app: App, email: str) -> tuple[str, str]:
    """A developer user's principal and API key."""
    async with Client(app.address, token=await admin_key(app)) as admin:
        user = (await admin.create_user(email, ["developer"])).name.removeprefix("users/")
    _, key = await app.storage.call(app.access.issue_key_sync, user, "k")
    return f"users/{user}", key


async def test_tokens_are_bound_to_the_caller_and_show_only_what_it_may_see(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str
) -> None:
    import redis

    a, b = await _two_secured(
        tmp_path,
        **{"database.primary_url": postgres_url, "redis.url": redis_url, "redis.key_prefix": redis_namespace},
    )
    writer = redis.Redis.from_url(redis_url)
    stream = f"{redis_namespace}logs"
    try:
        dev_a, key_a = await _user_key(a, "dev-a@example.com")
        dev_b, key_b = await _user_key(a, "dev-b@example.com")

        def written(n: int, message: str, task_owner: str) -> str:
            """A record as a third replica writes it to the stream (about a task of ``task_owner``)."""
            body = [20, "agents/x", f"{MARK} {message}", 1.0, f"t{n}", "", "", {}, task_owner, ""]
            return writer.xadd(stream, {"r": "elsewhere/0001", "n": str(n), "e": json.dumps(body)}).decode()

        owners = [dev_a, dev_b, dev_b, dev_a, dev_b, dev_a, dev_a, dev_b, dev_a]
        for n, owner in enumerate(owners, start=1):
            written(n, f"{n} of {owner}", owner)
        mine = [f"{MARK} {n} of {dev_a}" for n, owner in enumerate(owners, start=1) if owner == dev_a]

        async with (
            Client(a.address, token=key_a) as a_as_dev_a,
            Client(b.address, token=key_a) as b_as_dev_a,
            Client(b.address, token=key_b) as b_as_dev_b,
        ):

            async def both_kept() -> bool:
                found_a = await a_as_dev_a.list_logs(contains=MARK, page_size=100)
                found_b = await b_as_dev_a.list_logs(contains=MARK, page_size=100)
                return len(found_a.records) == len(found_b.records) == len(mine)

            await wait_for(both_kept, timeout=30, interval=0.1, message="the records on both replicas")
            for newest_first in (False, True):
                got: list[str] = []
                token = ""
                for turn in range(20):
                    client = (a_as_dev_a, b_as_dev_a)[turn % 2]
                    reply = await client.list_logs(
                        contains=MARK, page_size=2, page_token=token, newest_first=newest_first
                    )
                    got.extend(r.message for r in reply.records)
                    token = reply.next_page_token
                    if not token:
                        break
                assert got == (mine[::-1] if newest_first else mine)

            # dev-a's token is no way into dev-b's listing (same filters, another caller), on either replica.
            token = (await a_as_dev_a.list_logs(contains=MARK, page_size=1)).next_page_token
            assert token
            with pytest.raises(MaosRpcError) as caught:
                await b_as_dev_b.list_logs(contains=MARK, page_size=1, page_token=token)
            assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "another caller" in caught.value.message
            assert caught.value.reason == "ERROR_REASON_INVALID_PAGE_TOKEN"

            # A token whose record is no longer in the stream: FAILED_PRECONDITION, on both replicas.
            writer.xtrim(stream, maxlen=0)
            written(99, "after the trim", dev_a)
            for client in (a_as_dev_a, b_as_dev_a):
                with pytest.raises(MaosRpcError) as caught:
                    await client.list_logs(contains=MARK, page_size=1, page_token=token)
                assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
                assert caught.value.reason == "ERROR_REASON_RESUME_POINT_LOST"
                assert "is no longer kept" in caught.value.message
                assert "list again from the first page" in caught.value.message
    finally:
        writer.close()
        await asyncio.gather(a.stop(grace=1.0), b.stop(grace=1.0))


async def test_without_redis_a_token_from_another_replica_is_refused(
    tmp_path: Path, postgres_url: str
) -> None:
    """LISTEN/NOTIFY replicas: log records stay on their replica, so do ListLogs tokens (precisely
    refused elsewhere); ListTasks tokens are the database's, valid on both."""
    a, b = await _two_secured(tmp_path, **{"database.primary_url": postgres_url})
    try:
        async with (
            Client(a.address, token=await admin_key(a)) as on_a,
            Client(b.address, token=await admin_key(b)) as on_b,
        ):
            for n in range(3):
                await on_a.submit_task(description=f"task {n}")
                a.logbook.add(LogEntry(level=logging.INFO, component="test", message=f"{MARK} {n}"))
            first = await on_a.list_logs(page_size=1, contains=MARK)
            assert first.next_page_token
            with pytest.raises(MaosRpcError) as caught:
                await on_b.list_logs(page_size=1, contains=MARK, page_token=first.next_page_token)
            assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
            assert "another control plane" in caught.value.message
            assert "list again from the first page" in caught.value.message
            # The same token goes on where it began.
            second = await on_a.list_logs(page_size=1, contains=MARK, page_token=first.next_page_token)
            assert [r.message for r in (*first.records, *second.records)] == [f"{MARK} 0", f"{MARK} 1"]

            listed = await on_a.tasks.ListTasks(tasks_pb.ListTasksRequest(page_size=2))
            rest = await on_b.tasks.ListTasks(
                tasks_pb.ListTasksRequest(page_size=2, page_token=listed.next_page_token)
            )
            assert len(listed.tasks) == 2 and len(rest.tasks) == 1
    finally:
        await asyncio.gather(a.stop(grace=1.0), b.stop(grace=1.0))


async def test_a_token_from_before_a_restart_is_refused(tmp_path: Path) -> None:
    """One control plane (SQLite): after a restart its ListLogs tokens name records it no longer
    has: FAILED_PRECONDITION; its ListTasks tokens still continue (they are the database's)."""
    settings = make_settings(tmp_path / "home", **{"security.auth": "required"})
    first = build_app(settings)
    await first.start("127.0.0.1:0")
    try:
        async with Client(first.address, token=await admin_key(first)) as client:
            for n in range(3):
                await client.submit_task(description=f"task {n}")
                first.logbook.add(LogEntry(level=logging.INFO, component="test", message=f"{MARK} {n}"))
            logs = (await client.list_logs(page_size=1, contains=MARK)).next_page_token
            newest = (await client.list_logs(page_size=1, contains=MARK, newest_first=True)).next_page_token
            # The log book keeps its last records: once the ones a token continues to are gone,
            # the token is refused, rather than skipping to what is left.
            for n in range(first.logbook.capacity):
                first.logbook.add(LogEntry(level=logging.INFO, component="test", message=f"filler {n}"))
            for token, newest_first in ((logs, False), (newest, True)):
                with pytest.raises(MaosRpcError) as caught:
                    await client.list_logs(
                        page_size=1, contains=MARK, page_token=token, newest_first=newest_first
                    )
                assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
                assert caught.value.reason == "ERROR_REASON_RESUME_POINT_LOST"
                assert "no longer kept here" in caught.value.message
            tasks = (await client.tasks.ListTasks(tasks_pb.ListTasksRequest(page_size=2))).next_page_token
    finally:
        await first.stop(grace=1.0)
    assert logs and tasks
    again = build_app(settings)
    await again.start("127.0.0.1:0")
    try:
        async with Client(again.address, token=await admin_key(again)) as client:
            with pytest.raises(MaosRpcError) as caught:
                await client.list_logs(page_size=1, contains=MARK, page_token=logs)
            assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
            assert "before it restarted" in caught.value.message
            rest = await client.tasks.ListTasks(tasks_pb.ListTasksRequest(page_size=2, page_token=tasks))
            assert len(rest.tasks) == 1
    finally:
        await again.stop(grace=1.0)


@asynccontextmanager
async def _streamed_logs(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str
) -> AsyncIterator[tuple[App, Any]]:
    """A replica on an emptied PostgreSQL and on Redis, and a Redis client to write its log stream with."""
    import redis

    settings = {
        "database.primary_url": postgres_url,
        "redis.url": redis_url,
        "redis.key_prefix": redis_namespace,
    }
    build_app(make_settings(tmp_path / "migrate", **settings)).storage.close()
    empty_postgres(postgres_url)
    app = build_app(make_settings(tmp_path / "a", **settings))
    await app.start("127.0.0.1:0")
    writer = redis.Redis.from_url(redis_url)
    try:
        yield app, writer
    finally:
        writer.close()
        await app.stop(grace=1.0)


async def _all_three_kept(client: Client) -> None:
    async def all_kept() -> bool:
        return len((await client.list_logs(contains=MARK, page_size=100)).records) == 3

    await wait_for(all_kept, timeout=30, interval=0.1, message="the records kept")


async def test_a_page_read_from_the_stream_stops_after_a_bounded_scan(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rare matches far apart: a page read from the stream ends after MAX_PAGE_SCAN entries, not
    full, with a token going on from the last entry read; the listing still has every record once."""
    from controlplane.replicas import event_stream

    monkeypatch.setattr(event_stream, "MAX_PAGE_SCAN", 10)
    async with _streamed_logs(tmp_path, postgres_url, redis_url, redis_namespace) as (app, writer):
        wanted = []
        for n in range(1, 42):
            text = f"{MARK} {n}" if n % 20 == 1 else f"other {n}"  # 1, 21 and 41 match
            body = [20, "agents/x", text, 1.0, "", "", "", {}, "", ""]
            writer.xadd(f"{redis_namespace}logs", {"r": "elsewhere/0001", "n": str(n), "e": json.dumps(body)})
            if text.startswith(MARK):
                wanted.append(text)
        async with Client(app.address) as client:
            await _all_three_kept(client)
            for newest_first in (False, True):
                got, lengths, token = [], [], ""
                for _ in range(20):
                    reply = await client.list_logs(
                        contains=MARK, page_size=1, page_token=token, newest_first=newest_first
                    )
                    got.extend(r.message for r in reply.records)
                    lengths.append(len(reply.records))
                    token = reply.next_page_token
                    if not token:
                        break
                assert got == (wanted[::-1] if newest_first else wanted)
                assert 0 in lengths  # pages that ended after the bounded scan, empty, with a token


async def test_a_resent_record_shows_once_across_page_boundaries(
    tmp_path: Path, postgres_url: str, redis_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipeline sent again writes second copies: stream A1, B1, A1 (copy), B2, one record a page.
    Pages read from the stream leave the copy out as the log book does (the later entry of a pair
    is the copy), whichever side of a page boundary the first one is on, in both orders; also when
    the stream is read a little at a time."""
    from controlplane.replicas import event_stream

    async with _streamed_logs(tmp_path, postgres_url, redis_url, redis_namespace) as (app, writer):
        firsts: dict[str, str] = {}
        for origin, n, name in (("A/1", 1, "A1"), ("B/1", 1, "B1"), ("A/1", 1, "A1"), ("B/1", 2, "B2")):
            body = [20, "agents/x", f"{MARK} {name}", 1.0, "", "", "", {}, "", ""]
            entry = writer.xadd(f"{redis_namespace}logs", {"r": origin, "n": str(n), "e": json.dumps(body)})
            firsts.setdefault(name, entry.decode())
        async with Client(app.address) as client:
            await _all_three_kept(client)
            for read_count, look_back in ((event_stream.READ_COUNT, event_stream.LOOK_BACK), (1, 2)):
                monkeypatch.setattr(event_stream, "READ_COUNT", read_count)
                monkeypatch.setattr(event_stream, "LOOK_BACK", look_back)
                for newest_first in (False, True):
                    got, token = [], ""
                    for _ in range(10):
                        reply = await client.list_logs(
                            contains=MARK, page_size=1, page_token=token, newest_first=newest_first
                        )
                        got.extend((r.id, r.message.removeprefix(f"{MARK} ")) for r in reply.records)
                        token = reply.next_page_token
                        if not token:
                            break
                    names = ["B2", "B1", "A1"] if newest_first else ["A1", "B1", "B2"]
                    assert got == [(firsts[name], name) for name in names], (read_count, newest_first)

            # A token naming a record another replica kept alone while Redis was away: refused
            # precisely, not blamed on a missing Redis.
            filters = system_pb.ListLogsRequest(contains=MARK).SerializeToString(deterministic=True)
            digest = filters + f"\0{LOCAL_PRINCIPAL}:True:True".encode()
            tokens = PageTokens("ListLogs", lambda: app.engine.page_secret)
            foreign = tokens.issue_pair(LOCAL, app.engine.incarnation + 1, 1, digest)
            with pytest.raises(MaosRpcError) as caught:
                await client.list_logs(contains=MARK, page_size=1, page_token=foreign)
            assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
            assert caught.value.reason == "ERROR_REASON_INVALID_PAGE_TOKEN"
            assert "kept alone while Redis was away" in caught.value.message
            assert "without Redis" not in caught.value.message
