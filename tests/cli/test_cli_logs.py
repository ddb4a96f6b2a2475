"""``maos logs`` and ``maos agent logs`` as the guide writes them, through the real CLI and server."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys

from agent_sdk.worker import Worker
from controlplane.app import App
from maos_cli._errors import EXIT_INTERRUPTED, EXIT_INVALID_ARGUMENT, EXIT_NOT_FOUND, EXIT_USAGE
from tests.cli.conftest import Maos, stdout_lines
from tests.harness.server import wait_for


async def _records(app: App, maos: Maos) -> str:
    """A control-plane warning, an error naming a task, and an agent's forwarded line; returns the task id."""
    result = await maos("task", "submit", "Echo this", "--metadata", "echo_log=hello from the echo agent")
    assert result.exit_code == 0, result.output
    task_id = result.stdout.strip()
    assert (await maos("task", "wait", task_id, "--timeout", "15")).exit_code == 0
    await wait_for(
        lambda: any(e.message == "hello from the echo agent" for e in app.logbook.tail(_all(), 100)),
        message="the agent's forwarded record",
    )
    logging.getLogger("controlplane.scheduler").warning("lease of task_abc123 expired; re-queued")
    logging.getLogger("controlplane.api").error(
        "storage commit failed for %s", task_id, extra={"task_id": task_id}
    )
    return task_id


def _all():
    from controlplane.logbook import LogFilter

    return LogFilter()


async def test_logs_as_the_guide_writes_them(control_plane: App, maos: Maos, echo_agent: Worker) -> None:
    task_id = await _records(control_plane, maos)

    result = await maos("logs")  # View recent logs
    assert result.exit_code == 0, result.output
    lines = stdout_lines(result)
    assert any(
        "lease of task_abc123 expired" in line and "WARNING" in line and "scheduler" in line for line in lines
    )
    assert any("hello from the echo agent" in line and "agents/" in line for line in lines)
    assert lines.index(next(x for x in lines if "task_abc123" in x)) > lines.index(
        next(x for x in lines if "hello from the echo agent" in x)
    )  # newest last

    orchestrator = stdout_lines(await maos("logs", "--component", "orchestrator"))
    assert any("task_abc123" in line for line in orchestrator)
    assert not any("hello from the echo agent" in line for line in orchestrator)
    agents = stdout_lines(await maos("logs", "--component", "agents"))
    assert any("hello from the echo agent" in line for line in agents)
    assert not any("task_abc123" in line for line in agents)
    assert stdout_lines(await maos("logs", "--component", "scheduler")) == [
        line for line in orchestrator if "scheduler" in line
    ]

    errors = stdout_lines(await maos("logs", "--level", "ERROR"))
    assert len(errors) == 1 and "storage commit failed" in errors[0]
    warnings = stdout_lines(await maos("logs", "--level", "WARNING"))
    assert any("task_abc123" in line for line in warnings) and not any(
        "hello from" in line for line in warnings
    )

    grep = stdout_lines(await maos("logs", "--grep", "task_abc123"))
    assert len(grep) == 1 and "lease of task_abc123 expired" in grep[0]
    assert len(stdout_lines(await maos("logs", "--since", "1h"))) == len(lines)
    by_task = json.loads((await maos("-o", "json", "logs", "--task", task_id)).stdout)["records"]
    # The agent's line names the task it worked on too (ctx.log records carry their assignment).
    assert [r["message"] for r in by_task] == [
        "hello from the echo agent",
        f"storage commit failed for {task_id}",
    ]
    assert by_task[1]["level"] == "ERROR" and {r["task"] for r in by_task} == {f"tasks/{task_id}"}

    newest = stdout_lines(await maos("logs", "--limit", "1"))
    assert len(newest) == 1 and "storage commit failed" in newest[0]


async def test_agent_logs_show_what_the_agent_forwarded(
    control_plane: App, maos: Maos, echo_agent: Worker
) -> None:
    task_id = await _records(control_plane, maos)
    agent_id = echo_agent.agent_name.removeprefix("agents/")
    result = await maos("agent", "logs", agent_id)
    assert result.exit_code == 0, result.output
    assert [line.split(None, 3)[3] for line in stdout_lines(result)] == [
        f"agents/{agent_id}".ljust(24) + f" hello from the echo agent  [task={task_id}]"
    ]
    assert stdout_lines(await maos("agent", "logs", agent_id, "--level", "ERROR")) == ["No log records."]
    assert stdout_lines(await maos("agent", "logs", agent_id, "--grep", "nothing like this")) == [
        "No log records."
    ]

    unknown = await maos("agent", "logs", "echo-0000000000000000")
    assert unknown.exit_code == EXIT_NOT_FOUND
    assert "agent agents/echo-0000000000000000 does not exist" in unknown.stderr


async def test_bad_filters_get_precise_errors(maos: Maos) -> None:
    result = await maos("logs", "--since", "yesterday")
    assert result.exit_code == EXIT_USAGE
    assert "'yesterday' is neither a duration like 1h, 30m, 7d nor an ISO time" in result.stderr
    result = await maos("logs", "--since", "60d")
    assert result.exit_code == EXIT_USAGE and "goes back more than 30d" in result.stderr
    result = await maos("logs", "--since", "2099-01-01T00:00")
    assert result.exit_code == EXIT_USAGE and "is in the future" in result.stderr
    result = await maos("logs", "--grep", "x" * 300)
    assert result.exit_code == EXIT_INVALID_ARGUMENT
    assert "contains is at most 256 characters (got 300)" in result.stderr
    result = await maos("logs", "--level", "LOUD")
    assert result.exit_code == EXIT_USAGE and "'LOUD' is not one of" in result.stderr
    result = await maos("logs", "--limit", "0")
    assert result.exit_code == EXIT_USAGE
    result = await maos("logs", "--component", "c" * 200)
    assert (
        result.exit_code == EXIT_INVALID_ARGUMENT and "component is at most 128 characters" in result.stderr
    )


async def test_follow_prints_new_records_until_interrupted(control_plane: App, maos: Maos) -> None:
    logging.getLogger("controlplane.scheduler").warning("before following")
    env = {k: v for k, v in {**os.environ, **maos.env()}.items() if v is not None}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from maos_cli.main import main; main()",
        "logs",
        "--follow",
        "--component",
        "orchestrator",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "before following" in first  # the backlog first
        logging.getLogger("controlplane.scheduler").warning("written while following")
        second = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert "written while following" in second and "WARNING" in second
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == EXIT_INTERRUPTED
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
