"""The queue window: beyond ``scheduler.queue_window`` queued tasks wait in the database only (SQLite).

A real control plane on an ephemeral port with a window of 5: what a user does to a queued task works
the same on one kept in the database, GetStatus counts the whole queue, and the order of work, a
restart and a checkpoint restore keep every task.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import text

from agent_sdk.builtin import EchoAgent
from agent_sdk.client import Client
from agent_sdk.context import Context
from agent_sdk.errors import MaosRpcError
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from controlplane.app import App
from controlplane.config import load_settings
from controlplane.domain.model import Priority, TaskStatus
from controlplane.errors import InvalidArgument
from controlplane.scheduler.engine import Engine
from controlplane.storage.base import WriteBatch
from controlplane.storage.sql import codec, schema, spill
from controlplane.storage.sql.backend import SqlBackendFactory
from controlplane.storage.testing import full_subtask, full_task, minimal_subtask, minimal_task
from tests.controlplane.api.test_task_service import running_worker
from tests.harness.server import make_settings, start_app, wait_for

WINDOW = 5


class OneAtATime(EchoAgent):
    """An echo agent taking one step at a time, noting the order it ran them in."""

    max_concurrency = 1

    def __init__(self) -> None:
        super().__init__()
        self.ran: list[str] = []

    async def handle(self, ctx: Context) -> str:
        self.ran.append(ctx.assignment.instructions)
        return await super().handle(ctx)


def window_settings(home: Path, window: int = WINDOW) -> object:
    return make_settings(home, **{"scheduler.queue_window": window})


@pytest.fixture
async def app(maos_home: Path) -> AsyncIterator[App]:
    started = await start_app(window_settings(maos_home))  # type: ignore[arg-type]
    try:
        yield started
    finally:
        await started.stop(grace=1.0)


@pytest.fixture
async def client(app: App) -> AsyncIterator[Client]:
    async with Client(app.address) as c:
        yield c


async def submit(client: Client, *descriptions: str, **fields: object) -> list[str]:
    return [(await client.submit_task(description=d, **fields)).name for d in descriptions]


def in_memory(engine: Engine, names: list[str]) -> list[str]:
    return [n for n in names if n.split("/", 1)[1] in engine.tasks]


async def marked(app: App) -> set[str]:
    """Names of the tasks the database marks as kept there (spilled)."""
    await app.engine.durable()

    def read() -> set[str]:
        t = schema.tasks
        with app.storage.backend.engine.connect() as conn:
            rows = conn.execute(t.select().with_only_columns(t.c.id).where(t.c.claimed_by == schema.SPILLED))
            return {f"tasks/{row.id}" for row in rows}

    return await app.storage.call(read)


async def counts(client: Client) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    status = await client.status()
    return (
        {c.state: c.count for c in status.tasks},
        {c.state: c.count for c in status.subtasks if c.count},
        {c.state: c.count for c in status.queue if c.count},
    )


async def settled(app: App, held: int) -> None:
    """Wait until the window holds ``held`` queued tasks and every spill is committed."""
    spill = app.engine.spill
    assert spill is not None
    await wait_for(lambda: len(spill.held) == held, 10, message=f"{held} queued tasks in memory")
    await app.engine.durable()


async def test_beyond_the_window_tasks_wait_in_the_database_and_run_in_order(
    app: App, client: Client
) -> None:
    engine = app.engine
    names = await submit(client, *(f"step {i}" for i in range(12)))
    await settled(app, WINDOW)
    assert in_memory(engine, names) == names[:WINDOW]  # the best: submitted first
    assert await marked(app) == set(names[WINDOW:])
    tasks, subtasks, queue = await counts(client)
    assert (tasks["QUEUED"], subtasks, queue) == (12, {"QUEUED": 12}, {"NORMAL": 12})
    assert engine.queued_demand()[("", "")][0] == 12  # what the autoscaler reads

    # Better work is held, worse work leaves: a HIGH task stays in memory, the newest NORMAL one goes.
    (high,) = await submit(client, "urgent", priority="HIGH")
    low = await submit(client, "later 1", "later 2", priority="LOW")
    await settled(app, WINDOW)
    assert high in in_memory(engine, [high]) and not in_memory(engine, low)
    assert names[WINDOW - 1] in await marked(app)
    assert (await counts(client))[2] == {"HIGH": 1, "NORMAL": 12, "LOW": 2}

    # A read of a task in the database answers its stored state.
    assert (await client.get_task(names[-1])).task.status == enums.TASK_STATUS_QUEUED
    listed = await client.list_tasks(page_size=100)
    assert {t.name for t in listed.tasks} >= set(names)

    agent = OneAtATime()
    async with running_worker(agent, app.address):
        for name in (high, *names, *low):
            await client.wait_task(name, timeout=30)
    assert agent.ran == ["urgent", *(f"step {i}" for i in range(12)), "later 1", "later 2"]
    assert await marked(app) == set()
    tasks, subtasks, queue = await counts(client)
    assert (tasks["COMPLETED"], tasks["QUEUED"], queue) == (15, 0, {})
    assert engine.spill is not None and engine.spill.spilled == 0


async def test_cancel_update_retry_and_dependencies_of_tasks_in_the_database(
    app: App, client: Client
) -> None:
    engine = app.engine
    names = await submit(client, *(f"step {i}" for i in range(10)))
    await settled(app, WINDOW)
    cancelled, raised, waited_on = names[7], names[8], names[9]
    assert not in_memory(engine, [cancelled, raised, waited_on])

    # A task that depends on one in the database waits for it; one in the database is waited on as usual.
    (dependant,) = await submit(client, "after step 9", depends_on=[waited_on.split("/", 1)[1]])
    assert (await client.get_task(dependant)).task.status == enums.TASK_STATUS_PENDING

    done = await client.cancel_task(cancelled, reason="not needed")
    assert done.status == enums.TASK_STATUS_CANCELLED
    assert (await client.get_task(cancelled)).task.status == enums.TASK_STATUS_CANCELLED
    tasks, subtasks, queue = await counts(client)
    assert (tasks["QUEUED"], tasks["CANCELLED"], subtasks.get("QUEUED"), queue) == (9, 1, 9, {"NORMAL": 9})

    updated = await client.update_task(raised, priority="CRITICAL")
    assert updated.priority == enums.PRIORITY_CRITICAL
    await settled(app, WINDOW)
    assert in_memory(engine, [raised]) == [raised]  # now the best queued task
    assert (await counts(client))[2] == {"CRITICAL": 1, "NORMAL": 8}

    retried = await client.retry_task(cancelled)
    assert retried.status in (enums.TASK_STATUS_PENDING, enums.TASK_STATUS_QUEUED)
    await settled(app, WINDOW)
    assert (await counts(client))[0]["QUEUED"] == 10

    # Operating on a missing task still answers NOT_FOUND.
    with pytest.raises(MaosRpcError) as missing:
        await client.cancel_task("tasks/t0000000000000000000")
    assert missing.value.code == grpc.StatusCode.NOT_FOUND

    agent = OneAtATime()
    async with running_worker(agent, app.address):
        for name in (*names, dependant):
            finished = await client.wait_task(name, timeout=30)
            assert finished.status == enums.TASK_STATUS_COMPLETED, name
    assert agent.ran[0] == "step 8"  # raised to CRITICAL
    assert agent.ran.index("after step 9") > agent.ran.index("step 9")
    assert sorted(agent.ran) == sorted([*(f"step {i}" for i in range(10)), "after step 9"])


async def test_a_task_approved_while_the_window_is_full_waits_in_the_database(
    app: App, client: Client
) -> None:
    names = await submit(client, *(f"step {i}" for i in range(WINDOW)))
    (gated,) = await submit(client, "needs a yes", approve_plan=True)
    await settled(app, WINDOW)
    shown = (await client.get_task(gated)).task
    assert shown.status == enums.TASK_STATUS_PENDING and "approval" in shown.status_reason
    await client.approve_task(gated)
    await settled(app, WINDOW)
    assert await marked(app) == {gated}  # the newest of six NORMAL tasks
    shown = (await client.get_task(gated)).task
    assert shown.status == enums.TASK_STATUS_QUEUED and "in the database" in shown.status_reason
    agent = OneAtATime()
    async with running_worker(agent, app.address):
        finished = await client.wait_task(gated, timeout=30)
    assert finished.status == enums.TASK_STATUS_COMPLETED
    assert agent.ran[-1] == "needs a yes" and agent.ran[: len(names)] == [f"step {i}" for i in range(WINDOW)]


async def queued_then_stopped(
    home: Path, steps: int, window: int = WINDOW, *, settle: bool = True
) -> list[str]:
    """Queue ``steps`` tasks on a control plane with ``window`` (with no agent), let its window
    settle (``settle``), and stop it; the tasks' names."""
    first = await start_app(window_settings(home, window))  # type: ignore[arg-type]
    try:
        async with Client(first.address) as client:
            names = await submit(client, *(f"step {i}" for i in range(steps)))
            if settle:
                await settled(first, window)
    finally:
        await first.stop(grace=1.0)
    return names


