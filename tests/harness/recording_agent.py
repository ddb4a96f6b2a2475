"""An agent process that writes down every execution, so tests can count what ran where and how often.

Run as ``python -m tests.harness.recording_agent --server A,B,C --log FILE [--delay S] [--concurrency N]``.
It is a real SDK :class:`~agent_sdk.Worker` of type ``recorder`` (capabilities ``*``, offline), given
every address it may fail over to. For each assignment it appends two JSON lines to ``FILE``, each
written and flushed at once, so a SIGKILLed agent leaves every line it wrote:

* ``{"event": "start", "task": ..., "subtask": ..., "attempt": N, "epoch": E, "token": T, "t": ns}`` as it starts;
* ``{"event": "done", ..., "token": T, "t": ns}`` after ``--delay`` seconds, just before it answers.

``T`` (``<pid>-<sequence>``) names the execution and is the subtask's output, so the result a task
ends with names the one execution that was applied. ``t`` is ``CLOCK_MONOTONIC`` in nanoseconds, the
same clock in every process of the machine (benchmarks measure submit -> start with it).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from agent_sdk.agent import Agent
from agent_sdk.context import Context
from agent_sdk.types import AgentBacking
from agent_sdk.worker import Worker

AGENT_TYPE = "recorder"


class Recorder(Agent):
    """Records each execution (see the module docstring) and answers with its token."""

    agent_type = AGENT_TYPE
    capabilities = ["*"]
    backing = AgentBacking.OFFLINE

    def __init__(self, log: IO[str], delay: float, concurrency: int):
        self.log = log
        self.delay = delay
        self.max_concurrency = concurrency  # type: ignore[misc]
        self.sequence = itertools.count()
        self.pid = os.getpid()

    def write(self, event: str, ctx: Context, token: str) -> None:
        a = ctx.assignment
        line = {
            "event": event,
            "task": a.task,
            "subtask": a.subtask,
            "attempt": a.attempt,
            "epoch": a.lease_epoch,
            "token": token,
            "t": time.monotonic_ns(),
        }
        self.log.write(json.dumps(line) + "\n")
        self.log.flush()

    async def handle(self, ctx: Context) -> str:
        token = f"{self.pid}-{next(self.sequence)}"
        self.write("start", ctx, token)
        if self.delay:
            await asyncio.sleep(self.delay)
        self.write("done", ctx, token)
        return token


@dataclass(frozen=True)
class Execution:
    """One execution a recording agent started (``done_ns`` None: it never finished)."""

    task: str
    subtask: str
    attempt: int
    epoch: int
    token: str
    start_ns: int
    done_ns: int | None
    log: str  # the file it came from (which agent process)


def read_executions(paths: list[Path]) -> list[Execution]:
    """Every execution the agents writing ``paths`` started, in the order of their files."""
    found: list[Execution] = []
    for path in paths:
        if not path.exists():
            continue
        started: dict[str, dict[str, Any]] = {}
        done: dict[str, int] = {}
        for raw in path.read_text().splitlines():
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:  # the last line of a killed agent may be cut short
                continue
            if line["event"] == "start":
                started[line["token"]] = line
            else:
                done[line["token"]] = line["t"]
        found.extend(
            Execution(
                task=s["task"],
                subtask=s["subtask"],
                attempt=s["attempt"],
                epoch=s["epoch"],
                token=token,
                start_ns=s["t"],
                done_ns=done.get(token),
                log=path.name,
            )
            for token, s in started.items()
        )
    return found


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", required=True, help="host:port, several separated by commas")
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds each execution takes")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--token", default=None, help="an API key holding agent:connect")
    args = parser.parse_args()
    with args.log.open("a", buffering=1) as log:
        worker = Worker(Recorder(log, args.delay, args.concurrency), args.server, token=args.token)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: loop.create_task(worker.shutdown(5.0)))
        await worker.run()


if __name__ == "__main__":
    asyncio.run(main())
