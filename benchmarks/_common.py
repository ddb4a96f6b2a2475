"""Shared pieces of the benchmarks: a control plane in its own process, and timing helpers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import system_service_pb2_grpc as system_grpc
from agent_sdk.proto.maos.v1 import task_service_pb2_grpc as tasks_grpc

SERVE = """
import asyncio, sys
from controlplane.config import load_settings
from controlplane.serve import configure_logging, serve
settings = load_settings()
configure_logging(settings)
asyncio.run(serve(settings, address=sys.argv[1]))
"""


def free_port() -> int:
    """A TCP port free right now on localhost."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database next to ``admin_url``'s, dropped afterwards."""
    import uuid

    import psycopg

    name = f"maos_bench_{uuid.uuid4().hex[:12]}"
    base, _, _ = admin_url.rpartition("/")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class Bench:
    """A running control plane: its address, a channel to it, and the admin key's call metadata."""

    address: str
    channel: grpc.aio.Channel
    token: str
    pid: int

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """``authorization: Bearer <admin key>`` for every call (access control stays on)."""
        return (("authorization", f"Bearer {self.token}"),)


def bootstrap_admin_key(env: dict[str, str]) -> str:
    """What ``maos init`` does: an admin key in the control plane's database, returned."""
    from controlplane.access.bootstrap import bootstrap_admin, read_token
    from controlplane.config import load_settings

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        settings = load_settings()
        bootstrap_admin(settings, force=True)
        token = read_token(Path(settings.home))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if not token:
        raise RuntimeError("could not bootstrap an admin key")
    return token


@contextlib.asynccontextmanager
async def control_plane(
    pool: str,
    database_url: str = "",
    extra_env: dict[str, str] | None = None,
    agents: int = 0,
    prepare: Callable[[dict[str, str]], None] | None = None,
) -> AsyncIterator[Bench]:
    """A control plane process with a local agent pool and access control required.

    ``prepare`` is called with the server's environment after its database is
    created and before the server starts (to fill the database).
    """
    home = tempfile.mkdtemp(prefix="maos-bench-")
    address = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "MAOS_HOME": home,
        "MAOS_AGENTS_POOL": pool,
        "MAOS_SERVER_METRICS_PORT": "0",
        "MAOS_SERVER_HTTP_PORT": "0",
        "MAOS_SERVER_DASHBOARD_PORT": "0",
        "MAOS_SYSTEM_LOG_LEVEL": "warning",
        "MAOS_SYSTEM_MAX_AGENTS": "100",
        **(extra_env or {}),
    }
    stack = contextlib.ExitStack()
    if database_url:  # each run gets a database of its own, so counts start at zero
        env["MAOS_DATABASE_PRIMARY_URL"] = stack.enter_context(fresh_database(database_url))
    token = bootstrap_admin_key(env)
    if prepare is not None:
        prepare(env)
    proc = subprocess.Popen([sys.executable, "-c", SERVE, address], env=env, stdin=subprocess.DEVNULL)
    channel = grpc.aio.insecure_channel(address)
    bench = Bench(address, channel, token, proc.pid)
    try:
        system = system_grpc.SystemServiceStub(channel)
        deadline = time.monotonic() + 60
        while True:
            try:
                status = await system.GetStatus(
                    system_pb.GetStatusRequest(), metadata=bench.metadata, timeout=1
                )
                if status.connected_agents >= agents:
                    break
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the control plane did not come up with its agents")
            await asyncio.sleep(0.05)
        yield bench
    finally:
        await channel.close()
        if proc.poll() is not None:  # it stopped by itself: say how, the run's figures are cut short
            print(f"the control plane exited early with status {proc.returncode}", file=sys.stderr)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(home, ignore_errors=True)
        stack.close()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found.extend(int(c) for c in task.read_text().split())
    return found


def cpu_seconds(pid: int) -> dict[str, float]:
    """CPU time (user + system) so far of a process and of each live descendant, by role.

    Keys: "control plane" for ``pid`` and "agents" for the sum of its
    descendants (the supervised agent processes). Linux only (``/proc``).
    """
    tick = os.sysconf("SC_CLK_TCK")

    def one(p: int) -> float:
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    totals = {"control plane": one(pid), "agents": 0.0}
    pending = _children(pid)
    while pending:
        child = pending.pop()
        try:
            totals["agents"] += one(child)
            pending.extend(_children(child))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return totals


def cpu_report(
    before: dict[str, float], after: dict[str, float], client: float, units: int, unit: str
) -> str:
    """CPU microseconds per ``unit`` for the control plane, its agents and this client."""
    parts = {name: after[name] - before[name] for name in before}
    parts["client"] = client
    text = ", ".join(f"{name} {seconds * 1e6 / units:.0f} µs" for name, seconds in parts.items())
    return f"CPU per {unit}: {text} (total {sum(parts.values()) * 1e6 / units:.0f} µs)"


def status_events(bench: Bench) -> grpc.aio.UnaryStreamCall:
    """A WatchEvents stream of every task status change (cancel it when done)."""
    return system_grpc.SystemServiceStub(bench.channel).WatchEvents(
        system_pb.WatchEventsRequest(event_types=[enums.EVENT_TYPE_TASK_STATUS_CHANGED]),
        metadata=bench.metadata,
    )


def tasks_stub(channel: grpc.aio.Channel) -> tasks_grpc.TaskServiceStub:
    """The TaskService stub of a channel."""
    return tasks_grpc.TaskServiceStub(channel)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def describe(values_ms: list[float]) -> str:
    """p50/p99/mean of milliseconds."""
    return (
        f"p50 {percentile(values_ms, 50):.2f} ms  p99 {percentile(values_ms, 99):.2f} ms  "
        f"mean {statistics.fmean(values_ms):.2f} ms"
    )


async def stream_submit(
    stub: Any,
    metadata: Any,
    message: Any,
    count: int,
    inflight: int,
    timeout: float,
    request_ids: bool = False,
) -> None:
    """Send ``count`` copies of ``message`` on one StreamSubmitTasks stream, at most ``inflight`` unanswered.

    With ``request_ids`` each copy carries a fresh ``request_id`` (as the SDK's submits do).
    """
    call = stub.StreamSubmitTasks(metadata=metadata, timeout=timeout)
    window = asyncio.Semaphore(inflight)

    async def write() -> None:
        for _ in range(count):
            await window.acquire()
            one = message
            if request_ids:  # a message of its own, like every request the SDK sends
                one = type(message)()
                one.CopyFrom(message)
                one.request_id = uuid.uuid4().hex
            await call.write(one)
        await call.done_writing()

    writer = asyncio.create_task(write())
    async for response in call:
        if response.WhichOneof("outcome") != "task":
            raise RuntimeError(f"a submit was refused: {response.error}")
        window.release()
    await writer
