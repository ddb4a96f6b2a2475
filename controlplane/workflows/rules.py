"""Rules about batches and templates that need no state: names, placeholders, schedules, progress."""

from __future__ import annotations

import copy
import itertools
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from controlplane.domain.model import Task, TaskStatus, now
from controlplane.errors import FieldViolation, InvalidArgument
from controlplane.workflows.records import BatchSchedule, BatchStatus, TemplateParameter

MAX_DISPLAY_NAME = 100
MAX_TEMPLATE_DESCRIPTION = 4096
MAX_PARAMETERS = 64
MAX_PARAMETER_NAME = 64
MAX_PARAMETER_VALUE = 4096
#: An id a client may choose: 1-63 characters of [a-z0-9-], starting with a letter.
_CLIENT_ID = re.compile(r"[a-z][a-z0-9-]{0,62}")
#: ``{name}`` or ``{{name}}`` (spaces allowed inside the double braces).
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PARAMETER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def new_id(prefix: str) -> str:
    """A fresh, time-ordered id: ``prefix`` + milliseconds (hex) + 8 random hex digits."""
    return f"{prefix}{int(now() * 1000):x}{secrets.token_hex(4)}"


def validate_client_id(value: str, field: str) -> None:
    """An id chosen by the client: 1-63 characters of [a-z0-9-], starting with a letter."""
    if not _CLIENT_ID.fullmatch(value):
        raise InvalidArgument(
            f"{field} {value!r} must be 1-63 characters of a-z, 0-9 or '-', starting with a letter",
            field=field,
        )


def validate_display_name(value: str, field: str, what: str) -> None:
    """A name people give a batch or template: 1-100 printable characters, no '/', no outer spaces."""
    if not value:
        raise InvalidArgument(f"{field} is required: give the {what} a name", field=field)
    if len(value) > MAX_DISPLAY_NAME:
        raise InvalidArgument(f"{field} is {len(value)} characters; at most {MAX_DISPLAY_NAME}", field=field)
    if value != value.strip() or not value.isprintable() or "/" in value:
        raise InvalidArgument(
            f"{field} {value!r} must be printable characters without '/' and without spaces at either end",
            field=field,
        )


def check_ref(ref: str, field: str) -> None:
    """A name, id or resource name a caller looks a batch or template up by: at most 200 characters."""
    if len(ref) > 2 * MAX_DISPLAY_NAME:
        raise InvalidArgument(
            f"{field} is {len(ref)} characters; names and ids are at most {MAX_DISPLAY_NAME}", field=field
        )


def looks_like(collection: str, ref: str) -> bool:
    """Whether ``ref`` is a resource name of ``collection`` (``batches/...``) rather than an id or a name."""
    return ref.startswith(collection + "/")


# --- templates ---------------------------------------------------------------------------------


def _texts(task: Task) -> list[tuple[str, str]]:
    """The fields of a task that may hold placeholders, with their names."""
    texts = [("description", task.description), ("context", task.context), ("constraints", task.constraints)]
    texts.extend((f"metadata[{key}]", value) for key, value in task.metadata.items())
    return texts


def placeholders(task: Task) -> list[str]:
    """The parameter names the task's text fields use, in order of first use."""
    found: dict[str, None] = {}
    for _, text in _texts(task):
        for match in _PLACEHOLDER.finditer(text):
            found.setdefault(match.group(1) or match.group(2))
    return list(found)


def check_parameters(
    task: Task, declared: Sequence[TemplateParameter], field: str = "template.parameters"
) -> list[TemplateParameter]:
    """The template's parameters, in order of first use: each placeholder, as ``declared`` (with a description,
    a default) or else required.

    Raises:
        InvalidArgument: A bad or repeated parameter name, more than 64
            parameters, a too long description or default, or a declared
            parameter that no placeholder uses.
    """
    used = placeholders(task)
    problems: list[FieldViolation] = []
    total = len({*used, *(p.name for p in declared)})
    if total > MAX_PARAMETERS:
        problems.append(FieldViolation(field, f"{total} parameters; at most {MAX_PARAMETERS}"))
    seen: set[str] = set()
    for index, p in enumerate(declared):
        where = f"{field}[{index}]"
        if not _PARAMETER_NAME.fullmatch(p.name):
            problems.append(
                FieldViolation(
                    f"{where}.name",
                    f"{p.name!r} is not a parameter name (a letter or '_', "
                    "then letters, digits or '_'; at most 64)",
                )
            )
        elif p.name in seen:
            problems.append(FieldViolation(f"{where}.name", f"{p.name!r} is declared twice"))
        seen.add(p.name)
        if len(p.description) > MAX_PARAMETER_VALUE:
            problems.append(
                FieldViolation(f"{where}.description", f"at most {MAX_PARAMETER_VALUE} characters")
            )
        if p.default is not None and len(p.default) > MAX_PARAMETER_VALUE:
            problems.append(
                FieldViolation(f"{where}.default_value", f"at most {MAX_PARAMETER_VALUE} characters")
            )
    unused = [p.name for p in declared if p.name in seen and p.name not in used]
    if unused:
        problems.append(
            FieldViolation(field, "declared parameters are used by no placeholder: " + ", ".join(unused))
        )
    if problems:
        raise InvalidArgument(
            "invalid template: " + "; ".join(f"{p.field}: {p.description}" for p in problems),
            violations=problems,
        )
    given = {p.name: p for p in declared}
    return [given.get(name) or TemplateParameter(name) for name in used]


