"""Faults around an agent's work moving with its session between live replicas, with two control planes
in this process on the test's PostgreSQL and Redis (:mod:`controlplane.scheduler.session_moves`).

Each test holds one step where the fault needs it: replica b's claim of what a handed over waits on the
test (as if b were slow, or stopped before it claimed), or the database refuses a's commit of the mark
(a trigger), so what happens meanwhile is certain rather than a race the test hopes to win.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from controlplane.api.convert import ref_from_pb
from controlplane.app import App
from controlplane.domain.model import Usage
from controlplane.errors import InvalidArgument
from controlplane.scheduler import session_moves
from controlplane.scheduler.session_moves import Resume, encode
from tests.controlplane.replicas.test_carried_reports import RPC, claimed_by, register
from tests.controlplane.replicas.test_claims import execute, rows, shared, shared_db  # noqa: F401
from tests.controlplane.replicas.test_session_moves import (
    completed_subtasks,
    next_assignment,
    raw_work,
    resume_of,
)
from tests.controlplane.scheduler.test_faults import RawAgent
from tests.harness.server import Stubs, make_settings, start_app, wait_for


def bare(name: str) -> str:
    return name.rsplit("/", 1)[-1]


@asynccontextmanager
async def two_replicas(
    tmp_path: Path, base: dict[str, Any], **settings: Any
) -> AsyncIterator[tuple[App, App]]:
    both = {**base, "replicas.claim_poll_interval": 0.5, **settings}
    a = await start_app(make_settings(tmp_path / "a", **both))
    b = await start_app(make_settings(tmp_path / "b", **both))
    try:
        yield a, b
    finally:
        await b.stop(grace=1.0)
        await a.stop(grace=1.0)


async def submit(stubs: Stubs, description: str, **fields: Any) -> str:
    reply = await stubs.tasks.SubmitTask(
        tasks_pb.SubmitTaskRequest(task=msgs.Task(description=description, **fields)), timeout=RPC
    )
    return str(reply.task.name)


def hold_claims(app: App, monkeypatch: pytest.MonkeyPatch) -> tuple[asyncio.Event, asyncio.Event]:
    """Make ``app``'s claims of tasks handed over to it wait: (asked, go) - ``asked`` is set when it is
    about to claim, and it claims once the test sets ``go``."""
    claims = app.engine.claims
    assert claims is not None
    asked, go = asyncio.Event(), asyncio.Event()
    claim_given = claims.claim_given

    async def held(task_id: str, origin: str) -> bool:
        asked.set()
        await go.wait()
        return await claim_given(task_id, origin)

    monkeypatch.setattr(claims, "claim_given", held)
    return asked, go


def record_claims(app: App) -> list[bool]:
    """What each claim ``app``'s agent side makes for a report on a task it does not hold came to."""
    tried: list[bool] = []
    claim = app.engine.agent_side.claim
    assert claim is not None

    async def recorded(task_id: str) -> bool:
        got = await claim(task_id)
        tried.append(got)
        return got

    app.engine.agent_side.claim = recorded
    return tried


async def stored_agent(app: App, agent_id: str) -> Any:
    return await app.engine.storage.call(app.engine.storage.backend.get_agent, agent_id)


