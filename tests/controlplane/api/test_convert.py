"""Conversions between domain records and protos that servers rely on."""

from __future__ import annotations

import dataclasses

import pytest
from google.protobuf.message import Message

from controlplane.api import convert
from controlplane.api.pb import enums_pb, errors_pb, tasks_pb
from controlplane.domain.model import (
    ConsensusPolicy,
    DependencyResult,
    ExecutionPlan,
    Failure,
    PlannedSubtask,
    Priority,
    RetryPolicy,
    Subtask,
    SubtaskStatus,
    Task,
    TaskStatus,
    Usage,
)


def test_error_reason_numbers_of_known_and_unknown_names() -> None:
    assert convert.error_reason_number("ERROR_REASON_RATE_LIMITED") == errors_pb.ERROR_REASON_RATE_LIMITED
    assert convert.error_reason_number("ERROR_REASON_AGENT_FAILED") == errors_pb.ERROR_REASON_AGENT_FAILED
    assert convert.error_reason_number("ERROR_REASON_NO_SUCH_THING") == 0
    assert convert.error_reason_number("") == 0


def test_a_failure_keeps_its_reason_and_an_unknown_reason_becomes_unspecified() -> None:
    known = convert.failure_to_pb(Failure("ERROR_REASON_AGENT_FAILED", "boom", "s1", "ValueError"))
    assert (known.reason, known.message, known.subtask, known.error_type) == (
        errors_pb.ERROR_REASON_AGENT_FAILED,
        "boom",
        "s1",
        "ValueError",
    )
    assert convert.failure_to_pb(Failure("a plugin's own reason", "x", "", "")).reason == 0
    assert convert.failure_to_pb(None) is None


def _rich_task() -> Task:
    """A task with every field away from its default, so each one that is carried shows in its proto."""
    return Task(
        id="t1",
        description="d",
        owner="users/a",
        task_type="noop",
        priority=Priority.HIGH,
        max_agents=2,
        depends_on=["t0"],
        consensus=ConsensusPolicy(
            required=True, threshold=0.75, strategy="majority", candidates=5, max_rounds=4, round_timeout=2.0
        ),
        timeout=3.5,
        context="ctx",
        constraints="cons",
        metadata={"k": "v"},
        retry=RetryPolicy(max_retries=7, initial_backoff=0.5, multiplier=3.0, max_backoff=60.0),
        max_total_tokens=9,
        max_cost_micros=11,
        agent_type="coder",
        status=TaskStatus.FAILED,
        status_reason="why",
        failure=Failure("ERROR_REASON_AGENT_FAILED", "boom", "s1", "ValueError"),
        create_time=1_700_000_000.25,
        start_time=1_700_000_001.5,
        end_time=1_700_000_002.0,
        update_time=1_700_000_002.0,
        usage=Usage(**{f.name: i + 1 for i, f in enumerate(dataclasses.fields(Usage))}),
        warnings=["w"],
        retries=2,
        batch="b1",
        template="tp1",
        plan=ExecutionPlan([PlannedSubtask("s1", "step", "do it")], planner="rules"),
        consensus_state={"rounds": []},
        review_rounds=1,
        review_state={"rounds": []},
        approve_plan=True,
        approval={
            "state": "REJECTED",
            "request_time": 1_700_000_000.5,
            "principal": "users/a",
            "decide_time": 1_700_000_001.0,
            "reason": "too wide",
        },
        output="answer",
        dependency_results=[DependencyResult("t0", "earlier", "its answer")],
        seq=3,
    )


def _rich_subtasks() -> list[Subtask]:
    """A plan underway: one step done, one running halfway."""
    return [
        Subtask("t1", "s1", "one", "do one", status=SubtaskStatus.COMPLETED),
        Subtask("t1", "s2", "two", "do two", status=SubtaskStatus.RUNNING, progress=0.5),
    ]


#: Fields of ``maos.v1.Task`` that ``task_to_pb`` leaves to others: none. ``progress`` and the
#: ``subtasks_*`` counts are computed there from the subtasks passed in.
_SET_ELSEWHERE: frozenset[str] = frozenset()


