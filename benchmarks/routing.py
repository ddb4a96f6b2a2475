"""Routing between replicas: the round trip of a request over the replicas' bus, process to process.

Workload: a holder process starts a :class:`~controlplane.replicas.bus.ReplicaBus` that holds
agent ``a1`` (its handler answers a small JSON result, as a forwarded PauseAgent's answer is a
few hundred bytes); this process asks ``--count`` requests one at a time (after ``--warmup``
untimed ones) for ``a1`` (the holder answers) and as many for ``ghost`` (nobody holds it: the
holder declines and, with one live peer counted, the asker knows at once). Printed: p50/p99 of
``ask`` in milliseconds, over Redis pub/sub and over PostgreSQL LISTEN/NOTIFY.

    python benchmarks/routing.py [--count 1000] [--redis-url redis://127.0.0.1:6379/0]
        [--database-url postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.replicas.bus import POSTGRES_MAX_PAYLOAD, REDIS_MAX_PAYLOAD, ReplicaBus  # noqa: E402
from controlplane.replicas.wakeups import PostgresWakeupBus, RedisWakeupBus  # noqa: E402


def transport(kind: str, url: str, prefix: str) -> tuple[Any, Any]:
    if kind == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url)
        return RedisWakeupBus(client, prefix + ":", max_payload=REDIS_MAX_PAYLOAD), client
    return PostgresWakeupBus(url, prefix + "_", max_payload=POSTGRES_MAX_PAYLOAD), None


async def hold(kind: str, url: str, prefix: str) -> None:
    """The holder process: answer for ``a1`` until stdin closes."""
    carrier, client = transport(kind, url, prefix)
    bus = ReplicaBus(carrier, "bench-holder")

    async def handler(body: dict[str, Any]) -> dict[str, Any] | None:
        if body.get("agent") != "a1":
            return None
        return {"q": "x" * 300}  # about the size of a forwarded Agent message

    bus.handle("agent", handler)
    await bus.start()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await bus.close()
    if client is not None:
        await client.aclose()


def percentiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return f"p50 {statistics.median(samples):.2f} ms, p99 {cuts[98]:.2f} ms"


async def measure(kind: str, url: str, count: int, warmup: int) -> dict[str, str]:
    prefix = f"bench{secrets.token_hex(4)}"
    holder = subprocess.Popen(
        [sys.executable, __file__, "--hold", kind, "--url", url, "--prefix", prefix],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        carrier, client = transport(kind, url, prefix)
        bus = ReplicaBus(carrier, "bench-asker", timeout=5.0, peers=lambda: 1)
        await bus.start()
        results: dict[str, str] = {}
        for target, label in (("a1", "held"), ("ghost", "nobody")):
            samples = []
            for i in range(warmup + count):
                started = time.perf_counter()
                answer = await bus.ask("agent", {"agent": target, "op": "pause"})
                if i >= warmup:
                    samples.append((time.perf_counter() - started) * 1000)
                assert (answer is not None) == (target == "a1")
            results[label] = percentiles(samples)
        await bus.close()
        if client is not None:
            await client.aclose()
        return results
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--hold", choices=["redis", "postgres"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hold:
        asyncio.run(hold(args.hold, args.url, args.prefix))
        return
    print(
        f"workload: {args.count} requests one at a time (after {args.warmup} untimed), asker and holder "
        "in two processes; 'held': the holder answers, 'nobody': the one live peer declines"
    )
    report = {}
    for kind, url in (("redis", args.redis_url), ("postgres", args.database_url)):
        report[kind] = asyncio.run(measure(kind, url, args.count, args.warmup))
        for label, figure in report[kind].items():
            print(f"{kind:9s} {label:7s} {figure}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
