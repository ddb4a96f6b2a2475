"""Both ends of carried reports over a real bus (Redis): who applies a carried report, and one too long.

Two engines on databases of their own stand for two replicas: ``holder`` holds a task its agent
runs, ``other`` is where the agent's report arrives; each answers the bus's ``report`` requests
(:mod:`controlplane.replicas.report_relay`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.domain.model import SubtaskStatus
from controlplane.replicas.bus import REDIS_MAX_PAYLOAD, ReplicaBus
from controlplane.replicas.report_relay import install_report_relay
from controlplane.replicas.wakeups import RedisWakeupBus
from controlplane.scheduler.commands import Ack, Assign, Ref
from controlplane.scheduler.engine import Engine
from controlplane.scheduler.relayed_reports import ResultReport
from tests.controlplane.scheduler.test_engine_unit import (
    _engine,
    _stop_engines,  # noqa: F401 - stops the engines made here, on this test's loop
    agent,
    command,
    submit,
)


@pytest.fixture
async def two(tmp_path: Path, redis_url: str, redis_namespace: str) -> AsyncIterator[tuple[Engine, Engine]]:
    import redis.asyncio as aioredis

    clients: list[Any] = []
    buses: list[ReplicaBus] = []
    engines = []
    for name in ("holder", "other"):
        engine = await _engine(tmp_path / name)
        client = aioredis.Redis.from_url(redis_url)
        clients.append(client)
        bus = ReplicaBus(
            RedisWakeupBus(client, redis_namespace, max_payload=REDIS_MAX_PAYLOAD), name, peers=lambda: 1
        )
        install_report_relay(bus, engine.agent_side)
        await bus.start()
        buses.append(bus)
        engines.append(engine)
    try:
        yield engines[0], engines[1]
    finally:
        for bus in buses:
            await bus.close()
        for client in clients:
            await client.aclose()


async def test_a_fenced_holder_declines_a_carried_report(two: tuple[Engine, Engine]) -> None:
    holder, other = two
    worker = agent(holder)
    task = await submit(holder)
    assign = await command(worker, Assign)
    resumed = agent(other)  # the agent, on the other replica now
    stale = Ref(assign.ref.task_id, assign.ref.subtask_id, assign.ref.attempt, assign.ref.lease_epoch + 1)

    carry = other.agent_side.carried.carrier(resumed, stale, ResultReport("forged"))
    assert carry is not None and await carry()  # the holder answered it
    answer = await command(resumed, Ack)
    assert (answer.accepted, answer.reason) == (False, "ERROR_REASON_STALE_ATTEMPT")

    holder.committer.fence("considered lost")
    carry = other.agent_side.carried.carrier(resumed, assign.ref, ResultReport("done"))
    assert carry is not None and not await carry()  # declined: the real holder (or a takeover) answers
    assert resumed.outbox.empty()
    assert holder.subtasks[task.id][assign.ref.subtask_id].status == SubtaskStatus.RUNNING  # nothing applied


async def test_a_report_too_long_for_the_bus_is_not_carried_again(
    two: tuple[Engine, Engine], caplog: pytest.LogCaptureFixture
) -> None:
    holder, other = two
    worker = agent(holder)
    task = await submit(holder)
    assign = await command(worker, Assign)
    resumed = agent(other)
    carry = other.agent_side.carried.carrier(
        resumed, assign.ref, ResultReport("x" * (REDIS_MAX_PAYLOAD + 10))
    )
    assert carry is not None
    with caplog.at_level(logging.WARNING, logger="controlplane.scheduler.relayed_reports"):
        assert not await carry()
        assert not await carry()  # (not encoded nor sent again)
    told = [r for r in caplog.records if "not carried" in r.getMessage()]
    assert len(told) == 1, told
    assert "longer" in told[0].getMessage() or "at most" in told[0].getMessage()
    assert holder.subtasks[task.id][assign.ref.subtask_id].status == SubtaskStatus.RUNNING
