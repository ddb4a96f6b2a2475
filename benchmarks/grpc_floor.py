"""The floor under one call per task: the least a grpc.aio control plane can do per task, next to Ray.

A MAOS task submitted with one unary call costs the control plane, at the least, what grpc.aio
charges for moving it: the SubmitTask call, the assignment written to an agent's stream, the
result read from that stream and the completion written to the watcher's stream. This benchmark
runs a *relay* that does exactly that and nothing else, on the same machine, with the same shape
of processes as ``vs_ray.py``, and Ray in the same run:

* the relay: a grpc.aio server process with three generic methods on raw bytes (no protobuf, no
  storage, no access control, no interceptors): a unary ``Submit`` that hands the payload to the
  next agent stream (round robin) and answers at once, a bidirectional ``Agent`` stream on which an
  agent process receives tasks and sends results back, and a server-streaming ``Watch`` on which
  each result is passed to the client;
* 2 agent processes (grpc.aio), each echoing every task it receives;
* the client (this process): ``--tasks`` submits with ``--inflight`` unary calls at once, from the
  first submit to the last result seen on ``Watch``; then ``--sequential`` round trips one at a time
  (submit, then wait for its result on ``Watch``), p50 and p99;
* Ray, taking turns with the relay: ``noop.remote()`` per task then ``ray.get`` of all, and
  sequential ``ray.get(noop.remote())`` (as ``vs_ray.py``), on a local Ray with ``num_cpus=2``.

Printed per round and as medians: tasks/s and the relay's CPU µs per task (user + system from
/proc), Ray's tasks/s, both sequential p50/p99, and the load average. Whatever MAOS adds (durable
commits, scheduling, leases, events, access control, audit) comes on top of the relay's figures, so
a relay slower than Ray means one call per task through grpc.aio cannot match Ray on this machine.

    python benchmarks/grpc_floor.py [--rounds 3] [--tasks 5000] [--sequential 1000] [--inflight 64]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import cpu_seconds, free_port, percentile  # noqa: E402
from benchmarks.vs_ray import Figures, load, ray_many, ray_sequential, start_ray  # noqa: E402

SUBMIT, AGENT, WATCH, READY = (f"/floor.Relay/{name}" for name in ("Submit", "Agent", "Watch", "Ready"))

RELAY = """
import asyncio, gc, itertools, sys
import grpc

class Relay:
    def __init__(self):
        self.agents = []
        self.turn = itertools.count()
        self.watchers = []

    async def submit(self, payload, context):
        queue = self.agents[next(self.turn) % len(self.agents)]
        queue.put_nowait(payload)
        return b"ok"

    async def agent(self, requests, context):
        queue = asyncio.Queue()
        self.agents.append(queue)

        async def results():
            async for result in requests:
                for watcher in self.watchers:
                    watcher.put_nowait(result)

        reader = asyncio.ensure_future(results())
        try:
            while True:
                yield await queue.get()
        finally:
            reader.cancel()
            self.agents.remove(queue)

    async def ready(self, request, context):
        return f"{len(self.agents)} {len(self.watchers)}".encode()

    async def watch(self, request, context):
        queue = asyncio.Queue()
        self.watchers.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self.watchers.remove(queue)

async def main():
    relay = Relay()
    handlers = grpc.method_handlers_generic_handler("floor.Relay", {
        "Submit": grpc.unary_unary_rpc_method_handler(relay.submit),
        "Agent": grpc.stream_stream_rpc_method_handler(relay.agent),
        "Watch": grpc.unary_stream_rpc_method_handler(relay.watch),
        "Ready": grpc.unary_unary_rpc_method_handler(relay.ready),
    })
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handlers,))
    server.add_insecure_port(sys.argv[1])
    await server.start()
    gc.freeze()
    await server.wait_for_termination()

asyncio.run(main())
"""

AGENT_PROCESS = """
import asyncio, sys
import grpc

async def main():
    async with grpc.aio.insecure_channel(sys.argv[1]) as channel:
        call = channel.stream_stream(sys.argv[2])()
        async for task in call:
            await call.write(task)

