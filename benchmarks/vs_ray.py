"""MAOS next to Ray: the same no-op workloads on both, taking turns in one run on this machine.

Workloads (each round runs all of them on MAOS, then on Ray; ``--rounds`` rounds):

* **one call per task**: ``--tasks`` no-op tasks, first submit to last result.
  MAOS: one SubmitTask call per task, ``--inflight`` calls at once, against a
  control plane process with 2 ``noop`` agent processes, access control on,
  SQLite (or ``--database-url``). Ray: one ``noop.remote()`` per task (Ray's
  own one-call-per-task form: the driver pipelines submissions), then
  ``ray.get`` of every result, on a local Ray started with ``num_cpus=2``.
* **stream**: the same tasks, one task per message on one StreamSubmitTasks
  stream, ``--inflight`` unanswered at once (compared with the same Ray figure).
* **pipelined client**: the same tasks as ``--inflight`` concurrent
  ``agent_sdk.Client.submit_task`` calls on a client made with
  ``pipeline_submits=True`` (they share one StreamSubmitTasks stream, each with a
  request id, as the SDK sends): the Python form closest to ``.remote()``.
* **sequential round trip**: ``--sequential`` times in a row, submit one task
  and wait for its result (MAOS: SubmitTask, then its COMPLETED event on one
  WatchEvents stream; Ray: ``ray.get(noop.remote())``); p50/p99.

Both systems stay up for the whole run (each idles while the other works). For
each MAOS figure the control plane's CPU µs per task is read from /proc
(user + system of its process); for Ray, that of its gcs_server and raylet, and
of the driver (this process, which does Ray's scheduling of ``.remote()`` calls).
The machine's grpc baseline (a bare grpc.aio unary call, benchmarks/grpc_baseline.py)
and the load average are printed in every round. Figures on a shared machine are
upper bounds.

    python benchmarks/vs_ray.py [--rounds 3] [--tasks 10000] [--sequential 1000] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk.client import Client  # noqa: E402
from agent_sdk.proto.maos.v1 import messages_pb2 as m  # noqa: E402
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb  # noqa: E402
from agent_sdk.proto.maos.v1 import system_service_pb2_grpc as system_grpc  # noqa: E402
from agent_sdk.proto.maos.v1 import task_service_pb2 as t  # noqa: E402
from benchmarks._common import (  # noqa: E402
    Bench,
    _children,
    control_plane,
    cpu_seconds,
    percentile,
    status_events,
    stream_submit,
    tasks_stub,
)
from benchmarks.grpc_baseline import describe_baseline, measure  # noqa: E402

FINISHED = ("TASK_STATUS_COMPLETED", "TASK_STATUS_FAILED", "TASK_STATUS_CANCELLED")


def load() -> str:
    """The load average, as ``uptime`` prints it."""
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


class Figures:
    """Every round's figures of one workload on one system."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])


# --- MAOS ---------------------------------------------------------------------------------------


async def wait_completed(bench: Bench, total: int) -> None:
    """Until ``total`` tasks are COMPLETED (polled lightly: every GetStatus costs the server too)."""
    system = system_grpc.SystemServiceStub(bench.channel)
    while True:
        status = await system.GetStatus(system_pb.GetStatusRequest(), metadata=bench.metadata, timeout=30)
        done = {c.state: c.count for c in status.tasks}
        if done.get("FAILED", 0):
            raise RuntimeError(f"tasks failed: {done}")
        if done.get("COMPLETED", 0) >= total:
            return
        await asyncio.sleep(0.02)


async def maos_many(
    bench: Bench, tasks: int, inflight: int, mode: str, completed_before: int
) -> tuple[float, float]:
    """Tasks/s and control-plane CPU µs per task of ``tasks`` no-op tasks, unary, streamed or pipelined."""
    stub, md = tasks_stub(bench.channel), bench.metadata
    request = t.SubmitTaskRequest(task=m.Task(description="no-op", task_type="noop"))
    streamed = t.StreamSubmitTasksRequest(task=request.task)
    left = tasks

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await stub.SubmitTask(request, metadata=md, timeout=60)

    async def streamer() -> None:
        await stream_submit(stub, md, streamed, tasks, inflight, timeout=600)

    async def pipelined_caller(client: Client) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await client.submit_task(request.task)

    before = cpu_seconds(bench.pid)["control plane"]
    started = time.perf_counter()
    if mode == "stream":
        await streamer()
    elif mode == "pipelined":
        async with Client(bench.address, token=bench.token, timeout=60, pipeline_submits=True) as client:
            await asyncio.gather(*(pipelined_caller(client) for _ in range(inflight)))
    else:
        await asyncio.gather(*(caller() for _ in range(inflight)))
    await wait_completed(bench, completed_before + tasks)
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds(bench.pid)["control plane"] - before
    return tasks / elapsed, cpu * 1e6 / tasks


