"""Request ids known without asking storage: the Bloom filter, and a control plane across restarts."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from controlplane.domain.model import Task
from controlplane.errors import InvalidArgument
from controlplane.scheduler.known_request_ids import MIN_CAPACITY, KnownRequestIds
from controlplane.storage.base import IdempotencyRecord, WriteBatch
from tests.controlplane.scheduler.test_engine_unit import _engine, _open, _stop_engines  # noqa: F401
from tests.harness.server import wait_for


def test_every_key_added_may_be_held_and_few_others_are() -> None:
    known = KnownRequestIds()
    added = [("users/a", "SubmitTask", f"r{n}") for n in range(50_000)]
    for key in added:
        known.add(key)
    assert all(known.may_hold(key) for key in added)
    fresh = [("users/a", "SubmitTask", f"fresh{n}") for n in range(50_000)]
    false_maybe = sum(known.may_hold(key) for key in fresh)
    assert false_maybe < 50  # 50,000 of a million's capacity: far under 0.1 % here
    # the parts of a key are not run together: ("a", "bc") is not ("ab", "c")
    assert not known.may_hold(("users/", "aSubmitTask", "r1"))


def test_a_filter_built_from_storage_is_sized_for_what_it_holds() -> None:
    keys = [("p", "SubmitTask", str(n)) for n in range(10)]
    small = KnownRequestIds.of(iter(keys), len(keys))
    assert small.bits == MIN_CAPACITY * 8 and small.count == 10
    assert all(small.may_hold(key) for key in keys)
    assert KnownRequestIds.of(iter(()), 3 * MIN_CAPACITY).bits == 6 * MIN_CAPACITY * 8


async def test_request_ids_stored_before_a_restart_are_recognised_after_it(tmp_path: Path) -> None:
    engine = await _engine(tmp_path)
    task = Task(id=engine.new_task_id(), description="once")
    [first] = await engine.submit([task], principal="u", request_id="r-1", request_hash="h1")
    _open.remove(engine)
    await engine.stop()
    engine.storage.close()
    # a record written by an earlier run (or a tool), never seen by the next run's memory
    engine.storage.backend.write(
        WriteBatch(idempotency=[IdempotencyRecord("u", "SubmitTask", "r-old", "h0", first.task.id, 1.0)])
    )

    again = await _engine(tmp_path)
    assert again.intake.known is not None and again.intake.known.count >= 2
    before = again.intake.lookups.rounds
    [repeat] = await again.submit(
        [Task(id=again.new_task_id(), description="once")], principal="u", request_id="r-1", request_hash="h1"
    )
    assert (repeat.task.id, repeat.created) == (first.task.id, False)
    [old] = await again.submit(
        [Task(id=again.new_task_id(), description="x")], principal="u", request_id="r-old", request_hash="h0"
    )
    assert (old.task.id, old.created) == (first.task.id, False)
    with pytest.raises(InvalidArgument, match="already used"):
        await again.submit(
            [Task(id=again.new_task_id(), description="other")],
            principal="u",
            request_id="r-1",
            request_hash="h2",
        )
    assert again.intake.lookups.rounds > before  # known ids were looked up in storage
    # a fresh id is accepted without a storage lookup, and is then known
    rounds = again.intake.lookups.rounds
    [fresh] = await again.submit(
        [Task(id=again.new_task_id(), description="new")], principal="u", request_id="r-2", request_hash="h3"
    )
    assert fresh.created and again.intake.lookups.rounds == rounds
    assert again.intake.known.may_hold(("u", "SubmitTask", "r-2"))


async def test_a_call_cancelled_while_the_database_decides_still_runs_its_committed_task(
    tmp_path: Path,
) -> None:
    """Replicas: the commit of a call's tasks decides its request id; a caller gone meanwhile loses nothing."""
    engine = await _engine(tmp_path)
    engine.intake.database_decides = True
    hold, submitted = threading.Event(), asyncio.Event()
    submission = engine.committer.submission

    def noting(*args: Any) -> Any:
        submitted.set()
        return submission(*args)

    engine.committer.submission = noting  # type: ignore[method-assign]
    blocker = asyncio.ensure_future(engine.storage.call(hold.wait, 10))  # the storage thread is busy
    task = Task(id=engine.new_task_id(), description="committed while its caller left")
    caller = asyncio.ensure_future(engine.submit([task], principal="u", request_id="r-9", request_hash="h"))
    await asyncio.wait_for(submitted.wait(), 10)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    hold.set()
    await blocker
    await wait_for(lambda: task.id in engine.tasks, 10, message="the committed task in memory")
    assert (await engine.get_task(task.id)).id == task.id
    [repeat] = await engine.submit(
        [Task(id=engine.new_task_id(), description="committed while its caller left")],
        principal="u",
        request_id="r-9",
        request_hash="h",
    )
    assert (repeat.task.id, repeat.created) == (task.id, False)
