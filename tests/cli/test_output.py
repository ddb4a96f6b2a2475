"""``-o json``/``yaml`` spell every enum one way (short names) and 64-bit numbers as numbers."""

from __future__ import annotations

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import errors_pb2
from agent_sdk.proto.maos.v1 import messages_pb2 as m
from maos_cli._output import to_data


def test_enums_by_short_name_and_64_bit_integers_as_numbers() -> None:
    task = m.Task(
        name="tasks/t1",
        priority=enums.PRIORITY_HIGH,
        status=enums.TASK_STATUS_COMPLETED,
        usage=m.TokenUsage(input_tokens=12, output_tokens=2**40, cost_micros=-5),
    )
    task.create_time.FromSeconds(1_700_000_000)
    result = m.TaskResult(
        task="tasks/t1",
        status=enums.TASK_STATUS_FAILED,
        subtasks=[m.Subtask(status=enums.SUBTASK_STATUS_RUNNING, kind=enums.SUBTASK_KIND_SYNTHESIS)],
        failure=m.Failure(reason=errors_pb2.ERROR_REASON_BUDGET_EXCEEDED),
    )
    data = to_data({"task": task, "results": [result]})
    assert data["task"]["priority"] == "HIGH" and data["task"]["status"] == "COMPLETED"
    assert data["task"]["usage"]["output_tokens"] == 2**40 and data["task"]["usage"]["cost_micros"] == -5
    assert data["task"]["create_time"] == "2023-11-14T22:13:20Z"  # well-known types keep their JSON form
    assert data["results"][0]["status"] == "FAILED"
    assert data["results"][0]["subtasks"][0]["status"] == "RUNNING"
    assert data["results"][0]["subtasks"][0]["kind"] == "SYNTHESIS"
    assert data["results"][0]["failure"]["reason"] == "BUDGET_EXCEEDED"


def test_event_statuses_by_short_name() -> None:
    event = m.Event(
        type=enums.EVENT_TYPE_SUBTASK_STATUS_CHANGED,
        from_status="SUBTASK_STATUS_QUEUED",
        to_status="SUBTASK_STATUS_RUNNING",
    )
    data = to_data(event)
    assert (data["type"], data["from_status"], data["to_status"]) == (
        "SUBTASK_STATUS_CHANGED",
        "QUEUED",
        "RUNNING",
    )
