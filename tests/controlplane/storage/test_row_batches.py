"""The batch decoder of rows read back into memory gives the very records the codec gives."""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError
from typing import Any

import pytest

from controlplane.domain.model import Priority, RetryPolicy, Subtask, SubtaskStatus, Task, TaskStatus, Usage
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


def test_a_shared_usage_cannot_be_changed_through_one_record() -> None:
    """Two tasks read back with equal usage share one record: charging one makes it a new usage."""
    decoder = RowBatchDecoder()
    spent = Usage(input_tokens=7, cost_micros=3)
    first, second = (
        decoder.task(task_values(codec.task_to_row(minimal_task(f"t{i}", usage=spent)))) for i in range(2)
    )
    assert first.usage is second.usage
    with pytest.raises(FrozenInstanceError):
        first.usage.input_tokens += 1  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        first.retry.max_retries = 0  # type: ignore[misc]
    first.usage = first.usage.plus(Usage(input_tokens=1))
    assert first.usage == Usage(input_tokens=8, cost_micros=3) and second.usage == spent


@pytest.mark.parametrize(
    ("one", "other"),
    [(1, 1.0), (1, True), (0, False), (2.0, 2)],
    ids=["int-float", "int-bool", "zero-false", "float-int"],
)
def test_values_equal_but_of_another_type_are_not_shared(one: Any, other: Any) -> None:
    """1, 1.0 and True are equal as dict keys; a record keeps the type its JSON has."""
    decoder = RowBatchDecoder()
    rows = []
    for i, value in enumerate((one, other)):
        row = codec.task_to_row(minimal_task(f"t{i}"))
        data = json.loads(row["data"])
        data["retry"]["max_retries"] = value
        row["data"] = json.dumps(data)
        rows.append(row)
    first, second = (decoder.task(task_values(row)) for row in rows)
    assert type(first.retry.max_retries) is type(one) and type(second.retry.max_retries) is type(other)
    assert first.retry == codec.task_from_row(rows[0]).retry
    assert second.retry == codec.task_from_row(rows[1]).retry
    assert isinstance(first.retry, RetryPolicy)


def test_the_shared_records_start_over_when_full_and_keep_sharing(monkeypatch: pytest.MonkeyPatch) -> None:
    """One-off values (the usage of running work a claim reads) fill the table of shared records: it is
    then emptied, so it stays bounded and values seen afterwards are shared again."""
    from controlplane.storage.sql import row_batches

    monkeypatch.setattr(row_batches, "MAX_SHARED", 8)
    decoder = RowBatchDecoder()
    one_offs = [decoder._small(Usage, {"input_tokens": n}) for n in range(20)]
    assert len(decoder._shared) <= 8
    assert [u.input_tokens for u in one_offs] == list(range(20))
    first = decoder._small(Usage, {"input_tokens": 500})
    assert decoder._small(Usage, {"input_tokens": 500}) is first