async def maos_sequential(bench: Bench, count: int) -> tuple[list[float], float]:
    """Milliseconds of each sequential submit -> COMPLETED, and control-plane CPU µs per round trip."""
    stub, md = tasks_stub(bench.channel), bench.metadata
    request = t.SubmitTaskRequest(task=m.Task(description="no-op", task_type="noop"))
    events = status_events(bench)
    samples = []
    before = 0.0
    try:
        for index in range(count + 50):  # 50 untimed first
            if index == 50:
                before = cpu_seconds(bench.pid)["control plane"]
            started = time.perf_counter()
            reply = await stub.SubmitTask(request, metadata=md, timeout=10)
            while True:
                event = (await asyncio.wait_for(events.read(), 10)).event
                if event.task == reply.task.name and event.to_status in FINISHED:
                    if event.to_status != "TASK_STATUS_COMPLETED":
                        raise RuntimeError(f"task did not complete: {event.to_status}")
                    break
            if index >= 50:
                samples.append((time.perf_counter() - started) * 1000)
        cpu = cpu_seconds(bench.pid)["control plane"] - before
    finally:
        events.cancel()
    return samples, cpu * 1e6 / count


# --- Ray ----------------------------------------------------------------------------------------


def ray_system_cpu() -> float:
    """CPU seconds so far of this process's Ray gcs_server and raylet processes."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pending = _children(os.getpid())
    while pending:
        pid = pending.pop()
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            if name in ("gcs_server", "raylet"):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
            pending.extend(_children(pid))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def ray_many(ray: object, noop: object, tasks: int) -> tuple[float, float, float]:
    """Tasks/s, gcs+raylet CPU µs per task and the driver's (this process's) CPU µs per task of ``tasks`` ``noop.remote()`` calls, then ``ray.get`` of all."""
    before, driver = ray_system_cpu(), time.process_time()
    started = time.perf_counter()
    refs = [noop.remote() for _ in range(tasks)]  # type: ignore[attr-defined]
    ray.get(refs)  # type: ignore[attr-defined]
    elapsed = time.perf_counter() - started
    driver = time.process_time() - driver
    return tasks / elapsed, (ray_system_cpu() - before) * 1e6 / tasks, driver * 1e6 / tasks


def ray_sequential(ray: object, noop: object, count: int) -> tuple[list[float], float]:
    """Milliseconds of each sequential ``ray.get(noop.remote())`` and gcs+raylet CPU µs per round trip."""
    for _ in range(50):
        ray.get(noop.remote())  # type: ignore[attr-defined]
    before = ray_system_cpu()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        ray.get(noop.remote())  # type: ignore[attr-defined]
        samples.append((time.perf_counter() - started) * 1000)
    return samples, (ray_system_cpu() - before) * 1e6 / count


# --- the run ------------------------------------------------------------------------------------


def start_ray() -> tuple[object, object]:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)

    @ray.remote
    def noop() -> None:
        return None

    ray.get([noop.remote() for _ in range(500)])  # workers started and warm
    return ray, noop


def show(label: str, maos: float, ray: float, unit: str, higher_is_better: bool) -> str:
    ratio = maos / ray if ray else float("nan")
    better = "higher is better" if higher_is_better else "lower is better"
    return f"  {label}: MAOS {maos:,.2f} {unit}, Ray {ray:,.2f} {unit}, MAOS/Ray {ratio:.2f}x ({better})"


async def run(args: argparse.Namespace) -> None:
    ray, noop = start_ray()
    print(f"Ray {ray.__version__} started (num_cpus=2); {load()}")  # type: ignore[attr-defined]
    maos, peer = Figures(), Figures()
    async with control_plane("noop=2", args.database_url, agents=2) as bench:
        backend = "postgresql" if args.database_url else "sqlite"
        warm = tasks_stub(bench.channel)
        for _ in range(200):
            await warm.SubmitTask(
                t.SubmitTaskRequest(task=m.Task(description="no-op", task_type="noop")),
                metadata=bench.metadata,
            )
        completed = 200
        for round_ in range(1, args.rounds + 1):
            baseline = await measure(args.baseline_calls, args.inflight)
            print(f"round {round_}/{args.rounds} ({load()}); {describe_baseline(baseline)}")
            maos.add("baseline µs", baseline[1])
            rate, cpu = await maos_many(bench, args.tasks, args.inflight, "unary", completed)
            completed += args.tasks
            maos.add("unary tasks/s", rate)
            maos.add("unary µs", cpu)
            rate, cpu = await maos_many(bench, args.tasks, args.inflight, "stream", completed)
            completed += args.tasks
            maos.add("stream tasks/s", rate)
            maos.add("stream µs", cpu)
            rate, cpu = await maos_many(bench, args.tasks, args.inflight, "pipelined", completed)
            completed += args.tasks
            maos.add("pipelined tasks/s", rate)
            maos.add("pipelined µs", cpu)
            samples, cpu = await maos_sequential(bench, args.sequential)
            completed += args.sequential + 50
            maos.add("p50", percentile(samples, 50))
            maos.add("p99", percentile(samples, 99))
            maos.add("sequential µs", cpu)
            rate, cpu, driver = ray_many(ray, noop, args.tasks)
            peer.add("tasks/s", rate)
            peer.add("µs", cpu)
            peer.add("driver µs", driver)
            samples, cpu = ray_sequential(ray, noop, args.sequential)
            peer.add("p50", percentile(samples, 50))
            peer.add("p99", percentile(samples, 99))
            peer.add("sequential µs", cpu)
            v, p = maos.values, peer.values
            print(
                f"  MAOS unary {v['unary tasks/s'][-1]:,.0f} tasks/s ({v['unary µs'][-1]:.0f} µs CPU/task), "
                f"stream {v['stream tasks/s'][-1]:,.0f} tasks/s ({v['stream µs'][-1]:.0f} µs), "
                f"pipelined client {v['pipelined tasks/s'][-1]:,.0f} tasks/s ({v['pipelined µs'][-1]:.0f} µs), "
                f"sequential p50 {v['p50'][-1]:.2f} ms p99 {v['p99'][-1]:.2f} ms "
                f"({v['sequential µs'][-1]:.0f} µs)"
            )
            print(
                f"  Ray  .remote() {p['tasks/s'][-1]:,.0f} tasks/s ({p['µs'][-1]:.0f} µs gcs+raylet "
                f"+ {p['driver µs'][-1]:.0f} µs driver CPU/task), "
                f"sequential p50 {p['p50'][-1]:.2f} ms p99 {p['p99'][-1]:.2f} ms ({p['sequential µs'][-1]:.0f} µs)"
            )
    ray.shutdown()  # type: ignore[attr-defined]
    print(
        f"\nworkload: {args.tasks} no-op tasks per throughput figure, {args.sequential} sequential round trips, "
        f"{args.inflight} in flight; MAOS: 2 noop agent processes, access control on, {backend}; "
        f"Ray: num_cpus=2; medians of {args.rounds} rounds ({load()} at the end; upper bounds on a shared machine)"
    )
    print(f"  grpc baseline: server {maos.median('baseline µs'):.0f} µs CPU per bare unary call")
    print(
        show(
            "one call per task, tasks/s",
            maos.median("unary tasks/s"),
            peer.median("tasks/s"),
            "tasks/s",
            True,
        )
    )
    print(show("stream, tasks/s", maos.median("stream tasks/s"), peer.median("tasks/s"), "tasks/s", True))
    print(
        show(
            "pipelined client, tasks/s",
            maos.median("pipelined tasks/s"),
            peer.median("tasks/s"),
            "tasks/s",
            True,
        )
    )
    print(show("sequential p50", maos.median("p50"), peer.median("p50"), "ms", False))
    print(show("sequential p99", maos.median("p99"), peer.median("p99"), "ms", False))
    print(
        f"  control-plane CPU per task: MAOS unary {maos.median('unary µs'):.0f} µs, stream "
        f"{maos.median('stream µs'):.0f} µs, pipelined client {maos.median('pipelined µs'):.0f} µs, sequential {maos.median('sequential µs'):.0f} µs; "
        f"Ray gcs+raylet {peer.median('µs'):.0f} µs (+ driver {peer.median('driver µs'):.0f} µs), sequential {peer.median('sequential µs'):.0f} µs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--sequential", type=int, default=1000, help="timed sequential round trips per round")
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--baseline-calls", type=int, default=5000)
    parser.add_argument("--database-url", default="")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
