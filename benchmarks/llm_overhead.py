"""MAOS's own time on the critical path of a Claude-planned task, above the model calls.

Workload: one control plane process (SQLite, access control on) with a Claude pool of
researcher, coder, analyst, tester and coordinator (one agent each), all talking to the
project's Messages API test server, which answers every call after ``--model-latency``
(200 ms by default). Each task is planned by the model into 4 parallel parts (one per
type) plus a synthesis on the coordinator, so its critical path holds 3 model calls: the
plan, one part (the four run at once), the synthesis. Tasks run one after another; the
clock runs from SubmitTask to the task's COMPLETED.

Prints the wall time per task and the overhead = wall time - 3 x model latency.

    python benchmarks/llm_overhead.py [--tasks 10] [--model-latency 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk import Client  # noqa: E402
from agent_sdk.proto.maos.v1 import enums_pb2 as enums  # noqa: E402
from benchmarks._common import control_plane  # noqa: E402
from tests.harness.messages_api import MessageReply, MessagesAPIServer  # noqa: E402
from tests.harness.planning_api import model_like  # noqa: E402

POOL = "researcher=1,coder=1,analyst=1,tester=1,coordinator=1"
PARTS = 4
CALLS_ON_THE_CRITICAL_PATH = 3  # plan, one part, synthesis
API_KEY = "sk-ant-benchmark"


def slow(latency: float) -> Any:
    """The test server's model-like answers (plans over the offered types), each after ``latency``."""
    answer = model_like(parts=PARTS)

    def respond(request: dict[str, Any]) -> Any:
        reply = answer(request)
        return replace(reply, delay=latency) if isinstance(reply, MessageReply) else reply

    return respond


async def run(tasks: int, latency: float) -> None:
    api = MessagesAPIServer(api_key=API_KEY, responder=slow(latency)).start()
    env = {"ANTHROPIC_API_KEY": API_KEY, "MAOS_CLAUDE_BASE_URL": api.base_url}
    try:
        async with (
            control_plane(POOL, extra_env=env, agents=5) as bench,
            Client(bench.address, token=bench.token) as client,
        ):
            walls = []
            for index in range(tasks + 1):  # the first warms every agent's connection to the API
                started = time.perf_counter()
                task = await client.submit_task(description=f"Compare four approaches, run {index}")
                final = await client.wait_task(task.name, timeout=60)
                wall = time.perf_counter() - started
                if final.status != enums.TASK_STATUS_COMPLETED:
                    raise RuntimeError(f"task {task.name} ended {enums.TaskStatus.Name(final.status)}")
                shown = await client.get_task(task.name, full=True)
                if len(shown.plan.subtasks) != PARTS + 1:
                    raise RuntimeError(
                        f"expected a plan of {PARTS} parts and a synthesis, got "
                        f"{len(shown.plan.subtasks)} steps ({shown.plan.planner})"
                    )
                if index:
                    walls.append(wall)
    finally:
        api.stop()
    model = CALLS_ON_THE_CRITICAL_PATH * latency
    overheads = sorted((w - model) * 1000 for w in walls)
    print(
        f"workload: {tasks} tasks one after another, each planned by the model into {PARTS} parallel parts "
        f"plus a synthesis; 5 Claude agents ({POOL}); the Messages API test server answers every call after "
        f"{latency * 1000:.0f} ms; sqlite, access control on; 1 warm-up task"
    )
    print(
        f"wall time per task: median {statistics.median(walls) * 1000:.0f} ms  "
        f"min {min(walls) * 1000:.0f} ms  max {max(walls) * 1000:.0f} ms  "
        f"(model calls on the critical path: {model * 1000:.0f} ms)"
    )
    print(
        f"MAOS overhead per task: median {statistics.median(overheads):.0f} ms  min {overheads[0]:.0f} ms  "
        f"max {overheads[-1]:.0f} ms  (goal: under 100 ms)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=10, help="tasks measured (after one warm-up)")
    parser.add_argument(
        "--model-latency", type=float, default=0.2, help="seconds the test server takes per call"
    )
    args = parser.parse_args()
    asyncio.run(run(args.tasks, args.model_latency))


if __name__ == "__main__":
    main()
