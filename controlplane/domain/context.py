"""What a step sees of the work before it: the rules, no state.

A step gets the results of every step it depends on, directly or through
others (a synthesis after design → implement → test sees all three), and the
final results of the tasks its task depends on. Both are bounded by
``tasks.context_max_chars``: texts that fit are passed whole, the longest are
cut to a fair share with a note at the end saying how much was left out and
where the whole text is, never silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from controlplane.domain.model import DependencyResult, ExecutionPlan, Subtask, Task

#: The smallest share a text is cut to, so a note never stands alone.
MIN_SHARE = 200


def truncation_note(omitted: int, total: int, where: str) -> str:
    """The note that ends a cut text."""
    return (
        f"\n\n[… {omitted:,} of {total:,} characters left out here (the context limit "
        f"tasks.context_max_chars); the whole text: {where}]"
    )


def fair_shares(lengths: Sequence[int], limit: int) -> list[int]:
    """How many characters of each text to keep so that together they fit ``limit``.

    Water-filling: texts shorter than an equal share are kept whole and what
    they leave is shared by the longer ones. Every share is at least
    :data:`MIN_SHARE` (or the whole text), so many inputs may exceed the limit
    by that much each.
    """
    shares = list(lengths)
    if limit <= 0 or sum(lengths) <= limit:
        return shares
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    left, count = limit, len(lengths)
    for position, index in enumerate(order):
        share = max(MIN_SHARE, left // max(1, count - position))
        shares[index] = min(lengths[index], share)
        left = max(0, left - shares[index])
    return shares


def bound_texts(texts: Mapping[str, str], limit: int, where: Mapping[str, str]) -> dict[str, tuple[str, int]]:
    """Each text cut to its fair share of ``limit``, with the note; and how many characters were left out."""
    keys = list(texts)
    shares = fair_shares([len(texts[k]) for k in keys], limit)
    bounded: dict[str, tuple[str, int]] = {}
    for key, share in zip(keys, shares, strict=True):
        text = texts[key]
        omitted = len(text) - share
        if omitted > 0:
            bounded[key] = (text[:share] + truncation_note(omitted, len(text), where.get(key, "")), omitted)
        else:
            bounded[key] = (text, 0)
    return bounded


def dependency_results(task: Task, dependencies: Mapping[str, Task], limit: int) -> list[DependencyResult]:
    """The results of the tasks ``task`` depends on, in the order named, bounded together by ``limit``."""
    named = [d for d in task.depends_on if d in dependencies]
    bounded = bound_texts(
        {d: dependencies[d].output for d in named}, limit, {d: f"maos task results {d}" for d in named}
    )
    return [DependencyResult(d, dependencies[d].description, *bounded[d]) for d in named]


def ancestors(subtasks: Mapping[str, Subtask], subtask_id: str) -> list[str]:
    """Every step ``subtask_id`` depends on, directly or through others, in plan order."""
    seen: set[str] = set()
    stack = list(subtasks[subtask_id].depends_on) if subtask_id in subtasks else []
    while stack:
        key = stack.pop()
        if key in seen or key not in subtasks:
            continue
        seen.add(key)
        stack.extend(subtasks[key].depends_on)
    return [key for key in subtasks if key in seen]


def step_inputs(task_id: str, subtasks: Mapping[str, Subtask], subtask_id: str, limit: int) -> dict[str, str]:
    """The outputs a step sees: every step it depends on (transitively), bounded together by ``limit``."""
    keys = ancestors(subtasks, subtask_id)
    bounded = bound_texts(
        {k: subtasks[k].output for k in keys},
        limit,
        {k: f"maos task results {task_id} (subtask {k})" for k in keys},
    )
    return {k: text for k, (text, _) in bounded.items()}


def plan_outline(plan: ExecutionPlan | None, subtasks: Mapping[str, Subtask]) -> str:
    """The plan, one line per step, as the steps that combine the parts see it."""
    steps = (
        [(s.key, s.title, s.depends_on) for s in plan.subtasks]
        if plan is not None
        else [(s.id, s.title, s.depends_on) for s in subtasks.values()]
    )
    lines = []
    for key, title, depends_on in steps:
        after = f" (after {', '.join(depends_on)})" if depends_on else ""
        lines.append(f"- {key}: {title}{after}")
    return "\n".join(lines)