async def test_a_restart_keeps_the_tasks_in_the_database(maos_home: Path) -> None:
    names = await queued_then_stopped(maos_home, 9)
    again = await start_app(window_settings(maos_home))  # type: ignore[arg-type]
    try:
        await settled(again, WINDOW)
        spill = again.engine.spill
        assert spill is not None and spill.spilled == 4  # counted from the database at start
        assert in_memory(again.engine, names) == names[:WINDOW]
        async with Client(again.address) as client:
            tasks, subtasks, queue = await counts(client)
            assert (tasks["QUEUED"], subtasks, queue) == (9, {"QUEUED": 9}, {"NORMAL": 9})
            agent = OneAtATime()
            async with running_worker(agent, again.address):
                for name in names:
                    await client.wait_task(name, timeout=30)
            assert agent.ran == [f"step {i}" for i in range(9)]
    finally:
        await again.stop(grace=1.0)


async def test_a_restart_with_a_smaller_window_moves_the_excess_to_the_database(maos_home: Path) -> None:
    names = await queued_then_stopped(maos_home, 8, 50, settle=False)
    again = await start_app(window_settings(maos_home, 3))  # type: ignore[arg-type]
    try:
        await settled(again, 3)
        assert await marked(again) == set(names[3:])
        async with Client(again.address) as client:
            assert (await counts(client))[2] == {"NORMAL": 8}
    finally:
        await again.stop(grace=1.0)


