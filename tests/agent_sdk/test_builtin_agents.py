"""The built-in ``shell`` and ``python`` agents, run in an AgentEnvironment."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from agent_sdk import Context, PermanentError, Result, RetryableError
from agent_sdk.builtin import PythonAgent, ShellAgent, builtin_agent_types
from agent_sdk.testing import AgentEnvironment
from tests.harness.server import alive, wait_for

FUNCTIONS = "tests.plugins.agent_functions"


def shell(**params: object) -> ShellAgent:
    """An allowed shell agent with these parameters."""
    return ShellAgent.from_parameters({"allow": True, **params})


# --- the types ---------------------------------------------------------------------------------


def test_shell_and_python_are_built_in_types_and_shell_follows_the_setting() -> None:
    specs = {s.name: s for s in builtin_agent_types()}
    assert {"echo", "noop", "sleep", "shell", "python"} <= set(specs)
    assert specs["shell"].build().allow is False
    assert {s.name: s for s in builtin_agent_types(allow_shell=True)}["shell"].build().allow is True


# --- shell ----------------------------------------------------------------------------------


async def test_instructions_are_substituted_quoted_never_run(
    agent_env: AgentEnvironment, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    nasty = f"$(touch {marker}); `touch {marker}` && touch {marker} 'single' \"double\" *"
    result = await agent_env.run(shell(command="printf '%s' {instructions}"), nasty)
    assert result.output == nasty
    assert not marker.exists()


async def test_a_list_command_runs_without_a_shell(agent_env: AgentEnvironment) -> None:
    agent = shell(command=[sys.executable, "-c", "import sys; print(sys.argv[1][::-1])", "{instructions}"])
    assert (await agent_env.run(agent, "$(nope) abc")).output == "cba )epon($"


async def test_the_command_sees_the_assignment_but_not_the_agents_token(
    agent_env: AgentEnvironment, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MAOS_TOKEN", "secret")
    command = 'echo "$MAOS_SUBTASK $MAOS_ATTEMPT $MAOS_INPUTS ${MAOS_TOKEN:-no-token} $GREETING $(pwd)"'
    agent = shell(command=command, env={"GREETING": "hi"}, cwd=str(tmp_path))
    result = await agent_env.run(agent, "x", inputs={"s1": "a"}, attempt=2, subtask="sub-7")
    assert result.output == f'sub-7 2 {{"s1": "a"}} no-token hi {tmp_path}'


async def test_a_non_zero_exit_fails_permanently_with_the_stderr_tail(agent_env: AgentEnvironment) -> None:
    command = "for i in $(seq 1 2000); do echo line-$i >&2; done; exit 7"
    with pytest.raises(PermanentError) as failure:
        await agent_env.run(shell(command=command), "x")
    message = str(failure.value)
    assert message.startswith("the command exited with status 7; stderr: ...")
    assert message.endswith("line-2000") and "line-1\n" not in message
    assert failure.value.error_type == "ShellCommandFailed"


async def test_a_command_that_runs_too_long_is_killed(agent_env: AgentEnvironment) -> None:
    started = time.monotonic()
    with pytest.raises(PermanentError, match=r"timed out after 0\.2 s \(parameters\.timeout\)"):
        await agent_env.run(shell(command="echo starting >&2; sleep 30", timeout="200ms"), "x")
    assert time.monotonic() - started < 5


async def test_cancellation_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids: list[int] = []

    def on_output(text: str) -> None:
        pids.extend(int(word) for word in text.split())
        env.cancel()

    env = AgentEnvironment(on_output=on_output)
    # sh starts a background sleep and waits; both must die with the assignment.
    with pytest.raises(asyncio.CancelledError):
        await env.run(shell(command="sleep 30 & echo $$ $!; wait"), "x")
    assert len(pids) == 2
    await wait_for(lambda: not any(alive(pid) for pid in pids), 5, message=f"processes {pids} to end")


async def test_a_command_that_ignores_its_input_is_fine(agent_env: AgentEnvironment) -> None:
    assert (await agent_env.run(shell(command="echo done"), "x" * 1_000_000)).output == "done"


async def test_large_output_is_truncated(agent_env: AgentEnvironment) -> None:
    agent = shell(command="head -c 5000 /dev/zero | tr '\\0' a", max_output_bytes=100)
    result = await agent_env.run(agent, "")
    assert result.output == "a" * 100 + "\n[output truncated]"


async def test_an_unconfigured_shell_fails_saying_what_is_missing(agent_env: AgentEnvironment) -> None:
    with pytest.raises(PermanentError, match="no command"):
        await agent_env.run(ShellAgent.from_parameters({"allow": True}), "x")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"allow": "yes"}, "parameters.allow must be true or false"),
        ({"timeout": "soon"}, "parameters.timeout must be a duration"),
        ({"timeout": 0}, "parameters.timeout must be positive"),
        ({"command": ""}, "parameters.command must be a non-empty string"),
        (
            {"command": ["ls", 3]},
            "parameters.command must be a non-empty string or a non-empty list of strings",
        ),
        ({"env": ["A=1"]}, "parameters.env must be a mapping"),
        ({"shell": True}, "unknown shell parameter(s) shell"),
    ],
)
def test_bad_shell_parameters_are_rejected(params: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        ShellAgent.from_parameters(params)
    assert message in str(error.value)


# --- python ---------------------------------------------------------------------------------


async def test_a_plain_function_runs_in_a_thread_and_reports_through_the_loop(
    agent_env: AgentEnvironment,
) -> None:
    agent = PythonAgent.from_parameters({"function": f"{FUNCTIONS}:shout", "kwargs": {"suffix": "."}})
    assert (await agent_env.run(agent, "calm")).output == "CALM."
    assert agent_env.outputs == ["working"] and agent_env.progress[0].message == "shouting"


async def test_an_async_function_returning_a_result(agent_env: AgentEnvironment) -> None:
    agent = PythonAgent.from_parameters({"function": f"{FUNCTIONS}:count_inputs"})
    result = await agent_env.run(agent, "x", inputs={"a": "1", "b": "2"})
    assert isinstance(result, Result) and result.output == "2 inputs"


async def test_a_callable_object_can_be_given_directly(agent_env: AgentEnvironment) -> None:
    async def retry_once(ctx: Context) -> str:
        if ctx.assignment.attempt == 0:
            raise RetryableError("again", retry_after=1.5)
        return "second time"

    agent = PythonAgent(retry_once)
    with pytest.raises(RetryableError):
        await agent_env.run(agent, "x")
    assert (await agent_env.run(agent, "x", attempt=1)).output == "second time"


async def test_function_failures_and_wrong_results(agent_env: AgentEnvironment) -> None:
    with pytest.raises(PermanentError, match="refusing 'no'"):
        await agent_env.run(PythonAgent(f"{FUNCTIONS}:refuses"), "no")
    with pytest.raises(PermanentError, match="returned int; return a str or an agent_sdk.Result"):
        await agent_env.run(PythonAgent(f"{FUNCTIONS}:returns_a_number"), "x")


async def test_timeout_and_cancellation_of_an_async_function(agent_env: AgentEnvironment) -> None:
    with pytest.raises(PermanentError, match=r"did not return within 0\.05 s"):
        agent = PythonAgent.from_parameters({"function": f"{FUNCTIONS}:hangs", "timeout": 0.05})
        await agent_env.run(agent, "x")
    agent_env.cancel_after(0.02)
    with pytest.raises(asyncio.CancelledError):
        await agent_env.run(PythonAgent(f"{FUNCTIONS}:hangs"), "x")


async def test_an_unconfigured_python_agent_fails_saying_what_is_missing(agent_env: AgentEnvironment) -> None:
    with pytest.raises(PermanentError, match="no function"):
        await agent_env.run(PythonAgent.from_parameters({}), "x")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"function": "no_colon"}, "must look like 'package.module:callable'"),
        ({"function": "no_such_module_xyz:f"}, "cannot import 'no_such_module_xyz' (ModuleNotFoundError"),
        ({"function": f"{FUNCTIONS}:missing"}, f"'{FUNCTIONS}' has no attribute 'missing'"),
        ({"function": f"{FUNCTIONS}:NOT_CALLABLE"}, "is not callable"),
        ({"function": 3}, "parameters.function must be a string"),
        ({"function": f"{FUNCTIONS}:shout", "kwargs": ["x"]}, "parameters.kwargs must be a mapping"),
        ({"function": f"{FUNCTIONS}:shout", "args": []}, "unknown python parameter(s) args"),
    ],
)
def test_bad_python_parameters_are_rejected(params: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        PythonAgent.from_parameters(params)
    assert message in str(error.value)
