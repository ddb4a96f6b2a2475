"""Replicas: throughput and CPU of one control plane against three, cross-replica start latency, wake-ups.

``--throughput``: the workload of ``throughput.py`` (``--tasks`` no-op tasks, one SubmitTask call
per task with ``--inflight`` calls at once, or BatchSubmitTasks of ``--batch`` with ``--mode batch``;
access control on, an admin key) against one ``maos start`` replica and then against three, each
time on a fresh PostgreSQL database and a fresh Redis key prefix, with ``--agents`` ``noop`` agent
processes (``maos-agent run``) given every replica's address, agent i starting at replica i (so with
three replicas they spread over them). The client spreads its calls over the replicas (call i to
replica i mod N). The clock runs from the first submit until the database counts every task
COMPLETED. Printed per configuration: tasks/s and the control plane's CPU per task (the sum over
the replica processes, from /proc), then the ratio of three to one (goal: at most 1.3). With
``--rounds`` R the configurations run R times in turn and the medians are compared (on a shared
machine one run's ratio moves by a third or more).

``--latency``: three replicas; one recording agent (tests/harness/recording_agent.py) connected to
replica B alone. ``--count`` tasks are submitted one at a time on replica A, each once the previous
one has run; the latency is from the moment the client sends SubmitTask to the moment the agent
process starts the work (both read CLOCK_MONOTONIC, one clock on one machine). The same, submitted
on B itself, is printed next to it. Goal: cross-replica p50 under 5 ms.

``--wakeups``: a subscriber process connects its own wake-up bus (:mod:`controlplane.replicas.wakeups`)
and subscribes to a topic; this process publishes ``--count`` wake-ups on it one at a time (after
``--warmup`` untimed ones), each carrying the publisher's ``CLOCK_MONOTONIC`` in nanoseconds, and
waits for the subscriber's acknowledgement (published back on a second topic) before the next. The
subscriber computes publish -> callback latency of each. Printed: p50/p99 in milliseconds for Redis
pub/sub and for PostgreSQL LISTEN/NOTIFY.

    python benchmarks/replicas.py --throughput [--tasks 5000] [--agents 2] [--mode unary|batch] [--rounds 1]
    python benchmarks/replicas.py --latency [--count 500]
    python benchmarks/replicas.py --wakeups [--count 2000]
    (each also: [--redis-url redis://127.0.0.1:6379/0] [--database-url postgresql://postgres@127.0.0.1:5432/test])

The load average is printed with each figure: on a shared machine it moves them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402

from agent_sdk.proto.maos.v1 import messages_pb2 as m  # noqa: E402
from agent_sdk.proto.maos.v1 import task_service_pb2 as t  # noqa: E402
from benchmarks._common import bootstrap_admin_key, tasks_stub  # noqa: E402
from controlplane.replicas.wakeups import PostgresWakeupBus, RedisWakeupBus  # noqa: E402
from tests.harness.recording_agent import AGENT_TYPE  # noqa: E402
from tests.harness.replicas import ReplicaCluster, fresh_database, rotated  # noqa: E402
from tests.harness.server import AgentProcess  # noqa: E402

#: The replicas run with the production defaults of these (the harness's are test values).
BENCH_ENV = {
    "MAOS_SECURITY_AUTH": "required",
    "MAOS_SCHEDULER_LEASE_TTL": "15",
    "MAOS_SCHEDULER_HEARTBEAT_INTERVAL": "5",
    "MAOS_SCHEDULER_RESTART_GRACE": "15",
    "MAOS_REPLICAS_HEARTBEAT_INTERVAL": "5",
    "MAOS_REPLICAS_LOST_AFTER": "30",
    "MAOS_REPLICAS_JOB_LEASE_TTL": "15",
    "MAOS_SYSTEM_MAX_AGENTS": "100",
}

TOPIC, ACK = "bench", "bench_ack"


async def make_bus(kind: str, url: str, prefix: str):
    if kind == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url)
        return RedisWakeupBus(client, prefix + ":"), client
    return PostgresWakeupBus(url, prefix + "_"), None


async def subscriber(kind: str, url: str, prefix: str, total: int) -> None:
    """The other process: record each wake-up's latency, acknowledge it, print them all at the end."""
    bus, client = await make_bus(kind, url, prefix)
    latencies: list[float] = []
    done = asyncio.Event()

    async def on_wake(payload: str) -> None:
        seq, sent = payload.split(":")
        latencies.append((time.monotonic_ns() - int(sent)) / 1e6)
        await bus.publish(ACK, seq)
        if len(latencies) >= total:
            done.set()

    bus.subscribe(TOPIC, on_wake)
    await bus.start()
    print("ready", flush=True)
    await done.wait()
    await bus.close()
    if client is not None:
        await client.aclose()
    print(json.dumps(latencies), flush=True)


