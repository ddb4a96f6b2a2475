"""Baseline: what one bare grpc.aio unary call costs on this machine, with no MAOS code in it.

Workload: a server process with one TaskService.SubmitTask method that answers
at once (no storage, no interceptors), driven by one client with ``--inflight``
calls at once for ``--calls`` calls (after 500 untimed ones). Prints calls/s and
the CPU each side spent per call: the floor under every MAOS unary figure.

    python benchmarks/grpc_baseline.py [--calls 10000] [--inflight 64]
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

from agent_sdk.proto.maos.v1 import messages_pb2 as m  # noqa: E402
from agent_sdk.proto.maos.v1 import task_service_pb2 as t  # noqa: E402
from agent_sdk.proto.maos.v1 import task_service_pb2_grpc as tg  # noqa: E402
from benchmarks._common import cpu_seconds, free_port  # noqa: E402

SERVER = """
import asyncio, gc, sys
sys.path.insert(0, sys.argv[2])
import grpc
from agent_sdk.proto.maos.v1 import messages_pb2 as m, task_service_pb2 as t, task_service_pb2_grpc as tg

class Echo(tg.TaskServiceServicer):
    async def SubmitTask(self, request, context):
        return t.SubmitTaskResponse(task=m.Task(name="tasks/x", description=request.task.description))

async def main():
    server = grpc.aio.server()
    tg.add_TaskServiceServicer_to_server(Echo(), server)
    server.add_insecure_port(sys.argv[1])
    await server.start()
    gc.freeze()
    await server.wait_for_termination()

asyncio.run(main())
"""


async def measure(calls: int, inflight: int) -> tuple[float, float, float]:
    """Calls/s and the server's and client's CPU µs per call of a bare grpc.aio unary call."""
    address = f"127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, address, str(Path(__file__).resolve().parent.parent)]
    )
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            stub = tg.TaskServiceStub(channel)
            request = t.SubmitTaskRequest(task=m.Task(description="no-op"))
            for _ in range(500):
                await stub.SubmitTask(request, timeout=10)
            left = calls

            async def caller() -> None:
                nonlocal left
                while left > 0:
                    left -= 1
                    await stub.SubmitTask(request, timeout=10)

            server_before, client_before, started = (
                cpu_seconds(server.pid),
                time.process_time(),
                time.perf_counter(),
            )
            await asyncio.gather(*(caller() for _ in range(inflight)))
            elapsed = time.perf_counter() - started
            server_cpu = cpu_seconds(server.pid)["control plane"] - server_before["control plane"]
            client_cpu = time.process_time() - client_before
    finally:
        server.kill()
        server.wait()
    return calls / elapsed, server_cpu * 1e6 / calls, client_cpu * 1e6 / calls


def describe_baseline(figures: tuple[float, float, float]) -> str:
    """One line: the grpc baseline, to print next to a MAOS figure of the same run."""
    rate, server_us, client_us = figures
    return (
        f"grpc baseline (bare grpc.aio unary call, same run): {rate:.0f} calls/s, "
        f"server {server_us:.0f} µs + client {client_us:.0f} µs CPU per call"
    )


async def run(calls: int, inflight: int) -> None:
    rate, server_us, client_us = await measure(calls, inflight)
    print(
        f"workload: {calls} unary calls to a bare grpc.aio server (no storage, no interceptors), "
        f"{inflight} in flight, 1 client"
    )
    print(f"{rate:.0f} calls/s; CPU per call: server {server_us:.0f} µs, client {client_us:.0f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--inflight", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(run(args.calls, args.inflight))


if __name__ == "__main__":
    main()
