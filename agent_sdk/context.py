"""What an agent handler sees: its assignment and a way to report while it works."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Assignment:
    """One attempt at one subtask."""

    task: str
    subtask: str
    attempt: int
    lease_epoch: int
    title: str
    instructions: str
    capability: str
    kind: int
    task_description: str
    context: str
    constraints: str
    metadata: dict[str, str]
    inputs: dict[str, str]
    resume_checkpoint: bytes | None
    deadline: float | None
    priority: int


@dataclass
class Usage:
    """Tokens and cost an agent reports with its result (cost in millionths of a dollar)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cost_micros: int = 0
    model_calls: int = 0


@dataclass
class Artifact:
    """A file or blob produced by the work."""

    name: str
    content: bytes
    media_type: str = "application/octet-stream"


@dataclass
class Result:
    """What a handler returns (a plain string is shorthand for ``Result(output=...)``)."""

    output: str
    artifacts: list[Artifact] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


class Context:
    """Passed to ``Agent.handle``: the assignment plus reporting calls.

    Cancellation (the user cancelled the task, the lease moved elsewhere, the
    agent is shutting down past its grace period) arrives as
    :class:`asyncio.CancelledError` in the handler.
    """

    def __init__(self, assignment: Assignment, send: Callable[[str, dict[str, Any]], None], logger: logging.Logger):
        self.assignment = assignment
        self._send = send
        self._sequence = 0
        self.log = logger
        self.last_checkpoint: bytes | None = assignment.resume_checkpoint
        self._fraction = 0.0

    @property
    def resume_checkpoint(self) -> bytes | None:
        """The checkpoint an earlier attempt saved, if any."""
        return self.assignment.resume_checkpoint

    def progress(self, fraction: float, message: str = "", checkpoint: bytes | None = None) -> None:
        """Report progress (0-1), optionally with a work checkpoint; renews the lease."""
        self._fraction = min(1.0, max(0.0, fraction))
        if checkpoint is not None:
            self.last_checkpoint = checkpoint
        self._send("progress", {"fraction": self._fraction, "message": message, "checkpoint": checkpoint})

    def checkpoint(self, data: bytes, message: str = "") -> None:
        """Save a work checkpoint; a later attempt starts from the latest one."""
        self.progress(self._fraction, message, data)

    def output(self, text: str) -> None:
        """Stream a chunk of partial output to watchers."""
        self._send("output", {"text": text, "sequence": self._sequence})
        self._sequence += 1