def _unset_fields(msg: Message, path: str = "") -> list[str]:
    """The fields of ``msg`` and of its ``maos.v1`` sub-messages that are not present."""
    present = {field.name: value for field, value in msg.ListFields()}
    missing = []
    for field in msg.DESCRIPTOR.fields:
        if field.name not in present:
            missing.append(path + field.name)
        elif (
            field.message_type is not None
            and field.message_type.full_name.startswith("maos.v1.")
            and not field.message_type.GetOptions().map_entry
        ):
            missing.extend(_unset_fields(present[field.name], f"{path}{field.name}."))
    return missing


def test_the_rich_task_leaves_no_field_at_its_default() -> None:
    """A field added to Task later must be given a value in ``_rich_task`` to reach the test below."""
    task = _rich_task()
    for record in (task, task.consensus, task.retry, task.usage):
        for f in dataclasses.fields(record):
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                continue  # required: given by every caller
            assert getattr(record, f.name) != default, f"{type(record).__name__}.{f.name}"


def test_task_to_pb_sets_every_field_of_the_task_proto() -> None:
    """A field of ``maos.v1.Task`` (or of its policies, usage, failure, approval) that ``task_to_pb`` does
    not carry, a new one included, fails this test until it is carried or named in ``_SET_ELSEWHERE``."""
    for into in (None, tasks_pb.SubmitTaskResponse().task):
        msg = convert.task_to_pb(_rich_task(), subtasks=_rich_subtasks(), into=into)
        assert sorted(_unset_fields(msg)) == sorted(_SET_ELSEWHERE)
    assert (msg.subtasks_total, msg.subtasks_completed, msg.subtasks_running, msg.progress) == (2, 1, 1, 0.75)


def test_a_task_written_into_a_response_equals_the_task_converted_alone() -> None:
    for task in (Task(id="t2", description="no-op", task_type="noop", create_time=1.0), _rich_task()):
        response = tasks_pb.SubmitTaskResponse()
        convert.task_to_pb(task, into=response.task)
        assert response.task == convert.task_to_pb(task)
        assert response.HasField("task")


def test_a_task_is_written_only_into_an_empty_message() -> None:
    """Fields at their defaults are not written, so a message holding something would keep it."""
    response = tasks_pb.SubmitTaskResponse()
    response.task.warnings.append("left over")
    with pytest.raises(ValueError, match="empty Task message"):
        convert.task_to_pb(Task(id="t2", description="no-op", create_time=1.0), into=response.task)
    assert list(response.task.warnings) == ["left over"] and not response.task.description


def test_a_task_proto_carries_its_fields_and_its_policies_even_at_their_defaults() -> None:
    plain = convert.task_to_pb(Task(id="t2", description="no-op", create_time=1.0))
    for always in ("consensus", "retry_policy", "budget", "usage", "create_time"):
        assert plain.HasField(always), always
    for unset in ("timeout", "failure", "approval", "start_time", "end_time"):
        assert not plain.HasField(unset), unset
    assert plain.retry_policy.initial_backoff.ToNanoseconds() == 1_000_000_000
    rich = convert.task_to_pb(_rich_task())
    assert (rich.name, list(rich.depends_on), dict(rich.metadata), list(rich.warnings)) == (
        "tasks/t1",
        ["tasks/t0"],
        {"k": "v"},
        ["w"],
    )
    assert (rich.batch, rich.template, rich.status_reason) == ("batches/b1", "templates/tp1", "why")
    assert rich.consensus.strategy == enums_pb.VOTING_STRATEGY_MAJORITY
    assert rich.consensus.round_timeout.ToNanoseconds() == 2_000_000_000
    assert rich.timeout.ToNanoseconds() == 3_500_000_000
    assert rich.failure.reason == errors_pb.ERROR_REASON_AGENT_FAILED
    assert rich.approval.state == enums_pb.PLAN_APPROVAL_STATE_REJECTED
    assert (rich.usage.input_tokens, rich.usage.cost_micros, rich.budget.max_total_tokens) == (1, 5, 9)
    assert rich.status == enums_pb.TASK_STATUS_FAILED
    assert rich.create_time.seconds == 1_700_000_000 and abs(rich.create_time.nanos - 250_000_000) < 1000
