"""The batch decoder of rows read back into memory gives the very records the codec gives."""

from __future__ import annotations

import json
from typing import Any

import pytest

from controlplane.domain.model import Priority, Subtask, SubtaskStatus, Task, TaskStatus
from controlplane.scheduler.book import slim_task
from controlplane.storage.sql import codec
from controlplane.storage.sql.row_batches import SUBTASK_COLUMNS, TASK_COLUMNS, RowBatchDecoder
from controlplane.storage.testing import full_subtask, full_task, minimal_subtask, minimal_task


def task_values(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c] for c in TASK_COLUMNS)


def subtask_values(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[c] for c in SUBTASK_COLUMNS)


@pytest.mark.parametrize("make", [full_task, minimal_task], ids=["full", "minimal"])
def test_a_task_decoded_in_a_batch_equals_one_decoded_alone(make: Any) -> None:
    row = codec.task_to_row(make())
    decoded = RowBatchDecoder().task(task_values(row))
    assert decoded == codec.task_from_row(row) == make()
    assert type(decoded.status) is TaskStatus and type(decoded.priority) is Priority
    assert codec.task_to_row(decoded) == row


@pytest.mark.parametrize("make", [full_subtask, minimal_subtask], ids=["full", "minimal"])
def test_a_subtask_decoded_in_a_batch_equals_one_decoded_alone(make: Any) -> None:
    row = codec.subtask_to_row(make())
    decoded = RowBatchDecoder().subtask(subtask_values(row))
    assert decoded == codec.subtask_from_row(row) == make()
    assert type(decoded.status) is SubtaskStatus
    assert codec.subtask_to_row(decoded) == row


def test_keys_written_by_another_version_are_handled_as_the_codec_handles_them() -> None:
    row = codec.task_to_row(full_task())
    data = json.loads(row["data"])
    del data["output"], data["usage"]["model_calls"], data["dependency_results"]
    data["field_from_the_future"] = 1
    data["consensus"]["knob_from_the_future"] = True
    data["plan"]["subtasks"][0]["step_field_from_the_future"] = "x"
    row["data"] = json.dumps(data)
    assert RowBatchDecoder().task(task_values(row)) == codec.task_from_row(row)

    sub = codec.subtask_to_row(full_subtask())
    data = json.loads(sub["data"])
    data["field_from_the_future"] = [1]
    data["artifacts"][0]["artifact_field_from_the_future"] = 2
    del data["tool_calls"]
    sub["data"] = json.dumps(data)
    assert RowBatchDecoder().subtask(subtask_values(sub)) == codec.subtask_from_row(sub)


def test_small_records_are_shared_between_records_of_equal_value() -> None:
    decoder = RowBatchDecoder()
    first, second = (decoder.task(task_values(codec.task_to_row(minimal_task(f"t{i}")))) for i in range(2))
    assert first.retry is second.retry and first.consensus is second.consensus and first.usage is second.usage
    other = full_task()
    third = decoder.task(task_values(codec.task_to_row(other)))
    assert third.retry == other.retry and third.retry is not first.retry
    subs: list[Subtask] = [
        decoder.subtask(subtask_values(codec.subtask_to_row(minimal_subtask(f"s{i}")))) for i in range(2)
    ]
    assert subs[0].usage is subs[1].usage
    assert subs[0].artifacts is not subs[1].artifacts  # lists are each their own


def test_a_task_prepared_for_memory_keeps_its_value() -> None:
    original: Task = full_task()
    decoded = RowBatchDecoder().task(task_values(codec.task_to_row(original)))
    slim_task(decoded)
    assert decoded == original
