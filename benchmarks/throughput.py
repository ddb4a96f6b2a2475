"""Throughput: N no-op tasks from one client on 2 agent processes, first submit to last result.

Workload: one client submits ``--tasks`` tasks (each a single no-op
subtask) against a control plane process with 2 ``noop`` agent processes,
with access control on (an admin key). The clock runs from the first submit
to the moment every task is COMPLETED in the database (polled with
GetStatus). Storage: SQLite (default) or ``--database-url``. How the client
submits (``--mode``):

* ``unary``: one SubmitTask call per task, ``--inflight`` calls at once;
* ``stream``: one task per message on a single StreamSubmitTasks stream
  (each answered like SubmitTask), ``--inflight`` unanswered at once;
* ``batch``: BatchSubmitTasks calls of ``--batch`` tasks, ``--inflight`` at once;
* ``pipelined``: ``--inflight`` concurrent ``agent_sdk.Client.submit_task`` calls on a client
  made with ``pipeline_submits=True`` (they share one StreamSubmitTasks stream).

    python benchmarks/throughput.py [--mode unary|stream|batch|pipelined] [--tasks 10000] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk.client import Client  # noqa: E402
from agent_sdk.proto.maos.v1 import messages_pb2 as m  # noqa: E402
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb  # noqa: E402
from agent_sdk.proto.maos.v1 import system_service_pb2_grpc as system_grpc  # noqa: E402
from agent_sdk.proto.maos.v1 import task_service_pb2 as t  # noqa: E402
from benchmarks._common import control_plane, cpu_report, cpu_seconds, stream_submit, tasks_stub  # noqa: E402


async def run(tasks: int, inflight: int, database_url: str, mode: str, batch: int, request_ids: bool) -> None:
    async with control_plane("noop=2", database_url, agents=2) as bench:
        stub, system = tasks_stub(bench.channel), system_grpc.SystemServiceStub(bench.channel)
        md = bench.metadata
        request = t.SubmitTaskRequest(task=m.Task(description="no-op", task_type="noop"))
        streamed = t.StreamSubmitTasksRequest(task=request.task)
        submitted = 0

        async def submitter() -> None:
            nonlocal submitted
            while submitted < tasks:
                if mode == "batch":
                    n = min(batch, tasks - submitted)
                    submitted += n
                    await stub.BatchSubmitTasks(
                        t.BatchSubmitTasksRequest(requests=[request] * n), metadata=md, timeout=30
                    )
                else:
                    submitted += 1
                    # a message of its own: grpc may serialize it after this coroutine moves on
                    one = (
                        t.SubmitTaskRequest(task=request.task, request_id=uuid.uuid4().hex)
                        if request_ids
                        else request
                    )
                    await stub.SubmitTask(one, metadata=md, timeout=30)

        async def streamer() -> None:
            await stream_submit(stub, md, streamed, tasks, inflight, timeout=120, request_ids=request_ids)

        async def pipelined_caller(client: Client) -> None:
            nonlocal submitted
            while submitted < tasks:
                submitted += 1
                await client.submit_task(request.task)

        cpu_before, client_before = cpu_seconds(bench.pid), time.process_time()
        started = time.perf_counter()
        if mode == "stream":
            await streamer()
        elif mode == "pipelined":
            async with Client(bench.address, token=bench.token, timeout=60, pipeline_submits=True) as client:
                await asyncio.gather(*(pipelined_caller(client) for _ in range(inflight)))
        else:
            await asyncio.gather(*(submitter() for _ in range(inflight)))
        submit_done = time.perf_counter()
        while True:
            status = await system.GetStatus(system_pb.GetStatusRequest(), metadata=md, timeout=10)
            done = {c.state: c.count for c in status.tasks}
            if done.get("COMPLETED", 0) >= tasks:
                break
            if done.get("FAILED", 0):
                raise RuntimeError(f"tasks failed: {done}")
            await asyncio.sleep(0.02)  # light polling: every GetStatus call costs the server too
        finished = time.perf_counter()
        cpu = cpu_report(
            cpu_before, cpu_seconds(bench.pid), time.process_time() - client_before, tasks, "task"
        )
    backend = "postgresql" if database_url else "sqlite"
    how = {
        "batch": f"BatchSubmitTasks of {batch}",
        "stream": "StreamSubmitTasks, one task per message",
        "unary": "SubmitTask",
        "pipelined": "Client(pipeline_submits=True).submit_task",
    }[mode]
    print(
        f"workload: {tasks} no-op tasks, 1 client ({how}, {inflight} calls in flight), "
        f"2 noop agent processes, {backend}"
        + (", a request_id on every request" if request_ids or mode == "pipelined" else "")
    )
    print(f"submit phase: {submit_done - started:.2f} s ({tasks / (submit_done - started):.0f} submits/s)")
    print(
        f"first submit to last result: {finished - started:.2f} s -> {tasks / (finished - started):.0f} tasks/s"
    )
    print(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--mode", choices=["unary", "stream", "batch", "pipelined"], default="unary")
    parser.add_argument(
        "--inflight", type=int, default=64, help="calls (or stream messages) unanswered at once"
    )
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--batch", type=int, default=100, help="tasks per BatchSubmitTasks call (--mode batch)"
    )
    parser.add_argument(
        "--request-ids",
        action="store_true",
        help="a fresh request_id on every unary or stream request (the SDK always sends one)",
    )
    args = parser.parse_args()
    asyncio.run(run(args.tasks, args.inflight, args.database_url, args.mode, args.batch, args.request_ids))


if __name__ == "__main__":
    main()
