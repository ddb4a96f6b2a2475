"""Queue depth: what queued and finished tasks cost a control plane that only holds them.

Workload: a control plane process with no agents (SQLite, or ``--database-url``)
first gets ``--completed`` COMPLETED tasks written straight into its database
before it starts (as if it had run them), then ``--queued`` no-op tasks submitted
with BatchSubmitTasks (100 per call, 8 calls in flight); with no agent to take
them they all stay QUEUED. Prints:

* the control plane's resident memory before and after the submit, per queued task;
* its idle CPU (% of one core) over ``--idle`` seconds with that queue;
* GetStatus latency (p50/max of 20 calls, client side, so a bare call's cost is in it);
* with ``--dispatch N``: two ``noop`` agents are spawned once the queue is full, and the control
  plane's CPU per task is measured over the first N tasks they complete (compare a deep queue with a
  shallow one: ``--queued 1000000 --dispatch 100000`` against ``--queued 1000 --dispatch 1000``),
  with the memory left after;
* the same after every queued task is cancelled (``--drain``), with the memory left;
* the grpc baseline of the same run (a bare grpc.aio unary call).

Beyond ``scheduler.queue_window`` (``--queue-window``; 0 keeps every queued task in memory, as
before the window existed) queued tasks wait in the database only.

    python benchmarks/queue_depth.py --queued 100000 --drain
    python benchmarks/queue_depth.py --queued 1000000 --dispatch 100000
    python benchmarks/queue_depth.py --queued 0 --completed 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb  # noqa: E402
from agent_sdk.proto.maos.v1 import agent_service_pb2_grpc as agents_grpc  # noqa: E402
from agent_sdk.proto.maos.v1 import messages_pb2 as m  # noqa: E402
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb  # noqa: E402
from agent_sdk.proto.maos.v1 import system_service_pb2_grpc as system_grpc  # noqa: E402
from agent_sdk.proto.maos.v1 import task_service_pb2 as t  # noqa: E402
from benchmarks._common import control_plane, cpu_seconds, percentile, tasks_stub  # noqa: E402
from benchmarks.grpc_baseline import describe_baseline, measure  # noqa: E402

BATCH, INFLIGHT = 100, 8


def rss_mib(pid: int) -> float:
    """Resident memory of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def fill_completed(count: int):
    """A ``prepare`` step writing ``count`` COMPLETED tasks into the control plane's database."""

    def prepare(env: dict[str, str]) -> None:
        import os

        from controlplane.config import load_settings
        from controlplane.domain.model import Task, TaskStatus, now
        from controlplane.storage.sql.backend import create_sql_engine
        from controlplane.storage.sql.codec import task_to_row

        saved = dict(os.environ)
        os.environ.update(env)
        try:
            url = load_settings().database_url
        finally:
            os.environ.clear()
            os.environ.update(saved)
        stamp = now()
        template = task_to_row(
            Task(
                id="x",
                description="no-op",
                task_type="noop",
                status=TaskStatus.COMPLETED,
                create_time=stamp,
                end_time=stamp,
                output="done",
            )
        )
        columns = list(template)
        engine = create_sql_engine(url)
        mark = "%s" if engine.dialect.name == "postgresql" else "?"
        sql = f"INSERT INTO tasks ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"
        with engine.begin() as conn:
            cursor = conn.connection.dbapi_connection.cursor()
            for start in range(0, count, 50_000):
                rows = []
                for i in range(start, min(count, start + 50_000)):
                    row = dict(template, id=f"done{i:09d}", seq=-(i + 1))
                    rows.append(tuple(row[c] for c in columns))
                cursor.executemany(sql, rows)
        engine.dispose()

    return prepare


async def status_latency(system, md, calls: int = 20) -> tuple[float, float, system_pb.GetStatusResponse]:
    samples, reply = [], None
    for _ in range(calls):
        started = time.perf_counter()
        reply = await system.GetStatus(system_pb.GetStatusRequest(), metadata=md, timeout=60)
        samples.append((time.perf_counter() - started) * 1000)
    return percentile(samples, 50), max(samples), reply


def loop_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) so far of a process's main thread: the control plane's event loop."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle_cpu(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)["control plane"]
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid)["control plane"] - before) / seconds * 100


async def completed_count(system, md) -> int:
    reply = await system.GetStatus(system_pb.GetStatusRequest(), metadata=md, timeout=60)
    return next((c.count for c in reply.tasks if c.state == "COMPLETED"), 0)


async def dispatch_cost(bench, system, md, tasks: int, already: int) -> str:
    """Spawn two noop agents; measure the control plane's CPU per task from their first completed task
    (agents started and connected) to ``tasks`` completed."""
    agents = agents_grpc.AgentServiceStub(bench.channel)
    await agents.SpawnAgents(
        agents_pb.SpawnAgentsRequest(agent_type="noop", count=2), metadata=md, timeout=60
    )
    while True:  # (polled often: a shallow queue drains in a fraction of a second)
        first = await completed_count(system, md) - already
        if first:
            break
        await asyncio.sleep(0.01)
    before, loop_before = cpu_seconds(bench.pid)["control plane"], loop_cpu_seconds(bench.pid)
    started = time.perf_counter()
    while True:
        done = await completed_count(system, md) - already
        if done >= tasks:
            break
        await asyncio.sleep(0.01 if tasks < 10_000 else 0.25)
    seconds = time.perf_counter() - started
    cpu = cpu_seconds(bench.pid)["control plane"] - before
    loop = loop_cpu_seconds(bench.pid) - loop_before
    counted = done - first
    return (
        f"dispatch: {counted} tasks completed by 2 noop agents in {seconds:.2f} s ({counted / seconds:.0f}/s, "
        f"counted from their first completion); control plane CPU {cpu * 1e6 / counted:.0f} µs per task "
        f"(its event loop thread {loop * 1e6 / counted:.0f} µs; the rest is the storage, WAL and checkpoint "
        "threads); "
        f"memory after {rss_mib(bench.pid):.0f} MiB"
    )


