"""Round trip: submit -> result of one no-op task at a time, sequentially.

Workload: one client submits a no-op task (one subtask), then waits for its
result with WatchTask, ``--tasks`` times in a row (after ``--warmup``
untimed round trips), against a control plane process with 2 ``noop``
agent processes. Every round trip includes both durable commits (the
accepted task and its result). Prints p50/p99 in milliseconds.

    python benchmarks/roundtrip.py [--tasks 2000] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk.proto.maos.v1 import enums_pb2 as enums  # noqa: E402
from agent_sdk.proto.maos.v1 import messages_pb2 as m  # noqa: E402
from agent_sdk.proto.maos.v1 import task_service_pb2 as t  # noqa: E402
from benchmarks._common import control_plane, describe, tasks_stub  # noqa: E402


async def run(tasks: int, warmup: int, database_url: str) -> None:
    async with control_plane("noop=2", database_url, agents=2) as (_, channel):
        stub = tasks_stub(channel)
        request = t.SubmitTaskRequest(task=m.Task(description="no-op", task_type="noop"))
        samples = []
        for index in range(warmup + tasks):
            started = time.perf_counter()
            reply = await stub.SubmitTask(request, timeout=10)
            final = None
            async for update in stub.WatchTask(t.WatchTaskRequest(name=reply.task.name), timeout=10):
                final = update.task
            elapsed = (time.perf_counter() - started) * 1000
            if final is None or final.status != enums.TASK_STATUS_COMPLETED:
                raise RuntimeError(f"task did not complete: {final}")
            if index >= warmup:
                samples.append(elapsed)
    backend = "postgresql" if database_url else "sqlite"
    print(f"workload: {tasks} sequential round trips (SubmitTask + WatchTask to COMPLETED), "
          f"no-op task, 2 noop agent processes, {backend}, {warmup} warm-up")
    print(f"round trip: {describe(samples)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    asyncio.run(run(args.tasks, args.warmup, args.database_url))


if __name__ == "__main__":
    main()
