"""What an agent handler sees: its assignment and a way to report while it works."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent_sdk.pacing import UNPACED, ModelPacer


@dataclass(frozen=True)
class DependencyResult:
    """The final result of a task this task depends on (``--depends-on``)."""

    task: str  # tasks/{id}
    description: str
    #: The result, cut with a visible note at the end when it was longer than the server's limit.
    output: str
    omitted_chars: int = 0


@dataclass(frozen=True)
class Assignment:
    """One attempt at one subtask.

    ``inputs`` holds the outputs of every step this one depends on, directly or
    through others; ``dependency_results`` the final results of the tasks its
    task depends on; ``plan`` the task's plan, one line per step, for steps that
    combine the parts. All are bounded by the server (cut texts end with a note).
    """

    task: str
    subtask: str
    attempt: int
    lease_epoch: int
    title: str
    instructions: str
    capability: str
    #: What the step asks (:class:`agent_sdk.SubtaskKind`: WORK, SYNTHESIS or CANDIDATE).
    kind: int
    task_description: str
    context: str
    constraints: str
    metadata: dict[str, str]
    inputs: dict[str, str]
    resume_checkpoint: bytes | None
    deadline: float | None
    priority: int
    #: What the task may still spend (0: no limit); an agent should stop before exceeding it.
    remaining_tokens: int = 0
    remaining_cost_micros: int = 0
    dependency_results: tuple[DependencyResult, ...] = ()
    plan: str = ""
    #: Seconds the lease of this attempt lasts without a heartbeat (the worker heartbeats for it).
    lease_ttl: float = 0.0


@dataclass
class Usage:
    """Tokens and cost an agent reports with its result (cost in millionths of a dollar)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cost_micros: int = 0
    model_calls: int = 0
    #: Server-side web searches and fetches the model made (their cost is in ``cost_micros``).
    web_search_requests: int = 0
    web_fetch_requests: int = 0
    #: Tool calls of every kind (the agent's own tools and the API's server tools).
    tool_calls: int = 0


@dataclass
class ToolCall:
    """One tool call made by the work, as `maos task show` lists it.

    ``server``: the Messages API ran it (web search, fetch, code execution); ``summary``: one
    line about its input or its error; ``turn``: the model turn (from 1) it was made in.
    """

    name: str
    duration: float = 0.0
    is_error: bool = False
    summary: str = ""
    server: bool = False
    turn: int = 0


@dataclass
class Source:
    """A source the output cites (a web page the model searched or fetched)."""

    url: str
    title: str = ""
    cited_text: str = ""


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
    #: The tool calls the work made, in order, and the sources its output cites.
    tool_calls: list[ToolCall] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)


@dataclass(frozen=True)
class Candidate:
    """One candidate answer put to a vote."""

    id: str
    agent: str
    content: str


@dataclass(frozen=True)
class Ballot:
    """A vote request: pick the best candidate answer to ``question``."""

    proposal: str
    task: str
    question: str
    candidates: list[Candidate]
    round: int
    deadline: float | None = None
    previous_votes: list[tuple[str, str, float, str]] = field(
        default_factory=list
    )  # (voter, candidate, conf, why)
    #: The task's context and constraints, which the answer must respect.
    context: str = ""
    constraints: str = ""
    #: What this vote may spend of the task's budget (0: no limit); abstain when judging cannot fit.
    remaining_tokens: int = 0
    remaining_cost_micros: int = 0


@dataclass(frozen=True)
class VoteChoice:
    """An agent's vote: the chosen candidate, its confidence (0-1) and why, and what judging cost.

    ``abstain``: no usable judgement (``rationale`` says why); the vote is not
    counted, and a round where every vote abstains reaches no consensus.
    """

    candidate_id: str
    confidence: float = 1.0
    rationale: str = ""
    usage: Usage = field(default_factory=Usage)
    abstain: bool = False

    @classmethod
    def abstention(cls, why: str, usage: Usage | None = None) -> VoteChoice:
        """A vote that names no candidate."""
        return cls("", confidence=0.0, rationale=why, usage=usage or Usage(), abstain=True)


class StateConflict(Exception):
    """A compare-and-set found another version than the one expected."""

    def __init__(self, key: str, expected: int, actual: int):
        super().__init__(f"shared state {key!r} is at version {actual}, not {expected}")
        self.key, self.expected, self.actual = key, expected, actual


class SharedState:
    """The task's shared key-value state, versioned (compare-and-set), served by the control plane.

    Every agent working on the same task sees the same keys. Versions start at
    1 and increase with each write; ``expected_version=0`` means "must not exist".
    """

    def __init__(self, call: Callable[..., Any]):
        self._call = call

    async def get(self, key: str) -> tuple[bytes, int] | None:
        """The value and version of ``key``, or None."""
        found: tuple[bytes, int] | None = await self._call("get", key)
        return found

    async def put(self, key: str, value: bytes, expected_version: int | None = None) -> int:
        """Write ``key``; with ``expected_version``, only if it matches. Returns the new version.

        Raises:
            StateConflict: The current version is not ``expected_version``.
        """
        version: int = await self._call("put", key, value, expected_version)
        return version

    async def delete(self, key: str, expected_version: int | None = None) -> None:
        """Delete ``key``; with ``expected_version``, only if it matches."""
        await self._call("delete", key, None, expected_version)


class Context:
    """Passed to ``Agent.handle``: the assignment plus reporting calls.

    Cancellation (the user cancelled the task, the lease moved elsewhere, the
    agent is shutting down past its grace period) arrives as
    :class:`asyncio.CancelledError` in the handler.
    """

    def __init__(
        self,
        assignment: Assignment,
        send: Callable[[str, dict[str, Any]], None],
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
        state: SharedState | None = None,
        pacer: ModelPacer = UNPACED,
    ):
        self.assignment = assignment
        #: Permits for model calls (:mod:`agent_sdk.pacing`): take one before each call.
        self.pacer = pacer
        self._send = send
        #: The task's shared state (None when the runtime offers none, e.g. in some tests).
        self.state = state
        self._sequence = 0
        self.log = logger
        self.last_checkpoint: bytes | None = assignment.resume_checkpoint
        self._fraction = 0.0
        #: What the work spent so far (see :meth:`spend`).
        self.spent = Usage()

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

    def spend(self, usage: Usage) -> None:
        """Record tokens and cost spent so far, as they are spent.

        The worker reports them if the work fails or is cancelled (the tokens a
        stream delivered before it was closed count). A returned Result reports
        its own usage; when it has none, what was recorded here is reported.
        """
        for name in vars(usage):
            setattr(self.spent, name, getattr(self.spent, name) + getattr(usage, name))

    def output(self, text: str) -> None:
        """Stream a chunk of partial output to watchers."""
        self._send("output", {"text": text, "sequence": self._sequence})
        self._sequence += 1
