"""``maos-agent run``'s own log: what the agent does, not the start-up notes of libraries it loads."""

from __future__ import annotations

import socket
import subprocess
import sys
import time


def test_an_agents_log_has_no_start_up_notes_of_the_storage_libraries() -> None:
    with socket.socket() as s:  # a port nobody listens on: the agent logs its failed stream
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent_sdk.runner", "run", "--type", "echo", "--server", address],
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert agent.stderr is not None
        deadline = time.monotonic() + 60
        while not any(f"stream to {address} ended" in line for line in lines):
            assert time.monotonic() < deadline, "".join(lines)
            line = agent.stderr.readline()
            assert line, "the agent exited:\n" + "".join(lines)
            lines.append(line)
    finally:
        agent.kill()
        agent.wait()
    assert not [line for line in lines if "alembic" in line], "".join(lines)
