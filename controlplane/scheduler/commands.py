"""What the control plane tells an agent, independent of the wire format.

The engine puts these on an agent session's outbox; the gateway servicer
turns them into ``maos.v1.ConnectResponse`` messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controlplane.domain.model import DependencyResult, Priority, Subtask, SubtaskKind, Task, subtask_name


@dataclass(frozen=True)
class Ref:
    """One attempt at one subtask: the fencing token of every report."""

    task_id: str
    subtask_id: str
    attempt: int
    lease_epoch: int

    @property
    def subtask_name(self) -> str:
        """``tasks/{task}/subtasks/{subtask}``."""
        return subtask_name(self.task_id, self.subtask_id)


@dataclass(frozen=True)
class Assign:
    """Run this attempt."""

    ref: Ref
    title: str
    instructions: str
    capability: str
    kind: SubtaskKind
    task_description: str
    context: str
    constraints: str
    metadata: dict[str, str]
    inputs: dict[str, str]
    resume_checkpoint: bytes | None
    deadline: float | None
    lease_ttl: float
    priority: Priority
    max_total_tokens: int = 0
    max_cost_micros: int = 0
    dependency_results: tuple[DependencyResult, ...] = ()
    plan: str = ""


def assign(
    task: Task,
    sub: Subtask,
    *,
    inputs: dict[str, str],
    lease_ttl: float,
    budget: tuple[int, int],
    plan: str,
) -> Assign:
    """The assignment of ``sub``'s current attempt: the one place a task and its step become one.

    ``inputs`` are the outputs the step sees, ``budget`` the ``(tokens, cost_micros)`` the task may
    still spend and ``plan`` the plan's outline for a step that combines the parts ("" otherwise).
    ``controlplane.api.convert.assignment_to_pb`` puts it on the wire.
    """
    return Assign(
        ref=Ref(task.id, sub.id, sub.attempt, sub.lease_epoch),
        title=sub.title,
        instructions=sub.instructions,
        capability=sub.capability,
        kind=sub.kind,
        task_description=task.description,
        context=task.context,
        constraints=task.constraints,
        metadata=dict(task.metadata),
        inputs=inputs,
        resume_checkpoint=sub.checkpoint,
        deadline=(task.start_time + task.timeout) if task.timeout and task.start_time else None,
        lease_ttl=lease_ttl,
        priority=task.priority,
        max_total_tokens=budget[0],
        max_cost_micros=budget[1],
        dependency_results=tuple(task.dependency_results),
        plan=plan,
    )


@dataclass(frozen=True)
class CancelWork:
    """Stop this attempt now."""

    ref: Ref
    reason: str


@dataclass(frozen=True)
class DrainAgent:
    """Finish running work, take no more, then leave (and exit when ``exit``)."""

    grace: float
    reason: str = ""
    exit: bool = False


@dataclass(frozen=True)
class PauseAgent:
    """Take no new work."""


@dataclass(frozen=True)
class ResumeAgent:
    """Take new work again."""


@dataclass(frozen=True)
class Ack:
    """The answer to a report the control plane did not simply commit (or to a vote)."""

    ref: Ref
    accepted: bool
    reason: str = ""
    message: str = ""
    proposal: str = ""


@dataclass(frozen=True)
class VoteOnCandidates:
    """Vote for one of the candidate answers."""

    proposal: str
    task_id: str
    question: str
    candidates: list[tuple[str, str, str]]  # (id, agent, content)
    round: int
    deadline: float
    previous_votes: list[tuple[str, str, float, str]]  # (voter, candidate id, confidence, rationale)
    context: str = ""
    constraints: str = ""
    max_total_tokens: int = 0
    max_cost_micros: int = 0


@dataclass(frozen=True)
class Committed:
    """These results and failures are durable."""

    refs: list[Ref]


@dataclass(frozen=True)
class StateReply:
    """The answer to a shared-state request."""

    request_id: int
    found: bool = False
    value: bytes = b""
    version: int = 0
    error: str = ""
    message: str = ""


@dataclass(frozen=True)
class PermitReply:
    """The answer to a model permit request (see :mod:`controlplane.pacing`)."""

    request_id: int
    granted: bool
    permit_id: str = ""
    waited: float = 0.0
    retry_after: float = 0.0
    reason: str = ""


@dataclass
class Registration:
    """The answer to Register."""

    agent_id: str
    session_id: str
    heartbeat_interval: float
    lease_ttl: float
    replica: str
    #: How far apart an idle agent may send its heartbeats (0: every ``heartbeat_interval``).
    idle_heartbeat_interval: float = 0.0
    resumed: list[Ref] = field(default_factory=list)
    revoked: list[Ref] = field(default_factory=list)
