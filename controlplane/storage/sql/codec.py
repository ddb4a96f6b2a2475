"""Conversion of domain records to table rows and back.

A row is a dict of the indexed columns of :mod:`controlplane.storage.sql.schema`
plus ``data``: the remaining fields as compact JSON. Enums are stored as their
ints, ``bytes`` as base64 inside JSON (a subtask checkpoint has its own binary
column). Decoding ignores unknown JSON keys and falls back to the dataclass
defaults for missing ones, so adding or removing a field needs no data
migration.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import fields
from operator import attrgetter
from typing import Any, TypeVar

import orjson

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
from controlplane.storage.base import IdempotencyRecord

_T = TypeVar("_T")

#: Task fields stored as their own columns rather than in ``data``.
TASK_COLUMNS = ("id", "seq", "owner", "status", "priority", "task_type", "create_time", "batch")


def dumps(data: Any) -> str:
    """Compact JSON text (orjson: the write path encodes thousands of rows a second)."""
    return orjson.dumps(data).decode()


_FIELD_NAMES: dict[type, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]] = {}


def _flat(obj: Any) -> dict[str, Any]:
    """A shallow dict of a dataclass's fields (the caller encodes nested records)."""
    cls = type(obj)
    known = _FIELD_NAMES.get(cls)
    if known is None:  # records have __slots__, not __dict__: read the fields by name, through one getter
        names = tuple(f.name for f in fields(cls))
        getter = attrgetter(*names)
        known = _FIELD_NAMES[cls] = (names, (lambda o: (getter(o),)) if len(names) == 1 else getter)
    names, values = known
    return dict(zip(names, values(obj), strict=True))


#: Field names of each record type :func:`_build` made (``dataclasses.fields`` costs more than the build).
_BUILD_NAMES: dict[type, frozenset[str]] = {}


def _build(cls: type[_T], data: Mapping[str, Any] | None) -> _T:
    """An instance of ``cls`` from the known keys of ``data`` (defaults for the rest)."""
    names = _BUILD_NAMES.get(cls)
    if names is None:
        names = _BUILD_NAMES[cls] = frozenset(f.name for f in fields(cls))  # type: ignore[arg-type]
    if not data:
        return cls()
    if data.keys() <= names:  # (as written by this version: no key to leave out)
        return cls(**data)
    return cls(**{k: v for k, v in data.items() if k in names})


def _failure(data: Mapping[str, Any] | None) -> Failure | None:
    return None if data is None else _build(Failure, data)


# --- plan ----------------------------------------------------------------------


def _plan_to_dict(plan: ExecutionPlan | None) -> dict[str, Any] | None:
    if plan is None:
        return None
    data = _flat(plan)
    data["subtasks"] = [{**_flat(step), "kind": int(step.kind)} for step in plan.subtasks]
    return data


def _plan_from_dict(data: Mapping[str, Any] | None) -> ExecutionPlan | None:
    if data is None:
        return None
    steps = []
    for raw in data.get("subtasks", ()):
        step = _build(PlannedSubtask, raw)
        step.kind = SubtaskKind(step.kind)
        steps.append(step)
    return _build(ExecutionPlan, {**data, "subtasks": steps})


# --- artifacts -----------------------------------------------------------------


def _artifact_to_dict(artifact: Artifact) -> dict[str, Any]:
    data = _flat(artifact)
    data["content"] = base64.b64encode(artifact.content).decode("ascii")
    return data


def _artifact_from_dict(data: Mapping[str, Any]) -> Artifact:
    artifact = _build(Artifact, data)
    artifact.content = base64.b64decode(artifact.content)
    return artifact


# --- tasks ---------------------------------------------------------------------


def task_to_row(task: Task) -> dict[str, Any]:
    """The ``tasks`` row of a task.

    Args:
        task: The task to store.

    Returns:
        Column values, with every non-column field JSON-encoded in ``data``.
    """
    # ``timeout`` first: the deadline index's condition settles a row whose text begins with
    # ``{"timeout":null,`` without parsing it (migration 0023).
    data = {"timeout": task.timeout, **_flat(task)}
    for name in TASK_COLUMNS:
        del data[name]
    data["consensus"] = _flat(task.consensus)
    data["retry"] = _flat(task.retry)
    data["failure"] = None if task.failure is None else _flat(task.failure)
    data["usage"] = _flat(task.usage)
    data["plan"] = _plan_to_dict(task.plan)
    return {
        "id": task.id,
        "seq": task.seq,
        "owner": task.owner,
        "status": int(task.status),
        "priority": int(task.priority),
        "task_type": task.task_type,
        "create_time": task.create_time,
        "batch": task.batch,
        "data": dumps(data),
    }


