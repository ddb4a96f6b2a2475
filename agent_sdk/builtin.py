"""Agents that need no model, so MAOS is useful (and testable) offline.

* ``echo`` answers with its instructions (and the inputs it was given), for
  trying MAOS and for tests; it can take any subtask (metadata ``echo_log=TEXT``
  logs TEXT through ``ctx.log``, which reaches `maos agent logs`). A review
  step it approves without judging (metadata ``echo_review=changes`` makes it
  ask for a change instead, to try the review loop offline).
* ``noop`` answers "ok" at once (benchmarks of the orchestration itself).
* ``sleep`` sleeps ``metadata["sleep_seconds"]`` (default 0.1 s) then
  answers, checkpointing as it goes (parallel-efficiency benchmarks and
  recovery tests).
* ``shell`` runs a command its agent type configures (off unless allowed:
  setting ``agents.allow_shell`` or parameter ``allow: true``).
* ``python`` calls ``function(ctx)`` named by its agent type's parameters.

``shell`` and ``python`` are meant to be specialised by custom agent types
(``$MAOS_HOME/agents/*.yml``) that set their parameters.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import json
import os
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from agent_sdk.agent import Agent
from agent_sdk.context import Context, Result
from agent_sdk.environment import child_environment
from agent_sdk.errors import PermanentError, RetryableError
from agent_sdk.process import run_bounded
from agent_sdk.types import AgentBacking, AgentTypeSpec, SubtaskKind, verdict_json


class EchoAgent(Agent):
    """Answers with its instructions; a synthesis step joins its inputs."""

    agent_type = "echo"
    capabilities = ["*"]
    backing = AgentBacking.OFFLINE
    max_concurrency = 8

    async def handle(self, ctx: Context) -> str:
        """Echo the instructions (or join the inputs of a synthesis step)."""
        a = ctx.assignment
        if a.metadata.get("echo_fail") == "permanent":
            raise PermanentError("echo was asked to fail (metadata echo_fail=permanent)")
        if a.metadata.get("echo_fail") == "retryable" and a.attempt == 0:
            raise RetryableError("echo was asked to fail once (metadata echo_fail=retryable)")
        if a.metadata.get("echo_log"):
            ctx.log.info("%s", a.metadata["echo_log"])  # forwarded to the control plane (`maos agent logs`)
        if a.kind == SubtaskKind.REVIEW:  # it cannot judge: approve, unless asked to request a change
            if a.metadata.get("echo_review") == "changes":
                return verdict_json(
                    False, ["echo was asked to request a change (metadata echo_review=changes)"]
                )
            return verdict_json(True, summary="echo approves without judging")
        if a.inputs:
            return "\n".join(a.inputs[key] for key in sorted(a.inputs))
        return a.instructions


class NoopAgent(Agent):
    """Answers "ok" at once."""

    agent_type = "noop"
    capabilities = ["*"]
    backing = AgentBacking.OFFLINE
    max_concurrency = 256

    async def handle(self, ctx: Context) -> str:
        """Do nothing."""
        return "ok"


class SleepAgent(Agent):
    """Sleeps, checkpointing each step, and resumes from its checkpoint."""

    agent_type = "sleep"
    capabilities = ["*"]
    backing = AgentBacking.OFFLINE
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
                ctx.progress(
                    (step + 1) / steps,
                    f"step {step + 1}/{steps}",
                    checkpoint=json.dumps({"step": step + 1}).encode(),
                )
        return f"slept {total:g} s in {steps} steps (resumed at step {done}, attempt {a.attempt})"


def _simple(cls: type[Agent], description: str) -> AgentTypeSpec:
    def factory(params: Mapping[str, Any]) -> Agent:
        return cls()

    return AgentTypeSpec(
        name=cls.agent_type,
        capabilities=tuple(cls.capabilities),
        description=description,
        factory=factory,
        max_concurrency=cls.max_concurrency,
        backing=AgentBacking.OFFLINE,
    )


# --- shell and python: agents configured by parameters (custom agent types) ------------------------------

_SHELL_PARAMETERS = {"command", "allow", "timeout", "cwd", "env", "max_output_bytes"}
_PYTHON_PARAMETERS = {"function", "kwargs", "timeout"}
_STDERR_TAIL = 2000  # characters of stderr quoted in a failure message

SHELL_DISABLED = (
    "the shell agent type is disabled (it runs commands on this machine); enable it with "
    "`agents.allow_shell: true` in $MAOS_HOME/config.yml (or MAOS_AGENTS_ALLOW_SHELL=true), or with "
    "`allow: true` in the parameters of a custom agent type in $MAOS_HOME/agents/*.yml"
)


def _seconds(value: Any, name: str) -> float | None:
    """Seconds from ``30``, ``1.5``, ``"30s"``, ``"500ms"``, ``"5m"`` or ``"2h"``; None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"parameters.{name} must be a number of seconds, not {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
        unit = next((u for u in ("ms", "s", "m", "h") if text.endswith(u)), "")
        try:
            seconds = float(text[: len(text) - len(unit)] if unit else text) * units.get(unit, 1.0)
        except ValueError:
            raise ValueError(
                f"parameters.{name} must be a duration like 30, 30s, 500ms or 5m, not {value!r}"
            ) from None
    if seconds <= 0:
        raise ValueError(f"parameters.{name} must be positive, not {value!r}")
    return seconds


