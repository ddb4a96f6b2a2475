"""Agents that need no model, so MAOS is useful (and testable) offline.

* ``echo`` answers with its instructions (and the inputs it was given), for
  trying MAOS and for tests; it can take any subtask.
* ``noop`` answers "ok" at once (benchmarks of the orchestration itself).
* ``sleep`` sleeps ``metadata["sleep_seconds"]`` (default 0.1 s) then
  answers, checkpointing as it goes (parallel-efficiency benchmarks and
  recovery tests).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from agent_sdk.agent import Agent
from agent_sdk.context import Context
from agent_sdk.errors import PermanentError, RetryableError
from agent_sdk.types import AgentTypeSpec


class EchoAgent(Agent):
    """Answers with its instructions; a synthesis step joins its inputs."""

    agent_type = "echo"
    capabilities = ["*"]
    max_concurrency = 8

    async def handle(self, ctx: Context) -> str:
        """Echo the instructions (or join the inputs of a synthesis step)."""
        a = ctx.assignment
        if a.metadata.get("echo_fail") == "permanent":
            raise PermanentError("echo was asked to fail (metadata echo_fail=permanent)")
        if a.metadata.get("echo_fail") == "retryable" and a.attempt == 0:
            raise RetryableError("echo was asked to fail once (metadata echo_fail=retryable)")
        if a.inputs:
            return "\n".join(a.inputs[key] for key in sorted(a.inputs))
        return a.instructions


class NoopAgent(Agent):
    """Answers "ok" at once."""

    agent_type = "noop"
    capabilities = ["*"]
    max_concurrency = 256

    async def handle(self, ctx: Context) -> str:
        """Do nothing."""
        return "ok"


class SleepAgent(Agent):
    """Sleeps, checkpointing each step, and resumes from its checkpoint."""

    agent_type = "sleep"
    capabilities = ["*"]
    max_concurrency = 1

    async def handle(self, ctx: Context) -> str:
        """Sleep ``sleep_seconds`` in ``sleep_steps`` steps (metadata), checkpointing each."""
        a = ctx.assignment
        total = float(a.metadata.get("sleep_seconds", "0.1"))
        steps = max(1, int(a.metadata.get("sleep_steps", "1")))
        done = json.loads(a.resume_checkpoint)["step"] if a.resume_checkpoint else 0
        for step in range(done, steps):
            await asyncio.sleep(total / steps)
            if step + 1 < steps:  # after the last step the result itself is the record
                ctx.progress((step + 1) / steps, f"step {step + 1}/{steps}",
                             checkpoint=json.dumps({"step": step + 1}).encode())
        return f"slept {total:g} s in {steps} steps (resumed at step {done}, attempt {a.attempt})"


def _simple(cls: type[Agent], description: str) -> AgentTypeSpec:
    def factory(params: Mapping[str, Any]) -> Agent:
        return cls()

    return AgentTypeSpec(
        name=cls.agent_type, capabilities=tuple(cls.capabilities), description=description,
        factory=factory, max_concurrency=cls.max_concurrency,
    )


def builtin_agent_types() -> list[AgentTypeSpec]:
    """The built-in agent types."""
    return [
        _simple(EchoAgent, "Answers with its instructions (no model; for trying MAOS and tests)."),
        _simple(NoopAgent, "Answers 'ok' at once (benchmarks)."),
        _simple(SleepAgent, "Sleeps metadata sleep_seconds, checkpointing each step (benchmarks, recovery)."),
    ]
