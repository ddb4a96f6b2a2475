"""``maos task``: against a real control plane with a real echo agent."""

from __future__ import annotations

import json
import uuid

import yaml

from maos_cli._errors import (
    EXIT_FAILED_PRECONDITION,
    EXIT_INVALID_ARGUMENT,
    EXIT_NOT_FOUND,
    EXIT_TASK_FAILED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
)
from tests.cli.conftest import Maos, stdout_lines


async def submit(maos: Maos, *args: str) -> str:
    result = await maos("task", "submit", *args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


async def test_submit_prints_only_the_id(maos: Maos) -> None:
    result = await maos("task", "submit", "What is 2+2?")
    assert result.exit_code == 0, result.output
    assert len(stdout_lines(result)) == 1
    task_id = result.stdout.strip()
    assert task_id.startswith("t") and "/" not in task_id and " " not in task_id

    result = await maos("-o", "json", "task", "submit", "What is 3+3?")
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == {"task_id"}

    result = await maos("task", "submit", "What is 4+4?", "-o", "json")  # -o on the command too
    assert json.loads(result.stdout)["task_id"].startswith("t")


async def test_submit_wait_results(maos: Maos) -> None:
    task_id = await submit(
        maos,
        "Summarize the benefits of renewable energy",
        "--type",
        "research",
        "--priority",
        "high",
        "--metadata",
        "team=docs",
        "--context",
        "for a blog",
        "--max-retries",
        "1",
        "--timeout",
        "60",
    )
    result = await maos("task", "wait", task_id, "--timeout", "30")
    assert result.exit_code == 0, result.output
    assert "COMPLETED" in result.stdout

    result = await maos("task", "results", task_id)
    assert result.exit_code == 0, result.output
    assert "Summarize the benefits of renewable energy" in result.stdout
    assert "COMPLETED" in result.stdout

    result = await maos("-o", "yaml", "task", "results", f"tasks/{task_id}")  # names work too
    data = yaml.safe_load(result.stdout)
    assert data["status"] == "COMPLETED" and data["task"] == f"tasks/{task_id}"

    result = await maos("-o", "json", "task", "show", task_id)
    task = json.loads(result.stdout)["task"]
    assert task["priority"] == "HIGH" and task["metadata"] == {"team": "docs"}
    assert task["task_type"] == "research"


async def test_submit_with_wait_prints_the_result(maos: Maos) -> None:
    result = await maos("task", "submit", "Echo this back please", "--wait", "--wait-timeout", "30")
    assert result.exit_code == 0, result.output
    assert "Echo this back please" in result.stdout
    assert "waiting" in result.stderr


async def test_list_with_filters(maos: Maos) -> None:
    high = await submit(maos, "a high one", "--priority", "HIGH", "--type", "analysis")
    low = await submit(maos, "a low one", "--priority", "low")
    for task_id in (high, low):
        assert (await maos("task", "wait", task_id, "--timeout", "30")).exit_code == 0

    result = await maos("task", "list")
    assert result.exit_code == 0, result.output
    assert stdout_lines(result)[0].split()[:3] == ["ID", "STATUS", "PRIORITY"]
    assert high in result.stdout and low in result.stdout

    result = await maos("-o", "json", "task", "list", "--priority", "high")
    names = [t["name"] for t in json.loads(result.stdout)["tasks"]]
    assert names == [f"tasks/{high}"]

    result = await maos(
        "-o", "json", "task", "list", "--type", "analysis", "--status", "completed", "--since", "1h"
    )
    assert [t["name"] for t in json.loads(result.stdout)["tasks"]] == [f"tasks/{high}"]

    result = await maos("-o", "json", "task", "list", "--status", "FAILED")
    assert json.loads(result.stdout)["tasks"] == []

    result = await maos("-o", "json", "task", "list", "--limit", "1")
    assert [t["name"] for t in json.loads(result.stdout)["tasks"]] == [f"tasks/{low}"]  # newest first

    result = await maos("-o", "json", "task", "list", "--limit", "1", "--all")
    assert len(json.loads(result.stdout)["tasks"]) == 2

    result = await maos("task", "list", "--since", "2999-01-01T00:00")
    assert result.exit_code == 0 and "No tasks." in result.stdout

    result = await maos("task", "list", "--since", "yesterday-ish")
    assert result.exit_code == EXIT_USAGE


async def test_show_with_execution_plan(maos: Maos) -> None:
    task_id = await submit(maos, "Research the market. Then write a report.")
    assert (await maos("task", "wait", task_id, "--timeout", "30")).exit_code == 0

    result = await maos("task", "show", task_id)
    assert result.exit_code == 0, result.output
    for text in ("Status:", "COMPLETED", "Progress:", "100%", "Subtasks:"):
        assert text in result.stdout
    assert "Execution plan" not in result.stdout

    result = await maos("task", "show", task_id, "--execution-plan")
    assert "Execution plan:" in result.stdout and "Planner:" in result.stdout

    data = json.loads((await maos("-o", "json", "task", "show", task_id, "--execution-plan")).stdout)
    assert data["plan"]["subtasks"] and data["subtasks"]
    assert "plan" not in json.loads((await maos("-o", "json", "task", "show", task_id)).stdout)


async def test_cancel_of_a_finished_task_is_failed_precondition(maos: Maos) -> None:
    task_id = await submit(maos, "finish quickly")
    assert (await maos("task", "wait", task_id, "--timeout", "30")).exit_code == 0
    result = await maos("task", "cancel", task_id, "--reason", "too late")
    assert result.exit_code == EXIT_FAILED_PRECONDITION
    assert result.stdout == ""
    assert "already COMPLETED" in result.stderr and result.stderr.startswith("Error:")


async def test_show_of_an_unknown_task_is_not_found(maos: Maos) -> None:
    result = await maos("task", "show", "t0000000000000000dead")
    assert result.exit_code == EXIT_NOT_FOUND
    assert result.stdout == ""
    assert "does not exist" in result.stderr


async def test_invalid_priority_is_a_usage_error(maos: Maos) -> None:
    result = await maos("task", "submit", "x", "--priority", "urgent")
    assert result.exit_code == EXIT_USAGE
    assert "urgent" in result.stderr
    result = await maos("task", "submit", "x", "--priority", "medium")  # MEDIUM means NORMAL
    assert result.exit_code == 0, result.output


async def test_invalid_max_agents_is_invalid_argument_naming_the_field(maos: Maos) -> None:
    result = await maos("task", "submit", "x", "--max-agents", "10001")
    assert result.exit_code == EXIT_INVALID_ARGUMENT
    assert "max_agents" in result.stderr and result.stdout == ""


async def test_depends_on_repeatable_and_comma_separated(maos: Maos) -> None:
    first, second, third = [await submit(maos, f"step {i}") for i in range(3)]
    task_id = await submit(maos, "join", "--depends-on", f"{first},tasks/{second}", "--depends-on", third)
    task = json.loads((await maos("-o", "json", "task", "show", task_id)).stdout)["task"]
    assert task["depends_on"] == [f"tasks/{first}", f"tasks/{second}", f"tasks/{third}"]

    result = await maos("task", "submit", "orphan", "--depends-on", "t0000000000000000dead")
    assert result.exit_code == EXIT_NOT_FOUND and "does not exist" in result.stderr


async def test_update_cancel_wait_retry_of_an_unfinished_task(maos: Maos) -> None:
    # No sleep agent is connected, so this task stays queued.
    task_id = await submit(
        maos, "waits for a sleep agent", "--agent-type", "sleep", "--request-id", str(uuid.uuid4())
    )
    result = await maos("task", "wait", task_id, "--timeout", "0.3")
    assert result.exit_code == EXIT_TIMEOUT and "did not finish" in result.stderr

    result = await maos(
        "-o", "json", "task", "update", task_id, "--priority", "critical", "--max-agents", "2"
    )
    assert result.exit_code == 0, result.output
    updated = json.loads(result.stdout)
    assert updated["priority"] == "CRITICAL" and updated["max_agents"] == 2
    assert (await maos("task", "update", task_id)).exit_code == EXIT_USAGE

    result = await maos("task", "update", task_id, "--max-agents", "10001")
    assert result.exit_code == EXIT_INVALID_ARGUMENT and "max_agents" in result.stderr

    result = await maos("task", "results", task_id)
    assert result.exit_code == EXIT_FAILED_PRECONDITION

    result = await maos("task", "cancel", task_id, "--reason", "no sleep agent")
    assert result.exit_code == 0, result.output
    assert "CANCELLED" in result.stdout

    result = await maos("task", "wait", task_id, "--timeout", "10")
    assert result.exit_code == EXIT_TASK_FAILED and "CANCELLED" in result.stderr

    result = await maos("task", "retry", task_id)
    assert result.exit_code == 0, result.output
    assert (await maos("task", "cancel", task_id)).exit_code == 0


async def test_analyze_a_draft_and_an_existing_task(maos: Maos) -> None:
    result = await maos(
        "task", "analyze", "Build an API. Write its tests.", "--recommend-agents", "--max-agents", "3"
    )
    assert result.exit_code == 0, result.output
    assert "Recommended agents:" in result.stdout and "echo" in result.stdout

    task_id = await submit(maos, "Plan me")
    data = json.loads((await maos("-o", "json", "task", "analyze", task_id)).stdout)
    assert data["subtasks"] and data["planner"]


async def test_failed_task_exits_non_zero(maos: Maos) -> None:
    result = await maos(
        "task",
        "submit",
        "fail please",
        "--metadata",
        "echo_fail=permanent",
        "--max-retries",
        "0",
        "--wait",
        "--wait-timeout",
        "30",
    )
    assert result.exit_code == EXIT_TASK_FAILED, result.output
    assert "FAILED" in result.stderr
