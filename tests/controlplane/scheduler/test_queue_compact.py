"""Stale queue entries do not pile up in heaps no agent matches."""

from __future__ import annotations

from controlplane.scheduler.queue import ReadyQueue


def test_compact_drops_stale_entries_and_empty_heaps() -> None:
    q = ReadyQueue(aging_interval=100)
    q.push(("", "nobody-has-this"), 0.0, "t1", "s0", 1)
    q.push(("", "nobody-has-this"), 1.0, "t1", "s1", 1)
    q.push(("", ""), 2.0, "t2", "s0", 1)
    assert q.compact(lambda e: e.subtask_id == "s1") == 2
    assert len(q) == 1 and q.has_entries()
    assert q.compact(lambda e: False) == 1
    assert not q.has_entries()
