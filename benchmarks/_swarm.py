"""Many light agents in one process, for the agent-scale benchmark (not a real agent).

Usage: MAOS_API_KEY=KEY python benchmarks/_swarm.py ADDRESS COUNT OUTFILE
Each agent registers, heartbeats, holds every assignment it gets without
answering, and records when a Cancel arrives; on SIGUSR1 it writes how many
heartbeats it sent to PID.beats next to OUTFILE; SIGUSR2 pauses its heartbeats, and the next
SIGUSR2 lets them go on (to measure what the control plane spends without them); on SIGTERM the process writes
the cancel receive times (epoch seconds) and how many streams broke, by
status code, to OUTFILE as JSON and exits.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw  # noqa: E402
from agent_sdk.proto.maos.v1 import agent_gateway_pb2_grpc as gw_grpc  # noqa: E402
from agent_sdk.worker import KEEPALIVE_OPTIONS, heartbeat_due, next_heartbeat  # noqa: E402

STREAMS_PER_CHANNEL = 100
#: Channels with equal options to one address share one connection unless each keeps its own
#: subchannels: without this, all of a process's streams ride one TCP connection (unlike real
#: agents, one process each), and one broken connection breaks thousands of streams at once.
CHANNEL_OPTIONS = [*KEEPALIVE_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
#: Heartbeats sent so far by this process (written to OUTFILE's folder as PID.beats on SIGUSR1).
SENT = [0]
#: While set (SIGUSR2 toggles it), no agent sends a heartbeat.
PAUSED = [False]


async def agent(
    stub: gw_grpc.AgentGatewayStub, cancels: list[float], registered: list[int], broken: Counter[str]
) -> None:
    """One agent; like a real one, it reconnects with jittered backoff when its stream fails."""
    while True:
        if await session(stub, cancels, registered, broken):
            return
        await asyncio.sleep(random.uniform(0.05, 0.5))


async def session(
    stub: gw_grpc.AgentGatewayStub, cancels: list[float], registered: list[int], broken: Counter[str]
) -> bool:
    """Register, heartbeat, hold assignments, note Cancel times; False (counted) if the stream failed."""
    outbox: asyncio.Queue[gw.ConnectRequest] = asyncio.Queue()
    outbox.put_nowait(
        gw.ConnectRequest(
            register=gw.Register(
                agent_type="swarm", capabilities=["*"], max_concurrency=1, language="python-swarm"
            )
        )
    )

    async def requests():
        while True:
            yield await outbox.get()

    held: list[gw.AssignmentRef] = []

    async def heartbeats(interval: float, idle_interval: float) -> None:
        last_sent, free_sent = -math.inf, -1
        while True:  # as the Python SDK does: on the slot grid, less often while idle
            await asyncio.sleep(next_heartbeat(interval, time.time()))
            free = 1 - len(held)
            at = time.monotonic()
            if PAUSED[0]:
                continue
            if heartbeat_due(not held and free == free_sent, at - last_sent, interval, idle_interval):
                outbox.put_nowait(gw.ConnectRequest(heartbeat=gw.Heartbeat(running=held, free_slots=free)))
                SENT[0] += 1
                last_sent, free_sent = at, free

    beat = None
    metadata = (("authorization", f"Bearer {os.environ['MAOS_API_KEY']}"),)
    call = stub.Connect(requests(), metadata=metadata)
    try:
        async for response in call:
            kind = response.WhichOneof("message")
            if kind == "registered":
                registered[0] += 1
                interval = response.registered.heartbeat_interval.ToTimedelta().total_seconds() or 5.0
                idle = response.registered.idle_heartbeat_interval.ToTimedelta().total_seconds()
                beat = asyncio.create_task(heartbeats(interval, max(interval, idle)))
            elif kind == "assignment":
                held.append(response.assignment.ref)
            elif kind == "cancel":
                cancels.append(time.time())
                held.clear()
    except grpc.aio.AioRpcError as exc:
        broken[exc.code().name] += 1
        if sum(broken.values()) <= 3:
            print(
                f"swarm: stream broke at {time.time():.3f}: {exc.code().name} {exc.details()} "
                f"{exc.debug_error_string()}",
                file=sys.stderr,
            )
        return False
    finally:
        call.cancel()  # stops the call's reader of requests() too
        if beat:
            beat.cancel()
    return True


async def main(address: str, count: int, outfile: str) -> None:
    cancels: list[float] = []
    registered = [0]
    broken: Counter[str] = Counter()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    beats = Path(outfile).with_name(f"{os.getpid()}.beats")
    loop.add_signal_handler(signal.SIGUSR1, lambda: beats.write_text(f"{SENT[0]}\n"))
    loop.add_signal_handler(signal.SIGUSR2, lambda: PAUSED.__setitem__(0, not PAUSED[0]))
    channels = [
        grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        for _ in range((count + STREAMS_PER_CHANNEL - 1) // STREAMS_PER_CHANNEL)
    ]
    tasks = []
    for i in range(count):  # a few ms apart, as real agents start: not hundreds of streams in one instant
        tasks.append(
            asyncio.create_task(
                agent(
                    gw_grpc.AgentGatewayStub(channels[i // STREAMS_PER_CHANNEL]), cancels, registered, broken
                )
            )
        )
        await asyncio.sleep(0.002)
    await stop.wait()
    Path(outfile).write_text(json.dumps({"registered": registered[0], "cancels": cancels, "broken": broken}))
    # Thousands of streams torn down one by one would take seconds and print grpc's complaints
    # about generators it was still reading: the report is written, so leave at once.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
