"""Claims between replicas: several control planes on one PostgreSQL and Redis form one system.

Replicas run as real control-plane processes (``ControlPlaneProcess``: what ``maos start`` serves)
with real ``maos-agent`` processes; each test reads the outcome from the shared database. The claim
store's guarantees (no task claimed twice, priority order, takeover of a lost holder's tasks, the
fenced write) are checked on the store directly as well.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy

from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from controlplane.app import build_app
from controlplane.domain.model import Priority, Subtask, SubtaskStatus, Task, TaskStatus
from controlplane.errors import InvalidArgument, Unavailable
from controlplane.storage.base import WriteBatch
from controlplane.storage.replicas import ReplicaRow
from controlplane.storage.sql import claims as claims_module
from controlplane.storage.sql import codec, schema
from controlplane.storage.sql.backend import SqlBackendFactory
from controlplane.storage.sql.claims import SqlClaimStore, claim_store
from controlplane.storage.sql.replicas import replica_store
from controlplane.storage.testing import full_subtask, full_task, minimal_subtask, minimal_task
from tests.harness.server import (
    ControlPlaneProcess,
    empty_postgres,
    free_port,
    make_settings,
    start_app,
    wait_for,
    wait_for_agents,
)

FINISHED = (enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED, enums.TASK_STATUS_CANCELLED)


@pytest.fixture
async def shared_db(tmp_path: Path, postgres_url: str) -> str:
    """The session's PostgreSQL database, migrated and emptied."""
    build_app(make_settings(tmp_path / "migrate", **{"database.primary_url": postgres_url})).storage.close()
    empty_postgres(postgres_url)
    return postgres_url


@pytest.fixture
def replicas(
    tmp_path: Path, shared_db: str, redis_url: str, redis_namespace: str
) -> Iterator[Callable[..., ControlPlaneProcess]]:
    """Start control-plane processes on the shared database and Redis; all are stopped at the end."""
    started: list[ControlPlaneProcess] = []

    def start(name: str, **env: str) -> ControlPlaneProcess:
        process = ControlPlaneProcess(
            tmp_path / name,
            MAOS_DATABASE_PRIMARY_URL=shared_db,
            MAOS_REDIS_URL=redis_url,
            MAOS_REDIS_KEY_PREFIX=redis_namespace,
            MAOS_REPLICAS_HEARTBEAT_INTERVAL="0.5",
            MAOS_REPLICAS_LOST_AFTER="3",
            **env,
        )
        process.start()
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def shared(shared_db: str, redis_url: str, redis_namespace: str) -> dict[str, Any]:
    """Settings of replicas sharing the test's PostgreSQL database and Redis key prefix."""
    return {"database.primary_url": shared_db, "redis.url": redis_url, "redis.key_prefix": redis_namespace}


def rows(url: str, sql: str, **params: Any) -> list[Any]:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sqlalchemy.text(sql), params))
    finally:
        engine.dispose()


async def finished(client: Client, names: list[str], timeout: float) -> list[Any]:
    """Wait until every task is finished; their GetTask answers (full: with subtasks), read from any replica."""
    pending = list(names)
    done: dict[str, Any] = {}

    async def check() -> bool:
        for name in list(pending):
            answer = await client.get_task(name, full=True)
            if answer.task.status in FINISHED:
                done[name] = answer
                pending.remove(name)
            else:
                return False
        return True

    await wait_for(check, timeout, interval=0.02, message=f"{len(pending)} tasks to finish")
    return [done[name] for name in names]


async def agent_names(client: Client) -> dict[str, str]:
    return {agent.name: agent.replica for agent in (await client.list_agents()).agents}


# --- across processes -------------------------------------------------------------------------------


async def test_a_task_submitted_on_one_replica_runs_on_the_agents_of_another(
    replicas: Callable[..., ControlPlaneProcess], agent_processes: Any, shared_db: str
) -> None:
    a, b = replicas("a"), replicas("b")
    await a.wait_ready()
    await b.wait_ready()
    agent_processes(b.address)  # agents only on b
    async with Client(a.address) as on_a, Client(b.address) as on_b:
        await wait_for(lambda: agent_names(on_b), 30, message="the agent on b")
        names = []
        for index in range(20):
            names.append((await on_a.submit_task(description=f"echo {index}")).name)
        tasks = await finished(on_a, names, 60)
        assert {t.task.status for t in tasks} == {enums.TASK_STATUS_COMPLETED}
        [agent] = await agent_names(on_b)
        assert {sub.agent for t in tasks for sub in t.subtasks} == {agent}
        # started within milliseconds of the submit on the other replica (generous bound: a loaded machine)
        waits = [t.task.start_time.ToMicroseconds() - t.task.create_time.ToMicroseconds() for t in tasks]
        assert statistics.median(waits) < 200_000, waits
        # nothing is left claimed: a finished task keeps the holder that finished it
        held = rows(shared_db, "SELECT DISTINCT claimed_by FROM tasks")
        assert len(held) == 1 and held[0][0] and held[0][0].startswith(os.uname().nodename)


async def test_several_hundred_tasks_on_two_replicas_are_each_assigned_once(
    replicas: Callable[..., ControlPlaneProcess], agent_processes: Any, shared_db: str
) -> None:
    a, b = replicas("a"), replicas("b")
    await a.wait_ready()
    await b.wait_ready()
    for address in (a.address, b.address):
        agent_processes(address, "echo", "--max-concurrency", "4")
        agent_processes(address, "echo", "--max-concurrency", "4")
    async with Client(a.address) as on_a, Client(b.address) as on_b:
        # Every replica lists every replica's agents: the four, two on each.
        await wait_for(lambda: _count(agent_names(on_a), 4), 30, message="four agents")
        replica_of = await agent_names(on_a)
        assert sorted(collections.Counter(replica_of.values()).values()) == [2, 2], replica_of

        async def submit(client: Client, count: int, tag: str) -> list[str]:
            async with client.submitter() as submitter:
                answers = await asyncio.gather(
                    *(submitter.submit(description=f"{tag} {i}") for i in range(count))
                )
            return [task.name for task in answers]

        names = [
            n for part in await asyncio.gather(submit(on_a, 200, "a"), submit(on_b, 200, "b")) for n in part
        ]
        tasks = await finished(on_a, names, 180)
    assert {t.task.status for t in tasks} == {enums.TASK_STATUS_COMPLETED}
    # every subtask ran once: its first attempt (no attempt > 0 without a failure)
    subtasks = [sub for t in tasks for sub in t.subtasks]
    assert len(subtasks) == 400 and {sub.attempt for sub in subtasks} == {0}
    holders = {r[0] for r in rows(shared_db, "SELECT claimed_by FROM tasks")}
    assert len(holders) == 2  # both replicas ran work
    ran_on = {replica_of[sub.agent] for sub in subtasks}
    assert len(ran_on) == 2


async def _count(names: Any, at_least: int) -> bool:
    return len(await names) >= at_least


