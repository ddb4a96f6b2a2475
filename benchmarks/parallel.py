"""Parallel efficiency: 64 subtasks of 100 ms on 8 agents.

Workload: 8 ``sleep`` agent processes (one assignment at a time each); one
BatchSubmitTasks call submits 64 tasks whose single subtask sleeps 100 ms.
The clock runs from the submit to the moment all 64 are COMPLETED (seen
through GetStatus). The ideal is 8 rounds x 100 ms = 0.80 s.

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
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb  # noqa: E402
from agent_sdk.proto.maos.v1 import system_service_pb2_grpc as system_grpc  # noqa: E402
from agent_sdk.proto.maos.v1 import task_service_pb2 as t  # noqa: E402
from benchmarks._common import control_plane, tasks_stub  # noqa: E402


async def one_run(stub, system, md, done_before: int) -> float:
    task = m.Task(description="sleep 100 ms", task_type="sleep",
                  metadata={"sleep_seconds": "0.1", "sleep_steps": "1"})
    requests = [t.SubmitTaskRequest(task=task) for _ in range(64)]
    started = time.perf_counter()
    await stub.BatchSubmitTasks(t.BatchSubmitTasksRequest(requests=requests), metadata=md, timeout=10)
    while True:
        status = await system.GetStatus(system_pb.GetStatusRequest(), metadata=md, timeout=5)
        done = {c.state: c.count for c in status.tasks}.get("COMPLETED", 0)
        if done >= done_before + 64:
            return time.perf_counter() - started
        await asyncio.sleep(0.002)


async def run(runs: int) -> None:
    async with control_plane("sleep=8", agents=8) as bench:
        stub, system = tasks_stub(bench.channel), system_grpc.SystemServiceStub(bench.channel)
        await one_run(stub, system, bench.metadata, 0)  # warm-up
        times = [await one_run(stub, system, bench.metadata, 64 * (i + 1)) for i in range(runs)]
    print("workload: 64 tasks x one 100 ms sleep subtask, 8 sleep agent processes (1 slot each), "
          f"1 BatchSubmitTasks call; {runs} runs after 1 warm-up")
    print(f"makespan: best {min(times):.3f} s  median {statistics.median(times):.3f} s  "
          f"worst {max(times):.3f} s  (ideal 0.800 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(run(parser.parse_args().runs))


if __name__ == "__main__":
    main()
