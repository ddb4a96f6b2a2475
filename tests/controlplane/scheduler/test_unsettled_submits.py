"""Calls with a request id whose commit outcome is not known yet, where the database decides between them.

The engine runs on a real SQLite database as one replica of several would (the database decides
between calls with one request id) behind :class:`FaultyWrites`, which lets a test hold a commit,
fail it before it writes, or fail it after it committed (a connection dropped under the commit),
and make reads fail while the database is away. A key whose outcome is not known stays in flight:
no second call of it submits anything until it is known, and its tasks, once stored, run here.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from controlplane.domain.model import Task
from controlplane.domain.planning import DeterministicPlanner
from controlplane.errors import Aborted, Unavailable
from controlplane.metrics import Metrics
from controlplane.plugins import get_plugin_manager
from controlplane.scheduler.engine import Engine
from controlplane.storage.base import IdempotencyRecord, WriteBatch
from controlplane.storage.executor import StorageExecutor
from tests.harness.server import make_settings, wait_for

WAIT = 10.0
KEY = ("u", "SubmitTask", "r-1")


class FaultyWrites:
    """A real backend whose writes of calls with a request id a test holds or fails (others pass)."""

    def __init__(self, inner: Any):
        self.inner = inner
        #: Cleared: a write with a request id waits until it is set again.
        self.gate = threading.Event()
        self.gate.set()
        #: Set while a write with a request id waits at the gate.
        self.held = threading.Event()
        #: What the next writes with a request id do: "fail" (nothing written), "lost" (committed,
        #: then an error, as when the connection drops before the answer); then they succeed.
        self.plan: list[str] = []
        #: Reads of request ids fail (the database is away).
        self.reads_fail = False
        #: The keys of each settling read, in order.
        self.probes: list[list[tuple[str, str, str]]] = []

    def write(self, batch: WriteBatch) -> None:
        if batch.idempotency:
            self.held.set()
            assert self.gate.wait(WAIT), "the test never released the held write"
            self.held.clear()
            step = self.plan.pop(0) if self.plan else "ok"
            if step == "fail":
                raise Unavailable("the database went away before the commit")
            self.inner.write(batch)
            if step == "lost":
                raise Unavailable("the connection dropped before the commit's answer")
            return
        self.inner.write(batch)

    def settled_idempotency_records(
        self, keys: Iterable[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], IdempotencyRecord]:
        keys = list(keys)
        self.probes.append(keys)
        if self.reads_fail:
            raise Unavailable("the database is away")
        return dict(self.inner.settled_idempotency_records(keys))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def _engine(tmp_path: Path) -> tuple[Engine, FaultyWrites]:
    from controlplane.app import open_storage

    settings = make_settings(tmp_path)
    backend = open_storage(get_plugin_manager(), settings.database_url)
    backend.migrate()
    faulty = FaultyWrites(backend)
    engine = Engine(
        settings=settings,
        storage=StorageExecutor(faulty),  # type: ignore[arg-type]
        planners=[DeterministicPlanner()],
        metrics=Metrics(),
        replica="unit",
    )
    engine.intake.database_decides = True  # (as replicas sharing a database do)
    engine.intake.settle_wait = 0.2
    await engine.start()
    return engine, faulty


@pytest.fixture
async def faulty_engine(tmp_path: Path) -> Any:
    engine, faulty = await _engine(tmp_path)
    try:
        yield engine, faulty
    finally:
        faulty.gate.set()
        faulty.reads_fail = False
        await engine.stop()
        engine.storage.close()


def submit(engine: Engine, description: str = "once", request_id: str = KEY[2]) -> asyncio.Future[Any]:
    task = Task(id=engine.new_task_id(), description=description)
    return asyncio.ensure_future(
        engine.submit([task], principal="u", request_id=request_id, request_hash="h")
    )


def stored_record(engine: Engine) -> IdempotencyRecord | None:
    backend: Any = engine.storage.backend
    record: IdempotencyRecord | None = backend.inner.get_idempotency(*KEY)
    return record


async def test_a_retry_while_a_cancelled_calls_commit_fails_submits_nothing_and_the_stored_task_runs(
    faulty_engine: tuple[Engine, FaultyWrites],
) -> None:
    """The interleaving that used to lose a task: call 1 is cancelled while its commit runs, a retry
    submits into the next commit, the first fails, the second commits but its answer is lost; the
    first one's check then found a record naming the retry's task, not its own, and the stored task
    never ran. Now the retry is told the call is in flight, and submits nothing."""
    engine, faulty = faulty_engine
    faulty.gate.clear()
    faulty.plan = ["fail", "lost"]
    faulty.reads_fail = True
    first = submit(engine)
    assert await asyncio.to_thread(faulty.held.wait, WAIT), "the first call's commit never started"
    first.cancel()  # (the client's deadline)
    with pytest.raises(asyncio.CancelledError):
        await first

    retry = submit(engine)
    with pytest.raises(Unavailable) as refused:  # its outcome is not known within settle_wait
        await asyncio.wait_for(retry, WAIT)
    assert refused.value.reason == "ERROR_REASON_REQUEST_IN_FLIGHT"
    assert "retry the call" in refused.value.message

    faulty.gate.set()  # the first commit fails; the database is away a while longer
    await wait_for(
        lambda: not faulty.plan or faulty.plan == ["lost"], WAIT, message="the first commit to fail"
    )
    faulty.reads_fail = False
    await wait_for(lambda: not engine.intake._unsettled, WAIT, message="the first call's outcome to be known")
    assert stored_record(engine) is None  # nothing of it was written

    [outcome] = await asyncio.wait_for(submit(engine), WAIT)  # (its commit is lost, then found stored)
    record = stored_record(engine)
    assert record is not None and record.resource == outcome.task.id
    # Every stored task of the key is in memory here, so it runs.
    assert all(task_id in engine.tasks for task_id in record.resource.split(","))


async def test_a_retry_waits_for_a_cancelled_calls_commit_and_answers_with_its_task(
    faulty_engine: tuple[Engine, FaultyWrites],
) -> None:
    engine, faulty = faulty_engine
    engine.intake.settle_wait = WAIT
    faulty.gate.clear()
    first = submit(engine)
    assert await asyncio.to_thread(faulty.held.wait, WAIT)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    retry = submit(engine)
    await asyncio.sleep(0)
    assert not retry.done()  # it waits for the first call's commit instead of submitting its own
    faulty.gate.set()
    [outcome] = await asyncio.wait_for(retry, WAIT)
    assert not outcome.created
    record = stored_record(engine)
    assert record is not None and record.resource == outcome.task.id
    assert outcome.task.id in engine.tasks


async def test_a_retry_after_a_lost_answer_is_answered_with_the_stored_task(
    faulty_engine: tuple[Engine, FaultyWrites],
) -> None:
    engine, faulty = faulty_engine
    faulty.plan = ["lost"]
    [outcome] = await asyncio.wait_for(submit(engine), WAIT)  # found stored within settle_wait
    assert outcome.task.id in engine.tasks
    [again] = await asyncio.wait_for(submit(engine), WAIT)
    assert (again.task.id, again.created) == (outcome.task.id, False)


async def test_the_committer_refuses_a_second_submission_of_a_key_in_flight(
    faulty_engine: tuple[Engine, FaultyWrites],
) -> None:
    engine, faulty = faulty_engine
    faulty.gate.clear()
    task = Task(id=engine.new_task_id(), description="once")
    record = IdempotencyRecord(*KEY, "h", task.id, 1.0)
    first = engine.committer.submission(record, [task])
    other = Task(id=engine.new_task_id(), description="twice")
    with pytest.raises(Aborted) as refused:
        engine.committer.submission(IdempotencyRecord(*KEY, "h", other.id, 1.0), [other])
    assert refused.value.reason == "ERROR_REASON_REQUEST_IN_FLIGHT"
    assert other.id not in engine.committer.pending().tasks  # nothing of it marked
    faulty.gate.set()
    assert await asyncio.wait_for(first, WAIT) is True


async def test_the_calls_of_one_lost_commit_are_settled_by_one_read(
    faulty_engine: tuple[Engine, FaultyWrites],
) -> None:
    engine, faulty = faulty_engine
    engine.intake.settle_wait = WAIT
    faulty.gate.clear()
    faulty.plan = ["ok", "lost"]
    leading = submit(engine, request_id="r-lead")
    assert await asyncio.to_thread(faulty.held.wait, WAIT)  # the next calls gather behind this commit
    calls = [submit(engine, request_id=f"r-{n}") for n in range(3)]
    await wait_for(
        lambda: len(engine.committer.pending().submissions) == 3, WAIT, message="the calls in one commit"
    )
    faulty.gate.set()
    # The leading call's next changes (its plan) may join the commit of the three (gathered while
    # commits follow each other), whose answer is lost: the call then answers UNAVAILABLE though its
    # task was stored, which it is either way.
    with contextlib.suppress(Unavailable):
        await asyncio.wait_for(leading, WAIT)
    outcomes = [outcome for call in calls for outcome in await asyncio.wait_for(call, WAIT)]
    assert all(outcome.task.id in engine.tasks for outcome in outcomes)  # stored after all: they run
    assert len(engine.tasks) == 4
    assert faulty.probes == [[("u", "SubmitTask", f"r-{n}") for n in range(3)]]  # one read for the three
