"""The ready queue: priority, age, ageing, fairness, capability matching."""

from __future__ import annotations

from controlplane.domain.model import Priority
from controlplane.scheduler.queue import ReadyQueue, matches


def drain(queue: ReadyQueue, agent_type: str = "a", caps: frozenset[str] = frozenset({"*"})) -> list[str]:
    taken = []
    while entry := queue.pop_for(agent_type, caps, lambda e: True, lambda e: True, lambda e: None):
        taken.append(entry.subtask_id)
    return taken


def test_priority_first_then_age() -> None:
    q = ReadyQueue(aging_interval=100)
    q.push(("", ""), q.key(0.0, Priority.LOW, "t1"), "t1", "low-old", 1)
    q.push(("", ""), q.key(1.0, Priority.CRITICAL, "t2"), "t2", "critical", 1)
    q.push(("", ""), q.key(2.0, Priority.NORMAL, "t3"), "t3", "normal", 1)
    q.push(("", ""), q.key(3.0, Priority.NORMAL, "t4"), "t4", "normal-newer", 1)
    assert drain(q) == ["critical", "normal", "normal-newer", "low-old"]


def test_ageing_lets_old_low_work_overtake_new_critical_work() -> None:
    q = ReadyQueue(aging_interval=10)
    q.push(("", ""), q.key(0.0, Priority.LOW, "t1"), "t1", "low-waited-long", 1)
    q.push(("", ""), q.key(31.0, Priority.CRITICAL, "t2"), "t2", "critical-late", 1)
    assert drain(q) == ["low-waited-long", "critical-late"]


def test_a_wide_task_does_not_hold_back_a_task_that_arrived_just_after() -> None:
    q = ReadyQueue(aging_interval=100)
    for i in range(50):
        q.push(("", ""), q.key(0.0, Priority.NORMAL, "wide"), "wide", f"w{i}", 1)
    q.push(("", ""), q.key(0.01, Priority.NORMAL, "small"), "small", "s0", 1)
    assert drain(q).index("s0") < 5


def test_capability_and_type_matching() -> None:
    assert matches(("", "coder"), "coder", frozenset({"coder"}))
    assert matches(("", ""), "any", frozenset())
    assert not matches(("", "coder"), "researcher", frozenset({"researcher"}))
    assert matches(("", "coder"), "echo", frozenset({"*"}))
    assert not matches(("special", ""), "echo", frozenset({"*"}))
    q = ReadyQueue(aging_interval=100)
    q.push(("", "coder"), 0.0, "t", "code", 1)
    q.push(("", "researcher"), 1.0, "t", "research", 1)
    assert drain(q, "researcher", frozenset({"researcher"})) == ["research"]


def test_stale_entries_are_dropped_and_unrunnable_ones_parked() -> None:
    q = ReadyQueue(aging_interval=100)
    for i in range(3):
        q.push(("", ""), float(i), "t", f"s{i}", 1)
    parked = []
    entry = q.pop_for(
        "a", frozenset(), lambda e: e.subtask_id != "s0", lambda e: e.subtask_id != "s1", parked.append
    )
    assert entry is not None and entry.subtask_id == "s2"
    assert [e.subtask_id for e in parked] == ["s1"]
    assert len(q) == 0
