"""HTTP beside gRPC: ``POST /api/tasks`` throughput and the submit -> result round trip.

Workload, the same over both doors, against one control plane process (SQLite unless
``--database-url``, access control on, an admin key on every call) with 2 ``noop`` agent
processes:

* throughput: ``--tasks`` no-op tasks submitted by ``--concurrency`` clients at once, each
  waiting for its answer before sending the next: over HTTP ``POST /api/tasks`` (JSON, one
  keep-alive connection per client thread), over gRPC ``SubmitTask`` (one channel, asyncio);
* round trip: ``--round-trips`` no-op tasks one after the other, each submitted and then
  followed to COMPLETED: over HTTP ``POST /api/tasks`` then the ``GET /v1/tasks/{id}:watch``
  Server-Sent Events stream, over gRPC ``SubmitTask`` then ``WatchTask``.

Prints both and the HTTP overhead per call (HTTP minus gRPC). The HTTP door transcodes each
request into a gRPC call over a Unix socket, so its overhead is that hop plus JSON and HTTP/1.1.

    python benchmarks/http_api.py [--tasks 2000] [--concurrency 16] [--round-trips 300] [--database-url ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name hides the standard `http`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import http.client  # noqa: E402 (after the sys.path fix above)

from agent_sdk.proto.maos.v1 import messages_pb2 as m  # noqa: E402
from agent_sdk.proto.maos.v1 import task_service_pb2 as t  # noqa: E402
from benchmarks._common import Bench, control_plane, describe, free_port, tasks_stub  # noqa: E402

BODY = json.dumps({"description": "no-op", "type": "noop", "priority": "NORMAL"}).encode()
FINISHED = ("TASK_STATUS_COMPLETED", "TASK_STATUS_FAILED", "TASK_STATUS_CANCELLED")


def _http_submitter(port: int, token: str, count: int, latencies: list[float], lock: threading.Lock) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    mine = []
    for _ in range(count):
        started = time.perf_counter()
        conn.request("POST", "/api/tasks", body=BODY, headers=headers)
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST /api/tasks answered {response.status}: {data[:200]!r}")
        mine.append((time.perf_counter() - started) * 1000)
    conn.close()
    with lock:
        latencies.extend(mine)


def http_throughput(port: int, token: str, tasks: int, concurrency: int) -> tuple[float, list[float]]:
    """Tasks per second and per-call milliseconds of POST /api/tasks from ``concurrency`` threads."""
    latencies: list[float] = []
    lock = threading.Lock()
    share = [tasks // concurrency + (1 if i < tasks % concurrency else 0) for i in range(concurrency)]
    threads = [
        threading.Thread(target=_http_submitter, args=(port, token, n, latencies, lock)) for n in share
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tasks / (time.perf_counter() - started), latencies


async def grpc_throughput(bench: Bench, tasks: int, concurrency: int) -> tuple[float, list[float]]:
    """Tasks per second and per-call milliseconds of SubmitTask from ``concurrency`` coroutines."""
    stub, latencies = tasks_stub(bench.channel), []
    request = t.SubmitTaskRequest(task=m.Task(description="no-op", task_type="noop"))
    remaining = tasks

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await stub.SubmitTask(request, metadata=bench.metadata, timeout=30)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return tasks / (time.perf_counter() - started), latencies


def http_round_trips(port: int, token: str, count: int) -> list[float]:
    """Milliseconds of POST /api/tasks then the SSE watch until the task finished, ``count`` times."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        conn.request("POST", "/api/tasks", body=BODY, headers=headers)
        task_id = json.loads(conn.getresponse().read())["task_id"]
        watch = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        watch.request("GET", f"/v1/tasks/{task_id}:watch", headers=headers)
        response, status = watch.getresponse(), ""
        for line in response:
            if line.startswith(b"data: "):
                status = json.loads(line[6:])["task"].get("status", "")
                if status in FINISHED:
                    break
        watch.close()
        if status != "TASK_STATUS_COMPLETED":
            raise RuntimeError(f"task {task_id} did not complete: {status}")
        samples.append((time.perf_counter() - started) * 1000)
    conn.close()
    return samples


async def grpc_round_trips(bench: Bench, count: int) -> list[float]:
    """Milliseconds of SubmitTask then WatchTask until the task finished, ``count`` times."""
    stub, samples = tasks_stub(bench.channel), []
    request = t.SubmitTaskRequest(task=m.Task(description="no-op", task_type="noop"))
    for _ in range(count):
        started = time.perf_counter()
        reply = await stub.SubmitTask(request, metadata=bench.metadata, timeout=30)
        final = None
        async for update in stub.WatchTask(
            t.WatchTaskRequest(name=reply.task.name), metadata=bench.metadata, timeout=30
        ):
            final = update.task
        if final is None or final.status != 4:  # TASK_STATUS_COMPLETED
            raise RuntimeError(f"task {reply.task.name} did not complete")
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


async def run(tasks: int, concurrency: int, round_trips: int, warmup: int, database_url: str) -> None:
    port = free_port()
    async with control_plane("noop=2", database_url, {"MAOS_SERVER_HTTP_PORT": str(port)}, agents=2) as bench:
        await asyncio.to_thread(http_round_trips, port, bench.token, warmup)  # warm both doors up
        await grpc_round_trips(bench, warmup)
        grpc_rate, grpc_calls = await grpc_throughput(bench, tasks, concurrency)
        http_rate, http_calls = await asyncio.to_thread(
            http_throughput, port, bench.token, tasks, concurrency
        )
        grpc_trips = await grpc_round_trips(bench, round_trips)
        http_trips = await asyncio.to_thread(http_round_trips, port, bench.token, round_trips)
    backend = "postgresql" if database_url else "sqlite"
    print(
        f"workload: no-op tasks (one subtask), 2 noop agent processes, {backend}, access control on; "
        f"throughput: {tasks} submits from {concurrency} concurrent clients per door; "
        f"round trip: {round_trips} sequential submit -> COMPLETED (watch stream); {warmup} warm-up"
    )
    print(f"gRPC SubmitTask:      {grpc_rate:8.0f} tasks/s  per call {describe(grpc_calls)}")
    print(f"HTTP POST /api/tasks: {http_rate:8.0f} tasks/s  per call {describe(http_calls)}")
    print(f"gRPC round trip (SubmitTask + WatchTask):     {describe(grpc_trips)}")
    print(f"HTTP round trip (POST /api/tasks + SSE watch): {describe(http_trips)}")
    print(
        f"HTTP overhead per call: submit {_mean(http_calls) - _mean(grpc_calls):+.2f} ms mean "
        f"({1e3 / http_rate - 1e3 / grpc_rate:+.3f} ms of server time per task at full load), "
        f"round trip {_mean(http_trips) - _mean(grpc_trips):+.2f} ms mean"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--round-trips", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    asyncio.run(run(args.tasks, args.concurrency, args.round_trips, args.warmup, args.database_url))


if __name__ == "__main__":
    main()
