"""The engine driven directly, without gRPC: real SQLite storage, agents as bare sessions.

Each test builds an :class:`~controlplane.scheduler.engine.Engine` on a fresh SQLite database,
registers agents through the agent side (their commands land on the session's outbox), and
checks what storage holds through a second engine-free read, so what is asserted is durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.domain.model import (
    AgentInfo,
    ConsensusPolicy,
    RetryPolicy,
    SubtaskStatus,
    Task,
    TaskStatus,
    Usage,
    now,
)
from controlplane.domain.planning import DeterministicPlanner
from controlplane.errors import FailedPrecondition, NotFound
from controlplane.metrics import Metrics
from controlplane.plugins import get_plugin_manager
from controlplane.scheduler.commands import Assign, CancelWork, Committed, VoteOnCandidates
from controlplane.scheduler.engine import Engine
from controlplane.scheduler.sessions import AgentSession
from controlplane.storage.executor import StorageExecutor
from tests.harness.server import make_settings, wait_for

WAIT = 5.0


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    yield await _engine(tmp_path)


async def _engine(tmp_path: Path, **overrides: Any) -> Engine:
    from controlplane.app import open_storage

    settings = make_settings(tmp_path, **overrides)
    backend = open_storage(get_plugin_manager(), settings.database_url)
    backend.migrate()
    storage = StorageExecutor(backend)
    engine = Engine(
        settings=settings,
        storage=storage,
        planners=[DeterministicPlanner()],
        metrics=Metrics(),
        replica="unit",
    )
    await engine.start()
    _open.append(engine)
    return engine


_open: list[Engine] = []


@pytest.fixture(autouse=True)
async def _stop_engines() -> AsyncIterator[None]:
    yield
    while _open:
        engine = _open.pop()
        await engine.stop()
        engine.storage.close()


def agent(engine: Engine, slots: int = 1, agent_type: str = "unit") -> AgentSession:
    session, _ = engine.register(
        AgentInfo(id="", agent_type=agent_type, capabilities=["*"], max_concurrency=slots)
    )
    return session


async def command(session: AgentSession, kind: type, within: float = WAIT) -> Any:
    """The next command of ``kind`` sent to the agent (others are skipped)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        left = deadline - asyncio.get_running_loop().time()
        assert left > 0, f"no {kind.__name__} reached the agent within {within} s"
        item = await asyncio.wait_for(session.outbox.get(), left)
        if isinstance(item, kind):
            return item


async def stored(engine: Engine, task_id: str) -> Task:
    """The task as the database holds it (not the engine's memory)."""
    found = await engine.storage.call(engine.storage.backend.get_task, task_id)
    assert found is not None
    return found


async def submit(engine: Engine, description: str = "one thing", **fields: Any) -> Task:
    [outcome] = await engine.submit(
        [Task(id=engine.new_task_id(), description=description, **fields)], principal="u"
    )
    return outcome.task


async def test_submit_dispatch_complete_is_durable(engine: Engine) -> None:
    session = agent(engine)
    task = await submit(engine)
    assert (await stored(engine, task.id)).id == task.id  # accepted means stored

    assign = await command(session, Assign)
    assert assign.ref.task_id == task.id and assign.ref.attempt == 0
    engine.report_result(session, assign.ref, "the answer", [], Usage(input_tokens=5, output_tokens=2))
    acked = await command(session, Committed)
    assert assign.ref in acked.refs
    assert (await stored(engine, task.id)).status == TaskStatus.COMPLETED
    got = await engine.get_task(task.id)
    assert got.status == TaskStatus.COMPLETED and got.output == "the answer"
    assert got.usage.total_tokens == 7