async def measure(kind: str, url: str, count: int, warmup: int = 50) -> list[float]:
    """Latencies (ms) of ``count`` wake-ups from this process to a subscriber process."""
    prefix = f"maosbench{secrets.token_hex(4)}"
    total = warmup + count
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--subscriber",
        kind,
        "--url",
        url,
        "--prefix",
        prefix,
        "--count",
        str(total),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        ready = (await asyncio.wait_for(child.stdout.readline(), 30)).decode()
        if ready.strip() != "ready":
            raise SystemExit(f"the {kind} subscriber did not start: {ready!r}")
        bus, client = await make_bus(kind, url, prefix)
        acked: asyncio.Queue[str] = asyncio.Queue()
        bus.subscribe(ACK, acked.put_nowait)
        await bus.start()
        for seq in range(total):
            await bus.publish(TOPIC, f"{seq}:{time.monotonic_ns()}")
            got = await asyncio.wait_for(acked.get(), 10)
            assert got == str(seq), (got, seq)
        await bus.close()
        if client is not None:
            await client.aclose()
        out = (await asyncio.wait_for(child.stdout.read(), 30)).decode()
        latencies = json.loads(out.strip().splitlines()[-1])
    finally:
        if child.returncode is None:
            await asyncio.wait_for(child.wait(), 30)
    return latencies[warmup:]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def wakeups(count: int, redis_url: str, database_url: str) -> dict[str, dict[str, float]]:
    print(f"wake-ups: {count} from one process to another, one at a time (each acknowledged before the next)")
    results = {}
    for kind, url, name in (
        ("redis", redis_url, "Redis pub/sub"),
        ("postgres", database_url, "LISTEN/NOTIFY"),
    ):
        latencies = await measure(kind, url, count)
        results[kind] = {
            "p50_ms": statistics.median(latencies),
            "p99_ms": percentile(latencies, 99),
            "count": len(latencies),
        }
        print(
            f"{name:15s} publish -> callback p50 {results[kind]['p50_ms']:.3f} ms, p99 {results[kind]['p99_ms']:.3f} ms"
        )
    return results


def load() -> str:
    """The load averages (1, 5, 15 min) as printed next to each figure."""
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


@contextlib.asynccontextmanager
async def cluster(count: int, database_url: str, redis_url: str) -> AsyncIterator[tuple[ReplicaCluster, str]]:
    """``count`` replicas with access control on, on a fresh database and Redis prefix; and the admin key."""
    folder = Path(tempfile.mkdtemp(prefix="maos-bench-replicas-"))
    prefix = f"maosbench:{secrets.token_hex(4)}:"
    with fresh_database(database_url) as url:
        made = ReplicaCluster(folder, url, redis_url, prefix, count, BENCH_ENV)
        token: list[str] = []
        try:
            await made.start(prepare=lambda env: token.append(bootstrap_admin_key(env)))
            yield made, token[0]
        finally:
            made.stop()
            with contextlib.suppress(Exception):
                from tests.harness.services import delete_namespace

                delete_namespace(redis_url, prefix)


def completed(database_url: str) -> int:
    """Tasks COMPLETED in the database (the ``task_counts`` table its triggers keep)."""
    import psycopg
    from sqlalchemy.engine import make_url

    libpq = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as conn:
        row = conn.execute("SELECT coalesce(sum(n), 0) FROM task_counts WHERE status = 4").fetchone()
    return int(row[0]) if row else 0


