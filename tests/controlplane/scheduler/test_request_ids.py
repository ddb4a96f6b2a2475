"""RequestIdLookups: concurrent request-id lookups share one storage call, each caller its answer."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from controlplane.errors import Unavailable
from controlplane.scheduler.request_ids import RequestIdLookups
from controlplane.storage.base import IdempotencyRecord, WriteBatch
from controlplane.storage.executor import StorageExecutor
from controlplane.storage.sql import SqlBackend
from tests.controlplane.storage.test_sql_backend import backend, migrated_postgres_url  # noqa: F401


def _record(principal: str, method: str, request_id: str) -> IdempotencyRecord:
    return IdempotencyRecord(principal, method, request_id, f"hash-{request_id}", f"t-{request_id}", 1.0)


async def test_concurrent_lookups_take_one_storage_call_and_get_their_own_records(
    backend: SqlBackend,  # noqa: F811
) -> None:
    stored = [_record("users/a", "SubmitTask", f"r{n}") for n in range(0, 40, 2)]
    stored.append(_record("users/b", "SubmitTask", "r1"))  # same id, another principal
    stored.append(_record("users/a", "BatchSubmitTasks", "r3"))  # same id, another method
    backend.write(WriteBatch(idempotency=stored))
    executor = StorageExecutor(backend)
    lookups = RequestIdLookups(executor)
    keys = [("users/a", "SubmitTask", f"r{n}") for n in range(40)] + [("users/b", "SubmitTask", "r1")]
    answers = await asyncio.gather(*(lookups.get(*key) for key in keys), lookups.get(*keys[0]))
    assert lookups.rounds == 1
    expected = {(r.principal, r.method, r.request_id): r for r in stored}
    assert answers[:-1] == [expected.get(key) for key in keys]
    assert answers[-1] == expected[keys[0]]  # the same key asked twice: both callers answered
    assert answers[1] is None and answers[3] is None  # r1/r3 of users/a's SubmitTask: never made
    # a later lookup starts a new round
    assert await lookups.get("users/a", "SubmitTask", "r2") == expected[("users/a", "SubmitTask", "r2")]
    assert lookups.rounds == 2


class _CoreOnly:
    """A backend with ``get_idempotency`` alone (no bulk lookup)."""

    def __init__(self, records: list[IdempotencyRecord]):
        self.records = {(r.principal, r.method, r.request_id): r for r in records}
        self.calls = 0

    def get_idempotency(self, principal: str, method: str, request_id: str) -> IdempotencyRecord | None:
        self.calls += 1
        return self.records.get((principal, method, request_id))


class _Down:
    def get_idempotency_records(self, keys: Any) -> Any:
        raise Unavailable("the database is down")


class _Executor:
    """The storage thread's contract, run inline."""

    def __init__(self, store: Any):
        self.backend = store

    async def call(self, fn: Any, *args: Any) -> Any:
        return fn(*args)


async def test_a_backend_without_bulk_lookups_is_asked_key_by_key_in_one_round() -> None:
    record = _record("users/a", "SubmitTask", "x")
    core = _CoreOnly([record])
    lookups = RequestIdLookups(_Executor(core))  # type: ignore[arg-type]
    answers = await asyncio.gather(
        lookups.get("users/a", "SubmitTask", "x"), lookups.get("users/a", "SubmitTask", "y")
    )
    assert answers == [record, None]
    assert (lookups.rounds, core.calls) == (1, 2)


async def test_a_storage_failure_reaches_every_caller_of_the_round() -> None:
    lookups = RequestIdLookups(_Executor(_Down()))  # type: ignore[arg-type]
    outcomes = await asyncio.gather(
        *(lookups.get("users/a", "SubmitTask", f"r{n}") for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
    with pytest.raises(Unavailable):  # and the next lookup tries storage again
        await lookups.get("users/a", "SubmitTask", "again")
    assert lookups.rounds == 2