def _check_keys(params: Mapping[str, Any], known: set[str], kind: str) -> None:
    unknown = sorted(str(k) for k in params if k not in known)
    if unknown:
        raise ValueError(
            f"unknown {kind} parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


def _tail(text: str, limit: int = _STDERR_TAIL) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


class ShellAgent(Agent):
    """Runs a command configured by the machine's owner, never one taken from a task.

    Parameters (from the agent type, e.g. a custom type in ``$MAOS_HOME/agents/*.yml``):

    * ``command``: a string run by ``/bin/sh -c``, or a list of arguments run
      without a shell. The placeholder ``{instructions}`` is replaced by the
      instructions, quoted with :func:`shlex.quote` in a string (do not quote
      it again) and verbatim in a list. The instructions are also written to
      the command's standard input, so ``command: "wc -w"`` counts their words.
    * ``allow``: ``true`` to enable this type; otherwise the setting
      ``agents.allow_shell`` decides. A disabled shell agent fails every
      assignment permanently, saying how to enable it.
    * ``timeout``: seconds (or ``30s``, ``5m``) one run may take (default 300);
      then the process group is killed and the assignment fails permanently.
    * ``cwd``, ``env``: working directory and extra environment variables. The command does
      not inherit the agent's environment: it gets the allow-list of
      :mod:`agent_sdk.environment` (``PATH``, ``HOME``, locale...) plus ``env``, so no key,
      credential or database URL reaches it unless ``env`` names it.
    * ``max_output_bytes``: stdout kept for the result (default 1 MiB).

    The command also sees ``MAOS_TASK``, ``MAOS_SUBTASK``, ``MAOS_ATTEMPT``,
    ``MAOS_CAPABILITY`` and ``MAOS_INPUTS`` (the inputs as a JSON object).
    Standard output is streamed as output chunks and is the result (trailing
    newlines removed); a non-zero exit fails permanently with the tail of
    standard error. Cancellation kills the command's process group.
    """

    agent_type = "shell"
    capabilities = ["shell"]
    backing = AgentBacking.OFFLINE
    max_concurrency = 4

    def __init__(
        self,
        command: str | list[str] | None = None,
        *,
        allow: bool = False,
        timeout: float = 300.0,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        max_output_bytes: int = 1 << 20,
    ):
        self.command = command
        self.allow = allow
        self.timeout = timeout
        self.cwd = cwd
        self.env = dict(env or {})
        self.max_output_bytes = max_output_bytes

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any]) -> ShellAgent:
        """Build from agent-type parameters, rejecting unknown or ill-typed ones (ValueError)."""
        _check_keys(params, _SHELL_PARAMETERS, "shell")
        command = params.get("command")
        if command is not None and not (
            (isinstance(command, str) and command.strip())
            or (isinstance(command, list) and command and all(isinstance(p, str) for p in command))
        ):
            raise ValueError("parameters.command must be a non-empty string or a non-empty list of strings")
        allow = params.get("allow", False)
        if not isinstance(allow, bool):
            raise ValueError(f"parameters.allow must be true or false, not {allow!r}")
        env = params.get("env") or {}
        if not isinstance(env, Mapping) or not all(isinstance(k, str) for k in env):
            raise ValueError("parameters.env must be a mapping of variable names to values")
        cwd = params.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise ValueError("parameters.cwd must be a path")
        max_output = params.get("max_output_bytes", 1 << 20)
        if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 1:
            raise ValueError("parameters.max_output_bytes must be a positive integer")
        return cls(
            command,
            allow=allow,
            timeout=_seconds(params.get("timeout", 300.0), "timeout") or 300.0,
            cwd=cwd,
            env={k: str(v) for k, v in env.items()},
            max_output_bytes=max_output,
        )

    @property
    def configuration_error(self) -> str:
        """Why this agent cannot run anything ("" when it can, once allowed)."""
        if self.command is None:
            return (
                "the shell agent has no command: define a custom agent type with `type: shell` and "
                "parameters.command in $MAOS_HOME/agents/*.yml"
            )
        return ""

    def argv(self, instructions: str) -> list[str]:
        """The command line of one run."""
        if isinstance(self.command, str):
            return ["/bin/sh", "-c", self.command.replace("{instructions}", shlex.quote(instructions))]
        assert self.command is not None
        return [part.replace("{instructions}", instructions) for part in self.command]

    async def handle(self, ctx: Context) -> str:
        """Run the command on the instructions; its standard output is the result."""
        if not self.allow:
            raise PermanentError(SHELL_DISABLED, error_type="ShellDisabled")
        if self.configuration_error:
            raise PermanentError(self.configuration_error, error_type="ShellNotConfigured")
        a = ctx.assignment
        # The allow-list only: no credential, model key or database URL of the agent reaches the command.
        env = child_environment(os.environ, extra=self.env)
        env.update(
            MAOS_TASK=a.task,
            MAOS_SUBTASK=a.subtask,
            MAOS_ATTEMPT=str(a.attempt),
            MAOS_CAPABILITY=a.capability,
            MAOS_INPUTS=json.dumps(a.inputs, sort_keys=True),
        )
        argv = self.argv(a.instructions)
        try:
            done = await run_bounded(
                argv,
                timeout=self.timeout,
                max_output_bytes=self.max_output_bytes,
                cwd=self.cwd,
                env=env,
                stdin=a.instructions.encode(),
                on_stdout=ctx.output,
            )
        except TimeoutError as exc:  # (an OSError too: caught first)
            partial = getattr(exc, "partial", None)
            if partial is None:
                raise
            raise PermanentError(
                f"the command timed out after {self.timeout:g} s (parameters.timeout); stderr: "
                f"{_tail(partial.stderr) or '(empty)'}",
                error_type="ShellTimeout",
            ) from None
        except OSError as exc:
            raise PermanentError(
                f"cannot run {argv[0]!r}: {exc}", error_type="ShellCommandNotFound"
            ) from None
        code, errors = done.returncode, done.stderr
        if code != 0:
            status = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            raise PermanentError(
                f"the command {status}; stderr: {_tail(errors) or '(empty)'}", error_type="ShellCommandFailed"
            )
        if errors.strip():
            ctx.log.info("stderr: %s", _tail(errors))
        output = done.stdout
        if done.truncated:
            output += "\n[output truncated]"
        return output.rstrip("\n")


