"""Events across replicas: what the Redis event stream costs one control plane.

Workload: a control plane process with 2 ``noop`` agent processes and access control on; one
client watches WatchEvents (task status changes) and first submits ``--latency`` tasks one at a
time (submit answered -> its COMPLETED event seen: the latency a watcher sees), then
``--tasks`` tasks on one StreamSubmitTasks stream (``--inflight`` unanswered), timed from the
first submit to the last COMPLETED event seen. Run once without Redis (events stay in the
process) and once with ``--redis-url`` (every event goes through the stream
``<prefix>events`` and back). Storage: SQLite, or ``--database-url``.

    python benchmarks/event_stream.py [--tasks 3000] [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk.proto.maos.v1 import messages_pb2 as m  # noqa: E402
from agent_sdk.proto.maos.v1 import task_service_pb2 as t  # noqa: E402
from benchmarks._common import (  # noqa: E402
    control_plane,
    cpu_report,
    cpu_seconds,
    describe,
    status_events,
    stream_submit,
    tasks_stub,
)


async def run(
    label: str, tasks: int, latency: int, inflight: int, database_url: str, env: dict[str, str]
) -> None:
    async with control_plane("noop=2", database_url, extra_env=env, agents=2) as bench:
        stub = tasks_stub(bench.channel)
        request = t.SubmitTaskRequest(task=m.Task(description="no-op", task_type="noop"))
        events = status_events(bench)
        completed: dict[str, float] = {}
        arrived = asyncio.Condition()

        async def read() -> None:
            async for reply in events:
                if reply.event.to_status == "TASK_STATUS_COMPLETED":
                    async with arrived:
                        completed[reply.event.task] = time.perf_counter()
                        arrived.notify_all()

        reader = asyncio.create_task(read())
        try:
            waits = []
            for _ in range(latency):
                sent = time.perf_counter()
                name = (await stub.SubmitTask(request, metadata=bench.metadata, timeout=30)).task.name
                async with arrived:
                    await asyncio.wait_for(arrived.wait_for(lambda name=name: name in completed), 30)
                waits.append((completed[name] - sent) * 1000)
            cpu_before, client_before = cpu_seconds(bench.pid), time.process_time()
            started, before = time.perf_counter(), len(completed)
            streamed = t.StreamSubmitTasksRequest(task=request.task)
            await stream_submit(stub, bench.metadata, streamed, tasks, inflight, timeout=300)
            async with arrived:
                await asyncio.wait_for(arrived.wait_for(lambda: len(completed) - before >= tasks), 300)
            elapsed = time.perf_counter() - started
            cpu_after, client = cpu_seconds(bench.pid), time.process_time() - client_before
        finally:
            events.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        print(f"{label}:")
        print(f"  submit -> COMPLETED event seen, one at a time ({latency} tasks): {describe(waits)}")
        print(
            f"  {tasks} tasks streamed: {elapsed:.2f} s, {tasks / elapsed:.0f} tasks/s (to the last event seen)"
        )
        print(f"  {cpu_report(cpu_before, cpu_after, client, tasks, 'task')}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--latency", type=int, default=200)
    parser.add_argument("--inflight", type=int, default=200)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    print(
        f"workload: {args.latency} tasks one at a time, then {args.tasks} streamed ({args.inflight} in flight); "
        f"2 noop agents; storage {'PostgreSQL' if args.database_url else 'SQLite'}; load {os.getloadavg()[0]:.2f}"
    )
    await run(
        "events in the process (no Redis)", args.tasks, args.latency, args.inflight, args.database_url, {}
    )
    prefix = f"maos-bench:{uuid.uuid4()}:"
    redis_env = {"MAOS_REDIS_URL": args.redis_url, "MAOS_REDIS_KEY_PREFIX": prefix}
    try:
        await run(
            "events through the Redis stream",
            args.tasks,
            args.latency,
            args.inflight,
            args.database_url,
            redis_env,
        )
    finally:
        import redis

        client = redis.Redis.from_url(args.redis_url)
        client.delete(f"{prefix}events", f"{prefix}logs")
        client.close()
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
