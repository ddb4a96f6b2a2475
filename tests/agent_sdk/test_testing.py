"""agent_sdk.testing: AgentEnvironment and its ``agent_env`` fixture, on the built-in agents."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from agent_sdk import Agent, Context, PermanentError, Result, RetryableError, StateConflict, VoteChoice
from agent_sdk.builtin import EchoAgent, NoopAgent, ShellAgent, SleepAgent
from agent_sdk.testing import AgentEnvironment, MemorySharedState
from tests.harness.server import wait_for

pytest_plugins = ["pytester"]  # agent_env comes from conftest.py; pytester runs a project enabling it


# --- echo and noop ---------------------------------------------------------------------------


async def test_echo_answers_with_its_instructions(agent_env: AgentEnvironment) -> None:
    result = await agent_env.run(EchoAgent(), "say hello", metadata={"k": "v"})
    assert result == Result(output="say hello")
    assert agent_env.context is not None and agent_env.context.assignment.metadata == {"k": "v"}
    assert agent_env.progress == [] and agent_env.outputs == [] and agent_env.checkpoints == []


async def test_echo_joins_its_inputs_in_key_order(agent_env: AgentEnvironment) -> None:
    result = await agent_env.run(EchoAgent(), "combine", inputs={"b": "second", "a": "first"})
    assert result.output == "first\nsecond"


async def test_echo_fails_as_asked_by_attempt(agent_env: AgentEnvironment) -> None:
    with pytest.raises(RetryableError):
        await agent_env.run(EchoAgent(), "x", metadata={"echo_fail": "retryable"}, attempt=0)
    again = await agent_env.run(EchoAgent(), "x", metadata={"echo_fail": "retryable"}, attempt=1)
    assert again.output == "x"
    with pytest.raises(PermanentError, match="echo_fail=permanent"):
        await agent_env.run(EchoAgent(), "x", metadata={"echo_fail": "permanent"})


async def test_noop(agent_env: AgentEnvironment) -> None:
    assert (await agent_env.run(NoopAgent(), "anything")).output == "ok"


# --- sleep: checkpoints, cancellation, resuming ----------------------------------------------


async def test_sleep_checkpoints_each_step(agent_env: AgentEnvironment) -> None:
    result = await agent_env.run(SleepAgent(), metadata={"sleep_seconds": "0.04", "sleep_steps": "4"})
    assert result.output == "slept 0.04 s in 4 steps (resumed at step 0, attempt 0)"
    assert [json.loads(c)["step"] for c in agent_env.checkpoints] == [1, 2, 3]
    assert [round(p.fraction, 2) for p in agent_env.progress] == [0.25, 0.5, 0.75]
    assert agent_env.progress[0].message == "step 1/4"


async def test_sleep_cancelled_after_two_checkpoints_resumes_from_the_last(
    agent_env: AgentEnvironment,
) -> None:
    metadata = {"sleep_seconds": "0.4", "sleep_steps": "4"}
    agent_env.cancel_after(checkpoints=2)
    with pytest.raises(asyncio.CancelledError):
        await agent_env.run(SleepAgent(), metadata=metadata)
    assert agent_env.cancelled
    checkpoint = agent_env.last_checkpoint
    assert checkpoint is not None and json.loads(checkpoint) == {"step": 2}

    result = await agent_env.run(SleepAgent(), metadata=metadata, resume_checkpoint=checkpoint, attempt=1)
    assert result.output == "slept 0.4 s in 4 steps (resumed at step 2, attempt 1)"
    assert not agent_env.cancelled
    assert [json.loads(c)["step"] for c in agent_env.checkpoints] == [3]  # only the steps left


async def test_cancel_after_seconds(agent_env: AgentEnvironment) -> None:
    agent_env.cancel_after(0.05)
    with pytest.raises(asyncio.CancelledError):
        await agent_env.run(SleepAgent(), metadata={"sleep_seconds": "30"})
    assert agent_env.cancelled
    # The cancellation was for that run only.
    assert (await agent_env.run(EchoAgent(), "next")).output == "next"


async def test_cancel_after_during_a_run_hits_only_that_run(agent_env: AgentEnvironment) -> None:
    running = asyncio.create_task(agent_env.run(SleepAgent(), metadata={"sleep_seconds": "30"}))
    await wait_for(lambda: agent_env.runs == 1, 5, message="the run to start")
    agent_env.cancel_after(0.02)
    agent_env.cancel_after(0.3)  # still pending when the run ends: must not cancel the next run
    with pytest.raises(asyncio.CancelledError):
        await running
    result = await agent_env.run(SleepAgent(), metadata={"sleep_seconds": "0.5"})
    assert result.output.startswith("slept 0.5 s")


async def test_an_agent_may_finish_gracefully_when_cancelled(agent_env: AgentEnvironment) -> None:
    class Graceful(Agent):
        async def handle(self, ctx: Context) -> str:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                ctx.checkpoint(b"saved")
                return "stopped early"
            return "done"

    agent_env.cancel_after(0.02)
    assert (await agent_env.run(Graceful())).output == "stopped early"
    assert agent_env.cancelled and agent_env.checkpoints == [b"saved"]


async def test_a_run_that_hangs_fails_after_its_timeout(agent_env: AgentEnvironment) -> None:
    with pytest.raises(TimeoutError, match="did not finish within 0.05 s"):
        await agent_env.run(SleepAgent(), metadata={"sleep_seconds": "30"}, timeout=0.05)


# --- shell ----------------------------------------------------------------------------------


async def test_shell_counts_words_and_streams_its_output(agent_env: AgentEnvironment) -> None:
    agent = ShellAgent.from_parameters({"command": "wc -w", "allow": True})
    assert (await agent_env.run(agent, "one two three")).output == "3"
    assert agent_env.output.strip() == "3"


async def test_shell_is_off_unless_allowed(agent_env: AgentEnvironment) -> None:
    with pytest.raises(PermanentError, match="agents.allow_shell") as failure:
        await agent_env.run(ShellAgent.from_parameters({"command": "wc -w"}), "a b")
    assert failure.value.error_type == "ShellDisabled"
    assert not failure.value.retryable


# --- reporting, logs, shared state, votes ----------------------------------------------------


class Reporter(Agent):
    """Uses every reporting call and the shared state."""

    agent_type = "reporter"

    async def handle(self, ctx: Context) -> Result:
        ctx.log.info("starting %s", ctx.assignment.instructions)
        ctx.output("part 1")
        ctx.progress(0.5, "halfway")
        ctx.output("part 2")
        assert ctx.state is not None
        current = await ctx.state.get("count")
        count, version = (int(current[0]), current[1]) if current else (0, 0)
        await ctx.state.put("count", str(count + 1).encode(), expected_version=version)
        ctx.log.warning("counted %d", count + 1)
        return Result(output=f"count {count + 1}")


async def test_reports_and_logs_are_recorded(
    agent_env: AgentEnvironment, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="agent_sdk.testing"):
        result = await agent_env.run(Reporter(), "job")
    assert result.output == "count 1"
    assert agent_env.outputs == ["part 1", "part 2"] and agent_env.output == "part 1part 2"
    assert [(p.fraction, p.message, p.checkpoint) for p in agent_env.progress] == [(0.5, "halfway", None)]
    assert agent_env.logs == ["INFO starting job", "WARNING counted 1"]
    assert "counted 1" in caplog.text  # also propagated to logging


async def test_shared_state_outlives_runs_like_the_state_of_one_task(agent_env: AgentEnvironment) -> None:
    for expected in ("count 1", "count 2", "count 3"):
        assert (await agent_env.run(Reporter(), "job")).output == expected
    assert agent_env.state.data == {"count": b"3"}
    assert agent_env.state.version("count") == 3


async def test_memory_shared_state_compare_and_set() -> None:
    state = MemorySharedState()
    assert await state.get("k") is None
    assert await state.put("k", b"a", expected_version=0) == 1  # 0: must not exist
    with pytest.raises(StateConflict) as conflict:
        await state.put("k", b"b", expected_version=0)
    assert (conflict.value.key, conflict.value.expected, conflict.value.actual) == ("k", 0, 1)
    assert await state.put("k", b"b", expected_version=1) == 2
    assert await state.put("k", b"c") == 3  # no expectation: always writes
    assert await state.get("k") == (b"c", 3)
    with pytest.raises(StateConflict):
        await state.delete("k", expected_version=2)
    await state.delete("k", expected_version=3)
    assert await state.get("k") is None and state.version("k") == 0
    await state.delete("k")  # deleting what is gone is fine without an expectation
    with pytest.raises(TypeError):
        await state.put("k", "text")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="ERROR_REASON_INVALID_FIELD"):
        await state.put("k" * 257, b"x")
    with pytest.raises(RuntimeError, match="values at most 1048576 bytes"):
        await state.put("k", b"x" * (1024 * 1024 + 1))
    assert MemorySharedState({"seed": b"x"}).data == {"seed": b"x"}


async def test_vote_checks_the_choice(agent_env: AgentEnvironment) -> None:
    ballot = agent_env.ballot("Which is right?", {"a": "4", "b": "5"})
    choice = await agent_env.vote(EchoAgent(), ballot)  # the default vote: the first, with low confidence
    assert choice.candidate_id == "a" and choice.confidence <= 0.5

    class Judge(Agent):
        async def vote(self, ballot):
            return VoteChoice(next(c.id for c in ballot.candidates if c.content == "4"), 0.9, "2+2")

    assert (await agent_env.vote(Judge(), agent_env.ballot("2+2?", ["5", "4"]))).candidate_id == "c1"

    class Confused(Agent):
        async def vote(self, ballot):
            return VoteChoice("zzz", 2.0)

    with pytest.raises(AssertionError, match="not one of the candidates"):
        await agent_env.vote(Confused(), ballot)


async def test_one_environment_runs_one_agent_at_a_time(agent_env: AgentEnvironment) -> None:
    first = asyncio.create_task(agent_env.run(SleepAgent(), metadata={"sleep_seconds": "0.2"}))
    await wait_for(lambda: agent_env.runs == 1, 5, message="the first run to start")
    with pytest.raises(RuntimeError, match="already running"):
        await agent_env.run(EchoAgent(), "x")
    await first


def test_the_fixture_plugin_works_in_another_project(pytester: pytest.Pytester) -> None:
    pytester.makeconftest('pytest_plugins = ["agent_sdk.testing"]\n')
    pytester.makepyfile(
        """
        import asyncio
        from agent_sdk.builtin import EchoAgent

        def test_echo(agent_env):
            result = asyncio.run(agent_env.run(EchoAgent(), "hi", inputs={}))
            assert result.output == "hi"
        """
    )
    outcome = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=1)