class _ThreadContext(Context):
    """The Context seen by a synchronous function running in a worker thread.

    Reporting calls (progress, checkpoint, output) are handed to the event loop,
    where the real Context lives; everything else is read from it.
    """

    def __init__(self, ctx: Context, loop: asyncio.AbstractEventLoop):
        self._ctx = ctx
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx, name)

    def progress(self, fraction: float, message: str = "", checkpoint: bytes | None = None) -> None:
        """Report progress (thread-safe)."""
        self._loop.call_soon_threadsafe(self._ctx.progress, fraction, message, checkpoint)

    def checkpoint(self, data: bytes, message: str = "") -> None:
        """Save a work checkpoint (thread-safe)."""
        self._loop.call_soon_threadsafe(self._ctx.checkpoint, data, message)

    def output(self, text: str) -> None:
        """Stream a chunk of output (thread-safe)."""
        self._loop.call_soon_threadsafe(self._ctx.output, text)


def resolve_function(path: str) -> Callable[..., Any]:
    """The callable named ``package.module:attribute`` (the attribute may be dotted: ``mod:Class.method``)."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name.strip() or not attribute.strip():
        raise ValueError(f"parameters.function {path!r} must look like 'package.module:callable'")
    try:
        target: object = importlib.import_module(module_name.strip())
    except Exception as exc:  # ImportError, or the module itself failed while importing
        raise ValueError(
            f"parameters.function {path!r}: cannot import {module_name!r} ({type(exc).__name__}: {exc})"
        ) from None
    for part in attribute.strip().split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(
                f"parameters.function {path!r}: {module_name!r} has no attribute {attribute.strip()!r}"
            ) from None
    if not callable(target):
        raise ValueError(f"parameters.function {path!r} is not callable")
    return target


class PythonAgent(Agent):
    """Calls a Python function, e.g. one exposed by an installed plugin.

    Parameters:

    * ``function``: ``"package.module:callable"``, importable by the agent process.
    * ``kwargs``: a mapping of keyword arguments passed to every call.
    * ``timeout``: seconds one call may take (none by default).

    The function is called as ``function(ctx, **kwargs)`` with the
    :class:`~agent_sdk.Context` of the assignment (its instructions are
    ``ctx.assignment.instructions``); it never receives a bare string, so a
    task's text cannot be handed to an arbitrary callable such as
    ``os:system``. It returns a ``str`` or an :class:`~agent_sdk.Result`, and
    may raise :class:`~agent_sdk.RetryableError` or :class:`~agent_sdk.PermanentError`.

    ``async def`` functions run on the agent's event loop and are cancelled
    with the assignment. Plain functions run in a worker thread (so heartbeats
    continue); their ``ctx.progress``/``checkpoint``/``output`` calls are safe
    there, but a thread cannot be interrupted: on cancellation the result is
    discarded when the call returns.
    """

    agent_type = "python"
    capabilities = ["python"]
    backing = AgentBacking.OFFLINE
    max_concurrency = 8

    def __init__(
        self,
        function: str | Callable[..., Any] | None = None,
        *,
        kwargs: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ):
        self.function_path = function if isinstance(function, str) else getattr(function, "__qualname__", "")
        self.function = resolve_function(function) if isinstance(function, str) else function
        self.kwargs = dict(kwargs or {})
        self.timeout = timeout

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any]) -> PythonAgent:
        """Build from agent-type parameters; an unknown key or unimportable function raises ValueError."""
        _check_keys(params, _PYTHON_PARAMETERS, "python")
        function = params.get("function")
        if function is not None and not isinstance(function, str):
            raise ValueError("parameters.function must be a string like 'package.module:callable'")
        kwargs = params.get("kwargs") or {}
        if not isinstance(kwargs, Mapping) or not all(
            isinstance(k, str) and k.isidentifier() for k in kwargs
        ):
            raise ValueError("parameters.kwargs must be a mapping of argument names to values")
        return cls(function, kwargs=kwargs, timeout=_seconds(params.get("timeout"), "timeout"))

    @property
    def configuration_error(self) -> str:
        """Why this agent cannot run anything ("" when it can)."""
        if self.function is None:
            return (
                "the python agent has no function: define a custom agent type with `type: python` and "
                "parameters.function ('package.module:callable') in $MAOS_HOME/agents/*.yml"
            )
        return ""

    async def handle(self, ctx: Context) -> Result:
        """Call the function with the Context; its str or Result is the result."""
        if self.function is None:
            raise PermanentError(self.configuration_error, error_type="PythonNotConfigured")
        function = self.function
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                call_method = type(function).__call__ if not inspect.isroutine(function) else None
                if inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call_method):
                    value = await function(ctx, **self.kwargs)
                else:
                    loop = asyncio.get_running_loop()
                    call = functools.partial(function, _ThreadContext(ctx, loop), **self.kwargs)
                    value = await asyncio.to_thread(call)
                if inspect.isawaitable(value):
                    value = await value
        except TimeoutError:
            if not deadline.expired():
                raise  # the function's own TimeoutError: a failure like any other
            raise PermanentError(
                f"{self.function_path} did not return within {self.timeout:g} s (parameters.timeout)",
                error_type="PythonTimeout",
            ) from None
        if isinstance(value, Result):
            return value
        if isinstance(value, str):
            return Result(output=value)
        raise PermanentError(
            f"{self.function_path} returned {type(value).__name__}; return a str or an agent_sdk.Result",
            error_type="PythonBadResult",
        )


def builtin_agent_types(*, allow_shell: bool = False) -> list[AgentTypeSpec]:
    """The built-in agent types.

    Args:
        allow_shell: The ``agents.allow_shell`` setting: the default of the
            ``shell`` type's ``allow`` parameter.
    """
    return [
        _simple(EchoAgent, "Answers with its instructions (no model; for trying MAOS and tests)."),
        _simple(NoopAgent, "Answers 'ok' at once (benchmarks)."),
        _simple(SleepAgent, "Sleeps metadata sleep_seconds, checkpointing each step (benchmarks, recovery)."),
        AgentTypeSpec(
            name="shell",
            capabilities=tuple(ShellAgent.capabilities),
            description=(
                "Runs parameters.command on the instructions (off unless agents.allow_shell or allow: true)."
            ),
            factory=ShellAgent.from_parameters,
            max_concurrency=ShellAgent.max_concurrency,
            parameters={"allow": allow_shell},
            backing=AgentBacking.OFFLINE,
        ),
        AgentTypeSpec(
            name="python",
            capabilities=tuple(PythonAgent.capabilities),
            description="Calls parameters.function ('package.module:callable') with the Context.",
            factory=PythonAgent.from_parameters,
            max_concurrency=PythonAgent.max_concurrency,
            backing=AgentBacking.OFFLINE,
        ),
    ]
