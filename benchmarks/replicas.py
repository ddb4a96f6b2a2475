"""Replicas: the latency of a wake-up from one process to another, over Redis and over LISTEN/NOTIFY.

Workload (``--wakeups``): a subscriber process connects its own wake-up bus
(:mod:`controlplane.replicas.wakeups`) and subscribes to a topic; this process
publishes ``--count`` wake-ups on it one at a time (after ``--warmup``
untimed ones), each carrying the publisher's ``CLOCK_MONOTONIC`` in
nanoseconds, and waits for the subscriber's acknowledgement (published back on
a second topic) before the next. The subscriber computes publish -> callback
latency of each (the same clock: same machine). Printed: p50/p99 in
milliseconds for Redis pub/sub and for PostgreSQL LISTEN/NOTIFY.

    python benchmarks/replicas.py --wakeups [--count 2000] [--redis-url redis://127.0.0.1:6379/0]
        [--database-url postgresql://postgres@127.0.0.1:5432/test]

The workload with three control planes claiming work together waits for the scheduler's
claims behind its seams; this script measures the wake-up they will use.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from controlplane.replicas.wakeups import PostgresWakeupBus, RedisWakeupBus  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wakeups", action="store_true", help="Measure wake-up latency (the only mode yet).")
    parser.add_argument("--count", type=int, default=2000)
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
    if not args.wakeups:
        parser.error("choose a measurement: --wakeups")
    results = asyncio.run(wakeups(args.count, args.redis_url, args.database_url))
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
