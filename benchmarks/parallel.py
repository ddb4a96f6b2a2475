"""Parallel efficiency: 64 subtasks of 100 ms on 8 agents.

Workload: 8 ``sleep`` agent processes (one assignment at a time each); one
BatchSubmitTasks call submits 64 tasks whose single subtask sleeps 100 ms.
The clock runs from the submit to the moment all 64 are COMPLETED, as seen on
a WatchEvents stream opened beforehand. The ideal is 8 rounds x 100 ms = 0.80 s.

    python benchmarks/parallel.py [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk.proto.maos.v1 import messages_pb2 as m  # noqa: E402
from agent_sdk.proto.maos.v1 import task_service_pb2 as t  # noqa: E402
from benchmarks._common import control_plane, status_events, tasks_stub  # noqa: E402


async def one_run(stub, events, md) -> float:
    task = m.Task(
        description="sleep 100 ms", task_type="sleep", metadata={"sleep_seconds": "0.1", "sleep_steps": "1"}
    )
    requests = [t.SubmitTaskRequest(task=task) for _ in range(64)]
    started = time.perf_counter()
    reply = await stub.BatchSubmitTasks(t.BatchSubmitTasksRequest(requests=requests), metadata=md, timeout=10)
    pending = {task.name for task in reply.tasks}
    while pending:
        event = (await asyncio.wait_for(events.read(), 10)).event
        if event.to_status == "TASK_STATUS_COMPLETED":
            pending.discard(event.task)
    return time.perf_counter() - started


async def run(runs: int) -> None:
    async with control_plane("sleep=8", agents=8) as bench:
        stub, md = tasks_stub(bench.channel), bench.metadata
        events = status_events(bench)
        await one_run(stub, events, md)  # warm-up
        times = [await one_run(stub, events, md) for _ in range(runs)]
        events.cancel()
    print(
        "workload: 64 tasks x one 100 ms sleep subtask, 8 sleep agent processes (1 slot each), "
        f"1 BatchSubmitTasks call; {runs} runs after 1 warm-up"
    )
    print(
        f"makespan: best {min(times):.3f} s  median {statistics.median(times):.3f} s  "
        f"worst {max(times):.3f} s  (ideal 0.800 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(run(parser.parse_args().runs))


if __name__ == "__main__":
    main()