async def throughput_once(
    replicas: int,
    tasks: int,
    agents: int,
    inflight: int,
    mode: str,
    batch: int,
    database_url: str,
    redis_url: str,
) -> dict[str, float]:
    async with cluster(replicas, database_url, redis_url) as (made, token):
        started = [
            AgentProcess(
                rotated(made.addresses, i), "noop", "--token", token, home=made.folder / f"agent-{i}"
            )
            for i in range(agents)
        ]
        try:
            await wait_agents_connected(made, [a.pid for a in started])
            md = (("authorization", f"Bearer {token}"),)
            channels = [grpc.aio.insecure_channel(address) for address in made.addresses]
            stubs = [tasks_stub(c) for c in channels]
            task = m.Task(description="no-op", task_type="noop")
            request = t.SubmitTaskRequest(task=task)
            submitted = 0

            async def submitter(index: int) -> None:
                nonlocal submitted
                stub = stubs[index % len(stubs)]
                while submitted < tasks:
                    if mode == "batch":
                        n = min(batch, tasks - submitted)
                        submitted += n
                        await stub.BatchSubmitTasks(
                            t.BatchSubmitTasksRequest(requests=[request] * n), metadata=md, timeout=60
                        )
                    else:
                        submitted += 1
                        await stub.SubmitTask(request, metadata=md, timeout=60)

            cpu_before = made.control_plane_cpu()
            begin = time.perf_counter()
            await asyncio.gather(*(submitter(i) for i in range(inflight)))
            while True:  # light polling of the database: it costs the replicas nothing
                if await asyncio.to_thread(completed, made.database_url) >= tasks:
                    break
                await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - begin
            cpu = made.control_plane_cpu() - cpu_before
            for c in channels:
                await c.close()
        finally:
            for a in started:
                a.stop()
    return {"tasks_per_s": tasks / elapsed, "cpu_us_per_task": cpu * 1e6 / tasks, "seconds": elapsed}


async def wait_agents_connected(made: ReplicaCluster, pids: list[int], timeout: float = 60) -> None:
    from tests.harness.replicas import tcp_connections

    ports = {r.port for r in made.replicas}
    deadline = time.monotonic() + timeout
    while sum(any(remote in ports for _, remote in tcp_connections(p)) for p in pids) < len(pids):
        if time.monotonic() > deadline:
            raise SystemExit("the agents did not connect")
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # registration completes after the connection


async def throughput(args: argparse.Namespace) -> dict[str, Any]:
    how = {"batch": f"BatchSubmitTasks of {args.batch}", "unary": "SubmitTask"}[args.mode]
    print(
        f"workload: {args.tasks} no-op tasks, 1 client ({how}, {args.inflight} calls in flight, spread over "
        f"the replicas), {args.agents} noop agent processes given every replica's address, PostgreSQL + Redis, "
        "access control on"
    )
    results: dict[str, Any] = {}
    runs: dict[int, list[dict[str, float]]] = {replicas: [] for replicas in args.replicas}
    for _ in range(args.rounds):  # the configurations take turns: a load that drifts touches each
        for replicas in args.replicas:
            r = await throughput_once(
                replicas,
                args.tasks,
                args.agents,
                args.inflight,
                args.mode,
                args.batch,
                args.database_url,
                args.redis_url,
            )
            runs[replicas].append(r)
            print(
                f"{replicas} replica{'s' if replicas > 1 else ' '}: {r['tasks_per_s']:.0f} tasks/s, control "
                f"plane {r['cpu_us_per_task']:.0f} µs CPU per task (sum over replicas)  [{load()}]"
            )
    for replicas, done in runs.items():
        results[f"replicas_{replicas}"] = {
            key: statistics.median(r[key] for r in done)
            for key in ("tasks_per_s", "cpu_us_per_task", "seconds")
        }
        if args.rounds > 1:
            r = results[f"replicas_{replicas}"]
            print(
                f"{replicas} replica{'s' if replicas > 1 else ' '}, median of {args.rounds}: "
                f"{r['tasks_per_s']:.0f} tasks/s, {r['cpu_us_per_task']:.0f} µs CPU per task"
            )
    if {1, 3} <= set(args.replicas):
        ratio = results["replicas_3"]["cpu_us_per_task"] / results["replicas_1"]["cpu_us_per_task"]
        results["cpu_ratio"] = ratio
        print(f"control-plane CPU per task, three replicas / one: {ratio:.2f} (goal: at most 1.3)")
    return results