async def test_a_restart_with_the_window_off_loads_the_tasks_kept_in_the_database(maos_home: Path) -> None:
    names = await queued_then_stopped(maos_home, 8)
    again = await start_app(window_settings(maos_home, 0))  # type: ignore[arg-type]
    try:
        assert again.engine.spill is None
        assert in_memory(again.engine, names) == names  # every queued task, none left marked
        assert await marked(again) == set()
        async with Client(again.address) as client:
            agent = OneAtATime()
            async with running_worker(agent, again.address):
                for name in names:
                    await client.wait_task(name, timeout=30)
            assert agent.ran == [f"step {i}" for i in range(8)]
    finally:
        await again.stop(grace=1.0)


async def test_a_take_back_whose_caller_went_away_still_brings_the_task_to_memory(
    app: App, client: Client
) -> None:
    names = await submit(client, *(f"step {i}" for i in range(8)))
    await settled(app, WINDOW)
    spill = app.engine.spill
    assert spill is not None
    last = names[-1].split("/", 1)[1]
    assert last not in app.engine.tasks
    started, release = threading.Event(), threading.Event()
    take_back = spill.store.take_back

    def slow_take_back(*args: object) -> object:  # on the storage thread
        started.set()
        release.wait(10)
        return take_back(*args)

    spill.store.take_back = slow_take_back  # type: ignore[method-assign]
    caller = asyncio.ensure_future(spill.take_back(last))
    await wait_for(started.is_set, 10, message="the take-back running on the storage thread")
    caller.cancel()  # its caller goes away (a client's deadline passed) while the database works
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()

    async def accounted() -> bool:  # in memory, or kept (marked) in the database again: never neither
        kept = await marked(app)
        return (last in app.engine.tasks or names[-1] in kept) and spill.spilled == len(kept) == 3 - (
            last in app.engine.tasks
        )

    await wait_for(accounted, 10, message="the task taken back and every spilled task counted")


async def test_a_checkpoint_restore_brings_back_tasks_in_the_database(app: App, client: Client) -> None:
    names = await submit(client, *(f"step {i}" for i in range(8)))
    await settled(app, WINDOW)
    checkpoint = await client.create_checkpoint("queued work", "manual")
    for name in names[6:]:  # in the database at the checkpoint: cancelled after it
        await client.cancel_task(name)
    await client.cancel_task(names[0])  # in memory at the checkpoint
    assert (await counts(client))[0]["CANCELLED"] == 3

    report = await client.recover(checkpoint.name)
    assert report.applied
    await settled(app, WINDOW)
    tasks, subtasks, queue = await counts(client)
    assert (tasks["QUEUED"], tasks["CANCELLED"], queue) == (8, 0, {"NORMAL": 8})
    assert subtasks == {"QUEUED": 8}
    agent = OneAtATime()
    async with running_worker(agent, app.address):
        for name in names:
            finished = await client.wait_task(name, timeout=30)
            assert finished.status == enums.TASK_STATUS_COMPLETED, name
    assert sorted(agent.ran) == sorted(f"step {i}" for i in range(8))


