"""Fixtures of the CLI tests: a real control plane (tests.harness.server) plus an in-process echo agent.

The CLI runs through ``click.testing.CliRunner`` in a worker thread
(``asyncio.to_thread``), so the server's event loop keeps serving while a
command blocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agent_sdk.builtin import EchoAgent
from agent_sdk.worker import Worker
from controlplane.app import App
from maos_cli.main import cli

#: Variables of the developer's shell that would change what the CLI does.
_CLEARED = [
    "MAOS_TOKEN",
    "MAOS_OUTPUT",
    "MAOS_TIMEOUT",
    "MAOS_SERVER_ADDRESS",
    "MAOS_DATABASE_PRIMARY_URL",
    "NO_COLOR",
    "MAOS_TLS",
    "MAOS_TLS_CA",
    "MAOS_TLS_CERT",
    "MAOS_TLS_KEY",
    "MAOS_TLS_SERVER_NAME",
    "MAOS_CLIENT_TLS_ENABLED",
    "MAOS_CLIENT_TLS_CA_FILE",
    "MAOS_CLIENT_TLS_CERT_FILE",
    "MAOS_CLIENT_TLS_KEY_FILE",
    "MAOS_CLIENT_TLS_SERVER_NAME",
]


@dataclass
class Maos:
    """Runs ``maos`` commands against one control plane and MAOS_HOME."""

    address: str
    home: Path

    def env(self, **extra: str) -> dict[str, str | None]:
        """The environment of a command: only this server and home."""
        env: dict[str, str | None] = dict.fromkeys(_CLEARED)
        env.update({"MAOS_HOME": str(self.home), "MAOS_ADDR": self.address, "NO_COLOR": "1", **extra})
        return env

    async def __call__(self, *args: str, **env: str) -> Result:
        """``maos ARGS...`` in a thread; returns click's Result (stdout, stderr, exit_code)."""
        runner = CliRunner()
        return await asyncio.to_thread(runner.invoke, cli, list(args), env=self.env(**env), prog_name="maos")


@pytest.fixture
async def echo_agent(control_plane: App) -> AsyncIterator[Worker]:
    """A real echo agent connected to ``control_plane`` (in this process)."""
    worker = Worker(EchoAgent(), control_plane.address, max_backoff=0.5)
    runner = asyncio.get_running_loop().create_task(worker.run())
    try:
        await asyncio.wait_for(worker.registered.wait(), 15)
        yield worker
    finally:
        await worker.shutdown(grace=1.0)
        await asyncio.wait_for(runner, 15)


@pytest.fixture
async def maos(control_plane: App, echo_agent: Worker, maos_home: Path) -> Maos:
    """The CLI bound to a running control plane with one echo agent."""
    return Maos(control_plane.address, maos_home)


@pytest.fixture
def offline_maos(tmp_path: Path) -> Maos:
    """The CLI with a fresh MAOS_HOME and no server (a closed port)."""
    return Maos("127.0.0.1:1", tmp_path / "offline-home")


def stdout_lines(result: Result) -> list[str]:
    """Non-empty stdout lines."""
    return [line for line in result.stdout.splitlines() if line.strip()]
