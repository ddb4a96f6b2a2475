"""Decoding many task and subtask rows at once, for records that go straight into memory.

Queued tasks kept in the database beyond ``scheduler.queue_window`` are read back a thousand at a
time (:meth:`~controlplane.storage.sql.spill.SqlSpillStore.take_back`), and decoding them was most
of what a refill cost; the PostgreSQL claims (:mod:`.claims`) decode the tasks they claim with it too.
:class:`RowBatchDecoder` gives the very records :func:`.codec.task_from_row`
and :func:`.codec.subtask_from_row` give (a test holds them equal), for less:

* rows are plain tuples of known columns (:data:`TASK_COLUMNS`, :data:`SUBTASK_COLUMNS`), not
  mappings;
* enums are looked up in a table rather than called;
* a record is built in one call from the decoded JSON, filtered only when the JSON holds a key the
  record does not know (written by another version);
* the small records many tasks repeat (retry and consensus policies, usage) are shared: one copy per
  distinct value and type of each field. They are frozen (a charge makes a new usage), so no record
  can change another's through them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import orjson

from controlplane.domain.model import (
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
from controlplane.storage.sql import codec

_R = TypeVar("_R")

#: The ``tasks`` columns :meth:`RowBatchDecoder.task` reads, in this order.
TASK_COLUMNS = (*codec.TASK_COLUMNS, "data")
#: The ``subtasks`` columns :meth:`RowBatchDecoder.subtask` reads, in this order.
SUBTASK_COLUMNS = ("task_id", "id", "status", "checkpoint", "data")

#: Distinct small records kept for sharing, at most (unusual values beyond it each get their own).
MAX_SHARED = 1024

_TASK_STATUS = {int(s): s for s in TaskStatus}
_SUBTASK_STATUS = {int(s): s for s in SubtaskStatus}
_PRIORITY = {int(p): p for p in Priority}
_KIND = {int(k): k for k in SubtaskKind}


def _enum(table: dict[int, Any], cls: Any, value: Any) -> Any:
    found = table.get(value)
    return cls(value) if found is None else found  # (an unknown value raises as the enum does)


def _make(cls: type[_R], data: dict[str, Any]) -> _R:
    """``cls(**data)``, leaving out keys ``cls`` does not know (written by another version)."""
    try:
        return cls(**data)
    except TypeError:
        return codec._build(cls, data)


class RowBatchDecoder:
    """Decodes rows read back into memory (see the module docstring). Safe to share between threads: its
    records cannot change, so two threads missing the same key at once only make two equal copies."""

    def __init__(self) -> None:
        self._shared: dict[tuple[Any, ...], Any] = {}

    def _small(self, cls: type[_R], data: dict[str, Any] | None) -> _R:
        """One copy of each distinct small record (``data`` None: the defaults)."""
        if not data:
            key: tuple[Any, ...] = (cls,)
        else:  # (the types too: 1, 1.0 and True are equal keys, but not the same value)
            key = (cls, *data.items(), *map(type, data.values()))
        try:
            found = self._shared.get(key)
        except TypeError:  # a value that cannot be a key: its own copy
            return codec._build(cls, data)
        if found is None:
            found = codec._build(cls, data)
            if len(self._shared) >= MAX_SHARED:  # mostly one-off values (usage of running work): start over
                self._shared.clear()
            self._shared[key] = found
        return found

    def task(self, row: Sequence[Any]) -> Task:
        """The task of a row of :data:`TASK_COLUMNS`."""
        task_id, seq, owner, status, priority, task_type, create_time, batch, text = row
        data = orjson.loads(text)
        small = self._small
        data["consensus"] = small(ConsensusPolicy, data.get("consensus"))
        data["retry"] = small(RetryPolicy, data.get("retry"))
        data["usage"] = small(Usage, data.get("usage"))
        failure = data.get("failure")
        if failure is not None:
            data["failure"] = _make(Failure, failure)
        plan = data.get("plan")
        if plan is not None:
            data["plan"] = self._plan(plan)
        results = data.get("dependency_results")
        data["dependency_results"] = [_make(DependencyResult, d) for d in results] if results else []
        data["id"] = task_id
        data["seq"] = seq
        data["owner"] = owner
        data["status"] = _enum(_TASK_STATUS, TaskStatus, status)
        data["priority"] = _enum(_PRIORITY, Priority, priority)
        data["task_type"] = task_type
        data["create_time"] = create_time
        data["batch"] = batch
        return _make(Task, data)

    @staticmethod
    def _plan(data: dict[str, Any]) -> ExecutionPlan:
        steps = []
        for raw in data.get("subtasks", ()):
            step = _make(PlannedSubtask, raw)
            step.kind = _enum(_KIND, SubtaskKind, step.kind)
            steps.append(step)
        data["subtasks"] = steps
        return _make(ExecutionPlan, data)

    def subtask(self, row: Sequence[Any]) -> Subtask:
        """The subtask of a row of :data:`SUBTASK_COLUMNS`."""
        task_id, subtask_id, status, checkpoint, text = row
        data = orjson.loads(text)
        artifacts = data.get("artifacts")
        data["artifacts"] = [codec._artifact_from_dict(a) for a in artifacts] if artifacts else []
        failure = data.get("failure")
        if failure is not None:
            data["failure"] = _make(Failure, failure)
        data["usage"] = self._small(Usage, data.get("usage"))
        calls = data.get("tool_calls")
        data["tool_calls"] = [_make(ToolCall, c) for c in calls] if calls else []
        sources = data.get("sources")
        data["sources"] = [_make(Source, s) for s in sources] if sources else []
        data["task_id"] = task_id
        data["id"] = subtask_id
        data["status"] = _enum(_SUBTASK_STATUS, SubtaskStatus, status)
        data["checkpoint"] = None if checkpoint is None else bytes(checkpoint)
        subtask = _make(Subtask, data)
        subtask.kind = _enum(_KIND, SubtaskKind, subtask.kind)
        return subtask
