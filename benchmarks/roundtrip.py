"""Round trip: submit -> result of one no-op task at a time, sequentially.

Workload: one client submits a no-op task (one subtask) and waits until it
is COMPLETED, ``--tasks`` times in a row (after ``--warmup`` untimed round
trips), against a control plane process with 2 ``noop`` agent processes.
Every round trip includes both durable commits (the accepted task and its
result). Waiting is either a WatchTask call per task (``--wait watch``) or one
WatchEvents stream opened once (``--wait events``, how a client waiting for
many tasks would do it). Prints p50/p99 in milliseconds, and the CPU each
process spent per round trip.

    python benchmarks/roundtrip.py [--tasks 2000] [--wait events|watch] [--database-url postgresql://...]
        [--synchronous-commit off] [--request-ids]

``--request-ids`` gives each SubmitTask a fresh ``request_id`` (as the SDK and CLI do): its
record is inserted in the commit of its task, where the database decides between calls of one
id. ``--synchronous-commit off`` runs PostgreSQL with ``database.synchronous_commit: false``
(commits acknowledged before the server flushes its WAL; see the README).
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
from benchmarks._common import control_plane, cpu_report, cpu_seconds, describe, status_events, tasks_stub  # noqa: E402


async def run(
    tasks: int, warmup: int, database_url: str, wait: str, synchronous_commit: str, request_ids: bool = False
) -> None:
    env = {"MAOS_DATABASE_SYNCHRONOUS_COMMIT": synchronous_commit}
    async with control_plane("noop=2", database_url, env, agents=2) as bench:
        stub, md = tasks_stub(bench.channel), bench.metadata
        events = status_events(bench)
        request = t.SubmitTaskRequest(task=m.Task(description="no-op", task_type="noop"))
        samples = []
        for index in range(warmup + tasks):
            if index == warmup:
                cpu_before, client_before = cpu_seconds(bench.pid), time.process_time()
            if request_ids:
                request.request_id = f"roundtrip-{index}-{time.time_ns()}"
            started = time.perf_counter()
            reply = await stub.SubmitTask(request, metadata=md, timeout=10)
            if wait == "events":
                while True:
                    event = (await asyncio.wait_for(events.read(), 10)).event
                    finished = ("TASK_STATUS_COMPLETED", "TASK_STATUS_FAILED", "TASK_STATUS_CANCELLED")
                    if event.task == reply.task.name and event.to_status in finished:
                        status = event.to_status.removeprefix("TASK_STATUS_")
                        break
            else:
                final = None
                async for update in stub.WatchTask(
                    t.WatchTaskRequest(name=reply.task.name), metadata=md, timeout=10
                ):
                    final = update.task
                status = enums.TaskStatus.Name(final.status).removeprefix("TASK_STATUS_") if final else "?"
            elapsed = (time.perf_counter() - started) * 1000
            if status != "COMPLETED":
                raise RuntimeError(f"task did not complete: {status}")
            if index >= warmup:
                samples.append(elapsed)
        cpu = cpu_report(
            cpu_before, cpu_seconds(bench.pid), time.process_time() - client_before, tasks, "round trip"
        )
        events.cancel()
    backend = f"postgresql (synchronous_commit {synchronous_commit})" if database_url else "sqlite"
    how = "one WatchEvents stream" if wait == "events" else "a WatchTask call per task"
    print(
        f"workload: {tasks} sequential round trips (SubmitTask, then {how} to COMPLETED), "
        f"no-op task, 2 noop agent processes, {backend}, {warmup} warm-up"
        + (", a request_id per submit" if request_ids else "")
    )
    print(f"round trip: {describe(samples)}")
    print(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--wait", choices=["events", "watch"], default="events")
    parser.add_argument("--synchronous-commit", choices=["on", "off"], default="on")
    parser.add_argument("--request-ids", action="store_true", help="a fresh request_id on each submit")
    args = parser.parse_args()
    asyncio.run(
        run(args.tasks, args.warmup, args.database_url, args.wait, args.synchronous_commit, args.request_ids)
    )


if __name__ == "__main__":
    main()
