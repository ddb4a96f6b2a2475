"""How a task's budget is shared among its steps: the rules, no state.

A step that starts reserves a share of what the task has left and not yet
reserved for its running steps, so parallel steps never each take the whole
remaining budget: the share is the free budget divided by the steps still to
start (this one included). What a step does not spend returns to the task when
it ends. An agent keeps within the share it is given (``Assignment.remaining_budget``),
so a task overshoots its budget only by the error of the agent's estimate of
its prompt, and its cost budget by at most one call's price.
"""

from __future__ import annotations

from controlplane.domain.model import Task

#: ``reserve_share`` when the whole budget is spent or reserved.
NOTHING_LEFT = -1


def reserve_share(limit: int, used: int, reserved: int, unstarted: int) -> int:
    """The share of one limit (tokens or cost) a starting step reserves.

    Args:
        limit: The task's limit (0: no limit).
        used: What the task spent so far.
        reserved: What its running steps hold.
        unstarted: Steps not yet started, the starting one included.

    Returns:
        0 when there is no limit, :data:`NOTHING_LEFT` when nothing is free, else the share (at least 1).
    """
    if not limit:
        return 0
    free = limit - used - reserved
    if free <= 0:
        return NOTHING_LEFT
    return max(1, free // max(1, unstarted))


def over_budget(task: Task, *, or_at: bool = False) -> str:
    """ "token" or "cost" when the task spent more than (``or_at``: at least) its budget, else ""."""

    def past(used: int, limit: int) -> bool:
        return bool(limit) and (used >= limit if or_at else used > limit)

    if past(task.usage.total_tokens, task.max_total_tokens):
        return "token"
    if past(task.usage.cost_micros, task.max_cost_micros):
        return "cost"
    return ""