async def test_a_change_of_the_aging_interval_ranks_the_window_anew(app: App, client: Client) -> None:
    engine = app.engine
    old_low = await submit(client, *(f"low {i}" for i in range(WINDOW)), priority="LOW")
    await settled(app, WINDOW)
    new_high = await submit(client, *(f"high {i}" for i in range(WINDOW)), priority="HIGH")
    await settled(app, WINDOW)
    assert in_memory(engine, new_high) == new_high and await marked(app) == set(old_low)  # aging 120 s

    # Without aging, waiting counts alone: the older LOW tasks are the better ones now.
    engine.set_setting("scheduler.aging_interval", 0.0)
    await wait_for(
        lambda: in_memory(engine, old_low) == old_low, 10, message="the older tasks taken into memory"
    )
    await settled(app, WINDOW)
    assert await marked(app) == set(new_high)

    # The window still ranks what arrives: a newer task waits in the database.
    (newest,) = await submit(client, "newest", priority="CRITICAL")
    await settled(app, WINDOW)
    assert await marked(app) == {*new_high, newest}
    spill_ = engine.spill
    assert spill_ is not None and spill_.spilled == WINDOW + 1
    assert (await counts(client))[2] == {"CRITICAL": 1, "HIGH": WINDOW, "LOW": WINDOW}


async def test_a_task_waiting_in_the_database_times_out_on_time(app: App, client: Client) -> None:
    names = await submit(client, *(f"step {i}" for i in range(WINDOW + 3)))
    await settled(app, WINDOW)
    last = names[-1]
    await client.cancel_task(last)
    retried = await client.retry_task(last, timeout=1.0)  # its clock runs from the retry, queued or not
    assert retried.status == enums.TASK_STATUS_QUEUED
    await settled(app, WINDOW)
    assert last in await marked(app)  # the newest task: back in the database, its deadline noted
    spill_ = app.engine.spill
    assert spill_ is not None and spill_.deadline is not None

    async def timed_out() -> bool:
        return (await client.get_task(last)).task.status == enums.TASK_STATUS_FAILED

    await wait_for(timed_out, 10, message="the task in the database failed at its deadline")
    shown = (await client.get_task(last)).task
    assert "timeout" in shown.failure.message
    assert await marked(app) == set(names[WINDOW:-1])  # a finished task is marked nowhere
    assert spill_.spilled == 2 and spill_.deadline is None
    tasks, subtasks, queue = await counts(client)
    assert (tasks["QUEUED"], tasks["FAILED"], queue) == (WINDOW + 2, 1, {"NORMAL": WINDOW + 2})


async def test_a_write_that_finishes_a_task_in_the_database_clears_its_mark(app: App, client: Client) -> None:
    """Whatever path writes a task kept in the database without taking it back first: once finished,
    it is marked as waiting nowhere (so nothing reads it back, and the spilled index keeps no dead rows)."""
    names = await submit(client, *(f"step {i}" for i in range(WINDOW + 2)))
    await settled(app, WINDOW)
    waiting, finished = (n.split("/", 1)[1] for n in names[WINDOW:])
    backend = app.storage.backend
    stored = {t.id: t for t in await app.storage.call(backend.get_tasks, [waiting, finished])}
    stored[waiting].status_reason = "changed behind the window"  # still queued: still waiting there
    stored[finished].status = TaskStatus.CANCELLED
    await app.storage.call(backend.write, WriteBatch(tasks=list(stored.values())))
    assert await marked(app) == {f"tasks/{waiting}"}


def test_the_deadline_index_serves_the_timeout_queries(tmp_path: Path) -> None:
    """The migration declares the deadline's expression with the text the queries use (SQLite matches
    an expression index by its text), so finding the tasks past their deadline walks the index."""
    store = SqlBackendFactory().open(f"sqlite:///{tmp_path / 'maos.db'}")
    try:
        store.migrate()
        with store.engine.connect() as conn:
            for query in (spill._DUE, spill._NEXT):
                plan = conn.execute(text("EXPLAIN QUERY PLAN " + query.text), {"at": 0.0, "limit": 1}).all()
                assert any("ix_tasks_spilled_deadline" in str(row) for row in plan), plan
            assert spill.SqlSpillStore(store.engine, store.engine).due(0.0, 10) == ([], None)
    finally:
        store.close()


