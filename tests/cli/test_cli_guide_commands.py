"""Guide commands that behaved otherwise: --metadata as JSON, list --detailed, export, retry options,
warnings with --wait, health --continuous, recover's component names."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import datetime
from pathlib import Path

from maos_cli._errors import EXIT_INTERRUPTED, EXIT_TASK_FAILED
from tests.cli.conftest import Maos


async def submit(maos: Maos, *args: str) -> str:
    result = await maos("task", "submit", *args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


async def test_metadata_as_a_json_object(maos: Maos) -> None:
    task_id = await submit(
        maos, "Labelled", "--metadata", '{"team": "docs", "run": 3, "tags": ["a"]}', "--metadata", "owner=me"
    )
    task = json.loads((await maos("-o", "json", "task", "show", task_id)).stdout)["task"]
    assert task["metadata"] == {"team": "docs", "run": "3", "tags": '["a"]', "owner": "me"}
    bad = await maos("task", "submit", "x", "--metadata", '{"team": }')
    assert bad.exit_code == 2 and "is not a JSON object" in bad.stderr
    bad = await maos("task", "submit", "x", "--metadata", "[1, 2]")
    assert bad.exit_code == 2 and "is not KEY=VALUE" in bad.stderr


async def finished(maos: Maos, *args: str) -> str:
    """Submit a task and wait for it; its id."""
    task_id = await submit(maos, *args)
    assert (await maos("task", "wait", task_id, "--timeout", "30")).exit_code == 0
    return task_id


async def test_list_detailed(maos: Maos) -> None:
    task_id = await finished(maos, "Detailed")
    listed = await maos("task", "list", "--detailed")
    assert listed.exit_code == 0, listed.output
    header = listed.stdout.splitlines()[0].split()
    assert header == [
        "ID",
        "STATUS",
        "PRIORITY",
        "TYPE",
        "PROGRESS",
        "AGENTS",
        "CREATED",
        "RAN",
        "RETRIES",
        "REASON",
        "DESCRIPTION",
    ]
    row = next(line for line in listed.stdout.splitlines() if line.startswith(task_id))
    assert "COMPLETED" in row and "Detailed" in row


async def test_export_markdown_and_json(maos: Maos, tmp_path: Path) -> None:
    task_id = await finished(maos, "Report: 1. alpha 2. beta")
    markdown = await maos("task", "export", task_id)
    assert markdown.exit_code == 0, markdown.output
    text = markdown.stdout
    assert text.startswith(f"# Task {task_id}\n") and "## Plan" in text and "## Subtasks" in text
    assert "## Result" in text and "alpha" in text and "beta" in text
    target = tmp_path / "report.json"
    written = await maos("task", "export", task_id, "--format", "json", "--output", str(target))
    assert written.exit_code == 0 and written.stdout == "" and f"wrote {target}" in written.stderr
    data = json.loads(target.read_text())
    assert data["task"]["name"] == f"tasks/{task_id}" and data["result"]["status"] == "COMPLETED"
    assert len(data["subtasks"]) == 3
    missing = await maos("task", "export", "t0000000000000000")
    assert missing.exit_code == 3


async def test_retry_with_new_limits(maos: Maos) -> None:
    task_id = await submit(maos, "fail please", "--metadata", "echo_fail=permanent", "--max-retries", "0")
    assert (await maos("task", "wait", task_id, "--timeout", "30")).exit_code == EXIT_TASK_FAILED
    retried = await maos("-o", "json", "task", "retry", task_id, "--max-agents", "2", "--timeout", "90")
    assert retried.exit_code == 0, retried.output
    data = json.loads(retried.stdout)
    assert data["max_agents"] == 2 and data["timeout"] == "90s" and data["retries"] == 1
    bad = await maos("task", "retry", task_id, "--max-agents", "0")
    assert bad.exit_code == 2


async def test_wait_output_shows_the_plans_warnings(maos: Maos) -> None:
    result = await maos("task", "submit", "Do: 1. a 2. b 3. c", "--max-agents", "2", "--wait")
    assert result.exit_code == 0, result.output
    assert "Warnings:" in result.stdout and "3 items grouped into 2 subtasks" in result.stdout
    data = json.loads(
        (
            await maos("-o", "json", "task", "submit", "Do: 1. a 2. b 3. c", "--max-agents", "2", "--wait")
        ).stdout
    )
    assert data["warnings"] == ["3 items grouped into 2 subtasks (max_agents 2)"]


async def test_recover_takes_the_guides_component_names(maos: Maos) -> None:
    created = await maos("-o", "json", "checkpoint", "create", "--name", "guide")
    assert created.exit_code == 0, created.output
    checkpoint = json.loads(created.stdout)["name"].removeprefix("checkpoints/")
    for name in ("task_manager", "agent_pool"):
        verified = await maos("recover", "--checkpoint", checkpoint, "--verify", "--component", name)
        assert verified.exit_code == 0, verified.output
    unknown = await maos("recover", "--checkpoint", checkpoint, "--verify", "--component", "scheduler")
    assert unknown.exit_code == 4 and "task_manager and agent_pool" in unknown.stderr


async def test_health_continuous_stamps_each_check_until_interrupted(maos: Maos) -> None:
    env = {k: v for k, v in {**os.environ, **maos.env()}.items() if v is not None}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from maos_cli.main import main; main()",
        "-o",
        "json",
        "health",
        "--continuous",
        "--interval",
        "200ms",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        checks: list[dict] = []
        buffer = ""
        while len(checks) < 2:  # pretty-printed JSON documents, one per check
            buffer += (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            if buffer.startswith("}") or buffer.endswith("\n}\n"):
                checks.append(json.loads(buffer))
                buffer = ""
        stamps = [datetime.fromisoformat(c["time"]) for c in checks]
        assert stamps[0] <= stamps[1] and all(c["state"] == "HEALTHY" for c in checks)
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == EXIT_INTERRUPTED
    finally:
        if proc.returncode is None:
            proc.kill()
    table = await maos("health")
    assert table.exit_code == 0 and not table.stdout.startswith("==")  # one check: no stamp needed
