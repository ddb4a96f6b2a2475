"""On a terminal, tables are drawn by rich (coloured unless NO_COLOR); piped, they are plain text."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import subprocess
import sys

from tests.cli.conftest import Maos

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def on_a_terminal(env: dict[str, str], *args: str) -> str:
    """Run ``maos ARGS`` with its stdout on a pseudo-terminal; what it printed."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", "from maos_cli.main import main; main()", *args],
            stdin=subprocess.DEVNULL,
            stdout=follower,
            stderr=follower,
            env=env,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=60)
    finally:
        os.close(leader)
    text = b"".join(chunks).decode(errors="replace")
    assert code == 0, text
    return text


async def test_tables_on_a_terminal_and_in_a_pipe(maos: Maos) -> None:
    submitted = await maos("task", "submit", "Shown in a table")
    task_id = submitted.stdout.strip()
    env = {k: v for k, v in {**os.environ, **maos.env(), "COLUMNS": "160"}.items() if v is not None}
    env.pop("NO_COLOR")
    coloured = await asyncio.to_thread(on_a_terminal, env, "task", "list")
    assert _ANSI.search(coloured)  # a terminal without NO_COLOR gets colour
    plain_drawn = await asyncio.to_thread(on_a_terminal, {**env, "NO_COLOR": "1"}, "task", "list")
    assert not _ANSI.search(plain_drawn)
    lines = plain_drawn.splitlines()
    assert "─" in plain_drawn  # rich's rule under the header
    assert any(task_id in line for line in lines)

    piped = await maos("task", "list")  # CliRunner: not a terminal
    assert "─" not in piped.stdout and not _ANSI.search(piped.stdout)
    assert piped.stdout.splitlines()[0].split()[:2] == ["ID", "STATUS"]


async def test_monitor_on_a_terminal_is_a_live_view_redrawn_in_place(maos: Maos) -> None:
    await maos("task", "submit", "Watched live: 1. a 2. b")
    env = {k: v for k, v in {**os.environ, **maos.env(), "COLUMNS": "160"}.items() if v is not None}
    shown = await asyncio.to_thread(on_a_terminal, env, "monitor", "--duration", "2500ms")
    assert "Throughput" in shown and "Agents" in shown and "Unfinished tasks" in shown
    assert shown.count("Throughput") >= 2 and "\x1b[1A" in shown  # drawn again, over the last drawing
    snapshot = await asyncio.to_thread(on_a_terminal, env, "monitor", "--once")
    assert snapshot.count("Control plane:") == 1 and "\x1b[1A" not in snapshot
    piped = await maos("monitor")  # not a terminal: one plain snapshot, as before
    assert piped.stdout.startswith("Control plane:") and "Throughput" not in piped.stdout
