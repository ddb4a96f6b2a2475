"""The ready queue: priority first, then age, with ageing; capability matching.

Each ready subtask gets a *virtual time* key: the moment it became ready,
minus ``aging_interval`` seconds per priority level, plus a small per-task
quantum for each subtask of the same task pushed before it (so a task with a
thousand parallel subtasks does not hold back a task of the same priority
that arrived a moment later). Lower keys run first. Because a LOW subtask is
only ``3 * aging_interval`` "behind" a CRITICAL one that became ready at the
same time, waiting work is never starved, and the key never changes once
pushed, so ordinary heaps work.

Subtasks are kept in one heap per (agent type, capability) pair, so picking
work for an agent looks at the heads of the few heaps it matches. Entries
are removed lazily: an entry is valid only while its subtask is QUEUED with
the same queue token.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from controlplane.domain.model import Priority
from controlplane.domain.pool import explicit_match, wildcard_match

FAIR_QUANTUM = 0.05  # seconds of virtual time per subtask already queued for the same task


@dataclass(order=True, slots=True)
class Entry:
    """A heap entry; ordered by (key, seq)."""

    key: float
    seq: int
    task_id: str = field(compare=False)
    subtask_id: str = field(compare=False)
    token: int = field(compare=False)


def matches(
    heap_key: tuple[str, str],
    agent_type: str,
    capabilities: frozenset[str],
    *,
    offline: bool = False,
    generic_ok: Callable[[tuple[str, str]], bool] | None = None,
) -> bool:
    """Whether an agent may take work from the heap of (agent type, capability).

    An offline agent takes work addressed to it (its type, or a capability it declares by name), and
    other work only when ``generic_ok(heap_key)`` says no model-backed agent could take it
    (see :mod:`controlplane.domain.pool`).
    """
    wanted_type, capability = heap_key
    if not offline:
        return wildcard_match(wanted_type, capability, agent_type, capabilities)
    if explicit_match(wanted_type, capability, agent_type, capabilities):
        return True
    return wildcard_match(wanted_type, capability, agent_type, capabilities) and (
        generic_ok is None or generic_ok(heap_key)
    )


class ReadyQueue:
    """Heaps of ready subtasks by (agent type, capability)."""

    def __init__(self, aging_interval: float):
        self.aging_interval = aging_interval
        self._heaps: dict[tuple[str, str], list[Entry]] = {}
        self._seq = 0
        self._per_task: dict[str, int] = {}

    def key(self, ready_time: float, priority: Priority, task_id: str) -> float:
        """The virtual time of a subtask that became ready at ``ready_time``."""
        burst = self._per_task.get(task_id, 0)
        return ready_time - int(priority) * self.aging_interval + burst * FAIR_QUANTUM

    def push(self, heap_key: tuple[str, str], key: float, task_id: str, subtask_id: str, token: int) -> None:
        """Add a ready subtask."""
        self._seq += 1
        self._per_task[task_id] = self._per_task.get(task_id, 0) + 1
        heapq.heappush(
            self._heaps.setdefault(heap_key, []), Entry(key, self._seq, task_id, subtask_id, token)
        )

    def forget_task(self, task_id: str) -> None:
        """Drop the fairness counter of a finished task."""
        self._per_task.pop(task_id, None)

    def pop_for(
        self,
        agent_type: str,
        capabilities: frozenset[str],
        valid: Callable[[Entry], bool],
        runnable: Callable[[Entry], bool],
        park: Callable[[Entry], None],
        *,
        offline: bool = False,
        generic_ok: Callable[[tuple[str, str]], bool] | None = None,
    ) -> Entry | None:
        """Remove and return the best entry the agent may take, or None.

        Args:
            agent_type: The agent's type.
            capabilities: The agent's capabilities (its type name included).
            valid: False for stale entries, which are discarded.
            runnable: False for entries that may not run now (their task is at
                its max_agents); those are handed to ``park`` and skipped.
            park: Keeps a skipped entry until it can run (the caller pushes it
                back later).
            offline: The agent does no model work (it keeps off typed work).
            generic_ok: For an offline agent: whether no model-backed agent could take a heap's work.
        """
        while True:
            best_heap: list[Entry] | None = None
            for heap_key, heap in self._heaps.items():
                if not heap or not matches(
                    heap_key, agent_type, capabilities, offline=offline, generic_ok=generic_ok
                ):
                    continue
                while heap and not valid(heap[0]):
                    heapq.heappop(heap)
                if heap and (best_heap is None or heap[0] < best_heap[0]):
                    best_heap = heap
            if best_heap is None:
                return None
            entry = heapq.heappop(best_heap)
            if runnable(entry):
                return entry
            park(entry)

    def push_entry(self, heap_key: tuple[str, str], entry: Entry) -> None:
        """Put back an entry taken out earlier (a parked one), keeping its key."""
        heapq.heappush(self._heaps.setdefault(heap_key, []), entry)

    def compact(self, valid: Callable[[Entry], bool]) -> int:
        """Drop stale entries from every heap (also heaps no agent matches); how many were dropped."""
        dropped = 0
        for heap_key in list(self._heaps):
            heap = self._heaps[heap_key]
            kept = [entry for entry in heap if valid(entry)]
            dropped += len(heap) - len(kept)
            if kept:
                heapq.heapify(kept)
                self._heaps[heap_key] = kept
            else:
                del self._heaps[heap_key]
        return dropped

    def has_entries(self) -> bool:
        """Whether any entry (perhaps stale) is queued."""
        return any(self._heaps.values())

    def __len__(self) -> int:
        return sum(len(h) for h in self._heaps.values())
