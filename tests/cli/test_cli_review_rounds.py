"""`maos task submit --review-rounds N` on an offline pool (a real echo agent process): the loop ends.

The echo agent approves a review step without judging (round 1 ends the loop); with metadata
echo_review=changes it asks for a change every time, so the loop runs its N rounds and the last
revision is the answer. `maos task show` lists each round's verdict; a bad N changes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest

from agent_sdk.client import Client, build_task
from agent_sdk.errors import MaosRpcError
from controlplane.app import App
from maos_cli._errors import EXIT_USAGE
from tests.cli.conftest import Maos
from tests.harness.server import wait_for_agents

DESCRIPTION = "Compare:\n- PostgreSQL\n- SQLite"


@pytest.fixture
async def offline(control_plane: App, agent_processes, maos_home: Path) -> Maos:
    """The CLI against a control plane whose only agent is a real echo agent process."""
    agent_processes(control_plane.address, "echo")
    await wait_for_agents(control_plane, 1)
    return Maos(control_plane.address, maos_home)


async def test_an_echo_reviewer_approves_in_round_one(offline: Maos) -> None:
    result = await offline(
        "task", "submit", DESCRIPTION, "--review-rounds", "3", "--wait", "--wait-timeout", "30"
    )
    assert result.exit_code == 0, result.output
    assert "APPROVED in round 1 of at most 3" in result.stdout
    task_id = json.loads((await offline("task", "list", "-o", "json")).stdout)["tasks"][0]["name"].split("/")[
        1
    ]
    planned = await offline("task", "show", task_id, "--execution-plan")
    assert "Then up to 3 review round(s)" in planned.stdout
    shown = await offline("task", "show", task_id)
    assert "Review rounds:  3" in shown.stdout or "Review rounds: 3" in shown.stdout, shown.stdout
    assert "Outcome:  APPROVED" in shown.stdout or "Outcome: APPROVED" in shown.stdout, shown.stdout
    assert "1 of at most 3" in shown.stdout and "approved" in shown.stdout
    assert "echo approves without judging" in shown.stdout
    data = json.loads((await offline("task", "show", task_id, "-o", "json")).stdout)
    kinds = [(s["name"].rsplit("/", 1)[1], s["kind"]) for s in data["subtasks"]]
    assert kinds[-1] == ("review-1", "REVIEW") and not any(k == "REVISION" for _, k in kinds)
    results = json.loads((await offline("task", "results", task_id, "-o", "json")).stdout)
    assert results["review"]["outcome"] == "APPROVED"
    assert "PostgreSQL" in results["output"] and "SQLite" in results["output"]  # the synthesis, unchanged


async def test_rounds_that_keep_asking_for_changes_stop_after_n(offline: Maos) -> None:
    result = await offline(
        "task",
        "submit",
        "Name a database",
        "--review-rounds",
        "2",
        "--metadata",
        "echo_review=changes",
        "--wait",
        "--wait-timeout",
        "30",
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    task_id = done["task_id"]
    assert any("after 2 round(s)" in w for w in done["warnings"])
    review = done["result"]["review"]
    assert review["outcome"] == "EXHAUSTED" and review["max_rounds"] == 2
    assert [
        (r["round"], r["verdict"].get("approved", False), r["revision_subtask"].rsplit("/", 1)[1])
        for r in review["rounds"]
    ] == [(1, False, "revision-1"), (2, False, "revision-2")]
    assert all("echo_review=changes" in r["verdict"]["changes"][0] for r in review["rounds"])
    shown = await offline("task", "show", task_id)
    assert "EXHAUSTED" in shown.stdout and "changes requested" in shown.stdout
    assert "Round 2 changes:" in shown.stdout and "echo_review=changes" in shown.stdout
    steps = [
        s["name"].rsplit("/", 1)[1]
        for s in json.loads((await offline("task", "show", task_id, "-o", "json")).stdout)["subtasks"]
    ]
    assert steps == ["s0", "review-1", "revision-1", "review-2", "revision-2"]
    # The revision saw the answer under review (echo returns its inputs): the answer is the task's one step.
    assert done["result"]["output"] == "Name a database"
    report = await offline("task", "export", task_id)
    assert "## Review" in report.stdout and "EXHAUSTED in round 2 of at most 2" in report.stdout
    assert "| 2 | changes requested | echo was asked to request a change" in report.stdout


async def test_a_bad_number_of_rounds_is_refused_and_nothing_is_stored(
    offline: Maos, control_plane: App
) -> None:
    before = len(control_plane.engine.tasks)
    refused = await offline("task", "submit", "x", "--review-rounds", "6")
    assert refused.exit_code == EXIT_USAGE and "--review-rounds" in refused.output
    async with Client(control_plane.address) as client:
        with pytest.raises(MaosRpcError) as info:
            await client.submit_task(build_task("x", review_rounds=6))
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "task.review_rounds" in str(info.value) and "between 0" in str(info.value)
    assert len(control_plane.engine.tasks) == before


async def test_a_consensus_winner_is_reviewed_and_revised(
    control_plane: App, agent_processes, maos_home: Path
) -> None:
    for _ in range(3):  # consensus needs three distinct agents
        agent_processes(control_plane.address, "echo")
    await wait_for_agents(control_plane, 3)
    maos = Maos(control_plane.address, maos_home)
    result = await maos(
        "task",
        "submit",
        "Pick a queue",
        "--require-consensus",
        "--review-rounds",
        "1",
        "--metadata",
        "echo_review=changes",
        "--wait",
        "--wait-timeout",
        "30",
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)["result"]
    assert done["consensus"]["outcome"] == "REACHED" and done["review"]["outcome"] == "EXHAUSTED"
    winner = done["consensus"]["winning_candidate_id"]
    steps = {s["name"].rsplit("/", 1)[1]: s for s in done["subtasks"]}
    assert set(steps) == {"s0-c0", "s0-c1", "s0-c2", "review-1", "revision-1"}
    assert steps["review-1"]["depends_on"] == [winner]
    assert done["output"] == steps["revision-1"]["output"] == "Pick a queue"


async def test_a_reviewer_that_gives_no_verdict_ends_the_loop_with_a_note(
    control_plane: App, agent_processes, maos_home: Path
) -> None:
    agent_processes(control_plane.address, "noop")  # answers "ok" to everything, a review included
    await wait_for_agents(control_plane, 1)
    maos = Maos(control_plane.address, maos_home)
    result = await maos(
        "task", "submit", "Anything", "--review-rounds", "5", "--wait", "--wait-timeout", "30", "-o", "json"
    )
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    (only,) = done["result"]["review"]["rounds"]
    assert done["result"]["review"]["outcome"] == "APPROVED" and "held no verdict" in only["note"]
    assert any("review round 1: the reviewer's output held no verdict" in w for w in done["warnings"])