async def test_a_late_result_on_the_old_stream_is_carried_to_the_new_replica_which_keeps_the_work(
    tmp_path: Path,
    shared: dict[str, Any],  # noqa: F811
    shared_db: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The agent's result reaches a on its old stream after a handed its work to b and before b claimed
    it: a takes nothing back (b's claim succeeds, the agent keeps its work), the result is carried to b
    and applied there once, and the agent's record is b's: charged there, not overwritten by a."""
    long_leases = {"scheduler.lease_ttl": 30.0, "scheduler.restart_grace": 30.0}
    async with two_replicas(tmp_path, shared, **long_leases) as (a, b):
        on_a, on_b = RawAgent(a.address), RawAgent(b.address)
        stubs = Stubs(a.address)
        try:
            first, name, ref = await raw_work(stubs, on_a, "late result")
            agent_id, task_id = bare(first.agent), bare(name)
            old = a.engine.sessions[agent_id]
            asked, go = hold_claims(b, monkeypatch)
            tried = record_claims(a)

            registering = asyncio.ensure_future(register(on_b, resume_of(first, ref)))
            await asyncio.wait_for(asked.wait(), RPC)  # a handed the work over; b has not claimed it yet
            assert claimed_by(shared_db, name) == f"~leaving:{a.engine.replica}"
            assert old.closed and old.moved
            assert not await a.engine.take_back(task_id)  # a call forwarded to a meanwhile: not taken back
            domain_ref = ref_from_pb(ref)
            assert domain_ref is not None
            a.engine.agent_side.report_result(
                old, domain_ref, "late", [], Usage(input_tokens=5, output_tokens=7)
            )
            await wait_for(lambda: tried, 10, 0.01, "a's claim for the late result")
            assert tried[0] is False
            assert claimed_by(shared_db, name) == f"~leaving:{a.engine.replica}"

            go.set()
            moved = await asyncio.wait_for(registering, RPC)
            assert moved.agent == first.agent and moved.replica == b.engine.replica, moved
            assert list(moved.resumed) == [ref] and list(moved.revoked) == [], moved
            assert claimed_by(shared_db, name) == b.engine.replica

            # the result carried from a to b (its holder now)
            subtasks = await completed_subtasks(stubs, name, 20)
            assert [s.output for s in subtasks] == ["late"]
            assert [s.attempt for s in subtasks] == [ref.attempt]

            async def charged_on_b() -> Any:
                info = await stored_agent(a, agent_id)
                return info if info is not None and info.completed_subtasks == 1 else None

            info = await wait_for(charged_on_b, 10, 0.05, "the agent's record charged by b")
            assert (info.replica, info.session_id) == (b.engine.replica, moved.session_id), info
            assert info.usage.input_tokens == 5
            assert claimed_by(shared_db, name) == b.engine.replica
        finally:
            await stubs.close()
            await on_a.close()
            await on_b.close()


def refuse_mark(url: str, mark: str) -> None:
    """Make the database refuse to mark tasks ``mark`` (a trigger), until :func:`allow_mark`."""
    execute(
        url,
        "CREATE FUNCTION refuse_mark() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF NEW.claimed_by = '{mark}' THEN RAISE EXCEPTION 'mark refused'; END IF; RETURN NEW; END $$",
    )
    execute(
        url, "CREATE TRIGGER refuse_mark BEFORE UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION refuse_mark()"
    )


def allow_mark(url: str) -> None:
    execute(url, "DROP TRIGGER IF EXISTS refuse_mark ON tasks")
    execute(url, "DROP FUNCTION IF EXISTS refuse_mark()")


async def test_a_hand_over_whose_commit_failed_lets_the_work_go_once_the_commit_lands(
    tmp_path: Path,
    shared: dict[str, Any],  # noqa: F811
    shared_db: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """a's commit of the hand-over fails (the asker is told, and claims nothing); a's committer writes it
    again later and the tasks are let go then, not left marked for as long as a lives: the work runs again
    once its lease ran out, once."""
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(session_moves, "LET_GO_AFTER", 1.0)
    async with two_replicas(tmp_path, shared) as (a, b):
        on_a, on_b = RawAgent(a.address), RawAgent(b.address)
        stubs = Stubs(a.address)
        mark = f"~leaving:{a.engine.replica}"
        try:
            first, name, ref = await raw_work(stubs, on_a, "commit refused")
            refuse_mark(shared_db, mark)
            resumed = await register(on_b, resume_of(first, ref))
            assert list(resumed.resumed) == [] and list(resumed.revoked) == [ref], resumed
            assert "could not ask replica" in caplog.text
            assert claimed_by(shared_db, name) == a.engine.replica
            allow_mark(shared_db)

            await wait_for(
                lambda: claimed_by(shared_db, name) not in (a.engine.replica, mark),
                20,
                0.05,
                "the tasks let go once the hand-over's commit landed, and claimed",
            )
            again = (await asyncio.wait_for(next_assignment(on_b), 30)).ref
            assert again.subtask == ref.subtask and again.attempt == ref.attempt + 1, again
            on_b.send(result=gw.SubtaskResult(ref=again, output="second attempt"))
            subtasks = await completed_subtasks(stubs, name, 20)
            assert [s.output for s in subtasks] == ["second attempt"]
        finally:
            allow_mark(shared_db)
            await stubs.close()
            await on_a.close()
            await on_b.close()


async def test_work_handed_to_a_replica_that_stops_before_claiming_it_is_let_go_and_runs_once_more(
    tmp_path: Path,
    shared: dict[str, Any],  # noqa: F811
    shared_db: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(session_moves, "LET_GO_AFTER", 1.0)
    async with two_replicas(tmp_path, shared) as (a, b):
        on_a, on_b, other = RawAgent(a.address), RawAgent(b.address), RawAgent(a.address)
        stubs = Stubs(a.address)
        try:
            first, name, ref = await raw_work(stubs, on_a, "asker stops")
            await register(other)  # (idle: the work was assigned already) it runs the work again
            asked, _ = hold_claims(b, monkeypatch)
            registering = asyncio.ensure_future(register(on_b, resume_of(first, ref)))
            await asyncio.wait_for(asked.wait(), RPC)
            await b.stop(grace=1.0)  # before it claims what a handed over
            registering.cancel()

            again = (await asyncio.wait_for(next_assignment(other), 30)).ref
            assert again.subtask == ref.subtask and again.attempt == ref.attempt + 1, again
            assert claimed_by(shared_db, name) == a.engine.replica
            other.send(result=gw.SubtaskResult(ref=again, output="run once more"))
            subtasks = await completed_subtasks(stubs, name, 20)
            assert [(s.output, s.attempt) for s in subtasks] == [("run once more", again.attempt)]
        finally:
            await stubs.close()
            for stream in (on_a, on_b, other):
                await stream.close()


async def test_a_task_another_agent_runs_part_of_does_not_move(
    tmp_path: Path,
    shared: dict[str, Any],  # noqa: F811
    shared_db: str,  # noqa: F811
) -> None:
    async with two_replicas(tmp_path, shared) as (a, b):
        x, y, on_b = RawAgent(a.address), RawAgent(a.address), RawAgent(b.address)
        stubs = Stubs(a.address)
        try:
            first = await register(x)
            await register(y)
            name = await submit(stubs, "Fan out:\n- part one\n- part two", max_agents=2)
            ref = (await x.receive("assignment")).assignment.ref
            (await y.receive("assignment")).assignment.ref  # noqa: B018 (the other part runs on y)
            resumed = await register(on_b, resume_of(first, ref))
            assert resumed.agent == first.agent and list(resumed.resumed) == [], (
                resumed
            )  # the session is proven
            assert list(resumed.revoked) == [ref], resumed
            assert claimed_by(shared_db, name) == a.engine.replica
            assert a.engine.moves.given == 0 and b.engine.moves.taken == 0
        finally:
            await stubs.close()
            for stream in (x, y, on_b):
                await stream.close()


async def test_a_resume_of_another_type_or_owner_moves_nothing(
    tmp_path: Path,
    shared: dict[str, Any],  # noqa: F811
    shared_db: str,  # noqa: F811
) -> None:
    async with two_replicas(tmp_path, shared) as (a, b):
        on_a, on_b = RawAgent(a.address), RawAgent(b.address)
        stubs = Stubs(a.address)
        try:
            first, name, ref = await raw_work(stubs, on_a, "typed")
            on_b.send(
                register=gw.Register(
                    agent_type="other",
                    capabilities=["*"],
                    max_concurrency=1,
                    language="test",
                    resume=gw.ResumeSession(
                        agent=first.agent, session_id=first.session_id, assignments=[ref]
                    ),
                )
            )
            answer = (await on_b.receive("registered")).registered
            assert answer.agent != first.agent and list(answer.revoked) == [ref], answer
            assert claimed_by(shared_db, name) == a.engine.replica
            assert a.engine.moves.given == 0
            assert bare(first.agent) in a.engine.sessions  # its stream on a is untouched
        finally:
            await stubs.close()
            await on_a.close()
            await on_b.close()


async def test_a_malformed_hand_over_request_is_refused_by_the_holder_through_the_bus(
    tmp_path: Path,
    shared: dict[str, Any],  # noqa: F811
    shared_db: str,  # noqa: F811
) -> None:
    async with two_replicas(tmp_path, shared) as (a, b):
        on_a = RawAgent(a.address)
        stubs = Stubs(a.address)
        try:
            first, name, ref_pb = await raw_work(stubs, on_a, "kept")
            ref = ref_from_pb(ref_pb)
            assert ref is not None
            body = encode(Resume(bare(first.agent), first.session_id, "raw"), [ref], b.engine.replica)
            ask: Callable[[dict[str, Any], str], Awaitable[Any]] | None = b.engine.moves.ask
            assert ask is not None
            with pytest.raises(InvalidArgument, match="malformed hand-over request"):
                await ask(
                    {**body, "refs": [[ref.task_id, ref.subtask_id, "zero", ref.lease_epoch]]},
                    a.engine.replica,
                )
            assert claimed_by(shared_db, name) == a.engine.replica
            assert bare(first.agent) in a.engine.sessions and a.engine.moves.given == 0
        finally:
            await stubs.close()
            await on_a.close()


def execute_with(url: str, sql: str, **params: Any) -> None:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(sql), params)
    finally:
        engine.dispose()


def replace_stored_session(url: str, agent_id: str, session_id: str) -> None:
    """Write another session id into the agent's stored record (as another replica taking it over would)."""
    [(data,)] = rows(url, "SELECT data FROM agents WHERE id = :i", i=agent_id)
    record = json.loads(data)
    assert "session_id" in record, record
    record["session_id"] = session_id
    execute_with(url, "UPDATE agents SET data = :d WHERE id = :i", d=json.dumps(record), i=agent_id)


async def test_a_session_the_committed_record_no_longer_names_moves_nothing(
    tmp_path: Path,
    shared: dict[str, Any],  # noqa: F811
    shared_db: str,  # noqa: F811
) -> None:
    """a still believes the session current, but the agent's committed record names another (a replica
    took the agent over, a not knowing yet): a refuses, and b does not hand the identity over."""
    async with two_replicas(tmp_path, shared) as (a, b):
        on_a, on_b = RawAgent(a.address), RawAgent(b.address)
        stubs = Stubs(a.address)
        try:
            first, name, ref = await raw_work(stubs, on_a, "record moved on")
            await a.engine.agent_side.committer.durable()
            replace_stored_session(shared_db, bare(first.agent), "f" * 16)
            answer = await register(on_b, resume_of(first, ref))
            assert answer.agent != first.agent and list(answer.revoked) == [ref], answer
            assert claimed_by(shared_db, name) == a.engine.replica
            assert a.engine.moves.given == 0
        finally:
            await stubs.close()
            await on_a.close()
            await on_b.close()
