"""``maos monitor``: the snapshot, and ``--follow`` as a real process printing changes as they commit."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

from maos_cli._errors import EXIT_INTERRUPTED, EXIT_NOT_FOUND
from tests.cli.conftest import Maos, stdout_lines


async def submit(maos: Maos, *args: str) -> str:
    result = await maos("task", "submit", *args)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


async def test_snapshot_lists_unfinished_tasks_with_their_reason(maos: Maos) -> None:
    done = await submit(maos, "Echo this")
    assert (await maos("task", "wait", done, "--timeout", "10")).exit_code == 0
    agent_id = json.loads((await maos("-o", "json", "agent", "list")).stdout)["agents"][0]["name"]
    assert (await maos("agent", "pause", agent_id)).exit_code == 0
    waiting = await submit(maos, "Translate the manual")

    result = await maos("monitor")
    assert result.exit_code == 0, result.output
    lines = stdout_lines(result)
    assert lines[0].startswith("Control plane:") and "sqlite" in lines[0]
    assert any(line.startswith("Agents:") and "1 connected" in line for line in lines)
    row = next(line for line in lines if line.startswith(waiting))
    assert "QUEUED" in row and "paused or draining" in row
    assert not any(line.startswith(done) for line in lines)  # finished tasks are counted, not listed

    data = json.loads((await maos("-o", "json", "monitor", "--task", done)).stdout)
    assert [t["name"] for t in data["tasks"]] == [f"tasks/{done}"]
    assert data["status"]["connected_agents"] == 1


async def test_an_unknown_task_is_not_found(maos: Maos) -> None:
    result = await maos("monitor", "--task", "t0000000000000000000000000")
    assert result.exit_code == EXIT_NOT_FOUND
    assert "does not exist" in result.stderr
    result = await maos("monitor", "--follow", "--task", "t0000000000000000000000000")
    assert result.exit_code == EXIT_NOT_FOUND


async def test_follow_prints_each_change_until_interrupted(maos: Maos) -> None:
    env = {k: v for k, v in {**os.environ, **maos.env()}.items() if v is not None}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from maos_cli.main import main; main()",
        "-o",
        "json",
        "monitor",
        "--follow",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        snapshot = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        assert snapshot["tasks"] == [] and snapshot["status"]["connected_agents"] == 1

        task_id = await submit(maos, "Echo this")  # submitted after the snapshot: every change must follow
        seen: list[tuple[str, str]] = []
        while ("TASK_STATUS_CHANGED", "COMPLETED") not in seen:
            event = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
            assert event["task"] == f"tasks/{task_id}", event
            seen.append((event["type"], event["to_status"]))
        assert seen[0] == ("TASK_SUBMITTED", "PENDING")
        assert ("SUBTASK_STATUS_CHANGED", "RUNNING") in seen and ("TASK_STATUS_CHANGED", "RUNNING") in seen

        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == EXIT_INTERRUPTED
        assert b"Traceback" not in await proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_follow_stops_after_its_duration(maos: Maos) -> None:
    result = await maos("monitor", "--follow", "--duration", "1s")
    assert result.exit_code == 0, result.output
    assert stdout_lines(result)[0].startswith("Control plane:")