async def test_a_retryable_failure_runs_the_next_attempt(engine: Engine) -> None:
    session = agent(engine)
    task = await submit(engine, retry=RetryPolicy(max_retries=2, initial_backoff=0.01))
    first = await command(session, Assign)
    engine.report_failure(session, first.ref, "rate limited", True, 0.0, "RateLimit", Usage())
    second = await command(session, Assign)
    assert second.ref.attempt == first.ref.attempt + 1
    assert second.ref.lease_epoch != first.ref.lease_epoch
    # The earlier attempt is fenced off: its late result changes nothing.
    engine.report_result(session, first.ref, "late", [], Usage())
    engine.report_result(session, second.ref, "done", [], Usage())
    await engine.durable()
    final = await stored(engine, task.id)
    assert final.status == TaskStatus.COMPLETED and final.output == "done"


async def test_retries_exhausted_fail_the_task_with_the_error(engine: Engine) -> None:
    session = agent(engine)
    task = await submit(engine, retry=RetryPolicy(max_retries=0))
    assign = await command(session, Assign)
    engine.report_failure(session, assign.ref, "broken tool", True, 0.0, "ToolError", Usage())
    await engine.durable()
    final = await stored(engine, task.id)
    assert final.status == TaskStatus.FAILED
    assert final.failure is not None and "broken tool" in final.failure.message


async def test_cancel_reaches_the_running_agent_and_is_durable(engine: Engine) -> None:
    session = agent(engine)
    task = await submit(engine)
    assign = await command(session, Assign)
    cancelled = await engine.cancel(task.id, "not needed", "users/u")
    assert cancelled.status == TaskStatus.CANCELLED
    cancel = await command(session, CancelWork)
    assert cancel.ref == assign.ref
    assert (await stored(engine, task.id)).status == TaskStatus.CANCELLED
    with pytest.raises(FailedPrecondition):
        await engine.cancel(task.id, "again", "users/u")


async def test_cancel_tells_every_running_agent_once_before_the_transition(engine: Engine) -> None:
    sessions = [agent(engine) for _ in range(3)]
    task = await submit(engine, "Fan out:\n- a\n- b\n- c", max_agents=3)
    refs = {(await command(s, Assign)).ref for s in sessions}
    seen: list[tuple[Any, set[SubtaskStatus]]] = []

    def states() -> set[SubtaskStatus]:
        return {engine.subtasks[task.id][ref.subtask_id].status for ref in refs}

    for session in sessions:  # what each agent is sent, with the states of the running work at that moment
        sent = session.send
        session.send = lambda c, sent=sent: (seen.append((c, states())), sent(c))  # type: ignore[method-assign]
    cancelled = await engine.cancel(task.id, "enough", "users/u")
    assert cancelled.status == TaskStatus.CANCELLED
    cancels = [(c, status) for c, status in seen if isinstance(c, CancelWork)]
    assert {c.ref for c, _ in cancels} == refs and len(cancels) == 3  # one each, none twice
    assert all(at == {SubtaskStatus.RUNNING} for _, at in cancels)  # all sent before the pass
    assert all("enough" in c.reason for c, _ in cancels)
    assert (await stored(engine, task.id)).status == TaskStatus.CANCELLED


async def test_retry_runs_a_cancelled_task_again(engine: Engine) -> None:
    session = agent(engine)
    task = await submit(engine)
    await command(session, Assign)
    await engine.cancel(task.id, "", "users/u")
    await command(session, CancelWork)
    retried = await engine.retry(task.id)
    assert retried.status in (TaskStatus.QUEUED, TaskStatus.RUNNING) and retried.retries == 1
    again = await command(session, Assign)
    assert again.ref.attempt == 1
    engine.report_result(session, again.ref, "second time", [], Usage())
    await command(session, Committed)
    assert (await stored(engine, task.id)).status == TaskStatus.COMPLETED


