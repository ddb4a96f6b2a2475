"""Replicas: how soon a task submitted on one replica starts on another (claims between replicas).

Workload: a fresh PostgreSQL database; two control-plane processes (A and B) on it and on one
Redis (``redis.url``, or with ``--no-redis`` LISTEN/NOTIFY wake-ups); one ``echo`` agent process
connected to B only. ``--count`` tasks are submitted on A one at a time (after ``--warmup``
untimed ones); each is waited for (GetTask on A every 2 ms, which reads what B committed; from
``--poll-after`` ms after the submit, so that the polls do not compete with the path timed) before
the next.
A accepts the task and, with no agent of its own, writes it *leaving* in the submit's own commit
(one commit); once the task's events are in the event stream it publishes a ``work`` wake-up naming
the task, and B claims it by id (one statement that locks, claims and reads it, guarded on A's mark),
plans it and assigns it, while A lets the task go in the background. Printed, p50 / p99 / max in
milliseconds, on the same machine clock: the start latency of each task, ``start_time - create_time``
(both stamped by the control planes: A at accept, B at assignment, before B commits it), and the
time until the agent has the work (its handler stamps the time it is called with the assignment,
which B sends once that commit is done, and answers with it); and the load average.

``--code DIR`` runs the control planes and the agent from another checkout of the project (an
earlier version, say), so that two versions can be measured taking turns with this script.

    python benchmarks/cross_replica_start.py [--count 200] [--redis-url redis://127.0.0.1:6379/0]
        [--database-url postgresql://postgres@127.0.0.1:5432/test] [--no-redis] [--code DIR] [--poll-after MS]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk.client import Client  # noqa: E402
from agent_sdk.proto.maos.v1 import enums_pb2 as enums  # noqa: E402

SERVE = """
import asyncio, sys
from controlplane.config import load_settings
from controlplane.serve import configure_logging, serve
settings = load_settings()
configure_logging(settings)
asyncio.run(serve(settings, address=sys.argv[1]))
"""
#: The echo agent, answering with the time (ns) its handler was called with the assignment.
AGENT = """
import asyncio, sys, time
from agent_sdk.builtin import EchoAgent
from agent_sdk.runner import run_agent

class Stamp(EchoAgent):
    async def handle(self, ctx):
        return str(time.time_ns())

asyncio.run(run_agent(Stamp(), sys.argv[1], grace=5))
"""
FINISHED = (enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED, enums.TASK_STATUS_CANCELLED)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_database(admin_url: str) -> str:
    import psycopg

    name = f"maos_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_database(admin_url: str, url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def wait_serving(address: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with Client(address, timeout=2) as client:
                await client.status()
                return
        except Exception:  # noqa: BLE001 - not serving yet
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def wait_agent(client: Client, timeout: float = 60.0) -> None:
    """Wait until the agent process is connected (another process's state: polled)."""
    deadline = time.monotonic() + timeout
    for _ in iter(int, 1):
        if (await client.list_agents()).agents or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.1)


async def run(args: argparse.Namespace) -> None:
    database = make_database(args.database_url)
    home = Path(tempfile.mkdtemp(prefix="maos-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    prefix = f"maos-bench:{secrets.token_hex(4)}:"
    code = str(Path(args.code).resolve()) if args.code else str(Path(__file__).resolve().parent.parent)
    pythonpath = {"PYTHONPATH": os.pathsep.join([code, *filter(None, [os.environ.get("PYTHONPATH")])])}
    try:
        addresses = []
        for name in ("a", "b"):
            address = f"127.0.0.1:{free_port()}"
            env = {
                **os.environ,
                "MAOS_HOME": str(home / name),
                "MAOS_DATABASE_PRIMARY_URL": database,
                "MAOS_REDIS_URL": "" if args.no_redis else args.redis_url,
                "MAOS_REDIS_KEY_PREFIX": prefix,
                "MAOS_AGENTS_POOL": "",
                "MAOS_SERVER_METRICS_PORT": "0",
                "MAOS_SERVER_HTTP_PORT": "0",
                "MAOS_SERVER_DASHBOARD_PORT": "0",
                "MAOS_SYSTEM_LOG_LEVEL": "warning",
                "MAOS_SECURITY_AUTH": "off",
                **pythonpath,
            }
            processes.append(subprocess.Popen([sys.executable, "-c", SERVE, address], env=env, cwd=code))
            addresses.append(address)
            await wait_serving(address)
        a, b = addresses
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", AGENT, b],
                env={**os.environ, "MAOS_HOME": str(home / "agent"), **pythonpath},
                cwd=code,
            )
        )
        async with Client(a) as on_a, Client(b) as on_b:
            await wait_agent(on_b)
            latencies, working = [], []
            for index in range(args.warmup + args.count):
                task = await on_a.submit_task(description=f"echo {index}")
                await asyncio.sleep(args.poll_after / 1000)  # (its polls would compete with the path timed)
                while True:
                    done = (await on_a.get_task(task.name)).task
                    if done.status in FINISHED:
                        break
                    await asyncio.sleep(0.002)
                if index >= args.warmup:
                    created = done.create_time.ToNanoseconds()
                    latencies.append((done.start_time.ToNanoseconds() - created) / 1e6)
                    stamped = (await on_a.get_results(task.name)).subtasks[0].output
                    working.append((int(stamped) - created) / 1e6)
        latencies.sort()
        working.sort()
        load = os.getloadavg()
        print(
            f"workload: {args.count} tasks submitted one at a time on replica A, run by one echo agent on "
            f"replica B; wake-ups over {'LISTEN/NOTIFY' if args.no_redis else 'Redis pub/sub'}"
        )
        for what, figures in (("start on B (start_time)", latencies), ("the agent has the work", working)):
            print(
                f"submit on A -> {what}: p50 {statistics.median(figures):.2f} ms, "
                f"p99 {figures[int(len(figures) * 0.99) - 1]:.2f} ms, max {figures[-1]:.2f} ms"
            )
        print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        drop_database(args.database_url, database)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-redis", action="store_true", help="wake-ups over LISTEN/NOTIFY")
    parser.add_argument("--code", help="run the control planes and the agent from this checkout")
    parser.add_argument(
        "--poll-after", type=float, default=0.0, help="ms to wait after a submit before polling for its end"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