def task_from_row(row: Mapping[Any, Any]) -> Task:
    """The task stored in a ``tasks`` row.

    Args:
        row: A mapping with the columns of ``tasks``.

    Returns:
        The decoded task.
    """
    data = orjson.loads(row["data"])
    data.update(
        consensus=_build(ConsensusPolicy, data.get("consensus")),
        retry=_build(RetryPolicy, data.get("retry")),
        failure=_failure(data.get("failure")),
        usage=_build(Usage, data.get("usage")),
        plan=_plan_from_dict(data.get("plan")),
        dependency_results=[_build(DependencyResult, d) for d in data.get("dependency_results") or ()],
    )
    data.update({name: row[name] for name in TASK_COLUMNS})
    task = _build(Task, data)
    task.status = TaskStatus(task.status)
    task.priority = Priority(task.priority)
    return task


# --- subtasks ------------------------------------------------------------------


def subtask_to_row(subtask: Subtask) -> dict[str, Any]:
    """The ``subtasks`` row of a subtask (without the storage-assigned ``ord``).

    Args:
        subtask: The subtask to store.

    Returns:
        Column values; the checkpoint goes to its own binary column.
    """
    data = _flat(subtask)
    for name in ("task_id", "id", "status", "checkpoint"):
        del data[name]
    data["kind"] = int(subtask.kind)
    data["artifacts"] = [_artifact_to_dict(a) for a in subtask.artifacts]
    data["failure"] = None if subtask.failure is None else _flat(subtask.failure)
    data["usage"] = _flat(subtask.usage)
    data["tool_calls"] = [_flat(c) for c in subtask.tool_calls]
    data["sources"] = [_flat(s) for s in subtask.sources]
    return {
        "task_id": subtask.task_id,
        "id": subtask.id,
        "status": int(subtask.status),
        "checkpoint": subtask.checkpoint,
        "data": dumps(data),
    }


def subtask_from_row(row: Mapping[Any, Any]) -> Subtask:
    """The subtask stored in a ``subtasks`` row.

    Args:
        row: A mapping with the columns of ``subtasks``.

    Returns:
        The decoded subtask.
    """
    data = orjson.loads(row["data"])
    checkpoint = row["checkpoint"]
    data.update(
        task_id=row["task_id"],
        id=row["id"],
        status=SubtaskStatus(row["status"]),
        checkpoint=None if checkpoint is None else bytes(checkpoint),
        artifacts=[_artifact_from_dict(a) for a in data.get("artifacts", ())],
        failure=_failure(data.get("failure")),
        usage=_build(Usage, data.get("usage")),
        tool_calls=[_build(ToolCall, c) for c in data.get("tool_calls") or ()],
        sources=[_build(Source, s) for s in data.get("sources") or ()],
    )
    subtask = _build(Subtask, data)
    subtask.kind = SubtaskKind(subtask.kind)
    return subtask


# --- agents --------------------------------------------------------------------


def agent_to_row(agent: AgentInfo) -> dict[str, Any]:
    """The ``agents`` row of an agent.

    Args:
        agent: The agent to store.

    Returns:
        Column values.
    """
    data = _flat(agent)
    del data["id"]
    data["status"] = int(agent.status)
    data["usage"] = _flat(agent.usage)
    return {"id": agent.id, "data": dumps(data)}


def agent_from_row(row: Mapping[Any, Any]) -> AgentInfo:
    """The agent stored in an ``agents`` row.

    Args:
        row: A mapping with the columns of ``agents``.

    Returns:
        The decoded agent.
    """
    data = orjson.loads(row["data"])
    data.update(id=row["id"], usage=_build(Usage, data.get("usage")))
    agent = _build(AgentInfo, data)
    agent.status = AgentStatus(agent.status)
    return agent


# --- idempotency ---------------------------------------------------------------


def idempotency_to_row(record: IdempotencyRecord) -> dict[str, Any]:
    """The ``idempotency`` row of a record (one column per field)."""
    return _flat(record)


def idempotency_from_row(row: Mapping[Any, Any]) -> IdempotencyRecord:
    """The record stored in an ``idempotency`` row."""
    return _build(IdempotencyRecord, row)