async def test_an_expired_lease_requeues_the_work_for_another_agent(engine: Engine) -> None:
    first = agent(engine)
    task = await submit(engine, retry=RetryPolicy(max_retries=1, initial_backoff=0.0))
    assign = await command(first, Assign)
    second = agent(engine)
    # The sweeper would do this after scheduler.lease_ttl; expiring "later" is the same decision now.
    assert engine.expire_leases(now() + 10**6) == 1
    cancel = await command(first, CancelWork)
    assert cancel.ref == assign.ref
    moved = await command(second, Assign)
    assert moved.ref.task_id == task.id and moved.ref.attempt == assign.ref.attempt + 1
    engine.report_result(second, moved.ref, "rescued", [], Usage())
    await command(second, Committed)
    assert (await stored(engine, task.id)).status == TaskStatus.COMPLETED


async def test_consensus_candidates_run_on_distinct_agents_then_vote(engine: Engine) -> None:
    sessions = [agent(engine) for _ in range(3)]
    task = await submit(
        engine, consensus=ConsensusPolicy(required=True, candidates=3, threshold=0.5, strategy="majority")
    )
    assigns = [await command(s, Assign) for s in sessions]
    assert len({a.ref.subtask_id for a in assigns}) == 3  # one candidate per agent
    for session, assign in zip(sessions, assigns, strict=True):
        engine.report_result(session, assign.ref, "forty-two", [], Usage())
    requests = [await command(s, VoteOnCandidates) for s in sessions]
    choice = requests[0].candidates[0][0]
    for session, request in zip(sessions, requests, strict=True):
        engine.cast_vote(session, request.proposal, choice, 0.9, "same answer", request.round)
    await wait_for(lambda: engine.tasks.get(task.id) is None or engine.tasks[task.id].status.finished, WAIT)
    await engine.durable()
    final = await stored(engine, task.id)
    assert final.status == TaskStatus.COMPLETED, final.failure
    assert final.consensus_state is not None and final.consensus_state["outcome"] == "REACHED"


async def test_reads_answer_committed_state(engine: Engine) -> None:
    session = agent(engine)
    task = await submit(engine)
    assign = await command(session, Assign)
    async with engine.commits_held():  # the result is applied in memory, not committed
        engine.report_result(session, assign.ref, "held back", [], Usage())
        assert engine.tasks[task.id].status == TaskStatus.COMPLETED  # memory moved on
        read = asyncio.ensure_future(engine.get_task(task.id))
        subtasks = asyncio.ensure_future(engine.get_subtasks(task.id))
        for _ in range(50):  # let every ready callback run: no commit can complete while held
            await asyncio.sleep(0)
        assert not read.done() and not subtasks.done()  # a read does not answer uncommitted state
    assert (await read).status == TaskStatus.COMPLETED
    assert [s.status for s in await subtasks] == [SubtaskStatus.COMPLETED]
    assert (await stored(engine, task.id)).status == TaskStatus.COMPLETED


async def test_a_read_of_a_settled_task_does_not_wait(engine: Engine) -> None:
    task = await submit(engine)  # no agent: it stays queued, every change committed
    await engine.durable()
    async with engine.commits_held():
        got = await asyncio.wait_for(engine.get_task(task.id), 1.0)
    assert got.id == task.id


async def test_unknown_task_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound):
        await engine.get_task("t-unknown")
    with pytest.raises(NotFound):
        await engine.cancel("t-unknown", "", "users/u")


async def test_a_task_taken_in_and_planned_at_once_queues_each_ready_step_once(engine: Engine) -> None:
    """A task claimed from another replica is planned as it is taken into memory (``start_now``): its
    ready steps are queued by the planning alone, one heap entry and a fairness count of one each, so
    they wait no longer than the same steps of a task submitted here."""
    task = Task(id=engine.new_task_id(), description="claimed")
    engine._restore([task], [], start_now=True)
    queued = [sub for sub in engine.subtasks[task.id].values() if sub.status == SubtaskStatus.QUEUED]
    assert queued, "planned at once: its first steps are ready"
    assert len(engine.dispatch.queue) == len(queued)
    assert engine.dispatch.queue._per_task[task.id] == len(queued)
