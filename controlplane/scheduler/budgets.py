"""Budget shares held by running steps, and usage reported too late for the task it was spent on.

:class:`Reservations` holds, per running subtask, the share of its task's
budget it was given (see :mod:`controlplane.domain.budget`). :class:`Grants`
remembers which agent was given which lease, so a report that arrives after
its task ended or its lease moved on (a call that ended late, a cancelled
stream) can still be charged to the task, and only by the agent that did the work.
"""

from __future__ import annotations

from collections import OrderedDict

from controlplane.domain.budget import NOTHING_LEFT, reserve_share
from controlplane.domain.model import Task

SubKey = tuple[str, str]
#: Leases remembered for late reports (oldest forgotten first).
GRANTS_MEMORY = 100_000


class Reservations:
    """The (tokens, cost in micros) each running subtask holds of its task's budget."""

    def __init__(self) -> None:
        self._held: dict[SubKey, tuple[int, int]] = {}
        self._per_task: dict[str, tuple[int, int]] = {}

    def held(self, task_id: str) -> tuple[int, int]:
        """What the running steps of a task hold together."""
        return self._per_task.get(task_id, (0, 0))

    def free(self, task: Task) -> bool:
        """Whether any budget is left unreserved (always, without a budget)."""
        tokens, cost = self.held(task.id)
        tokens_left = not task.max_total_tokens or task.usage.total_tokens + tokens < task.max_total_tokens
        cost_left = not task.max_cost_micros or task.usage.cost_micros + cost < task.max_cost_micros
        return tokens_left and cost_left

    def take(self, task: Task, key: SubKey, unstarted: int) -> tuple[int, int] | None:
        """Reserve a share for a starting step; None when nothing is free (0 in a field: no limit)."""
        tokens, cost = self.held(task.id)
        token_share = reserve_share(task.max_total_tokens, task.usage.total_tokens, tokens, unstarted)
        cost_share = reserve_share(task.max_cost_micros, task.usage.cost_micros, cost, unstarted)
        if NOTHING_LEFT in (token_share, cost_share):
            return None
        self.release(key)
        self._held[key] = (token_share, cost_share)
        self._per_task[task.id] = (tokens + token_share, cost + cost_share)
        return token_share, cost_share

    def release(self, key: SubKey) -> None:
        """The step ended: its share returns to the task."""
        share = self._held.pop(key, None)
        if share is None:
            return
        tokens, cost = self._per_task.get(key[0], (0, 0))
        tokens, cost = tokens - share[0], cost - share[1]
        if tokens or cost:
            self._per_task[key[0]] = (tokens, cost)
        else:
            self._per_task.pop(key[0], None)

    def clear(self) -> None:
        """Forget every reservation (after a recovery)."""
        self._held.clear()
        self._per_task.clear()


class Grants:
    """Which agent held which lease: who may still report usage on it after it ended."""

    def __init__(self, memory: int = GRANTS_MEMORY) -> None:
        self._agents: OrderedDict[tuple[str, str, int], str] = OrderedDict()
        self._memory = memory

    def granted(self, task_id: str, subtask_id: str, epoch: int, agent_id: str) -> None:
        """A lease was given."""
        self._agents[(task_id, subtask_id, epoch)] = agent_id
        if len(self._agents) > self._memory:
            self._agents.popitem(last=False)

    def claim(self, task_id: str, subtask_id: str, epoch: int, agent_id: str) -> bool:
        """Whether ``agent_id`` was given that lease and has not reported on it yet (true once)."""
        key = (task_id, subtask_id, epoch)
        if agent_id and self._agents.get(key) == agent_id:
            del self._agents[key]
            return True
        return False
