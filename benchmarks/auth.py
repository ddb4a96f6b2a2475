"""Authentication cost per RPC: the same call with access control off and required.

Workload: one client makes ``--calls`` sequential SystemService.GetConfig calls (a cheap
read RPC, so the auth check is a large share of it) against a control plane in this
process on SQLite, first with ``security.auth: off``, then
``required`` with an admin API key. Prints the p50/p99 of each and the difference of the
p50s, plus the server-side cost of one key check timed directly (``AccessManager.authenticate``)
and of the rate limit's check (``CallLimits.admit``). The per-principal
rate limit is on, set to 1,000,000 calls/s so that it runs on every call but never refuses one.

    python benchmarks/auth.py [--calls 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb  # noqa: E402
from agent_sdk.proto.maos.v1 import system_service_pb2_grpc as system_grpc  # noqa: E402
from benchmarks._common import describe, percentile  # noqa: E402
from controlplane.access.bootstrap import bootstrap_admin, read_token  # noqa: E402
from controlplane.access.rate_limit import CallLimits  # noqa: E402
from controlplane.app import build_app  # noqa: E402
from controlplane.config import load_settings  # noqa: E402


async def measure(auth: str, calls: int) -> tuple[list[float], list[float], list[float]]:
    home = Path(tempfile.mkdtemp(prefix="maos-bench-auth-"))
    settings = load_settings(
        home=home,
        environ={},
        overrides={
            "security.auth": auth,
            "server.metrics_port": 0,
            "agents.pool": {},
            "system.log_level": "warning",
            "security.rate_limit.rate": 1_000_000,
            "security.rate_limit.burst": 1_000_000,
        },
    )
    bootstrap_admin(settings)
    token = read_token(home)
    app = build_app(settings)
    await app.start("127.0.0.1:0")
    try:
        metadata = (("authorization", f"Bearer {token}"),) if auth == "required" else None
        async with grpc.aio.insecure_channel(app.address) as channel:
            stub = system_grpc.SystemServiceStub(channel)
            request = system_pb.GetConfigRequest(keys=["system.max_agents"])
            for _ in range(200):  # warm-up
                await stub.GetConfig(request, metadata=metadata, timeout=5)
            rpc = []
            for _ in range(calls):
                started = time.perf_counter()
                await stub.GetConfig(request, metadata=metadata, timeout=5)
                rpc.append((time.perf_counter() - started) * 1000)
        checks = []
        access = getattr(app, "access", None)
        if auth == "required" and access is not None:
            for _ in range(calls):
                started = time.perf_counter()
                await access.authenticate(token)
                checks.append((time.perf_counter() - started) * 1e6)
        limited = []
        limits = CallLimits.from_settings(settings)
        if auth == "required" and limits is not None:
            for _ in range(calls):
                started = time.perf_counter()
                limits.admit("users/admin")
                limited.append((time.perf_counter() - started) * 1e6)
        return rpc, checks, limited
    finally:
        await app.stop(grace=0.5)


async def run(calls: int) -> None:
    off, _, _ = await measure("off", calls)
    on, checks, limited = await measure("required", calls)
    print(
        f"workload: {calls} sequential SystemService.GetConfig calls per mode, one client, SQLite, in-process server"
    )
    print(f"auth off:      {describe(off)}")
    print(f"auth required: {describe(on)}")
    print(f"difference of p50: {(percentile(on, 50) - percentile(off, 50)) * 1000:.0f} µs per call")
    if checks:
        print(
            f"one key check (AccessManager.authenticate): p50 {statistics.median(checks):.1f} µs  "
            f"p99 {percentile(checks, 99):.1f} µs"
        )
    if limited:
        print(
            f"rate limit check (CallLimits.admit): p50 {statistics.median(limited):.2f} µs  "
            f"p99 {percentile(limited, 99):.2f} µs"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3000)
    asyncio.run(run(parser.parse_args().calls))


if __name__ == "__main__":
    main()