def render(
    task: Task, parameters: Sequence[TemplateParameter], params: Mapping[str, str], field: str = "params"
) -> Task:
    """A copy of the template's task with every placeholder filled from ``params`` (or the defaults).

    Raises:
        InvalidArgument: Parameters missing (required, not given), unknown (given,
            not declared) or too long, each named.
    """
    declared = {p.name: p for p in parameters}
    if len(params) > MAX_PARAMETERS:
        raise InvalidArgument(f"{len(params)} parameter values; at most {MAX_PARAMETERS}", field=field)
    problems: list[FieldViolation] = []
    unknown = sorted(_shown(name) for name in params if name not in declared)
    if unknown:
        known = (
            f"the template takes: {', '.join(declared)}"
            if declared
            else "the template has no parameters: its text has no {placeholders}"
        )
        problems.append(FieldViolation(field, f"unknown parameters: {', '.join(unknown)} ({known})"))
    missing = [p.name for p in parameters if p.default is None and p.name not in params]
    if missing:
        problems.append(FieldViolation(field, "missing required parameters: " + ", ".join(missing)))
    long = sorted(name for name, value in params.items() if len(value) > MAX_PARAMETER_VALUE)
    if long:
        problems.append(
            FieldViolation(field, f"values longer than {MAX_PARAMETER_VALUE} characters: " + ", ".join(long))
        )
    if problems:
        raise InvalidArgument("; ".join(p.description for p in problems), violations=problems)
    values = {p.name: params.get(p.name, p.default or "") for p in parameters}

    def fill(text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)

    out = copy.deepcopy(task)
    out.description, out.context, out.constraints = (
        fill(task.description),
        fill(task.context),
        fill(task.constraints),
    )
    out.metadata = {key: fill(value) for key, value in task.metadata.items()}
    return out


def _shown(name: str) -> str:
    """A caller's parameter name as an error message quotes it (cut, so a message stays short)."""
    return name if len(name) <= MAX_PARAMETER_NAME else name[:MAX_PARAMETER_NAME] + "..."


def template_task(source: Task) -> Task:
    """The reusable part of a task: its description and options, not its identity, state or dependencies."""
    return Task(
        id="",
        description=source.description,
        task_type=source.task_type,
        priority=source.priority,
        max_agents=source.max_agents,
        consensus=copy.deepcopy(source.consensus),
        timeout=source.timeout,
        context=source.context,
        constraints=source.constraints,
        metadata=dict(source.metadata),
        retry=copy.deepcopy(source.retry),
        max_total_tokens=source.max_total_tokens,
        max_cost_micros=source.max_cost_micros,
        agent_type=source.agent_type,
    )


# --- batches -------------------------------------------------------------------------------------


def chain(tasks: Sequence[Task], schedule: BatchSchedule) -> None:
    """Sequential: make each task also depend on the one before it (in place)."""
    if schedule != BatchSchedule.SEQUENTIAL:
        return
    for before, after in itertools.pairwise(tasks):
        if before.id not in after.depends_on:
            after.depends_on.append(before.id)


@dataclass
class BatchProgress:
    """Counts of a submitted batch's tasks by state, its overall state and progress."""

    status: BatchStatus
    counts: dict[TaskStatus, int]
    progress: float


def summarize(submitted: bool, statuses: Iterable[TaskStatus], progresses: Iterable[float]) -> BatchProgress:
    """The overall state of a batch from its tasks' states (and each task's progress, 0 to 1).

    OPEN until submitted; then RUNNING while a task is unfinished, COMPLETED
    when every task completed, FAILED when every task finished and one did not
    complete.
    """
    counts = {status: 0 for status in TaskStatus}
    total = 0
    for status in statuses:
        counts[status] += 1
        total += 1
    values = list(progresses)
    progress = sum(values) / len(values) if values else 0.0
    if not submitted:
        return BatchProgress(BatchStatus.OPEN, counts, 0.0)
    if any(counts[s] for s in TaskStatus if not s.finished):
        batch_status = BatchStatus.RUNNING
    elif counts[TaskStatus.COMPLETED] == total:
        batch_status = BatchStatus.COMPLETED
    else:
        batch_status = BatchStatus.FAILED
    return BatchProgress(batch_status, counts, progress)
