"""The storage contract: the tests every :class:`~controlplane.storage.base.StorageBackend` must pass.

A backend certifies by subclassing :class:`StorageContract` (the core task store)
in a test module and providing a fixture named ``backend`` that yields a migrated,
empty backend (one per test); for each optional capability it offers, it adds that
capability's contract (:mod:`controlplane.storage.testing_capabilities`,
:mod:`controlplane.storage.testing_workflows`)::

    import pytest
    from controlplane.storage.testing import StorageContract
    from controlplane.storage.testing_capabilities import CheckpointContract

    @pytest.fixture
    def backend(tmp_path):
        store = MyBackendFactory().open(f"mydb://{tmp_path}/db")
        store.migrate()
        yield store
        store.close()

    class TestMyBackend(StorageContract, CheckpointContract):
        pass

The sample builders (:func:`full_task`, :func:`full_subtask`, :func:`full_agent`
and the ``minimal_*`` ones) set every field, respectively as few as possible,
so round trips exercise the whole model.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from controlplane.domain.model import (
    AgentInfo,
    AgentStatus,
    Artifact,
    ConsensusPolicy,
    DependencyResult,
    ExecutionPlan,
    Failure,
    PlannedSubtask,
    Priority,
    RetryPolicy,
    Source,
    Subtask,
    SubtaskKind,
    SubtaskStatus,
    Task,
    TaskStatus,
    ToolCall,
    Usage,
)
from controlplane.errors import Aborted
from controlplane.storage.base import (
    IdempotencyRecord,
    StateValue,
    StorageBackend,
    TaskQuery,
    WriteBatch,
)

_T0 = 1_700_000_000.123456  # a fixed time with a fractional part, to check float precision


# --- samples -------------------------------------------------------------------


def full_task(task_id: str = "task-full", *, seq: int = 1, **changes: Any) -> Task:
    """A task with every field set to a non-default value.

    Args:
        task_id: The task id.
        seq: The task seq.
        **changes: Fields to override.

    Returns:
        A new task.
    """
    plan = ExecutionPlan(
        subtasks=[
            PlannedSubtask(key="gather", title="Gather", instructions="Collect the reports",
                           capability="web", agent_type="researcher", kind=SubtaskKind.WORK),
            PlannedSubtask(key="merge", title="Merge", instructions="Merge the findings",
                           capability="writing", agent_type="writer", kind=SubtaskKind.SYNTHESIS,
                           depends_on=["gather"]),
        ],
        planner="llm",
        warnings=["plan truncated"],
        complexity="high",
        recommended_agents=3,
        estimated_parallel_efficiency=0.625,
        critical_path_length=2,
    )  # fmt: skip
    task = Task(
        id=task_id,
        description='Summarise the "quarterly" reports — ünïcödé, \\ and newlines\n',
        owner="alice",
        task_type="research",
        priority=Priority.HIGH,
        max_agents=7,
        depends_on=["task-a", "task-b"],
        consensus=ConsensusPolicy(required=True, threshold=0.75, strategy="weighted", candidates=5,
                                  max_rounds=2, round_timeout=30.5),
        timeout=600.25,
        context="Q3 context",
        constraints="no web access",
        metadata={"team": "blue", "ticket": "X-1"},
        retry=RetryPolicy(max_retries=5, initial_backoff=0.5, multiplier=3.0, max_backoff=60.0),
        max_total_tokens=100_000,
        max_cost_micros=2_500_000,
        agent_type="claude",
        status=TaskStatus.RUNNING,
        status_reason="2 of 3 subtasks done",
        failure=Failure(reason="ERROR_REASON_SUBTASK_FAILED", message="boom", subtask="merge",
                        error_type="TimeoutError"),
        create_time=_T0,
        start_time=_T0 + 1.5,
        end_time=_T0 + 100.25,
        update_time=_T0 + 50.75,
        usage=Usage(input_tokens=11, output_tokens=22, cache_read_input_tokens=33,
                    cache_creation_input_tokens=44, cost_micros=55, model_calls=6,
                    web_search_requests=7, web_fetch_requests=8, tool_calls=9),
        warnings=["slow agent", "retried"],
        retries=2,
        batch="batch-1",
        template="summary",
        plan=plan,
        consensus_state={"step": "s0", "round": 2, "outcome": "NO_CONSENSUS", "strategy": "weighted",
                         "threshold": 0.75, "candidates": [{"id": "s0-c0", "agent": "a1", "content": "x"}],
                         "votes": [{"voter": "a1", "candidate_id": "s0-c0", "confidence": 0.5, "rationale": "ok",
                                    "round": 1, "weight": 0.4}],
                         "voters": ["a1"], "winner": "", "agreement": 0.5, "deadline": _T0 + 300},
        review_rounds=2,
        review_state={"max_rounds": 2, "outcome": "PENDING", "answer_step": "merge",
                      "rounds": [{"round": 1, "review_step": "review-1", "reviewer": "a1",
                                  "verdict": {"approved": False, "changes": ["cite it"], "summary": "close"},
                                  "revision_step": "revision-1", "usage": {"model_calls": 1}, "note": ""}]},
        approve_plan=True,
        approval={"state": "APPROVED", "request_time": _T0 + 1.0, "principal": "users/bob",
                  "decide_time": _T0 + 1.25, "reason": "", "request_id": "r-1"},
        output="The summary.",
        dependency_results=[DependencyResult("task-dep", "Research first", "Users want speed.", omitted_chars=7)],
        seq=seq,
    )  # fmt: skip
    return dataclasses.replace(task, **changes)


def minimal_task(task_id: str = "task-min", *, seq: int = 1, **changes: Any) -> Task:
    """A task with only the required fields (and fixed times).

    Args:
        task_id: The task id.
        seq: The task seq.
        **changes: Fields to override.

    Returns:
        A new task: no plan, no failure, no start or end time.
    """
    fields: dict[str, Any] = {"description": "d", "create_time": _T0, "update_time": _T0, **changes}
    return Task(id=task_id, seq=seq, **fields)


def full_subtask(task_id: str = "task-full", subtask_id: str = "merge", **changes: Any) -> Subtask:
    """A subtask with every field set to a non-default value.

    Args:
        task_id: The parent task id.
        subtask_id: The subtask id.
        **changes: Fields to override.

    Returns:
        A new subtask, with a binary checkpoint and two artifacts.
    """
    subtask = Subtask(
        task_id=task_id,
        id=subtask_id,
        title="Merge",
        instructions="Merge the findings",
        capability="writing",
        agent_type="writer",
        kind=SubtaskKind.CANDIDATE,
        depends_on=["gather", "check"],
        status=SubtaskStatus.RUNNING,
        attempt=3,
        lease_epoch=(42 << 32) | 7,
        agent_id="agent-1",
        progress=0.5,
        progress_message="halfway",
        output="partial",
        artifacts=[
            Artifact(name="report.bin", media_type="application/pdf", content=bytes(range(256)),
                     uri="", size_bytes=256, sha256="ab" * 32),
            Artifact(name="link", media_type="text/uri-list", content=b"", uri="s3://bucket/key",
                     size_bytes=1024, sha256=""),
        ],
        failure=Failure(reason="ERROR_REASON_AGENT_LOST", message="lost", subtask=subtask_id,
                        error_type="Disconnect"),
        usage=Usage(input_tokens=1, output_tokens=2, cache_read_input_tokens=3,
                    cache_creation_input_tokens=4, cost_micros=5, model_calls=1, web_search_requests=2,
                    web_fetch_requests=3, tool_calls=4),
        checkpoint=b"\x00\xffcheckpoint\x00",
        queue_time=_T0 + 2.0,
        start_time=_T0 + 3.0,
        end_time=_T0 + 4.0,
        not_before=_T0 + 5.0,
        status_reason="running on agent-1",
        retries_used=2,
        tool_calls=[ToolCall(name="web_search", server=True, duration=1.25, is_error=True,
                             summary='{"query": "x"} -> max_uses_exceeded', turn=2),
                    ToolCall(name="read_file", duration=0.5, summary="src/a.py", turn=3)],
        sources=[Source(url="https://example.com/a", title="A", cited_text="a quote"),
                 Source(url="https://example.com/b")],
    )  # fmt: skip
    return dataclasses.replace(subtask, **changes)


def minimal_subtask(task_id: str = "task-min", subtask_id: str = "s1", **changes: Any) -> Subtask:
    """A subtask with only the required fields: no checkpoint, failure, artifacts or times.

    Args:
        task_id: The parent task id.
        subtask_id: The subtask id.
        **changes: Fields to override.

    Returns:
        A new subtask.
    """
    fields: dict[str, Any] = {"title": "t", "instructions": "i", **changes}
    return Subtask(task_id=task_id, id=subtask_id, **fields)


def full_agent(agent_id: str = "agent-full", **changes: Any) -> AgentInfo:
    """An agent with every field set to a non-default value.

    Args:
        agent_id: The agent id.
        **changes: Fields to override.

    Returns:
        A new agent.
    """
    agent = AgentInfo(
        id=agent_id,
        agent_type="researcher",
        capabilities=["web", "writing"],
        max_concurrency=4,
        labels={"zone": "eu", "gpu": "no"},
        language="python",
        sdk_version="1.2.3",
        status=AgentStatus.BUSY,
        hostname="host-1",
        pid=4242,
        replica="cp-0",
        managed=True,
        completed_subtasks=10,
        failed_subtasks=2,
        usage=Usage(input_tokens=7, output_tokens=8, cache_read_input_tokens=9,
                    cache_creation_input_tokens=10, cost_micros=11, model_calls=12,
                    web_search_requests=13, web_fetch_requests=14, tool_calls=15),
        connect_time=_T0,
        last_heartbeat_time=_T0 + 9.5,
        disconnect_time=_T0 + 99.0,
        session_id="session-1",
        owner="users/alice",
        backing=1,
    )  # fmt: skip
    return dataclasses.replace(agent, **changes)


def minimal_agent(agent_id: str = "agent-min", **changes: Any) -> AgentInfo:
    """An agent with only the required fields (no connect, heartbeat or disconnect time)."""
    return AgentInfo(id=agent_id, **{"agent_type": "worker", **changes})


def listing_tasks() -> list[Task]:
    """Twelve tasks spread over owners, types, priorities, statuses, batches and times.

    Returns:
        Tasks with seq 1..12 (listed in reverse, so insertion order is not seq order).
    """
    owners = ("alice", "bob", "")
    return [
        minimal_task(
            f"list-{seq:02d}",
            seq=seq,
            owner=owners[seq % 3],
            task_type=("code", "research")[seq % 2],
            priority=Priority(1 + seq % 4),
            status=TaskStatus(1 + seq % 6),
            batch="b1" if seq <= 4 else "",
            create_time=1000.0 + seq,
        )
        for seq in range(12, 0, -1)
    ]


def _ids(tasks: list[Task]) -> list[str]:
    return [t.id for t in tasks]


_Filter = Callable[[Task], bool]

#: (TaskQuery fields, the tasks they select): one case per TaskQuery filter, and a combination.
LISTING_CASES: list[tuple[dict[str, Any], _Filter]] = [
    ({}, lambda t: True),
    ({"statuses": [TaskStatus.RUNNING, TaskStatus.FAILED]}, lambda t: t.status in (3, 5)),
    ({"task_types": ["code"]}, lambda t: t.task_type == "code"),
    ({"priorities": [Priority.CRITICAL]}, lambda t: t.priority == Priority.CRITICAL),
    ({"since": 1008.0}, lambda t: t.create_time >= 1008.0),
    ({"owner": "bob"}, lambda t: t.owner == "bob"),
    ({"owner": ""}, lambda t: t.owner == ""),
    ({"batch": "b1"}, lambda t: t.batch == "b1"),
    ({"before_seq": 5}, lambda t: t.seq < 5),
    (
        {"owner": "alice", "task_types": ["research"], "since": 1002.0},
        lambda t: t.owner == "alice" and t.task_type == "research" and t.create_time >= 1002.0,
    ),
]


_LISTING_IDS = ["+".join(fields) or "none" for fields, _ in LISTING_CASES]


# --- the contract --------------------------------------------------------------


class StorageContract:
    """Behaviour every storage backend must have: the core task store, which runs tasks.

    Subclasses (named ``Test...``) provide a ``backend`` fixture yielding a
    migrated, empty backend. The optional capabilities have contracts of their own.
    """

    # --- lifecycle ---------------------------------------------------------------

    def test_implements_protocol(self, backend: StorageBackend) -> None:
        assert isinstance(backend, StorageBackend)
        assert isinstance(backend.kind, str) and backend.kind

    def test_ping(self, backend: StorageBackend) -> None:
        backend.ping()

    def test_migrate_is_idempotent_and_keeps_data(self, backend: StorageBackend) -> None:
        task = full_task()
        backend.write(WriteBatch(tasks=[task]))
        backend.migrate()
        backend.migrate()
        assert backend.get_task(task.id) == task

    # --- round trips ---------------------------------------------------------

    def test_round_trip_fully_populated(self, backend: StorageBackend) -> None:
        task, subtask, agent = full_task(), full_subtask(), full_agent()
        backend.write(WriteBatch(tasks=[task], subtasks=[subtask], agents=[agent]))
        assert backend.get_task(task.id) == task
        assert backend.get_subtasks(task.id) == [subtask]
        assert backend.get_agent(agent.id) == agent
        assert backend.list_agents() == [agent]

    def test_round_trip_minimal(self, backend: StorageBackend) -> None:
        task, subtask, agent = minimal_task(), minimal_subtask(), minimal_agent()
        backend.write(WriteBatch(tasks=[task], subtasks=[subtask], agents=[agent]))
        stored_task = backend.get_task(task.id)
        stored_subtasks = backend.get_subtasks(task.id)
        assert stored_task == task
        assert stored_task is not None and stored_task.plan is None and stored_task.start_time is None
        assert stored_subtasks == [subtask] and stored_subtasks[0].checkpoint is None
        assert backend.get_agent(agent.id) == agent

    def test_enums_come_back_as_enums(self, backend: StorageBackend) -> None:
        backend.write(WriteBatch(tasks=[full_task()], subtasks=[full_subtask()], agents=[full_agent()]))
        task = backend.get_task("task-full")
        (subtask,) = backend.get_subtasks("task-full")
        agent = backend.get_agent("agent-full")
        assert task is not None and agent is not None and task.plan is not None
        assert type(task.status) is TaskStatus and type(task.priority) is Priority
        assert type(task.plan.subtasks[1].kind) is SubtaskKind
        assert type(subtask.status) is SubtaskStatus and type(subtask.kind) is SubtaskKind
        assert type(agent.status) is AgentStatus

    def test_missing_objects(self, backend: StorageBackend) -> None:
        assert backend.get_task("nope") is None
        assert backend.get_tasks(["nope"]) == []
        assert backend.get_subtasks("nope") == []
        assert backend.get_agent("nope") is None
        assert backend.list_agents() == []
        assert backend.get_idempotency("p", "m", "nope") is None
        assert backend.load_unfinished() == ([], [])

    def test_empty_batch_writes_nothing(self, backend: StorageBackend) -> None:
        backend.write(WriteBatch())
        assert backend.list_tasks(TaskQuery()) == []
        assert backend.next_task_seq() == 0

    # --- upserts -------------------------------------------------------------

    def test_upsert_latest_state_wins(self, backend: StorageBackend) -> None:
        backend.write(
            WriteBatch(tasks=[minimal_task()], subtasks=[minimal_subtask()], agents=[minimal_agent()])
        )
        task = minimal_task(
            status=TaskStatus.RUNNING, output="new", start_time=_T0 + 1, plan=full_task().plan
        )
        subtask = minimal_subtask(status=SubtaskStatus.COMPLETED, checkpoint=b"cp", attempt=2)
        agent = minimal_agent(status=AgentStatus.BUSY, completed_subtasks=1)
        backend.write(WriteBatch(tasks=[task], subtasks=[subtask], agents=[agent]))
        assert backend.get_task(task.id) == task
        assert backend.get_subtasks(task.id) == [subtask]
        assert backend.list_agents() == [agent]
        assert backend.count_tasks_by_status().get(TaskStatus.RUNNING) == 1
        assert sum(backend.count_tasks_by_status().values()) == 1

    def test_update_can_clear_optional_fields(self, backend: StorageBackend) -> None:
        backend.write(WriteBatch(tasks=[full_task()], subtasks=[full_subtask()]))
        task = full_task(failure=None, plan=None, start_time=None, end_time=None, timeout=None)
        subtask = full_subtask(checkpoint=None, failure=None, artifacts=[], start_time=None)
        backend.write(WriteBatch(tasks=[task], subtasks=[subtask]))
        assert backend.get_task(task.id) == task
        assert backend.get_subtasks(task.id) == [subtask]

    def test_subtasks_keep_plan_order(self, backend: StorageBackend) -> None:
        backend.write(WriteBatch(tasks=[minimal_task()]))
        first = [minimal_subtask(subtask_id=key) for key in ("s3", "s10", "s1")]
        backend.write(WriteBatch(subtasks=first))
        later = [minimal_subtask(subtask_id="s10", attempt=1), minimal_subtask(subtask_id="s0")]
        backend.write(WriteBatch(subtasks=later))
        assert [s.id for s in backend.get_subtasks("task-min")] == ["s3", "s10", "s1", "s0"]
        assert backend.get_subtasks("task-min")[1].attempt == 1

    def test_subtasks_are_scoped_to_their_task(self, backend: StorageBackend) -> None:
        subtasks = [minimal_subtask("a", "s1"), minimal_subtask("b", "s1", output="b's")]
        tasks = [minimal_task("a", seq=1), minimal_task("b", seq=2)]
        backend.write(WriteBatch(tasks=tasks, subtasks=subtasks))
        assert backend.get_subtasks("a") == [subtasks[0]]
        assert backend.get_subtasks("b") == [subtasks[1]]

    def test_get_tasks_returns_those_that_exist(self, backend: StorageBackend) -> None:
        tasks = [minimal_task(f"t{seq}", seq=seq) for seq in (1, 2, 3)]
        backend.write(WriteBatch(tasks=tasks))
        found = backend.get_tasks(["t3", "nope", "t1"])
        assert sorted(found, key=lambda t: t.id) == [tasks[0], tasks[2]]
        assert backend.get_tasks([]) == []

    def test_many_agents(self, backend: StorageBackend) -> None:
        agents = [full_agent(f"agent-{i}", pid=i) for i in range(5)] + [minimal_agent()]
        backend.write(WriteBatch(agents=agents))
        assert sorted(backend.list_agents(), key=lambda a: a.id) == sorted(agents, key=lambda a: a.id)

    # --- recovery ------------------------------------------------------------

    def test_load_unfinished(self, backend: StorageBackend) -> None:
        tasks = [full_task(f"t-{s.name}", seq=int(s), status=s) for s in TaskStatus]
        subtasks = [full_subtask(t.id, key) for t in tasks for key in ("a", "b")]
        backend.write(WriteBatch(tasks=tasks, subtasks=subtasks))
        loaded_tasks, loaded_subtasks = backend.load_unfinished()
        unfinished = [t for t in tasks if not t.status.finished]
        assert sorted(loaded_tasks, key=lambda t: t.seq) == unfinished
        expected = [s for s in subtasks if s.task_id in {t.id for t in unfinished}]
        assert sorted(loaded_subtasks, key=lambda s: (s.task_id, s.id)) == expected

    # --- listing -------------------------------------------------------------

    @pytest.mark.parametrize(("fields", "selects"), LISTING_CASES, ids=_LISTING_IDS)
    def test_list_tasks_filters(
        self, backend: StorageBackend, fields: dict[str, Any], selects: _Filter
    ) -> None:
        tasks = listing_tasks()
        backend.write(WriteBatch(tasks=tasks))
        expected = [t for t in sorted(tasks, key=lambda t: -t.seq) if selects(t)]
        assert expected, "each case must select something"
        listed = backend.list_tasks(TaskQuery(**fields, limit=100))
        assert _ids(listed) == _ids(expected)
        assert listed == expected

    def test_list_tasks_limit(self, backend: StorageBackend) -> None:
        backend.write(WriteBatch(tasks=listing_tasks()))
        assert [t.seq for t in backend.list_tasks(TaskQuery(limit=3))] == [12, 11, 10]
        assert len(backend.list_tasks(TaskQuery())) == 12  # default limit 50

    def test_list_tasks_keyset_pagination(self, backend: StorageBackend) -> None:
        tasks = listing_tasks()
        backend.write(WriteBatch(tasks=tasks))
        seen: list[int] = []
        before: int | None = None
        while page := backend.list_tasks(TaskQuery(before_seq=before, limit=5)):
            assert len(page) <= 5
            seen.extend(t.seq for t in page)
            before = page[-1].seq
        assert seen == list(range(12, 0, -1))

    def test_list_tasks_pagination_with_filter(self, backend: StorageBackend) -> None:
        backend.write(WriteBatch(tasks=listing_tasks()))
        first = backend.list_tasks(TaskQuery(owner="alice", limit=2))
        second = backend.list_tasks(TaskQuery(owner="alice", before_seq=first[-1].seq, limit=2))
        assert [t.seq for t in first + second] == [12, 9, 6, 3]

    # --- idempotency ---------------------------------------------------------

    def test_idempotency_insert_and_get(self, backend: StorageBackend) -> None:
        record = IdempotencyRecord("user:alice", "CreateTask", "req-1", "hash-1", "tasks/t1", _T0)
        other = IdempotencyRecord("user:alice", "CancelTask", "req-1", "hash-2", "tasks/t2", _T0 + 1)
        backend.write(WriteBatch(idempotency=[record, other]))
        assert backend.get_idempotency("user:alice", "CreateTask", "req-1") == record
        assert backend.get_idempotency("user:alice", "CancelTask", "req-1") == other
        assert backend.get_idempotency("user:bob", "CreateTask", "req-1") is None

    def test_idempotency_duplicate_is_ignored(self, backend: StorageBackend) -> None:
        first = IdempotencyRecord("p", "CreateTask", "req-1", "hash-1", "tasks/t1", _T0)
        backend.write(WriteBatch(idempotency=[first]))
        duplicate = IdempotencyRecord("p", "CreateTask", "req-1", "hash-2", "tasks/t9", _T0 + 5)
        backend.write(WriteBatch(tasks=[minimal_task()], idempotency=[duplicate]))
        assert backend.get_idempotency("p", "CreateTask", "req-1") == first
        assert backend.get_task("task-min") is not None  # the rest of the batch was written

    def test_idempotency_decides_between_calls_of_one_key(self, backend: StorageBackend) -> None:
        first = minimal_task()
        winner = IdempotencyRecord("p", "SubmitTask", "req-7", "hash-1", first.id, _T0)
        batch = WriteBatch(tasks=[first], idempotency=[winner])
        backend.write(batch)
        assert batch.refused == set()
        second, unrelated = full_task(seq=2), minimal_task("task-other", seq=3)
        loser = IdempotencyRecord("p", "SubmitTask", "req-7", "hash-1", second.id, _T0 + 1)
        other = IdempotencyRecord("p", "SubmitTask", "req-8", "hash-2", unrelated.id, _T0 + 1)
        batch = WriteBatch(tasks=[second, unrelated], idempotency=[loser, other])
        backend.write(batch)
        assert batch.refused == {("p", "SubmitTask", "req-7")}
        assert backend.get_task(second.id) is None  # the losing call's task is not written
        assert backend.get_task("task-other") is not None
        assert backend.get_idempotency("p", "SubmitTask", "req-7") == winner
        assert backend.get_idempotency("p", "SubmitTask", "req-8") == other

    # --- counters ------------------------------------------------------------

    def test_next_incarnation_strictly_increases(self, backend: StorageBackend) -> None:
        values = [backend.next_incarnation() for _ in range(5)]
        assert values[0] >= 1
        assert all(a < b for a, b in itertools.pairwise(values))

    def test_next_task_seq(self, backend: StorageBackend) -> None:
        assert backend.next_task_seq() == 0
        backend.write(WriteBatch(tasks=[minimal_task("a", seq=9), minimal_task("b", seq=5)]))
        assert backend.next_task_seq() == 9
        backend.write(WriteBatch(tasks=[minimal_task("c", seq=10, status=TaskStatus.CANCELLED)]))
        assert backend.next_task_seq() == 10

    def test_count_tasks_by_status(self, backend: StorageBackend) -> None:
        tasks = listing_tasks()
        backend.write(WriteBatch(tasks=tasks))
        counts = backend.count_tasks_by_status()
        assert all(type(status) is TaskStatus for status in counts)
        for status in TaskStatus:
            assert counts.get(status, 0) == sum(1 for t in tasks if t.status == status)

    def test_count_tasks_by_status_follows_changes(self, backend: StorageBackend) -> None:
        backend.write(WriteBatch(tasks=[minimal_task("a", seq=1), minimal_task("b", seq=2)]))
        backend.write(
            WriteBatch(tasks=[minimal_task("a", seq=1, status=TaskStatus.RUNNING), minimal_task("b", seq=2)])
        )  # b written again, unchanged
        counts = backend.count_tasks_by_status()
        assert (counts[TaskStatus.PENDING], counts[TaskStatus.RUNNING]) == (1, 1)
        backend.write(
            WriteBatch(
                tasks=[
                    minimal_task("a", seq=1, status=TaskStatus.COMPLETED),
                    minimal_task("b", seq=2, status=TaskStatus.FAILED),
                ]
            )
        )
        counts = backend.count_tasks_by_status()
        assert (counts[TaskStatus.PENDING], counts[TaskStatus.RUNNING]) == (0, 0)
        assert (counts[TaskStatus.COMPLETED], counts[TaskStatus.FAILED]) == (1, 1)

    def test_shared_state_compare_and_set(self, backend: StorageBackend) -> None:
        assert backend.state_get("t1", "k") is None
        assert backend.state_put("t1", "k", b"one", 0) == 1  # 0: must not exist yet
        with pytest.raises(Aborted) as conflict:
            backend.state_put("t1", "k", b"again", 0)
        assert conflict.value.reason == "ERROR_REASON_VERSION_CONFLICT"
        assert conflict.value.metadata["actual_version"] == "1"
        assert backend.state_put("t1", "k", b"two", 1) == 2
        with pytest.raises(Aborted):
            backend.state_put("t1", "k", b"stale", 1)
        assert backend.state_put("t1", "k", b"forced", None) == 3
        assert backend.state_get("t1", "k") == StateValue(b"forced", 3)
        assert backend.state_get("t2", "k") is None  # scoped per task
        with pytest.raises(Aborted):
            backend.state_delete("t1", "k", 2)
        assert backend.state_delete("t1", "k", 3) is True
        assert backend.state_delete("t1", "k", None) is False
        assert backend.state_get("t1", "k") is None