async def test_priority_holds_across_replicas(
    replicas: Callable[..., ControlPlaneProcess], agent_processes: Any, shared_db: str
) -> None:
    a, b = replicas("a"), replicas("b", MAOS_REPLICAS_CLAIM_WINDOW="0")
    await a.wait_ready()
    await b.wait_ready()
    async with Client(a.address) as on_a, Client(b.address) as on_b:
        names: dict[str, str] = {}
        # submitted while no agent is connected anywhere: every task waits unclaimed in the database
        for index in range(12):
            client = on_a if index % 2 else on_b
            names[(await client.submit_task(description=f"low {index}", priority="LOW")).name] = "LOW"
        for index in range(4):
            client = on_b if index % 2 else on_a
            names[(await client.submit_task(description=f"high {index}", priority="HIGH")).name] = "HIGH"
        agent_processes(b.address, "echo", "--max-concurrency", "1")
        tasks = await finished(on_a, list(names), 60)
    order = sorted(tasks, key=lambda t: t.task.start_time.ToMicroseconds())
    assert [names[t.task.name] for t in order] == ["HIGH"] * 4 + ["LOW"] * 12


async def test_the_tasks_of_a_killed_replica_are_taken_over_and_complete(
    replicas: Callable[..., ControlPlaneProcess], agent_processes: Any, shared_db: str
) -> None:
    a, b = replicas("a"), replicas("b")
    await a.wait_ready()
    await b.wait_ready()
    # the agent knows both addresses: when a dies it resumes its session on b
    agent_processes(f"{a.address},{b.address}", "sleep", "--max-concurrency", "4")
    async with Client(b.address) as on_b, Client(a.address) as on_a:
        await wait_for(lambda: agent_names(on_a), 30, message="the agent on a")
        names = [
            (await on_a.submit_task(description=f"sleep {i}", metadata={"sleep_seconds": "2"})).name
            for i in range(8)
        ]

        async def running_on_a() -> bool:
            return (
                len(rows(shared_db, "SELECT id FROM tasks WHERE status = :s", s=int(TaskStatus.RUNNING))) == 4
            )

        await wait_for(running_on_a, 30, message="four tasks running on a")
        [holder] = {r[0] for r in rows(shared_db, "SELECT claimed_by FROM tasks")}
        a.kill()  # SIGKILL: no release, no final commit
        tasks = await finished(on_b, names, 90)
    assert {t.task.status for t in tasks} == {enums.TASK_STATUS_COMPLETED}
    holders = {r[0] for r in rows(shared_db, "SELECT claimed_by FROM tasks")}
    assert holder not in holders  # every task was taken over by b


async def test_claims_fall_back_to_polling_when_redis_goes_away(
    tmp_path: Path, shared_db: str, agent_processes: Any
) -> None:
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        settings = {
            "database.primary_url": shared_db,
            "redis.url": f"redis://127.0.0.1:{port}/0",
            "replicas.claim_poll_interval": 0.3,
        }
        await wait_for(lambda: _answers(port), 10, message="the private Redis")
        a = await start_app(make_settings(tmp_path / "a", **settings))
        b = await start_app(make_settings(tmp_path / "b", **settings))
        try:
            agent_processes(b.address)
            await wait_for_agents(b, 1)
            async with Client(a.address) as on_a:
                first = (await on_a.submit_task(description="woken")).name
                await finished(on_a, [first], 20)
                redis.send_signal(signal.SIGKILL)
                redis.wait(timeout=10)
                passes = b.engine.claims.passes  # type: ignore[union-attr]
                late = (await on_a.submit_task(description="found by polling")).name
                [answer] = await finished(on_a, [late], 20)
            assert answer.task.status == enums.TASK_STATUS_COMPLETED
            assert b.engine.claims.passes > passes  # type: ignore[union-attr]
        finally:
            await b.stop(grace=1.0)
            await a.stop(grace=1.0)
    finally:
        if redis.poll() is None:
            redis.kill()
            redis.wait(timeout=10)


def _answers(port: int) -> bool:
    import redis as redis_module

    client = redis_module.Redis(port=port, socket_connect_timeout=0.2)
    try:
        return bool(client.ping())
    except redis_module.RedisError:
        return False
    finally:
        client.close()


async def test_a_dependency_finished_on_another_replica_starts_its_dependant(
    tmp_path: Path, shared: dict[str, Any], agent_processes: Any
) -> None:
    settings = {
        **shared,
    }
    a = await start_app(make_settings(tmp_path / "a", **settings))
    b = await start_app(make_settings(tmp_path / "b", **settings))
    try:
        agent_processes(b.address, "sleep")
        await wait_for_agents(b, 1)
        async with Client(a.address) as on_a:
            first = await on_a.submit_task(description="first", metadata={"sleep_seconds": "0.5"})
            then = await on_a.submit_task(description="then", depends_on=[first.name])
            assert a.engine.holds(then.name.split("/")[1])  # it waits on a, which accepted it
            tasks = await finished(on_a, [first.name, then.name], 30)
        assert [t.task.status for t in tasks] == [enums.TASK_STATUS_COMPLETED] * 2
        assert tasks[1].task.start_time.ToMicroseconds() >= tasks[0].task.end_time.ToMicroseconds()
    finally:
        await b.stop(grace=1.0)
        await a.stop(grace=1.0)


async def test_a_task_handed_over_is_claimed_by_id_from_its_wake_up(
    tmp_path: Path, shared: dict[str, Any], shared_db: str, agent_processes: Any
) -> None:
    """A submit on a replica with no agent reaches the replica with one through the wake-up naming it (a
    claim by id), not a search: the poll is too slow to be the one that finds it."""
    settings = {**shared, "replicas.claim_poll_interval": 60}
    a = await start_app(make_settings(tmp_path / "a", **settings))
    b = await start_app(make_settings(tmp_path / "b", **settings))
    try:
        agent_processes(b.address, "echo")
        await wait_for_agents(b, 1)
        passes = b.engine.claims.passes
        async with Client(a.address) as on_a:
            names = [(await on_a.submit_task(description=f"echo {i}")).name for i in range(3)]
            done = await finished(on_a, names, 30)
        assert [t.task.status for t in done] == [enums.TASK_STATUS_COMPLETED] * 3
        assert b.engine.claims.claimed_by_id == 3 and a.engine.claims.released == 3
        assert b.engine.claims.passes > passes
        ids = [name.split("/")[1] for name in names]
        held = rows(shared_db, "SELECT claimed_by FROM tasks WHERE id = ANY(:i)", i=ids)
        assert [row[0] for row in held] == [b.engine.replica] * 3
    finally:
        await b.stop(grace=1.0)
        await a.stop(grace=1.0)


def execute(url: str, sql: str) -> None:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(sql))
    finally:
        engine.dispose()


