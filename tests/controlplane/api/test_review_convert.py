"""The review record and the plan approval reach the wire with every field."""

from __future__ import annotations

from controlplane.api import convert
from controlplane.api.pb import enums_pb
from controlplane.storage.testing import full_task


def _unset(message) -> list[str]:
    return [
        f.name for f in message.DESCRIPTOR.fields if f.name not in {d.name for d, _ in message.ListFields()}
    ]


def test_every_field_of_a_review_round_and_an_approval_is_carried() -> None:
    task = full_task()
    record = convert.review_to_pb(task.id, task.review_state)
    assert record is not None and not _unset(record)
    (first,) = record.rounds
    assert _unset(first) == ["note"]  # the sample round has no note
    assert not _unset(first.verdict) or _unset(first.verdict) == ["approved"]  # False is proto3's default
    assert first.review_subtask == f"tasks/{task.id}/subtasks/review-1" and first.reviewer == "agents/a1"
    assert list(first.verdict.changes) == ["cite it"] and first.usage.model_calls == 1
    assert record.outcome == enums_pb.REVIEW_OUTCOME_PENDING
    approval = convert.approval_to_pb(task.approval)
    assert approval is not None and _unset(approval) == ["reason"]
    assert approval.state == enums_pb.PLAN_APPROVAL_STATE_APPROVED and approval.principal == "users/bob"
    msg = convert.task_to_pb(task)
    assert msg.review_rounds == 2 and msg.approve_plan and msg.approval == approval
    assert convert.review_to_pb(task.id, None) is None and convert.approval_to_pb(None) is None
