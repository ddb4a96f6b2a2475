"""Conversions between domain records and protos that servers rely on."""

from __future__ import annotations

from controlplane.api import convert
from controlplane.api.pb import enums_pb, errors_pb, tasks_pb
from controlplane.domain.model import ConsensusPolicy, Failure, Task, TaskStatus, Usage


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
    """A task with every optional part of its proto set."""
    return Task(
        id="t1",
        description="d",
        task_type="noop",
        owner="users/a",
        depends_on=["t0"],
        metadata={"k": "v"},
        warnings=["w"],
        batch="b1",
        template="tp1",
        timeout=3.5,
        consensus=ConsensusPolicy(required=True, threshold=0.75, strategy="majority", round_timeout=2.0),
        failure=Failure("ERROR_REASON_AGENT_FAILED", "boom", "s1", "ValueError"),
        create_time=1_700_000_000.25,
        start_time=1_700_000_001.5,
        end_time=1_700_000_002.0,
        update_time=1_700_000_002.0,
        usage=Usage(input_tokens=5, cost_micros=3),
        approval={"state": "WAITING", "request_time": 1_700_000_000.5, "principal": "users/a"},
        status=TaskStatus.FAILED,
        status_reason="why",
        max_total_tokens=9,
    )


def test_a_task_written_into_a_response_equals_the_task_converted_alone() -> None:
    for task in (Task(id="t2", description="no-op", task_type="noop", create_time=1.0), _rich_task()):
        response = tasks_pb.SubmitTaskResponse()
        convert.task_to_pb(task, into=response.task)
        assert response.task == convert.task_to_pb(task)
        assert response.HasField("task")


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
    assert rich.approval.state == enums_pb.PLAN_APPROVAL_STATE_WAITING
    assert (rich.usage.input_tokens, rich.usage.cost_micros, rich.budget.max_total_tokens) == (5, 3, 9)
    assert rich.status == enums_pb.TASK_STATUS_FAILED
    assert rich.create_time.seconds == 1_700_000_000 and abs(rich.create_time.nanos - 250_000_000) < 1000