asyncio.run(main())
"""


class RelayRun:
    """The relay's server and agent processes, and this process's client channel to it."""

    def __init__(self, agents: int) -> None:
        self.address = f"127.0.0.1:{free_port()}"
        self.agent_count = agents
        self.processes: list[subprocess.Popen[bytes]] = []
        self.seen = 0
        self.waiters: dict[int, asyncio.Future[None]] = {}
        self.done = asyncio.Event()
        self.target = 0

    async def __aenter__(self) -> RelayRun:
        self.processes.append(subprocess.Popen([sys.executable, "-c", RELAY, self.address]))
        self.channel = grpc.aio.insecure_channel(self.address)
        await asyncio.wait_for(self.channel.channel_ready(), 30)
        self.submit = self.channel.unary_unary(SUBMIT)
        self.watch = self.channel.unary_stream(WATCH)(b"")
        self.reader = asyncio.ensure_future(self._read())
        for _ in range(self.agent_count):
            self.processes.append(
                subprocess.Popen([sys.executable, "-c", AGENT_PROCESS, self.address, AGENT])
            )
        ready = self.channel.unary_unary(READY)
        deadline = time.monotonic() + 60
        while await ready(b"", timeout=10) != f"{self.agent_count} 1".encode():
            if time.monotonic() > deadline:
                raise TimeoutError("the relay's agents and watcher did not connect within 60 s")
            await asyncio.sleep(0.05)
        # Warm up: each path taken a few hundred times.
        await self.many(500, 16)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.reader.cancel()
        await self.channel.close()
        for process in reversed(self.processes):  # the agents before the relay they are connected to
            process.kill()
            process.wait()

    async def _read(self) -> None:
        async for result in self.watch:
            self.seen += 1
            waiter = self.waiters.pop(int(result), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            if self.seen >= self.target:
                self.done.set()

    async def many(self, tasks: int, inflight: int) -> float:
        """Seconds from the first of ``tasks`` submits (``inflight`` at once) to the last result."""
        self.seen, self.target = 0, tasks
        self.done.clear()
        left = tasks

        async def caller() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await self.submit(b"0", timeout=30)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(inflight)))
        await asyncio.wait_for(self.done.wait(), 120)
        return time.perf_counter() - started

    async def sequential(self, count: int) -> list[float]:
        """Milliseconds of each of ``count`` round trips made one at a time."""
        self.target = 1 << 62
        samples = []
        for n in range(1, count + 1):
            waiter = asyncio.get_running_loop().create_future()
            self.waiters[n] = waiter
            started = time.perf_counter()
            await self.submit(str(n).encode(), timeout=30)
            await asyncio.wait_for(waiter, 30)
            samples.append((time.perf_counter() - started) * 1000)
        return samples

    def server_cpu(self) -> float:
        return cpu_seconds(self.processes[0].pid)["control plane"]


async def run(args: argparse.Namespace) -> None:
    ray, noop = start_ray()
    print(f"Ray {ray.__version__} started (num_cpus=2); {load()}")  # type: ignore[attr-defined]
    relay_figures, ray_figures = Figures(), Figures()
    async with RelayRun(args.agents) as relay:
        for round_ in range(1, args.rounds + 1):
            before = relay.server_cpu()
            elapsed = await relay.many(args.tasks, args.inflight)
            relay_figures.add("tasks/s", args.tasks / elapsed)
            relay_figures.add("µs", (relay.server_cpu() - before) * 1e6 / args.tasks)
            samples = await relay.sequential(args.sequential)
            relay_figures.add("p50", percentile(samples, 50))
            relay_figures.add("p99", percentile(samples, 99))
            rate, cpu, driver = ray_many(ray, noop, args.tasks)
            ray_figures.add("tasks/s", rate)
            ray_figures.add("µs", cpu + driver)
            samples, _ = ray_sequential(ray, noop, args.sequential)
            ray_figures.add("p50", percentile(samples, 50))
            ray_figures.add("p99", percentile(samples, 99))
            r, p = relay_figures.values, ray_figures.values
            print(
                f"round {round_}/{args.rounds} ({load()}): relay {r['tasks/s'][-1]:,.0f} tasks/s "
                f"({r['µs'][-1]:.0f} µs server CPU/task), sequential p50 {r['p50'][-1]:.2f} ms "
                f"p99 {r['p99'][-1]:.2f} ms; Ray {p['tasks/s'][-1]:,.0f} tasks/s "
                f"({p['µs'][-1]:.0f} µs gcs+raylet+driver CPU/task), sequential p50 {p['p50'][-1]:.2f} ms "
                f"p99 {p['p99'][-1]:.2f} ms"
            )
    ray.shutdown()  # type: ignore[attr-defined]
    print(
        f"\nworkload: {args.tasks} no-op tasks per throughput figure ({args.inflight} unary calls in flight), "
        f"{args.sequential} sequential round trips; relay: bare grpc.aio on raw bytes, {args.agents} agent "
        f"processes; Ray: num_cpus=2; medians of {args.rounds} rounds ({load()} at the end)"
    )
    for name, unit in (("tasks/s", "tasks/s"), ("p50", "ms"), ("p99", "ms")):
        ours, theirs = relay_figures.median(name), ray_figures.median(name)
        print(f"  {name}: relay {ours:,.2f} {unit}, Ray {theirs:,.2f} {unit}, relay/Ray {ours / theirs:.2f}x")
    print(
        f"  relay server CPU per task {relay_figures.median('µs'):.0f} µs "
        f"(Ray gcs+raylet+driver {ray_figures.median('µs'):.0f} µs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--sequential", type=int, default=1000)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--agents", type=int, default=2)
    args = parser.parse_args()
    if args.tasks < 1 or args.sequential < 1:
        parser.error("--tasks and --sequential must be at least 1")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