class AgentLog:
    """The lines a recording agent appends, read as they come."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = 0
        self.starts: dict[str, int] = {}
        self.done: set[str] = set()

    def poll(self) -> None:
        if not self.path.exists():
            return
        with self.path.open() as f:
            f.seek(self.offset)
            chunk = f.read()
        complete = chunk[: chunk.rfind("\n") + 1]
        self.offset += len(complete.encode())
        for raw in complete.splitlines():
            line = json.loads(raw)
            task = line["task"].rsplit("/", 1)[-1]
            if line["event"] == "start":
                self.starts.setdefault(task, line["t"])
            else:
                self.done.add(task)

    async def until_done(self, task: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while task not in self.done:
            if time.monotonic() > deadline:
                raise SystemExit(f"task {task} did not run within {timeout} s")
            await asyncio.sleep(0.0005)
            self.poll()


async def start_latencies(
    made: ReplicaCluster, token: str, submit_on: int, log: AgentLog, count: int
) -> list[float]:
    md = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(made.addresses[submit_on]) as channel:
        stub = tasks_stub(channel)
        request = t.SubmitTaskRequest(task=m.Task(description="start me", agent_type=AGENT_TYPE))
        latencies = []
        for _ in range(count):
            sent = time.monotonic_ns()
            reply = await stub.SubmitTask(request, metadata=md, timeout=30)
            task = reply.task.name.rsplit("/", 1)[-1]
            await log.until_done(task)
            latencies.append((log.starts[task] - sent) / 1e6)
    return latencies


async def latency(args: argparse.Namespace) -> dict[str, Any]:
    print(
        f"workload: 3 replicas (A, B, C) on PostgreSQL + Redis; one recording agent connected to B alone; "
        f"{args.count} tasks submitted one at a time (after 20 untimed), each once the previous one ran; "
        "SubmitTask sent -> the agent process starts it"
    )
    results: dict[str, Any] = {}
    async with cluster(3, args.database_url, args.redis_url) as (made, token):
        agent = made.agent(1, only=True, token=token)
        log = AgentLog(agent.log)
        await made.wait_for_connections(1)
        await asyncio.sleep(1.0)  # registration completes after the connection
        for name, submit_on in (("submit on A, start on B", 0), ("submit on B, start on B", 1)):
            await start_latencies(made, token, submit_on, log, 20)
            values = await start_latencies(made, token, submit_on, log, args.count)
            results[name] = {"p50_ms": statistics.median(values), "p99_ms": percentile(values, 99)}
            print(
                f"{name}: p50 {results[name]['p50_ms']:.2f} ms, p99 {results[name]['p99_ms']:.2f} ms  [{load()}]"
            )
    print("goal: cross-replica start p50 under 5 ms")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--throughput", action="store_true", help="One replica against three: tasks/s, CPU per task."
    )
    parser.add_argument("--latency", action="store_true", help="Submit on one replica, start on another.")
    parser.add_argument("--wakeups", action="store_true", help="Wake-up latency between two processes.")
    parser.add_argument("--count", type=int, default=None, help="--wakeups: 2000; --latency: 500")
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument(
        "--replicas",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 3],
        help="--throughput: the numbers of replicas to compare (default 1,3)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="--throughput: run the configurations this many times in turn; the medians are compared",
    )
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--mode", choices=["unary", "batch"], default="unary")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--json", action="store_true", help="Also print the figures as one JSON line.")
    parser.add_argument("--subscriber", choices=["redis", "postgres"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.subscriber:
        asyncio.run(subscriber(args.subscriber, args.url, args.prefix, args.count))
        return
    if not (args.wakeups or args.throughput or args.latency):
        parser.error("choose a measurement: --throughput, --latency or --wakeups")
    results: dict[str, Any] = {}
    if args.throughput:
        results["throughput"] = asyncio.run(throughput(args))
    if args.latency:
        args.count = args.count or 500
        results["latency"] = asyncio.run(latency(args))
    if args.wakeups:
        results["wakeups"] = asyncio.run(wakeups(args.count or 2000, args.redis_url, args.database_url))
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
