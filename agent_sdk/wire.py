"""The SDK's converters of the shapes it shares with the control plane: read once, here.

Durations and timestamps become float seconds; an ``Assignment`` message becomes the
:class:`~agent_sdk.context.Assignment` an agent handler sees. The control plane's side of the
same shapes is ``controlplane/api/convert.py``; ``tests/contract/test_wire_shapes.py`` sends an assignment
from one side to the other and fails when a proto field is not carried through.
"""

from __future__ import annotations

from typing import Any

from agent_sdk.context import Assignment, DependencyResult
from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.types import SubtaskKind

__all__ = [
    "assignment_from_pb",
    "dependency_result_from_pb",
    "epoch",
    "optional_seconds",
    "seconds",
    "set_seconds",
]


def seconds(value: Any) -> float:
    """A ``google.protobuf.Duration`` (or ``Timestamp``) as float seconds."""
    total: float = value.seconds + value.nanos / 1e9
    return total


#: A Timestamp as epoch seconds (the same arithmetic as a Duration).
epoch = seconds


def set_seconds(field: Any, value: float) -> None:
    """Set a ``Duration`` (or ``Timestamp``) field of a message to ``value`` seconds (to the nearest ns)."""
    field.FromNanoseconds(round(value * 1e9))


def optional_seconds(message: Any, field: str) -> float | None:
    """The Duration or Timestamp ``field`` of ``message`` as float seconds, None when unset."""
    return seconds(getattr(message, field)) if message.HasField(field) else None


def dependency_result_from_pb(d: msgs.DependencyResult) -> DependencyResult:
    """The final result of a task the assignment's task depends on."""
    return DependencyResult(d.task, d.description, d.output, d.omitted_chars)


def assignment_from_pb(a: gw.Assignment) -> Assignment:
    """What an agent handler sees of an ``Assignment`` message: every field of it."""
    return Assignment(
        task=a.task,
        subtask=a.ref.subtask,
        attempt=a.ref.attempt,
        lease_epoch=a.ref.lease_epoch,
        title=a.title,
        instructions=a.instructions,
        capability=a.capability,
        kind=SubtaskKind(a.kind) if a.kind in SubtaskKind._value2member_map_ else a.kind,
        task_description=a.task_description,
        context=a.context,
        constraints=a.constraints,
        metadata=dict(a.metadata),
        inputs=dict(a.inputs),
        resume_checkpoint=a.resume_checkpoint if a.HasField("resume_checkpoint") else None,
        deadline=optional_seconds(a, "deadline"),
        priority=a.priority,
        remaining_tokens=a.remaining_budget.max_total_tokens,
        remaining_cost_micros=a.remaining_budget.max_cost_micros,
        dependency_results=tuple(dependency_result_from_pb(d) for d in a.dependency_results),
        plan=a.plan,
        lease_ttl=seconds(a.lease_ttl),
    )
