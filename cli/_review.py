"""How ``maos task show`` prints a task's plan approval and its review rounds."""

from __future__ import annotations

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from maos_cli._output import bare_id, enum_label, key_values, table, when


def approval_text(task: msgs.Task) -> str:
    """``waiting since ...``, ``approved by users/x at ...``, ``rejected by users/x: why``; "" without one."""
    a = task.approval
    if not task.HasField("approval"):
        return "requested (once planned)" if task.approve_plan else ""
    if a.state == enums.PLAN_APPROVAL_STATE_WAITING:
        if task.status != enums.TASK_STATUS_PENDING:  # cancelled (or timed out) while it waited
            return f"never decided (waiting since {when(a.request_time)})"
        return f"waiting since {when(a.request_time)} (maos task approve / reject {bare_id(task.name)})"
    state = enum_label(enums.PlanApprovalState, a.state, "PLAN_APPROVAL_STATE_").lower()
    text = f"{state} by {a.principal or 'a user'} at {when(a.decide_time)}"
    return f"{text}: {a.reason}" if a.reason else text


def _verdict(r: msgs.ReviewRound) -> str:
    if not r.HasField("verdict"):
        return "reviewing"
    return "approved" if r.verdict.approved else "changes requested"


def review_summary(record: msgs.ReviewRecord) -> str:
    """``APPROVED in round 2 of at most 3`` (one line for results)."""
    outcome = enum_label(enums.ReviewOutcome, record.outcome, "REVIEW_OUTCOME_")
    return (
        f"{outcome} in round {len(record.rounds)} of at most {record.max_rounds}"
        if record.rounds
        else outcome
    )


def review_text(record: msgs.ReviewRecord) -> str:
    """The outcome, then one row per round with its verdict, and each round's changes below."""
    outcome = enum_label(enums.ReviewOutcome, record.outcome, "REVIEW_OUTCOME_")
    head = key_values(
        [("Outcome", outcome), ("Rounds", f"{len(record.rounds)} of at most {record.max_rounds}")]
    )
    rows = table(
        ["ROUND", "VERDICT", "REVIEWER", "MODEL CALLS", "REVISION", "NOTE"],
        [
            [
                str(r.round),
                _verdict(r),
                bare_id(r.reviewer) if r.reviewer else "",
                str(r.usage.model_calls),
                bare_id(r.revision_subtask) if r.revision_subtask else "",
                r.note,
            ]
            for r in record.rounds
        ],
        empty="No round yet.",
    )
    details = []
    for r in record.rounds:
        if r.verdict.summary:
            details.append(f"Round {r.round} summary: {r.verdict.summary}")
        if r.verdict.changes:
            details.append(f"Round {r.round} changes:\n" + "\n".join(f"  - {c}" for c in r.verdict.changes))
    return "\n\n".join([head, rows, *(["\n".join(details)] if details else [])])
