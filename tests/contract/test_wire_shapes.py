"""Each wire shape crosses whole: domain -> proto (controlplane/api/convert.py) -> SDK (agent_sdk/wire.py).

The tables below name, for every field of the messages an assignment is made of, what the
SDK object holds for it. They are checked against the messages' descriptors, so a field added
to the proto without being carried through both converters fails here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf.message import Message

from agent_sdk.context import Assignment, DependencyResult
from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.wire import assignment_from_pb, epoch, seconds
from controlplane.api import convert
from controlplane.domain import model
from controlplane.scheduler.commands import Assign, assign

_WELL_KNOWN = {"google.protobuf.Timestamp", "google.protobuf.Duration"}


def _task_and_step() -> tuple[model.Task, model.Subtask]:
    """A task and one of its steps with every field an assignment carries set, none to its default."""
    task = model.Task(
        id="t0123456789ab",
        description="compare three databases",
        priority=model.Priority.HIGH,
        timeout=600.25,
        context="for a team of four",
        constraints="open source only",
        metadata={"team": "storage"},
        start_time=1_700_000_000.5,
        dependency_results=[model.DependencyResult("t00000000000a", "earlier work", "its answer", 7)],
    )
    step = model.Subtask(
        task_id=task.id,
        id="s2",
        title="PostgreSQL",
        instructions="summarise PostgreSQL",
        capability="research",
        kind=model.SubtaskKind.SYNTHESIS,
        attempt=3,
        lease_epoch=9,
        checkpoint=b"\x00resume-here",
    )
    return task, step


def _domain_assignment() -> Assign:
    task, step = _task_and_step()
    return assign(
        task,
        step,
        inputs={"s1": "the first part"},
        lease_ttl=12.5,
        budget=(5_000, 250_000),
        plan="1. s1\n2. s2",
    )


#: For each field of ``Assignment``: (what the domain assignment says, what the SDK object holds).
ASSIGNMENT: dict[str, tuple[Callable[[Assign], Any], Callable[[Assignment], Any]]] = {
    "ref": (
        lambda d: (d.ref.subtask_name, d.ref.attempt, d.ref.lease_epoch),
        lambda a: (a.subtask, a.attempt, a.lease_epoch),
    ),
    "task": (lambda d: f"tasks/{d.ref.task_id}", lambda a: a.task),
    "title": (lambda d: d.title, lambda a: a.title),
    "instructions": (lambda d: d.instructions, lambda a: a.instructions),
    "capability": (lambda d: d.capability, lambda a: a.capability),
    "kind": (lambda d: int(d.kind), lambda a: int(a.kind)),
    "task_description": (lambda d: d.task_description, lambda a: a.task_description),
    "context": (lambda d: d.context, lambda a: a.context),
    "constraints": (lambda d: d.constraints, lambda a: a.constraints),
    "metadata": (lambda d: d.metadata, lambda a: a.metadata),
    "inputs": (lambda d: d.inputs, lambda a: a.inputs),
    "resume_checkpoint": (lambda d: d.resume_checkpoint, lambda a: a.resume_checkpoint),
    "deadline": (lambda d: d.deadline, lambda a: a.deadline),
    "lease_ttl": (lambda d: d.lease_ttl, lambda a: a.lease_ttl),
    "remaining_budget": (
        lambda d: (d.max_total_tokens, d.max_cost_micros),
        lambda a: (a.remaining_tokens, a.remaining_cost_micros),
    ),
    "priority": (lambda d: int(d.priority), lambda a: a.priority),
    "dependency_results": (
        lambda d: [
            (f"tasks/{r.task_id}", r.description, r.output, r.omitted_chars) for r in d.dependency_results
        ],
        lambda a: [(r.task, r.description, r.output, r.omitted_chars) for r in a.dependency_results],
    ),
    "plan": (lambda d: d.plan, lambda a: a.plan),
}

#: The fields of the messages inside an assignment, and where the tables above carry them.
NESTED: dict[type[Message], set[str]] = {
    gw.AssignmentRef: {"subtask", "attempt", "lease_epoch"},  # "ref"
    msgs.Budget: {"max_total_tokens", "max_cost_micros"},  # "remaining_budget"
    msgs.DependencyResult: {"task", "description", "output", "omitted_chars"},  # "dependency_results"
}


def _field_names(message: type[Message]) -> set[str]:
    return {f.name for f in message.DESCRIPTOR.fields}


def _unset_fields(message: Message, path: str = "") -> list[str]:
    """The fields of ``message`` (and of the messages in it) left at their defaults."""
    unset = []
    for field in message.DESCRIPTOR.fields:
        name, value = f"{path}{field.name}", getattr(message, field.name)
        if field.is_repeated:  # lists and maps
            if not value:
                unset.append(name)
            elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
                for item in value:
                    unset += _unset_fields(item, f"{name}[].")
        elif field.message_type is not None:
            if not message.HasField(field.name):
                unset.append(name)
            elif field.message_type.full_name not in _WELL_KNOWN:
                unset += _unset_fields(value, f"{name}.")
        elif field.has_presence and not message.HasField(field.name) or not value:
            unset.append(name)
    return unset


def test_the_tables_name_every_field_of_the_messages() -> None:
    assert set(ASSIGNMENT) == _field_names(gw.Assignment), "carry the new field through both converters"
    for message, carried in NESTED.items():
        assert carried == _field_names(message), f"carry the new field of {message.DESCRIPTOR.full_name}"


def test_an_assignment_crosses_from_the_domain_to_the_sdk_whole() -> None:
    domain = _domain_assignment()
    wire = convert.assignment_to_pb(domain)
    # Every field of the message (and of the messages in it) is set: the server sends all of it ...
    assert _unset_fields(wire) == []
    # ... and the SDK object holds what the domain said, field by field.
    sdk = assignment_from_pb(gw.Assignment.FromString(wire.SerializeToString()))
    for name, (said, held) in ASSIGNMENT.items():
        expected = said(domain)
        if isinstance(expected, float):  # durations and timestamps travel as whole nanoseconds
            expected = pytest.approx(expected, abs=1e-6)
        assert held(sdk) == expected, name
    assert isinstance(sdk.dependency_results[0], DependencyResult)


def test_a_subtask_ref_reads_back_as_it_was_written() -> None:
    domain = _domain_assignment()
    assert convert.ref_from_pb(convert.ref_to_pb(domain.ref)) == domain.ref
    assert convert.ref_from_pb(gw.AssignmentRef(subtask="tasks/t1/steps/s1")) is None
    task, step = _task_and_step()
    assert model.split_subtask_name(step.name) == (task.id, step.id)


@pytest.mark.parametrize("value", [0.0, 0.5, 12.25, 86_400.125, 1_700_000_000.5])
def test_durations_and_timestamps_keep_their_value(value: float) -> None:
    assert seconds(convert.duration(value)) == pytest.approx(value, abs=1e-6)
    assert epoch(convert.timestamp(value)) == pytest.approx(value, abs=1e-6)
    assert convert.seconds(convert.duration(value)) == seconds(convert.duration(value))
