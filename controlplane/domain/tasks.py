"""Rules about tasks that need no state: validation and how results combine."""

from __future__ import annotations

import re

from controlplane.domain.limits import Limits, map_size, over, size_of
from controlplane.domain.model import Subtask, SubtaskKind, Task
from controlplane.errors import FieldViolation, InvalidArgument
from maos_common.limits import (  # the bounds live with the CLI's, in one place
    MAX_BACKOFF,
    MAX_BACKOFF_MULTIPLIER,
    MAX_DEPENDENCIES,
    MAX_INITIAL_BACKOFF,
    MAX_METADATA_ENTRIES,
    MAX_RETRIES,
    MAX_REVIEW_ROUNDS,
    MAX_TASK_AGENTS,
    MAX_TIMEOUT,
    max_agents_problem,
)

__all__ = [
    "MAX_BACKOFF",
    "MAX_BACKOFF_MULTIPLIER",
    "MAX_DEPENDENCIES",
    "MAX_INITIAL_BACKOFF",
    "MAX_METADATA_ENTRIES",
    "MAX_RETRIES",
    "MAX_REVIEW_ROUNDS",
    "MAX_TASK_AGENTS",
    "MAX_TIMEOUT",
]

# Matched with fullmatch: "$" would also accept a trailing newline.
_TYPE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,62}")
_REQUEST_ID = re.compile(r"[A-Za-z0-9_\-]{1,36}")


def valid_type_name(name: str) -> bool:
    """Whether ``name`` is a task or agent type name: a letter, then letters, digits, '_' or '-' (max 63)."""
    return bool(_TYPE_NAME.fullmatch(name))


def validate_request_id(request_id: str, field: str = "request_id") -> None:
    """A request_id is empty or at most 36 characters of [A-Za-z0-9_-] (a UUID fits)."""
    if request_id and not _REQUEST_ID.fullmatch(request_id):
        raise InvalidArgument(
            "request_id must be at most 36 characters of letters, digits, '-' or '_' (use a UUID)",
            field=field,
        )


def validate_task(
    task: Task, *, max_description_length: int, prefix: str = "task", limits: Limits | None = None
) -> None:
    """Check a new task's fields; raise InvalidArgument naming every bad field.

    ``limits`` bounds context, constraints and metadata in bytes (the defaults of
    :class:`~controlplane.domain.limits.Limits` when not given).
    """
    limits = limits or Limits()
    problems: list[FieldViolation] = []

    def bad(name: str, text: str) -> None:
        problems.append(FieldViolation(f"{prefix}.{name}", text))

    if not task.description.strip():
        bad("description", "a task needs a description of the work")
    elif len(task.description) > max_description_length:
        bad("description", f"is {len(task.description)} characters; the limit is {max_description_length}")
    if task.task_type and not _TYPE_NAME.fullmatch(task.task_type):
        bad("task_type", "must start with a letter and hold only letters, digits, '_' or '-' (max 63)")
    if task.agent_type and not _TYPE_NAME.fullmatch(task.agent_type):
        bad("agent_type", "must start with a letter and hold only letters, digits, '_' or '-' (max 63)")
    if problem := max_agents_problem(task.max_agents):
        bad("max_agents", problem)
    if task.timeout is not None and not 0 < task.timeout <= MAX_TIMEOUT:
        bad("timeout", f"must be more than 0 and at most {int(MAX_TIMEOUT)} seconds")
    if len(task.depends_on) > MAX_DEPENDENCIES:
        bad("depends_on", f"at most {MAX_DEPENDENCIES} dependencies")
    if len(set(task.depends_on)) != len(task.depends_on):
        bad("depends_on", "names the same task twice")
    if len(task.metadata) > MAX_METADATA_ENTRIES:
        bad("metadata", f"at most {MAX_METADATA_ENTRIES} entries")
    for key, value in task.metadata.items():
        if not key or len(key) > 128 or len(value) > 4096:
            bad("metadata", "keys are 1-128 characters and values at most 4096")
            break
    # Counted in bytes: these are stored with the task and sent on every read of it (issue 11).
    for name, size, limit, setting in [
        ("context", size_of(task.context), limits.task_context, "limits.task_context_bytes"),
        ("constraints", size_of(task.constraints), limits.task_constraints, "limits.task_constraints_bytes"),
        ("metadata", map_size(task.metadata), limits.task_metadata, "limits.task_metadata_bytes"),
    ]:
        if size > limit:
            problems.append(over(f"{prefix}.{name}", size, limit, setting))
    # The values are quoted: a field may hold a server default the caller never sent (a cap of
    # tasks.default_max_backoff below the caller's initial backoff).
    retry = task.retry
    if retry.max_retries > MAX_RETRIES:
        bad("retry_policy.max_retries", f"is {retry.max_retries}; at most {MAX_RETRIES}")
    if not 0 <= retry.initial_backoff <= MAX_INITIAL_BACKOFF:
        bad(
            "retry_policy.initial_backoff",
            f"is {retry.initial_backoff:g} s; must be between 0 and {MAX_INITIAL_BACKOFF:g} seconds",
        )
    if not 1 <= retry.multiplier <= MAX_BACKOFF_MULTIPLIER:
        bad(
            "retry_policy.backoff_multiplier",
            f"is {retry.multiplier:g}; must be between 1 and {MAX_BACKOFF_MULTIPLIER:g}",
        )
    if retry.max_backoff < retry.initial_backoff:
        bad(
            "retry_policy.max_backoff",
            f"is {retry.max_backoff:g} s, less than initial_backoff ({retry.initial_backoff:g} s); "
            "the cap must be at least the initial backoff",
        )
    elif retry.max_backoff > MAX_BACKOFF:
        bad("retry_policy.max_backoff", f"is {retry.max_backoff:g} s; at most {MAX_BACKOFF:g} seconds")
    consensus = task.consensus
    if consensus.required:
        if not 0 < consensus.threshold <= 1:
            bad("consensus.threshold", "must be greater than 0 and at most 1")
        if not 3 <= consensus.candidates <= 15:
            bad("consensus.candidates", "between 3 and 15 candidate answers")
        if not 1 <= consensus.max_rounds <= 10:
            bad("consensus.max_rounds", "between 1 and 10 rounds")
        if consensus.round_timeout is not None and not 1 <= consensus.round_timeout <= 86400:
            bad("consensus.round_timeout", "between 1 second and 1 day")
    if not 0 <= task.review_rounds <= MAX_REVIEW_ROUNDS:
        bad("review_rounds", f"is {task.review_rounds}; between 0 (no review) and {MAX_REVIEW_ROUNDS} rounds")
    if task.max_total_tokens < 0 or task.max_cost_micros < 0:
        bad("budget", "limits cannot be negative")
    if problems:
        summary = "; ".join(f"{p.field}: {p.description}" for p in problems)
        raise InvalidArgument(f"invalid task: {summary}", violations=problems)


def combine_outputs(subtasks: list[Subtask]) -> str:
    """The task output: the synthesis step's, the single step's, or the parts in order."""
    for sub in subtasks:
        if sub.kind == SubtaskKind.SYNTHESIS:
            return sub.output
    if len(subtasks) == 1:
        return subtasks[0].output
    return "\n\n".join(f"## {s.title}\n{s.output}" for s in subtasks)