async def run(
    queued: int,
    completed: int,
    idle: float,
    drain: bool,
    database_url: str,
    dispatch: int,
    window: int | None,
) -> None:
    prepare = fill_completed(completed) if completed else None
    started = time.perf_counter()
    env = {} if window is None else {"MAOS_SCHEDULER_QUEUE_WINDOW": str(window)}
    async with control_plane("", database_url, extra_env=env, prepare=prepare) as bench:
        stub, system, md = (
            tasks_stub(bench.channel),
            system_grpc.SystemServiceStub(bench.channel),
            bench.metadata,
        )
        prepared = time.perf_counter() - started
        await asyncio.sleep(2)
        rss_empty = rss_mib(bench.pid)
        cpu_empty = await idle_cpu(bench.pid, idle)
        empty_p50, empty_max, _ = await status_latency(system, md)
        request = t.SubmitTaskRequest(task=m.Task(description="no-op", task_type="noop"))
        left, names = queued, []

        async def submitter() -> None:
            nonlocal left
            while left > 0:
                n = min(BATCH, left)
                left -= n
                reply = await stub.BatchSubmitTasks(
                    t.BatchSubmitTasksRequest(requests=[request] * n), metadata=md, timeout=120
                )
                names.extend(task.name for task in reply.tasks)

        submit_started = time.perf_counter()
        await asyncio.gather(*(submitter() for _ in range(INFLIGHT)))
        submit_s = time.perf_counter() - submit_started
        await asyncio.sleep(2)
        rss_full = rss_mib(bench.pid)
        cpu_full = await idle_cpu(bench.pid, idle)
        full_p50, full_max, reply = await status_latency(system, md)
        counts = {c.state: c.count for c in reply.tasks}
        print(
            f"workload: {completed} COMPLETED tasks in the database, then {queued} no-op tasks submitted "
            f"(BatchSubmitTasks of {BATCH}, {INFLIGHT} in flight) to a control plane with no agents, "
            f"{'postgresql' if database_url else 'sqlite'}"
            + ("" if window is None else f", scheduler.queue_window {window}")
        )
        if completed:
            print(f"  (database filled and server started in {prepared:.1f} s)")
        if queued:
            print(f"submit: {submit_s:.1f} s ({queued / submit_s:.0f} tasks/s); GetStatus sees {counts}")
        print(
            f"memory: {rss_empty:.0f} MiB empty -> {rss_full:.0f} MiB with {queued} queued"
            + (
                f" ({(rss_full - rss_empty) * 1024 * 1024 / queued:.0f} bytes per queued task)"
                if queued
                else ""
            )
        )
        print(f"idle CPU: {cpu_empty:.1f} % of a core empty, {cpu_full:.1f} % with {queued} queued")
        print(
            f"GetStatus: p50 {empty_p50:.2f} ms (max {empty_max:.2f}) empty; "
            f"p50 {full_p50:.2f} ms (max {full_max:.2f}) with {queued} queued, {completed} completed"
        )
        if dispatch and queued:
            print(await dispatch_cost(bench, system, md, min(dispatch, queued), completed))
        if drain and names and not dispatch:
            drain_started = time.perf_counter()
            sem = asyncio.Semaphore(64)

            async def cancel(name: str) -> None:
                async with sem:
                    await stub.CancelTask(t.CancelTaskRequest(name=name), metadata=md, timeout=60)

            await asyncio.gather(*(cancel(n) for n in names))
            drain_s = time.perf_counter() - drain_started
            await asyncio.sleep(3)
            drained_p50, _, _ = await status_latency(system, md)
            print(
                f"after cancelling all {queued} ({drain_s:.1f} s): memory {rss_mib(bench.pid):.0f} MiB, "
                f"idle CPU {await idle_cpu(bench.pid, idle):.1f} %, GetStatus p50 {drained_p50:.2f} ms"
            )
    print(describe_baseline(await measure(2000, 64)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--completed", type=int, default=0)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds over which idle CPU is measured")
    parser.add_argument("--drain", action="store_true", help="cancel every queued task afterwards")
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--dispatch",
        type=int,
        default=0,
        help="then spawn 2 noop agents and measure CPU over this many tasks",
    )
    parser.add_argument("--queue-window", type=int, default=None, help="scheduler.queue_window of the server")
    args = parser.parse_args()
    asyncio.run(
        run(
            args.queued,
            args.completed,
            args.idle,
            args.drain,
            args.database_url,
            args.dispatch,
            args.queue_window,
        )
    )


if __name__ == "__main__":
    main()