def refuse_let_go(url: str, mark: str) -> None:
    """Make the database refuse to let go of tasks marked ``mark`` (a trigger), until :func:`allow_let_go`."""
    execute(
        url,
        "CREATE FUNCTION refuse_let_go() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF OLD.claimed_by = '{mark}' AND NEW.claimed_by IS NULL THEN RAISE EXCEPTION 'let-go refused'; "
        "END IF; RETURN NEW; END $$",
    )
    execute(
        url,
        "CREATE TRIGGER refuse_let_go BEFORE UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION refuse_let_go()",
    )


def allow_let_go(url: str) -> None:
    execute(url, "DROP TRIGGER IF EXISTS refuse_let_go ON tasks")
    execute(url, "DROP FUNCTION IF EXISTS refuse_let_go()")


async def test_a_let_go_that_fails_is_tried_again_on_the_poll(
    tmp_path: Path, shared: dict[str, Any], shared_db: str, agent_processes: Any, caplog: Any
) -> None:
    """A submit on a replica with no agent hands its task over; its let-go is refused by the database (a
    trigger) while no replica could take the task: the task stays leaving, then is let go on the poll."""
    settings = {**shared, "replicas.claim_poll_interval": 0.5}
    a = await start_app(make_settings(tmp_path / "a", **settings))
    b = await start_app(make_settings(tmp_path / "b", **settings))
    mark = f"~leaving:{a.engine.replica}"
    refuse_let_go(shared_db, mark)
    try:
        async with Client(a.address) as on_a:
            name = (await on_a.submit_task(description="echo later")).name
            task_id = name.split("/")[1]
            await wait_for(
                lambda: "could not let go of 1 tasks" in caplog.text, 10, message="the let-go failing"
            )
            assert not a.engine.holds(task_id) and not b.engine.holds(task_id)
            assert rows(shared_db, "SELECT claimed_by FROM tasks WHERE id = :i", i=task_id)[0][0] == mark
            allow_let_go(shared_db)
            await wait_for(
                lambda: (
                    rows(shared_db, "SELECT claimed_by FROM tasks WHERE id = :i", i=task_id)[0][0] is None
                ),
                10,
                message="the let-go tried again on the poll",
            )
            agent_processes(b.address, "echo")  # now a replica can take it: its claim pass finds it
            [done] = await finished(on_a, [name], 30)
        assert done.task.status == enums.TASK_STATUS_COMPLETED
        assert (
            rows(shared_db, "SELECT claimed_by FROM tasks WHERE id = :i", i=task_id)[0][0] == b.engine.replica
        )
    finally:
        allow_let_go(shared_db)
        await b.stop(grace=1.0)
        await a.stop(grace=1.0)


async def test_a_cancel_of_a_task_just_handed_over_is_served_by_the_replica_that_gave_it_up(
    tmp_path: Path, shared: dict[str, Any], shared_db: str, caplog: Any
) -> None:
    """A cancel reaching replica b while the task a handed over is still marked leaving from a (a's let-go
    refused by the database, as it is for a moment after each hand-over): a takes the task back and
    cancels it, where b could not claim it (a live replica's mark)."""
    settings = {**shared, "replicas.claim_poll_interval": 0.5}
    a = await start_app(make_settings(tmp_path / "a", **settings))
    b = await start_app(make_settings(tmp_path / "b", **settings))
    mark = f"~leaving:{a.engine.replica}"
    refuse_let_go(shared_db, mark)
    try:
        async with Client(a.address) as on_a, Client(b.address) as on_b:
            name = (await on_a.submit_task(description="echo later")).name
            task_id = name.split("/")[1]
            await wait_for(
                lambda: "could not let go of 1 tasks" in caplog.text, 10, message="the let-go failing"
            )
            assert not a.engine.holds(task_id) and not b.engine.holds(task_id)
            assert rows(shared_db, "SELECT claimed_by FROM tasks WHERE id = :i", i=task_id)[0][0] == mark
            cancelled = await on_b.cancel_task(name, reason="not needed")
            assert cancelled.status == enums.TASK_STATUS_CANCELLED
            assert not b.engine.holds(task_id)
            held = rows(shared_db, "SELECT claimed_by, status FROM tasks WHERE id = :i", i=task_id)
            assert tuple(held[0]) == (a.engine.replica, int(TaskStatus.CANCELLED))
    finally:
        allow_let_go(shared_db)
        await b.stop(grace=1.0)
        await a.stop(grace=1.0)


async def test_a_task_waiting_for_plan_approval_is_planned_where_it_is_submitted_with_no_agent_there(
    tmp_path: Path, shared: dict[str, Any], shared_db: str
) -> None:
    """A submit on a replica with no agent hands its task over unplanned, but not one with ``approve_plan``:
    its plan is made and shown there, waiting for approval."""
    a = await start_app(make_settings(tmp_path / "a", **shared))
    b = await start_app(make_settings(tmp_path / "b", **shared))
    try:
        async with Client(a.address) as on_a, Client(b.address) as on_b:
            plain = (await on_a.submit_task(description="echo later")).name.split("/")[1]
            name = (await on_a.submit_task(description="echo later", approve_plan=True)).name
            task_id = name.split("/")[1]

            async def waiting() -> bool:
                task = (await on_b.get_task(name, full=True)).task
                return "waiting for plan approval" in task.status_reason

            await wait_for(waiting, 10, message="the task planned and waiting for approval")
            assert a.engine.holds(task_id) and not a.engine.holds(plain)
            claimed_by = "SELECT claimed_by FROM tasks WHERE id = :i"
            await wait_for(
                lambda: rows(shared_db, claimed_by, i=plain)[0][0] is None, 10, message="the plain one let go"
            )
            assert rows(shared_db, claimed_by, i=task_id)[0][0] == a.engine.replica
            shown = await on_b.get_task(plain, full=True)  # what the user sees of the one sent away
            assert (shown.task.status, len(shown.subtasks), shown.task.status_reason) == (
                enums.TASK_STATUS_PENDING,
                0,
                "planning",
            )
            assert a.engine.claims.released == 1  # the plain one alone was sent away
    finally:
        await b.stop(grace=1.0)
        await a.stop(grace=1.0)


async def test_claim_task_takes_one_task_nobody_holds(
    tmp_path: Path, shared_db: str, shared: dict[str, Any]
) -> None:
    settings = {
        **shared,
    }
    a = await start_app(make_settings(tmp_path / "a", **settings))
    b = await start_app(make_settings(tmp_path / "b", **settings))
    try:
        async with Client(a.address) as on_a:
            task_id = (await on_a.submit_task(description="nobody can take it")).name.split("/")[1]
        await wait_for(
            lambda: (
                not a.engine.holds(task_id)
                and rows(shared_db, "SELECT claimed_by FROM tasks WHERE id = :i", i=task_id)[0][0] is None
            ),
            5,
            message="a giving the task up (out of its memory, then released once its events are out)",
        )
        assert not b.engine.holds(task_id)
        assert await b.engine.claim_task(task_id)
        assert b.engine.holds(task_id) and not await a.engine.claim_task(task_id)
        with pytest.raises(Unavailable, match=f"held by replica {b.engine.replica}"):
            await a.engine.cancel(task_id, "not yours", "")  # a live replica's task: the call must go there
        await b.engine.cancel(task_id, "not needed", "")  # what the replica holding a task may do
        held = rows(shared_db, "SELECT claimed_by FROM tasks WHERE id = :i", i=task_id)
        assert held[0][0] == b.engine.replica
        assert (await a.engine.get_task(task_id)).status == TaskStatus.CANCELLED  # a reads what b committed
        assert (await a.engine.count_tasks_by_status())[TaskStatus.CANCELLED] == 1
        retried = await a.engine.retry(task_id)  # a finished task is retried where it is asked
        assert retried.status == TaskStatus.QUEUED
        counts = await b.engine.count_tasks_by_status()
        assert (counts[TaskStatus.CANCELLED], counts[TaskStatus.QUEUED]) == (0, 1)
    finally:
        await b.stop(grace=1.0)
        await a.stop(grace=1.0)


