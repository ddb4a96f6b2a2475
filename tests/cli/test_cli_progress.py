"""maos task submit --wait and maos task wait show progress on stderr; -o json stays quiet."""

from __future__ import annotations

import json

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from maos_cli.progress import Progress, progress_line
from tests.cli.conftest import Maos


async def test_submit_wait_shows_the_steps_on_stderr(maos: Maos) -> None:
    result = await maos("task", "submit", "Plan: 1. audience 2. channels", "--wait")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert any("steps done" in line for line in lines), result.stderr
    assert any(line.startswith("COMPLETED · 3/3 steps done") for line in lines), result.stderr
    assert "steps done" not in result.stdout  # the result alone on stdout


async def test_wait_shows_progress_and_json_stays_quiet(maos: Maos) -> None:
    task_id = (await maos("task", "submit", "One thing")).stdout.strip()
    waited = await maos("task", "wait", task_id, "--timeout", "30")
    assert waited.exit_code == 0 and "COMPLETED · 1/1 steps done" in waited.stderr
    quiet = await maos("task", "submit", "Another thing", "--wait", "-o", "json")
    assert quiet.exit_code == 0 and "steps done" not in quiet.stderr
    assert json.loads(quiet.stdout)["status"] == "COMPLETED"
    quiet = await maos("task", "wait", task_id, "-o", "json")
    assert "steps done" not in quiet.stderr and json.loads(quiet.stdout)


def test_the_progress_line_names_the_running_step_tokens_and_cost() -> None:
    task = msgs.Task(
        status=enums.TASK_STATUS_RUNNING,
        subtasks_total=5,
        subtasks_completed=2,
        usage=msgs.TokenUsage(input_tokens=1000, output_tokens=234, cost_micros=12_300),
    )
    line = progress_line(task, {"s2": ("Cloud", 0.45)})
    assert line == "RUNNING · 2/5 steps done · running s2 Cloud 45% · 1,234 tokens, $0.0123"


def test_on_a_terminal_the_line_is_redrawn_in_place(capsys) -> None:
    display = Progress(follow=False, terminal=True)

    class Response:
        task = msgs.Task(status=enums.TASK_STATUS_RUNNING, subtasks_total=2)
        event = msgs.Event()
        subtask = msgs.Subtask()

    display.update(Response())
    display.close()
    err = capsys.readouterr().err
    assert err.startswith("\r\x1b[2KRUNNING · 0/2 steps done") and err.endswith("\r\x1b[2K")
