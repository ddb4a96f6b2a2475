"""What model pacing adds to one model call: a permit round trip over the agent stream.

Workload: one agent (the SDK's Worker, no assignments) connected to a control plane process (SQLite,
access control on, nothing else running) takes ``--permits`` permits one after another for one
model within its limits and the breaker closed (the fast path every call takes), and
reports each call's outcome (200, with rate-limit headers), as a Claude agent does around each
Messages API call. Prints the permit round trip (request to grant) in milliseconds.

    python benchmarks/model_permits.py [--permits 2000] [--warmup 200]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk import Agent, Worker  # noqa: E402
from benchmarks._common import control_plane, describe  # noqa: E402

MODEL = "claude-sonnet-4-6"
#: Limits the run stays well within (a limit it reached would pace the calls: no longer the fast path).
HEADERS = {
    "anthropic-ratelimit-requests-limit": "1000000",
    "anthropic-ratelimit-requests-remaining": "999999",
    "anthropic-ratelimit-output-tokens-limit": "100000000",
}


class Idle(Agent):
    """An agent that only takes permits (it declares a capability no task asks for)."""

    agent_type = "permit-bench"
    capabilities = ["permit-bench-only"]


async def run(permits: int, warmup: int) -> None:
    async with control_plane("", agents=0) as bench:
        worker = Worker(Idle(), bench.address, token=bench.token)
        runner = asyncio.get_running_loop().create_task(worker.run())
        try:
            await asyncio.wait_for(worker.registered.wait(), 30)
            samples = []
            for index in range(warmup + permits):
                started = time.perf_counter()
                async with worker.pacer.call(MODEL, input_tokens=900, output_tokens=4096) as permit:
                    elapsed = (time.perf_counter() - started) * 1000
                    permit.report(200, headers=HEADERS, input_tokens=850, output_tokens=300)
                if index >= warmup:
                    samples.append(elapsed)
        finally:
            await worker.shutdown(1)
            await runner
    print(
        f"workload: {permits} model calls one after another, each taking a permit over the agent stream "
        f"and reporting its outcome; one agent, {warmup} warm-up, within its limits (the fast path)"
    )
    print(f"permit round trip: {describe(samples)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--permits", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(run(args.permits, args.warmup))


if __name__ == "__main__":
    main()
