"""Unit-testing agents without a control plane.

:class:`AgentEnvironment` runs an agent's ``handle`` on an assignment built
from keyword arguments, records what the agent reports (progress,
checkpoints, output chunks, log lines), backs ``ctx.state`` with an
in-memory versioned store, and can cancel the run::

    from agent_sdk.testing import AgentEnvironment

    async def test_upper():
        env = AgentEnvironment()
        result = await env.run(Upper(), "hello")
        assert result.output == "HELLO"
        assert env.outputs == []

The module is also a pytest plugin providing the ``agent_env`` fixture (a
fresh :class:`AgentEnvironment` per test). Enable it in the root
``conftest.py`` (pytest only honours ``pytest_plugins`` there) or in a test
module::

    pytest_plugins = ["agent_sdk.testing"]

or on the command line with ``pytest -p agent_sdk.testing``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agent_sdk.agent import Agent
from agent_sdk.context import (
    Assignment,
    Ballot,
    Candidate,
    Context,
    Result,
    SharedState,
    StateConflict,
    VoteChoice,
)

__all__ = ["AgentEnvironment", "MemorySharedState", "ProgressReport"]


@dataclass(frozen=True)
class ProgressReport:
    """One ``ctx.progress`` (or ``ctx.checkpoint``) call."""

    fraction: float
    message: str
    checkpoint: bytes | None


class MemorySharedState(SharedState):
    """:class:`~agent_sdk.SharedState` kept in a dict, with the control plane's compare-and-set rules.

    Versions start at 1 and increase by one with each write of a key;
    ``expected_version=0`` means "must not exist"; a deleted key no longer
    exists (version 0) and starts again at 1. A mismatch raises
    :class:`~agent_sdk.StateConflict`; a key outside 1-256 characters or a
    value over 1 MiB raises ``RuntimeError``, as the worker does when the
    control plane refuses them. One instance is shared by every run of an
    :class:`AgentEnvironment`, like the state of one task.
    """

    #: The control plane's limits (controlplane.scheduler.agent_side.MAX_STATE_KEY / MAX_STATE_VALUE).
    max_key_length = 256
    max_value_bytes = 1024 * 1024

    def __init__(self, initial: Mapping[str, bytes] | None = None):
        super().__init__(self._dispatch)
        self._data: dict[str, tuple[bytes, int]] = {
            key: (bytes(value), 1) for key, value in (initial or {}).items()
        }
        #: Every operation, in order: ``(op, key, expected_version)``.
        self.operations: list[tuple[str, str, int | None]] = []

    @property
    def data(self) -> dict[str, bytes]:
        """The current values by key (a copy)."""
        return {key: value for key, (value, _) in self._data.items()}

    def version(self, key: str) -> int:
        """The current version of ``key`` (0 when it does not exist)."""
        return self._data.get(key, (b"", 0))[1]

    def _check(self, key: str, expected_version: int | None) -> int:
        actual = self.version(key)
        if expected_version is not None and expected_version != actual:
            raise StateConflict(key, expected_version, actual)
        return actual

    async def _dispatch(
        self, op: str, key: str, value: bytes | None = None, expected_version: int | None = None
    ) -> Any:
        self.operations.append((op, key, expected_version))
        if not 1 <= len(key) <= self.max_key_length or len(value or b"") > self.max_value_bytes:
            # What the worker raises when the control plane rejects the field.
            raise RuntimeError(
                f"shared state {op} of {key!r} failed: keys are 1-{self.max_key_length} characters and "
                f"values at most {self.max_value_bytes} bytes (ERROR_REASON_INVALID_FIELD)"
            )
        if op == "get":
            return self._data.get(key)
        if op == "put":
            if not isinstance(value, bytes | bytearray):
                raise TypeError(f"shared state values are bytes, not {type(value).__name__}")
            version = self._check(key, expected_version) + 1
            self._data[key] = (bytes(value), version)
            return version
        if op == "delete":
            self._check(key, expected_version)
            self._data.pop(key, None)
            return None
        raise ValueError(f"unknown shared state operation {op!r}")


class _RecordingHandler(logging.Handler):
    def __init__(self, env: AgentEnvironment):
        super().__init__(logging.DEBUG)
        self.env = env

    def emit(self, record: logging.LogRecord) -> None:
        self.env.log_records.append(record)
        self.env.logs.append(f"{record.levelname} {record.getMessage()}")


class AgentEnvironment:
    """Runs agents the way a worker would, in-process, recording what they report.

    Attributes (those of the latest :meth:`run`, reset when a run starts):
        progress: Every progress report, checkpoints included.
        checkpoints: The checkpoints saved, in order.
        outputs: The output chunks streamed with ``ctx.output``.
        logs: ``"LEVEL message"`` lines logged through ``ctx.log``.
        log_records: The same as :class:`logging.LogRecord` objects.
        context: The :class:`~agent_sdk.Context` the agent was given.
        cancelled: Whether the environment cancelled the run.

    ``state`` (a :class:`MemorySharedState`) lives as long as the environment.
    """

    def __init__(
        self,
        *,
        state: MemorySharedState | None = None,
        task: str = "tasks/test-task",
        on_progress: Callable[[ProgressReport], None] | None = None,
        on_output: Callable[[str], None] | None = None,
    ):
        """Create an environment.

        Args:
            state: The shared state (default: a new empty one).
            task: The task name every assignment belongs to.
            on_progress: Called with each progress report as it happens.
            on_output: Called with each output chunk as it happens.
        """
        self.state = state if state is not None else MemorySharedState()
        self.task = task
        self.on_progress = on_progress
        self.on_output = on_output
        self.runs = 0
        self.progress: list[ProgressReport] = []
        self.checkpoints: list[bytes] = []
        self.outputs: list[str] = []
        self.logs: list[str] = []
        self.log_records: list[logging.LogRecord] = []
        self.context: Context | None = None
        self.cancelled = False
        self._cancel_seconds: float | None = None
        self._cancel_checkpoints: int | None = None
        self._running: asyncio.Task[Any] | None = None
        self._timers: list[asyncio.TimerHandle] = []
        # A logger outside logging's registry (nothing leaks between environments) that still
        # propagates to "agent_sdk.testing", so pytest's caplog sees the lines too.
        self._logger = logging.Logger("agent_sdk.testing.agent", logging.DEBUG)
        self._logger.parent = logging.getLogger("agent_sdk.testing")
        self._logger.addHandler(_RecordingHandler(self))

    # --- what was reported ------------------------------------------------------

    @property
    def output(self) -> str:
        """The output chunks of the latest run, joined."""
        return "".join(self.outputs)

    @property
    def last_checkpoint(self) -> bytes | None:
        """The latest checkpoint of the latest run (else the checkpoint it resumed from)."""
        return self.context.last_checkpoint if self.context is not None else None

    # --- cancellation -----------------------------------------------------------

    def cancel_after(self, seconds: float | None = None, *, checkpoints: int | None = None) -> None:
        """Cancel the next (or current) run after ``seconds``, or once it saved ``checkpoints`` checkpoints.

        The agent sees :class:`asyncio.CancelledError`, as when a task is
        cancelled or its lease moves; :meth:`run` then raises
        ``asyncio.CancelledError`` (unless the agent swallowed it and
        returned), and :attr:`cancelled` is true. Counting checkpoints is
        deterministic; prefer it when the agent checkpoints.
        """
        if seconds is None and checkpoints is None:
            raise ValueError("give seconds or checkpoints")
        self._cancel_checkpoints = checkpoints
        if self._running is not None:
            if seconds is not None:
                self._timers.append(asyncio.get_running_loop().call_later(seconds, self.cancel))
        else:
            self._cancel_seconds = seconds

    def cancel(self) -> None:
        """Cancel the running :meth:`run` now (no-op when nothing runs)."""
        if self._running is not None and not self._running.done():
            self.cancelled = True
            self._running.cancel()

    # --- running ----------------------------------------------------------------

    def assignment(
        self,
        instructions: str = "",
        *,
        inputs: Mapping[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
        resume_checkpoint: bytes | None = None,
        attempt: int = 0,
        capability: str = "",
        kind: int = 0,
        title: str = "",
        task_description: str = "",
        context: str = "",
        constraints: str = "",
        deadline: float | None = None,
        priority: int = 0,
        subtask: str | None = None,
        remaining_tokens: int = 0,
        remaining_cost_micros: int = 0,
    ) -> Assignment:
        """The :class:`~agent_sdk.Assignment` :meth:`run` hands to the agent (same keywords)."""
        return Assignment(
            task=self.task,
            subtask=subtask or f"subtask-{self.runs}",
            attempt=attempt,
            lease_epoch=attempt + 1,
            title=title or instructions[:60],
            instructions=instructions,
            capability=capability,
            kind=kind,
            task_description=task_description or instructions,
            context=context,
            constraints=constraints,
            metadata=dict(metadata or {}),
            inputs=dict(inputs or {}),
            resume_checkpoint=resume_checkpoint,
            deadline=deadline,
            priority=priority,
            remaining_tokens=remaining_tokens,
            remaining_cost_micros=remaining_cost_micros,
        )

    async def run(
        self, agent: Agent, instructions: str = "", *, timeout: float | None = 30.0, **assignment: Any
    ) -> Result:
        """Run one assignment on ``agent`` and return its :class:`~agent_sdk.Result`.

        Args:
            agent: The agent to run.
            instructions: The subtask's instructions.
            timeout: Fail the test (``TimeoutError``) when the agent runs longer; None waits forever.
            **assignment: Other :class:`~agent_sdk.Assignment` fields: ``inputs``,
                ``metadata``, ``resume_checkpoint``, ``attempt``, ``capability``,
                ``kind``, ``title``, ``task_description``, ``context``,
                ``constraints``, ``deadline``, ``priority``, ``subtask``.

        Returns:
            The result; a plain string from the agent becomes ``Result(output=...)``, as in the worker.

        Raises:
            Whatever the agent raises (``RetryableError``, ``PermanentError``, ...), and
            ``asyncio.CancelledError`` when the environment cancelled the run.
        """
        if self._running is not None:
            raise RuntimeError("this AgentEnvironment is already running an agent; use another one")
        self.progress, self.checkpoints, self.outputs = [], [], []
        self.logs, self.log_records = [], []
        self.cancelled = False
        ctx = Context(self.assignment(instructions, **assignment), self._record, self._logger, self.state)
        self.context = ctx
        self.runs += 1
        task = asyncio.get_running_loop().create_task(agent.handle(ctx))
        self._running = task
        if self._cancel_seconds is not None:
            self._timers.append(asyncio.get_running_loop().call_later(self._cancel_seconds, self.cancel))
        self._cancel_seconds = None
        try:
            try:
                done, _ = await asyncio.wait([task], timeout=timeout)
            except asyncio.CancelledError:  # the test itself was cancelled: do not leave the agent running
                task.cancel()
                raise
            if not done:
                task.cancel()
                await asyncio.wait([task])
                raise TimeoutError(f"the agent did not finish within {timeout:g} s")
            outcome = task.result()  # re-raises the agent's exception, or CancelledError
        finally:
            for timer in self._timers:  # a cancellation meant for this run must not hit the next one
                timer.cancel()
            self._timers.clear()
            self._running = None
            self._cancel_checkpoints = None
        return outcome if isinstance(outcome, Result) else Result(output=str(outcome))

    def _record(self, kind: str, fields: dict[str, Any]) -> None:
        if kind == "progress":
            report = ProgressReport(fields["fraction"], fields["message"], fields["checkpoint"])
            self.progress.append(report)
            if report.checkpoint is not None:
                self.checkpoints.append(report.checkpoint)
                if self._cancel_checkpoints is not None and len(self.checkpoints) >= self._cancel_checkpoints:
                    self.cancel()
            if self.on_progress is not None:
                self.on_progress(report)
        elif kind == "output":
            self.outputs.append(fields["text"])
            if self.on_output is not None:
                self.on_output(fields["text"])

    # --- voting -------------------------------------------------------------------

    @staticmethod
    def ballot(
        question: str,
        candidates: Mapping[str, str] | Iterable[str],
        *,
        round: int = 1,
        proposal: str = "proposals/test",
        task: str = "tasks/test-task",
    ) -> Ballot:
        """A :class:`~agent_sdk.Ballot`; ``candidates`` maps ids to answers (or lists them: c0, c1, ...)."""
        items = (
            candidates.items()
            if isinstance(candidates, Mapping)
            else ((f"c{i}", content) for i, content in enumerate(candidates))
        )
        return Ballot(
            proposal=proposal,
            task=task,
            question=question,
            round=round,
            candidates=[
                Candidate(id=cid, agent=f"agents/candidate-{cid}", content=content) for cid, content in items
            ],
        )

    async def vote(self, agent: Agent, ballot: Ballot, *, timeout: float | None = 30.0) -> VoteChoice:
        """Ask ``agent`` to vote on ``ballot``; checks the choice names a candidate and a confidence in 0-1.

        Raises:
            AssertionError: The vote is not a VoteChoice for one of the candidates.
        """
        choice = await asyncio.wait_for(agent.vote(ballot), timeout)
        assert isinstance(choice, VoteChoice), f"vote() returned {type(choice).__name__}, not a VoteChoice"
        ids = [c.id for c in ballot.candidates]
        assert choice.candidate_id in ids, (
            f"vote for {choice.candidate_id!r}, not one of the candidates {ids}"
        )
        assert 0.0 <= choice.confidence <= 1.0, f"confidence {choice.confidence} is not between 0 and 1"
        return choice


# --- the pytest plugin ------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pytest is only needed to use the fixture
    pass
else:

    @pytest.fixture
    def agent_env() -> AgentEnvironment:
        """A fresh :class:`AgentEnvironment` (enable with ``pytest_plugins = ["agent_sdk.testing"]``)."""
        return AgentEnvironment()