def test_batches_read_back_keep_the_order_of_work_and_equal_the_stored_records(tmp_path: Path) -> None:
    """Batch after batch, take_back gives the best spilled tasks by virtual time then seq, each equal to
    what the codec reads from its row, and clears the marks of those it gave, and only theirs."""
    store = SqlBackendFactory().open(f"sqlite:///{tmp_path / 'maos.db'}")
    try:
        store.migrate()
        aging = 10.0
        priorities = [Priority.LOW, Priority.NORMAL, Priority.HIGH, Priority.CRITICAL]
        tasks = [
            full_task(f"t{i:02d}", seq=i + 1, priority=priorities[i % 4], create_time=1000.0 + 7 * i)
            if i % 5 == 0
            else minimal_task(f"t{i:02d}", seq=i + 1, priority=priorities[i % 4], create_time=1000.0 + 7 * i)
            for i in range(23)
        ]
        for task in tasks:
            task.status = TaskStatus.QUEUED
        subs = [minimal_subtask(t.id, "s0", queue_time=t.create_time) for t in tasks]
        subs += [full_subtask(t.id, "s1") for t in tasks[::3]]
        store.write(WriteBatch(tasks=tasks, subtasks=subs))
        with store.engine.begin() as conn:
            conn.execute(text(f"UPDATE tasks SET claimed_by = '{schema.SPILLED}'"))
            stored = {
                r["id"]: codec.task_from_row(r) for r in conn.execute(text("SELECT * FROM tasks")).mappings()
            }
            stored_subs = [
                codec.subtask_from_row(r)
                for r in conn.execute(text("SELECT * FROM subtasks ORDER BY task_id, ord")).mappings()
            ]
        expected = [
            t.id for t in sorted(tasks, key=lambda t: (t.create_time - int(t.priority) * aging, t.seq))
        ]
        spill_store = spill.SqlSpillStore(store.engine, store.engine)
        taken: list[str] = []
        while batch := spill_store.take_back(4, aging)[0]:
            taken += [t.id for t in batch]
            assert all(t == stored[t.id] for t in batch)
            with store.engine.connect() as conn:
                left = set(
                    conn.execute(
                        text(f"SELECT id FROM tasks WHERE claimed_by = '{schema.SPILLED}'")
                    ).scalars()
                )
            assert left == set(expected) - set(taken)
        assert taken == expected
        by_id = spill_store.take_back(10, aging, ["t03", "t04"])
        assert by_id == ([], [])  # taken already: nothing is marked
        with store.engine.begin() as conn:
            conn.execute(text(f"UPDATE tasks SET claimed_by = '{schema.SPILLED}' WHERE id IN ('t03', 't07')"))
        got, got_subs = spill_store.take_back(10, aging, ["t07", "t03"])
        assert sorted(t.id for t in got) == ["t03", "t07"]
        assert got_subs == [s for s in stored_subs if s.task_id in ("t03", "t07")]
    finally:
        store.close()


def test_the_deadline_index_holds_exactly_the_spilled_tasks_with_a_timeout(tmp_path: Path) -> None:
    """Its condition settles most rows with a short text search (migration 0022); text written any other
    way (spaces, another field order) is parsed, so the index holds the same rows as the JSON says."""
    store = SqlBackendFactory().open(f"sqlite:///{tmp_path / 'maos.db'}")
    try:
        store.migrate()
        timed = minimal_task("timed", seq=1, timeout=30.0, start_time=100.0)
        untimed = minimal_task("untimed", seq=2)
        spaced = minimal_task("spaced", seq=3, timeout=5.0, start_time=100.0)
        store.write(WriteBatch(tasks=[timed, untimed, spaced]))
        with store.engine.begin() as conn:
            row = conn.execute(text("SELECT data FROM tasks WHERE id = 'spaced'")).scalar_one()
            assert '"timeout":5.0,"context":' in row
            spaced_text = row.replace('"timeout":5.0,"context":', '"timeout": 5.0, "context":')
            conn.execute(text("UPDATE tasks SET data = :d WHERE id = 'spaced'"), {"d": spaced_text})
            conn.execute(text(f"UPDATE tasks SET claimed_by = '{schema.SPILLED}'"))
            indexed = conn.execute(
                text(f"SELECT id FROM tasks INDEXED BY ix_tasks_spilled_deadline WHERE {spill.WITH_DEADLINE}")
            ).scalars()
            assert sorted(indexed) == ["spaced", "timed"]
        due = spill.SqlSpillStore(store.engine, store.engine).due(120.0, 10)
        assert due == (["spaced"], 130.0)
    finally:
        store.close()


def test_a_negative_window_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="scheduler.queue_window"):
        load_settings(home=tmp_path, environ={}, overrides={"scheduler.queue_window": -1})