# --- the claim store ---------------------------------------------------------------------------------


@pytest.fixture
def store(shared_db: str) -> Iterator[tuple[SqlClaimStore, Any]]:
    backend = SqlBackendFactory().open(shared_db)
    claims = claim_store(backend)
    registry = replica_store(backend)
    assert claims is not None and registry is not None
    for name in ("x", "y", "z"):  # live replicas: what one holds the others leave
        registry.register_replica(ReplicaRow(name, f"{name}:1", "0", time.time(), time.time()), 0.0)
    try:
        yield claims, backend
    finally:
        backend.close()


def _task(index: int, priority: Priority = Priority.NORMAL, created: float = 1000.0) -> Task:
    return Task(
        id=f"t{index:04d}",
        seq=index + 1,
        owner="u",
        description="d",
        status=TaskStatus.QUEUED,
        priority=priority,
        create_time=created + index * 0.001,
    )


def test_concurrent_claimers_never_take_one_task_twice(store: tuple[SqlClaimStore, Any]) -> None:
    claims, backend = store
    backend.write(WriteBatch(tasks=[_task(i) for i in range(300)]))
    taken: dict[str, list[str]] = {"x": [], "y": [], "z": []}

    def claimer(name: str) -> None:
        while True:
            tasks, _ = claims.claim(name, time.time(), 30.0, 7, 120.0)
            if not tasks:
                return
            taken[name].extend(t.id for t in tasks)

    threads = [threading.Thread(target=claimer, args=(name,)) for name in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    every = [task_id for ids in taken.values() for task_id in ids]
    assert sorted(every) == [f"t{i:04d}" for i in range(300)]  # each once
    assert sum(1 for ids in taken.values() if ids) >= 2


def test_claims_go_best_first_and_take_over_a_lost_holder(store: tuple[SqlClaimStore, Any]) -> None:
    claims, backend = store
    backend.write(
        WriteBatch(
            tasks=[
                _task(0, Priority.LOW),
                _task(1, Priority.CRITICAL),
                _task(2, Priority.NORMAL, created=900.0),
            ]
        )
    )
    order = [t.id for t in claims.claim("x", time.time(), 30.0, 3, 120.0)[0]]
    assert order == ["t0001", "t0002", "t0000"]  # priority first, then age (120 s per level)
    assert claims.claim("y", time.time(), 30.0, 3, 120.0) == ([], [])  # x is live: it keeps them
    assert claims.holder("t0001") == "x"
    # x falls silent: once its heartbeat is older than lost_after, y takes its tasks over
    later = time.time() + 31.0
    replica_store(backend).heartbeat_replica("y", later, {})  # type: ignore[union-attr]
    taken, _ = claims.claim("y", later, 30.0, 3, 120.0)
    assert [t.id for t in taken] == order
    assert claims.holder("t0000") == "y"


def test_a_deep_queue_is_claimed_in_the_ready_queues_order_across_priorities(
    store: tuple[SqlClaimStore, Any],
) -> None:
    claims, backend = store
    levels = list(Priority)
    tasks = [_task(i, levels[i % len(levels)], created=1000.0 + (i % 7) * 50.0) for i in range(400)]
    done = [_task(1000 + i) for i in range(200)]
    for task in done:
        task.status = TaskStatus.COMPLETED
    backend.write(WriteBatch(tasks=tasks + done))
    order = sorted(tasks, key=lambda t: (t.create_time - int(t.priority) * 120.0, t.seq))
    held_by_x = {t.id for t in order[:10]}  # x, live, holds the ten best: nobody else takes them
    assert {t.id for t in claims.claim("x", time.time(), 30.0, 10, 120.0)[0]} == held_by_x
    taken: list[str] = []
    while batch := claims.claim("y", time.time(), 30.0, 7, 120.0)[0]:
        taken += [t.id for t in batch]
    assert taken == [t.id for t in order[10:]]  # best first, none finished, none of x's
    # Only those that run before a given point, when asked so (a full replica swapping its worst).
    claims.release_all("y")
    worst = order[20].create_time - int(order[20].priority) * 120.0
    better = claims.claim("z", time.time(), 30.0, 50, 120.0, better_than=worst)[0]
    assert [t.id for t in better] == [t.id for t in order[10:20]]


def test_a_write_of_a_task_another_replica_claimed_changes_nothing(store: tuple[SqlClaimStore, Any]) -> None:
    claims, backend = store
    backend.claimant = "x"
    backend.write(WriteBatch(tasks=[_task(0)]))
    assert claims.holder("t0000") == "x"
    backend.write(WriteBatch(released=["t0000"]))  # given up: leaving, still x's until let go
    assert claims.holder("t0000") == "x"
    assert claims.let_go("x", ["t0000"]) == []
    assert claims.holder("t0000") is None
    [taken], _ = claims.claim("y", time.time(), 30.0, 1, 120.0)
    stale = _task(0)
    stale.status = TaskStatus.FAILED
    sub = Subtask(task_id="t0000", id="s0", title="s", instructions="i", status=SubtaskStatus.FAILED)
    backend.write(WriteBatch(tasks=[stale], subtasks=[sub]))  # x, stale, writes after y claimed it
    assert backend.get_task("t0000").status == TaskStatus.QUEUED
    assert claims.holder("t0000") == "y"
    backend.claimant = "y"
    sub.status = SubtaskStatus.QUEUED
    backend.write(WriteBatch(subtasks=[sub]))  # the holder's write of the subtask lands
    backend.claimant = "x"
    sub.status = SubtaskStatus.FAILED
    backend.write(WriteBatch(subtasks=[sub]))  # the stale one's does not
    assert [s.status for s in backend.get_subtasks("t0000")] == [SubtaskStatus.QUEUED]


def _given_up(backend: Any, holder: str, *tasks: Task) -> None:
    """``holder`` writes tasks, then gives them up (the commit of their state marks them leaving)."""
    backend.claimant = holder
    backend.write(WriteBatch(tasks=list(tasks)))
    backend.write(WriteBatch(released=[t.id for t in tasks]))


def test_a_task_given_up_is_claimed_by_id_from_its_wake_up_before_it_is_let_go(
    store: tuple[SqlClaimStore, Any],
) -> None:
    claims, backend = store
    _given_up(backend, "x", _task(0), _task(1))
    assert claims.holder("t0000") == "x"  # leaving: still x's while x lives
    assert claims.claim("y", time.time(), 30.0, 5, 120.0) == ([], [])  # no claim pass takes it
    assert claims.claim_named("y", time.time(), 30.0, ["t0000"], "z", 5, 120.0) == ([], [])  # not z's to give
    taken, _ = claims.claim_named("y", time.time(), 30.0, ["t0000"], "x", 5, 120.0)
    assert [t.id for t in taken] == ["t0000"]
    assert claims.holder("t0000") == "y"
    # x lets go of both: the one y claimed stays y's, the other is claimable by any pass
    assert claims.let_go("x", ["t0000", "t0001"]) == []
    assert claims.holder("t0000") == "y"
    assert [t.id for t in claims.claim("z", time.time(), 30.0, 5, 120.0)[0]] == ["t0001"]


def test_a_wake_up_naming_tasks_another_replica_took_claims_nothing(store: tuple[SqlClaimStore, Any]) -> None:
    claims, backend = store
    _given_up(backend, "x", _task(0))
    assert len(claims.claim_named("y", time.time(), 30.0, ["t0000"], "x", 5, 120.0)[0]) == 1
    assert claims.claim_named("z", time.time(), 30.0, ["t0000"], "x", 5, 120.0) == ([], [])  # y took it
    assert claims.holder("t0000") == "y"
    # x took back a task it gave up (a let-go that failed, then a cancel on x): a late wake-up takes nothing
    _given_up(backend, "x", _task(1))
    [back], _ = claims.claim("x", time.time(), 30.0, 1, 120.0, None, ["t0001"], False, None, ["x"])
    assert back.id == "t0001" and claims.holder("t0001") == "x"
    assert claims.claim_named("y", time.time(), 30.0, ["t0001"], "x", 5, 120.0) == ([], [])
    assert claims.holder("t0001") == "x"


def test_a_named_task_the_claimer_does_not_want_is_let_go(store: tuple[SqlClaimStore, Any]) -> None:
    claims, backend = store
    _given_up(backend, "x", _task(0))
    refused = claims.claim_named("y", time.time(), 30.0, ["t0000"], "x", 5, 120.0, lambda task, subs: False)
    assert refused == ([], [])
    assert claims.holder("t0000") is None  # x gave it up: claimable by any pass, not x's again
    assert claims.let_go("x", ["t0000"]) == []


def test_a_named_task_whose_give_back_fails_is_given_back_later(
    store: tuple[SqlClaimStore, Any], shared_db: str
) -> None:
    """The claim by id commits on its own; the give-back of a task the claimer refuses is a second statement:
    failing, it is remembered and done by :meth:`give_back_unreturned` (the claims poll)."""
    claims, backend = store
    _given_up(backend, "x", _task(0), _task(1))
    execute(
        shared_db,
        "CREATE FUNCTION refuse_give_back() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF OLD.claimed_by = 'y' AND NEW.claimed_by IS NULL THEN RAISE EXCEPTION 'give-back refused'; "
        "END IF; RETURN NEW; END $$",
    )
    execute(
        shared_db,
        "CREATE TRIGGER refuse_give_back BEFORE UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION refuse_give_back()",
    )
    try:
        taken, _ = claims.claim_named(
            "y", time.time(), 30.0, ["t0000", "t0001"], "x", 5, 120.0, lambda task, subs: task.id == "t0001"
        )
        assert [t.id for t in taken] == ["t0001"]  # what it wanted is claimed all the same
        assert claims.holder("t0000") == "y" and claims.unreturned == {"t0000": None}
        with pytest.raises(sqlalchemy.exc.DBAPIError, match="give-back refused"):
            claims.give_back_unreturned("y")
        assert claims.unreturned == {"t0000": None}  # kept for the next try
    finally:
        execute(shared_db, "DROP TRIGGER IF EXISTS refuse_give_back ON tasks")
        execute(shared_db, "DROP FUNCTION IF EXISTS refuse_give_back()")
    assert claims.give_back_unreturned("y") == 0
    assert (claims.holder("t0000"), claims.holder("t0001"), claims.unreturned) == (None, "y", {})


def _lock_waits(url: str) -> list[str]:
    """The statements of the sessions waiting for a lock now."""
    found = rows(url, "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
    return [str(row[0]) for row in found]


def test_a_named_claim_waits_for_a_row_locked_meanwhile_rather_than_passing_it_over(
    store: tuple[SqlClaimStore, Any], shared_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    claims, backend = store
    monkeypatch.setattr(claims_module, "NAMED_LOCK_TIMEOUT", 30.0)
    _given_up(backend, "x", _task(0))
    engine = sqlalchemy.create_engine(shared_db)
    result: list[Any] = []
    try:
        with engine.connect() as conn:  # another transaction holds the row (x letting it go)
            conn.execute(sqlalchemy.text("SELECT id FROM tasks WHERE id = 't0000' FOR UPDATE"))
            claimer = threading.Thread(
                target=lambda: result.append(
                    claims.claim_named("y", time.time(), 30.0, ["t0000"], "x", 5, 120.0)
                )
            )
            claimer.start()
            deadline = time.monotonic() + 10
            while not any("lock_timeout" in query for query in _lock_waits(shared_db)):
                assert time.monotonic() < deadline, "the claim by id never waited for the row's lock"
                assert claimer.is_alive() and not result, result  # (it must not pass the row over)
                time.sleep(0.01)
            assert claimer.is_alive() and not result  # it waits for the lock
            assert claims.let_go("x", ["t0000"]) == ["t0000"]  # passed over: to let go again
            conn.rollback()
            claimer.join(30)
    finally:
        engine.dispose()
    assert [t.id for t in result[0][0]] == ["t0000"]
    assert claims.holder("t0000") == "y"
    assert claims.let_go("x", ["t0000"]) == []  # let go again: y's claim stands


def test_a_named_claim_waiting_past_its_lock_timeout_claims_nothing(
    store: tuple[SqlClaimStore, Any], shared_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The claim by id runs on the storage thread: it waits a bounded time, then claims nothing (the
    claims poll finds the task once it is let go) and leaves the row as it was."""
    claims, backend = store
    monkeypatch.setattr(claims_module, "NAMED_LOCK_TIMEOUT", 0.2)
    _given_up(backend, "x", _task(0))
    engine = sqlalchemy.create_engine(shared_db)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT id FROM tasks WHERE id = 't0000' FOR UPDATE"))
            started = time.monotonic()
            assert claims.claim_named("y", time.time(), 30.0, ["t0000"], "x", 5, 120.0) == ([], [])
            assert time.monotonic() - started < 5
            conn.rollback()
    finally:
        engine.dispose()
    assert rows(shared_db, "SELECT claimed_by FROM tasks WHERE id = 't0000'")[0][0] == "~leaving:x"
    taken, _ = claims.claim_named("y", time.time(), 30.0, ["t0000"], "x", 5, 120.0)  # unlocked: claimed
    assert [t.id for t in taken] == ["t0000"]


def test_a_clean_stop_and_a_claim_by_id_lock_task_rows_in_one_order(
    store: tuple[SqlClaimStore, Any], shared_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """x stops (release_all) while y claims by id the tasks x handed over, the most urgent having the larger
    id: both lock in id order, so neither is chosen as a deadlock victim."""
    claims, backend = store
    monkeypatch.setattr(claims_module, "NAMED_LOCK_TIMEOUT", 30.0)
    urgent = _task(1, Priority.HIGH)  # claimed first, locked last
    _given_up(backend, "x", _task(0), urgent)
    engine = sqlalchemy.create_engine(shared_db)
    result: list[Any] = []
    try:
        with engine.connect() as conn:  # x's stop, paused after locking t0000 (id order)
            conn.execute(sqlalchemy.text("SELECT id FROM tasks WHERE id = 't0000' FOR UPDATE"))
            claimer = threading.Thread(
                target=lambda: result.append(
                    claims.claim_named("y", time.time(), 30.0, ["t0000", "t0001"], "x", 5, 120.0)
                )
            )
            claimer.start()
            deadline = time.monotonic() + 10
            while not any("lock_timeout" in query for query in _lock_waits(shared_db)):
                assert time.monotonic() < deadline, "the claim by id never waited for the row's lock"
                time.sleep(0.01)
            # y waits on t0000 holding nothing: x's stop locks t0001 without waiting on y
            conn.execute(sqlalchemy.text("SELECT id FROM tasks WHERE id = 't0001' FOR UPDATE NOWAIT"))
            conn.execute(sqlalchemy.text("UPDATE tasks SET claimed_by = NULL WHERE id IN ('t0000', 't0001')"))
            conn.commit()
            claimer.join(30)
    finally:
        engine.dispose()
    assert result and [t.id for t in result[0][0]] == ["t0001", "t0000"]  # let go meanwhile: claimable
    assert (claims.holder("t0000"), claims.holder("t0001")) == ("y", "y")


def test_a_let_go_that_passed_over_a_claim_that_aborted_lets_go_when_tried_again(
    store: tuple[SqlClaimStore, Any], shared_db: str
) -> None:
    claims, backend = store
    _given_up(backend, "x", _task(0), _task(1))
    engine = sqlalchemy.create_engine(shared_db)
    try:
        with engine.connect() as conn:  # a claim by id of t0000 in flight, which then aborts
            conn.execute(sqlalchemy.text("UPDATE tasks SET claimed_by = 'y' WHERE id = 't0000'"))
            assert claims.let_go("x", ["t0000", "t0001"]) == ["t0000"]
            conn.rollback()
    finally:
        engine.dispose()
    assert (claims.holder("t0000"), claims.holder("t0001")) == ("x", None)  # still leaving from x
    assert claims.let_go("x", ["t0000"]) == []
    assert claims.holder("t0000") is None


def test_a_task_left_leaving_is_claimable_once_its_holder_is_lost_and_freed_by_its_clean_stop(
    store: tuple[SqlClaimStore, Any],
) -> None:
    """The give-up's let-go failed and its wake-up was lost: the task waits for its holder's stop or loss."""
    claims, backend = store
    _given_up(backend, "x", _task(0), _task(1))
    assert claims.release_all("x", ["t0001"]) == 1  # a clean stop frees what it gave up too
    assert claims.holder("t0000") is None
    later = time.time() + 31.0  # x falls silent: its leaving task is claimable like the rest of its tasks
    replica_store(backend).heartbeat_replica("y", later, {})  # type: ignore[union-attr]
    assert [t.id for t in claims.claim("y", later, 30.0, 5, 120.0)[0]] == ["t0000", "t0001"]


# --- settings, self-fencing, SQLite ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("replicas.claim_window", "-1", "replicas.claim_window: cannot be negative"),
        ("replicas.claim_window", "many", "replicas.claim_window: invalid literal for int"),
        (
            "replicas.claim_poll_interval",
            "0",
            "replicas.claim_poll_interval: must be a duration greater than 0",
        ),
        ("replicas.claim_poll_interval", "soon", "replicas.claim_poll_interval: 'soon' is not a duration"),
    ],
)
def test_bad_claim_settings_are_refused_by_name(tmp_path: Path, key: str, value: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as raised:
        make_settings(tmp_path, **{key: value})
    assert raised.value.violations[0].field == key


async def test_a_lost_after_within_two_heartbeats_is_refused_on_postgres(
    tmp_path: Path, shared_db: str
) -> None:
    settings = make_settings(
        tmp_path,
        **{
            "database.primary_url": shared_db,
            "replicas.heartbeat_interval": 5,
            "replicas.lost_after": 8,
        },
    )
    with pytest.raises(InvalidArgument, match=r"replicas.lost_after \(8 s\) must be more than twice"):
        build_app(settings)


def frozen(app: Any, seconds: float) -> None:
    """As if ``app`` had been frozen ``seconds`` since its last heartbeat (its heartbeats are stopped first)."""
    registry = app.pm.get_plugin("maos-replicas").registry
    registry.last_ok_clock -= seconds


async def test_a_replica_that_missed_its_heartbeats_fences_itself(
    tmp_path: Path, shared_db: str, shared: dict[str, Any]
) -> None:
    a = await start_app(make_settings(tmp_path / "a", **shared))
    claims = a.engine.claims
    assert claims is not None
    stopped: list[str] = []
    a.on_fenced = stopped.append  # (maos start stops its process; a default app stops itself)
    try:
        async with Client(a.address) as on_a:
            task_id = (await on_a.submit_task(description="waits for an agent")).name.split("/")[1]
            other = (await on_a.submit_task(description="waits too")).name.split("/")[1]
        await wait_for(lambda: not a.engine.holds(task_id), 5, message="a giving the task up")
        assert await a.engine.claim_task(task_id)  # held here again (until the next poll)
        await a.pm.get_plugin("maos-replicas").registry._job.stop()
        frozen(a, 31.0)  # its heartbeats not written for longer than lost_after (30 s)
        assert claims.check_fence()
        assert stopped and "could not write its heartbeat" in stopped[0]
        with pytest.raises(Exception, match="writes nothing more"):
            await a.engine.cancel(task_id, "too late", "")  # its change is not written: others may hold it
        assert (
            rows(shared_db, "SELECT status FROM tasks WHERE id = :i", i=task_id)[0][0] != TaskStatus.CANCELLED
        )
        assert not await a.engine.claim_task(other)  # a fenced replica claims nothing
    finally:
        await a.stop(grace=1.0)


async def test_a_replica_frozen_past_lost_after_fences_itself_before_its_next_write(
    tmp_path: Path, shared_db: str, shared: dict[str, Any]
) -> None:
    # No claim poll runs during the test: only the check before each write can notice.
    a = await start_app(make_settings(tmp_path / "a", **shared, **{"replicas.claim_poll_interval": 3600}))
    stopped: list[str] = []
    a.on_fenced = stopped.append
    try:
        async with Client(a.address) as on_a:
            task_id = (await on_a.submit_task(description="waits for an agent")).name.split("/")[1]
        assert await a.engine.claim_task(task_id)
        await a.pm.get_plugin("maos-replicas").registry._job.stop()
        assert not stopped and not a.engine.committer.fenced
        frozen(a, 31.0)  # it wakes: the first thing it does is a write
        with pytest.raises(Exception, match="writes nothing more"):
            await a.engine.cancel(task_id, "written by a replica others think lost", "")
        assert len(stopped) == 1 and "could not write its heartbeat for 3" in stopped[0]
        assert a.engine.claims is not None and a.engine.claims.fenced
        status = rows(shared_db, "SELECT status FROM tasks WHERE id = :i", i=task_id)[0][0]
        assert status != TaskStatus.CANCELLED
    finally:
        await a.stop(grace=1.0)


async def test_a_fenced_app_in_this_process_stops_itself(
    tmp_path: Path, shared_db: str, shared: dict[str, Any]
) -> None:
    a = await start_app(make_settings(tmp_path / "a", **shared))
    assert a.on_fenced is None  # built here, not by maos start: fencing stops the app, not the process
    try:
        await a.pm.get_plugin("maos-replicas").registry._job.stop()
        frozen(a, 31.0)  # its next write (a background job's or this submit's) fences it
        async with Client(a.address) as on_a:
            with pytest.raises(MaosRpcError) as refused:
                await on_a.submit_task(description="after the freeze")
        assert refused.value.code == grpc.StatusCode.UNAVAILABLE  # refused, or the app already stopped
        await wait_for(lambda: not a._started, 15, message="the fenced app to stop itself")
        assert not rows(shared_db, "SELECT id FROM replicas WHERE id = :i", i=a.engine.replica)
    finally:
        await a.stop(grace=1.0)  # (waits for the stop under way; stops nothing twice)


async def test_maos_start_exits_when_its_replica_fenced_itself(
    replicas: Callable[..., ControlPlaneProcess], shared_db: str
) -> None:
    a = replicas("a", MAOS_REPLICAS_CLAIM_POLL_INTERVAL="3600")
    await a.wait_ready()
    assert a.process is not None
    os.kill(a.process.pid, signal.SIGSTOP)  # frozen past replicas.lost_after (3 s)
    until = time.monotonic() + 4.0
    await wait_for(lambda: time.monotonic() >= until, 10, 0.05, "the freeze to last")
    os.kill(a.process.pid, signal.SIGCONT)
    async with Client(a.address) as on_a:  # its first write as it wakes is refused
        with pytest.raises(MaosRpcError) as refused:
            await on_a.submit_task(description="after the freeze")
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE, refused.value
    await wait_for(lambda: a.process is not None and a.process.poll() is not None, 20, 0.05, "a to exit")
    assert a.process.returncode == 0  # a clean stop, as on SIGTERM
    assert not rows(shared_db, "SELECT id FROM replicas WHERE address = :a", a=a.address)


async def test_on_sqlite_one_process_holds_every_task(control_plane: Any, agent_processes: Any) -> None:
    engine = control_plane.engine
    # No claims; after a dispatch pass only the queue window acts (tests/controlplane/scheduler/test_queue_window.py).
    assert engine.claims is None and engine.spill is not None
    assert engine.dispatch.after_pass == engine.spill.dispatched
    assert engine.holds("t-anything") and await engine.claim_task("t-anything")
    agent_processes(control_plane.address)
    await wait_for_agents(control_plane, 1)
    async with Client(control_plane.address) as client:
        names = [(await client.submit_task(description=f"echo {i}")).name for i in range(3)]
        tasks = await finished(client, names, 30)
    assert {t.task.status for t in tasks} == {enums.TASK_STATUS_COMPLETED}
    seqs = [r[0] for r in rows(control_plane.settings.database_url, "SELECT seq FROM tasks")]
    assert sorted(seqs) == [1, 2, 3]  # the counter of one process, as before
    assert rows(control_plane.settings.database_url, "SELECT claimed_by FROM tasks") == [(None,)] * 3


async def test_a_wake_up_starts_no_claim_pass_where_no_agent_could_take_the_work(
    tmp_path: Path, shared: dict[str, Any], agent_processes: Any
) -> None:
    settings = {**shared, "replicas.claim_poll_interval": 60}  # no poll during the test: only wake-ups
    a, b, c = [await start_app(make_settings(tmp_path / name, **settings)) for name in "abc"]
    try:
        agent_processes(b.address, "echo")
        agent_processes(c.address, "sleep")
        await wait_for_agents(b, 1)
        await wait_for_agents(c, 1)
        on_c = c.engine.claims
        assert on_c is not None
        async with Client(a.address) as on_a:
            names = [
                (await on_a.submit_task(description=f"echo {i}", agent_type="echo")).name for i in range(5)
            ]
            answers = await finished(on_a, names, 30)
        assert {t.task.status for t in answers} == {enums.TASK_STATUS_COMPLETED}
        assert {
            r[0] for r in rows(shared["database.primary_url"], "SELECT DISTINCT claimed_by FROM tasks")
        } == {b.engine.replica}
        assert on_c.skipped >= 1  # c heard the wake-ups and did not look: its sleep agent takes no echo work
    finally:
        for app in (c, b, a):
            await app.stop(grace=1.0)


async def test_a_full_replica_takes_more_urgent_work_and_gives_back_its_worst(
    tmp_path: Path, shared: dict[str, Any], agent_processes: Any
) -> None:
    settings = {
        **shared,
        "replicas.claim_window": 8,
        "replicas.claim_poll_interval": 60,  # no poll during the test: only wake-ups move work
    }
    a = await start_app(make_settings(tmp_path / "a", **settings))
    b = await start_app(make_settings(tmp_path / "b", **settings))
    try:
        agent_processes(b.address, "sleep", "--max-concurrency", "1")
        await wait_for_agents(b, 1)
        async with Client(a.address) as on_a:
            slow = {"sleep_seconds": "0.2"}
            low = [
                (await on_a.submit_task(description=f"low {i}", priority="LOW", metadata=slow)).name
                for i in range(30)
            ]
            await wait_for(lambda: len(b.engine.claims.queued) >= 8, 10, message="b full")  # type: ignore[union-attr]
            urgent_since = time.time() * 1_000_000
            high = [
                (await on_a.submit_task(description=f"high {i}", priority="HIGH", metadata=slow)).name
                for i in range(3)
            ]
            tasks = await finished(on_a, low + high, 60)
        starts = {t.task.name: t.task.start_time.ToMicroseconds() for t in tasks}
        last_urgent = max(starts[name] for name in high)
        # the urgent tasks started right after the slow one running: b, full of slow work, took them in at
        # once (not after the 8 it held) and gave back its worst
        assert sum(1 for name in low if urgent_since < starts[name] < last_urgent) <= 3
        assert b.engine.claims.released > 0  # type: ignore[union-attr]
    finally:
        await b.stop(grace=1.0)
        await a.stop(grace=1.0)


def test_tasks_no_agent_of_the_claimer_can_take_do_not_hide_the_ones_behind(
    store: tuple[SqlClaimStore, Any],
) -> None:
    claims, backend = store
    backend.write(WriteBatch(tasks=[_task(i) for i in range(101)]))  # t0100 is the newest
    taken, _ = claims.claim("x", time.time(), 30.0, 1, 120.0, lambda task, subs: task.id == "t0100")
    assert [t.id for t in taken] == ["t0100"]
    assert claims.holder("t0000") is None  # passed over, still claimable by others


async def test_a_restore_is_refused_while_other_replicas_run(tmp_path: Path, shared: dict[str, Any]) -> None:
    """A restore replaces every unfinished task: not while another replica holds and runs some of them."""
    settings = {
        **shared,
    }
    a = await start_app(make_settings(tmp_path / "a", **settings))
    b = await start_app(make_settings(tmp_path / "b", **settings))
    try:
        async with Client(a.address) as on_a:
            task = await on_a.submit_task(description="kept over the restore")
            checkpoint = await on_a.create_checkpoint("before")
            with pytest.raises(MaosRpcError) as refused:
                await on_a.recover(checkpoint.name)
            assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
            assert (
                b.engine.replica in refused.value.message
                and "stop the other replicas" in refused.value.message
            )
            verified = await on_a.recover(checkpoint.name, verify_only=True)  # a verify changes nothing
            assert verified.integrity_ok and not verified.applied
            await b.stop(grace=1.0)
            assert (await on_a.recover(checkpoint.name)).applied
            restored = await on_a.get_task(task.name)
        assert restored.task.status == enums.TASK_STATUS_QUEUED  # kept, and claimable by the next replica
    finally:
        await b.stop(grace=1.0)
        await a.stop(grace=1.0)


async def test_a_replica_started_again_with_its_id_gives_up_what_its_earlier_run_held(
    tmp_path: Path, shared_db: str, shared: dict[str, Any]
) -> None:
    """With a fixed ``server.replica_id``, a run that died holding tasks leaves them claimable to all."""
    settings = {
        **shared,
        "server.replica_id": "cp-fixed",
    }
    backend = SqlBackendFactory().open(shared_db)
    try:
        backend.write(WriteBatch(tasks=[_task(1)]))  # as the earlier run, which died, left it
    finally:
        backend.close()
    engine = sqlalchemy.create_engine(shared_db)
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("UPDATE tasks SET claimed_by = 'cp-fixed' WHERE id = 't0001'"))
    finally:
        engine.dispose()
    a = await start_app(make_settings(tmp_path / "a", **settings))
    try:
        await wait_for(
            lambda: (
                rows(shared_db, "SELECT claimed_by FROM tasks WHERE id = 't0001'")[0][0] != "cp-fixed"
                or a.engine.holds("t0001")
            ),
            10,
            message="the earlier run's task given up (or claimed again by this run)",
        )
    finally:
        await a.stop(grace=1.0)


def _decoded_one_at_a_time(url: str) -> tuple[dict[str, Task], dict[str, list[Subtask]]]:
    """Every stored task and subtask as :func:`codec.task_from_row` and :func:`codec.subtask_from_row`
    decode them (in plan order)."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            tasks = {
                row["id"]: codec.task_from_row(row)
                for row in conn.execute(sqlalchemy.select(schema.tasks)).mappings()
            }
            subs: dict[str, list[Subtask]] = {}
            ordered = sqlalchemy.select(schema.subtasks).order_by(
                schema.subtasks.c.task_id, schema.subtasks.c.ord
            )
            for row in conn.execute(ordered).mappings():
                subs.setdefault(row["task_id"], []).append(codec.subtask_from_row(row))
    finally:
        engine.dispose()
    return tasks, subs


def test_claimed_rows_decode_to_the_records_the_codec_gives(
    store: tuple[SqlClaimStore, Any], shared_db: str
) -> None:
    """The claims decode their rows in batches (:class:`.row_batches.RowBatchDecoder`): the same records
    as the codec's, for full and minimal tasks and subtasks, claimed by the search (in one statement, and
    page by page past a task refused) and by id (over a leaving mark too)."""
    claims, backend = store
    tasks = []
    subtasks = []
    for i in range(8):
        make, make_sub = (full_task, full_subtask) if i % 2 else (minimal_task, minimal_subtask)
        task = make(
            f"t{i}", seq=i + 1, status=TaskStatus.QUEUED, priority=Priority.NORMAL, create_time=1000.0 + i
        )
        tasks.append(task)
        subtasks += [make_sub(task.id, f"t{i}/subtasks/s0"), make_sub(task.id, f"t{i}/subtasks/s1")]
    backend.write(WriteBatch(tasks=tasks, subtasks=subtasks))
    execute(shared_db, "UPDATE tasks SET claimed_by = '~leaving:x' WHERE id IN ('t6', 't7')")
    expected, expected_subs = _decoded_one_at_a_time(shared_db)
    assert len(expected) == 8 and sum(map(len, expected_subs.values())) == 16
    assert expected["t1"].plan is not None and expected_subs["t1"][0].checkpoint

    seen: list[tuple[Task, list[Subtask]]] = []

    def wanted(task: Task, subs: list[Subtask]) -> bool:
        seen.append((task, subs))
        return task.id != "t0"  # refused: the claim looks further, a page at a time

    got, got_subs = claims.claim("y", time.time(), 30.0, 4, 120.0, wanted=wanted)
    assert [t.id for t in got] == ["t1", "t2", "t3", "t4"]  # (t4 from the pages)
    assert {t.id for t, _ in seen} >= {"t0", "t1", "t2", "t3", "t4"}
    for task, subs in seen:
        assert task == expected[task.id]
        assert subs == expected_subs[task.id]
    assert got == [expected[t.id] for t in got]
    assert got_subs == [sub for t in got for sub in expected_subs[t.id]]

    by_id, by_id_subs = claims.claim(
        "z", time.time(), 30.0, 3, 120.0, task_ids=["t5", "t6"], given_up_by=["x"]
    )
    assert [t.id for t in by_id] == ["t5", "t6"]  # t6 over x's leaving mark
    assert by_id == [expected["t5"], expected["t6"]]
    assert by_id_subs == expected_subs["t5"] + expected_subs["t6"]
    named, named_subs = claims.claim_named("z", time.time(), 30.0, ["t7"], "x", 3, 120.0)
    assert named == [expected["t7"]] and named_subs == expected_subs["t7"]
