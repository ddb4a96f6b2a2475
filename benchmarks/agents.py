"""Agent scale: memory of idle agents, many held streams, and cancel fan-out.

Workload: ``--agents`` light agents (``benchmarks/_swarm.py``, ``--per-process``
of them per process (2,500), 100 streams per channel and one TCP connection per
channel, one gRPC stream each,
heartbeating as the SDK does: on its slot grid, every 5 s while holding work and every
``scheduler.idle_heartbeat_interval`` (30 s) while idle) connect to one control plane
process on SQLite (automatic checkpoints off: one landing in a measured window would count as
idle cost by chance). Prints the control plane's RSS before and after they are all
connected, its CPU over ``--idle`` seconds divided by the heartbeats the swarm
sent meanwhile, how many are still connected 2 s later, and how many streams
broke on the way (each such agent reconnects, as a real one would). With ``--fanout``, submits one task of N list items (one
subtask per agent, max_agents N), waits until every subtask is RUNNING (each
agent holds its assignment), calls CancelTask and prints how long until the
first agent, half of them and the last received its Cancel (agents record
receive times; same clock).

What a heartbeat costs: the control plane's CPU over ``--idle`` seconds divided by the heartbeats
sent meanwhile counts everything it did in that window ("everything included"); the swarm then
pauses its heartbeats for as long, and the CPU of that quiet window (the background: lease sweep,
housekeeping, keepalives) is taken off, which leaves the cost of a heartbeat. Both are printed
for the whole process and for its event-loop thread alone (the rest is gRPC's own threads).

With ``--floor``, the same swarm then connects to a bare grpc.aio AgentGateway
(``_gateway_floor.py``: Register answered with the same heartbeat intervals, heartbeats read and
dropped; with ``--fanout``, one assignment then one Cancel written to every stream through a
per-stream outbox) and the same figures are printed for it, then both side by side: what grpc.aio
itself costs for these messages on this machine, under which MAOS cannot go.

    python benchmarks/agents.py --agents 1000 --fanout
    python benchmarks/agents.py --agents 10000 --per-process 5000 --fanout --floor
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk.proto.maos.v1 import enums_pb2 as enums  # noqa: E402
from agent_sdk.proto.maos.v1 import messages_pb2 as m  # noqa: E402
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb  # noqa: E402
from agent_sdk.proto.maos.v1 import system_service_pb2_grpc as system_grpc  # noqa: E402
from agent_sdk.proto.maos.v1 import task_service_pb2 as t  # noqa: E402
from benchmarks._common import control_plane, cpu_seconds, free_port, tasks_stub  # noqa: E402
from controlplane.config import OPTIONS  # noqa: E402

PER_PROCESS = 2500


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def thread_cpu(pid: int, tid: int | None = None) -> float:
    """CPU seconds (user + system) of one thread of ``pid`` (its main thread, the event loop, by default)."""
    fields = Path(f"/proc/{pid}/task/{tid or pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pid(address: str) -> int:
    out = subprocess.run(
        ["pgrep", "-f", f"controlplane.serve.*{address}|{address}"], capture_output=True, text=True
    )
    for pid in out.stdout.split():
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        if "controlplane.serve" in cmdline and address in cmdline and "_swarm" not in cmdline:
            return int(pid)
    raise RuntimeError("control plane process not found")


async def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def heartbeats_sent(outdir: Path, swarms: list[subprocess.Popen]) -> int:
    """Heartbeats the swarm processes sent so far (each rewrites its count on SIGUSR1)."""
    for proc in swarms:
        proc.send_signal(signal.SIGUSR1)
    total = 0
    for proc in swarms:
        path = outdir / f"{proc.pid}.beats"
        deadline = time.monotonic() + 10
        while True:
            try:
                text = path.read_text()
                if text.endswith("\n"):
                    total += int(text)
                    path.unlink()
                    break
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("a swarm process did not report its heartbeats")
            time.sleep(0.01)
    return total


@dataclass
class Figures:
    """What one side (MAOS or the floor) measured with the swarm connected."""

    window: float = 0.0
    cpu: float = 0.0  # the server process's CPU over the window (all threads)
    loop_cpu: float = 0.0  # its event-loop thread's
    beats: int = 0
    quiet_window: float = 0.0  # heartbeats paused: what the server spends without them
    quiet_cpu: float = 0.0
    quiet_loop_cpu: float = 0.0
    cancels: list[float] = field(default_factory=list)  # receive times after the call, seconds
    answered: float = 0.0

    def per_beat(self) -> tuple[float, float, float, float]:
        """µs per heartbeat: everything, the event loop's share, and both less the background
        (the CPU rate with heartbeats paused, over the same window)."""
        beats = max(self.beats, 1)
        rate = self.quiet_cpu / self.quiet_window if self.quiet_window else 0.0
        loop_rate = self.quiet_loop_cpu / self.quiet_window if self.quiet_window else 0.0
        return (
            self.cpu * 1e6 / beats,
            self.loop_cpu * 1e6 / beats,
            max(0.0, self.cpu - rate * self.window) * 1e6 / beats,
            max(0.0, self.loop_cpu - loop_rate * self.window) * 1e6 / beats,
        )

    def fanout(self) -> str:
        if not self.cancels:
            return "no Cancel received"
        c = sorted(self.cancels)
        return (
            f"{len(c)} got Cancel: the first {c[0] * 1000:.0f} ms, half by {c[len(c) // 2] * 1000:.0f} ms, "
            f"the last {c[-1] * 1000:.0f} ms after the call (answered in {self.answered * 1000:.0f} ms)"
        )


def start_swarm(
    address: str, token: str, agents: int, per_process: int, outdir: Path
) -> list[subprocess.Popen]:
    swarms = []
    for index in range(0, agents, per_process):
        n = min(per_process, agents - index)
        swarms.append(
            subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).with_name("_swarm.py")),
                    address,
                    str(n),
                    str(outdir / f"{index}.json"),
                ],
                env=dict(os.environ, MAOS_API_KEY=token),
            )
        )
    return swarms


def stop_swarm(swarms: list[subprocess.Popen], outdir: Path) -> list[dict]:
    for proc in swarms:
        proc.send_signal(signal.SIGTERM)
    for proc in swarms:
        proc.wait(timeout=60)
    return [json.loads(f.read_text()) for f in outdir.glob("*.json")]


def report_broken(reports: list[dict]) -> None:
    broken = sum((Counter(r["broken"]) for r in reports), Counter())
    print(
        f"streams that broke and reconnected: {sum(broken.values())}"
        + (f" ({', '.join(f'{code} {n}' for code, n in broken.most_common())})" if broken else "")
    )


async def measure_idle(pid: int, outdir: Path, swarms: list[subprocess.Popen], window: float) -> Figures:
    """CPU over ``window`` seconds of heartbeats, then over a window as long with them paused."""
    figures = Figures(window=window)
    cpu_before, loop_before = cpu_seconds(pid)["control plane"], thread_cpu(pid)
    beats_before = heartbeats_sent(outdir, swarms)
    await asyncio.sleep(window)
    figures.cpu = cpu_seconds(pid)["control plane"] - cpu_before
    figures.loop_cpu = thread_cpu(pid) - loop_before
    figures.beats = heartbeats_sent(outdir, swarms) - beats_before
    for proc in swarms:
        proc.send_signal(signal.SIGUSR2)  # pause heartbeats
    await asyncio.sleep(0.5)  # the last ones sent are read
    cpu_before, loop_before = cpu_seconds(pid)["control plane"], thread_cpu(pid)
    paused_beats = heartbeats_sent(outdir, swarms)
    await asyncio.sleep(window)
    figures.quiet_window = window
    figures.quiet_cpu = cpu_seconds(pid)["control plane"] - cpu_before
    figures.quiet_loop_cpu = thread_cpu(pid) - loop_before
    if heartbeats_sent(outdir, swarms) != paused_beats:
        raise RuntimeError("heartbeats went on while paused")
    for proc in swarms:
        proc.send_signal(signal.SIGUSR2)
    return figures


def print_idle(side: str, figures: Figures, agents: int) -> None:
    everything, loop, net, net_loop = figures.per_beat()
    print(
        f"{side} idle: {figures.cpu / figures.window * 100:.1f} % of a core over {figures.window:.0f} s with "
        f"{agents} agents ({figures.beats} heartbeats: {everything:.0f} µs of CPU per heartbeat everything "
        f"included, event-loop thread {loop:.0f} µs); heartbeats paused: "
        f"{figures.quiet_cpu / figures.quiet_window * 100:.2f} % of a core (loop "
        f"{figures.quiet_loop_cpu / figures.quiet_window * 100:.2f} %); so a heartbeat costs {net:.0f} µs "
        f"(event loop {net_loop:.0f} µs)"
    )


async def run(agents: int, fanout: bool, idle_window: float, per_process: int = PER_PROCESS) -> Figures:
    env = {
        "MAOS_TASKS_MAX_FANOUT": str(max(256, agents + 1)),
        "MAOS_SCHEDULER_LEASE_TTL": "60",
        # No automatic checkpoint during the run: the one after the registration burst (and its young
        # collection, ~0.3 s on the loop with 10,000 agents) would land in a measured window by chance.
        "MAOS_CHECKPOINTS_INTERVAL": "3600",
    }
    async with control_plane("", extra_env=env) as bench:
        address, channel, md = bench.address, bench.channel, bench.metadata
        system = system_grpc.SystemServiceStub(channel)
        pid = server_pid(address)
        before = rss_mib(pid)
        outdir = Path(tempfile.mkdtemp(prefix="maos-swarm-"))
        swarms = start_swarm(address, bench.token, agents, per_process, outdir)
        started = time.perf_counter()

        async def all_connected() -> bool:
            status = await system.GetStatus(system_pb.GetStatusRequest(), metadata=md, timeout=30)
            if status.connected_agents and status.connected_agents % 1000 < 50:
                print(
                    f"  {status.connected_agents} connected after {time.perf_counter() - started:.0f} s",
                    file=sys.stderr,
                )
            return status.connected_agents >= agents

        try:
            await wait_until(all_connected, 300, f"{agents} agents")
            connect_time = time.perf_counter() - started
            await asyncio.sleep(2)  # let allocations settle after the registration burst
            after = rss_mib(pid)
            held = (
                await system.GetStatus(system_pb.GetStatusRequest(), metadata=md, timeout=30)
            ).connected_agents
            print(
                f"workload: {agents} idle agents (one stream each, {per_process} per process), SQLite, "
                "automatic checkpoints off"
            )
            figures = await measure_idle(pid, outdir, swarms, idle_window)
            print_idle("MAOS", figures, agents)
            print(
                f"connected in {connect_time:.1f} s; control-plane RSS {before:.0f} MiB -> {after:.0f} MiB "
                f"(+{after - before:.0f} MiB, {(after - before) * 1024 / agents:.0f} KiB per agent); {held} still connected 2 s later"
            )
            if fanout:
                stub = tasks_stub(channel)
                description = "Fan out:\n" + "\n".join(f"- p{i}" for i in range(agents))
                reply = await stub.SubmitTask(
                    t.SubmitTaskRequest(task=m.Task(description=description, max_agents=agents)),
                    metadata=md,
                    timeout=120,  # planning thousands of parts on a loaded machine
                )

                async def all_running() -> bool:
                    task = (
                        await stub.GetTask(t.GetTaskRequest(name=reply.task.name), metadata=md, timeout=30)
                    ).task
                    return task.subtasks_running >= agents

                await wait_until(all_running, 120, "every subtask running")
                print(f"  all {agents} subtasks running; cancelling", file=sys.stderr, flush=True)
                swarm_cpu = sum(cpu_seconds(p.pid)["control plane"] for p in swarms)
                cp_cpu, cp_loop = cpu_seconds(pid)["control plane"], thread_cpu(pid)
                cancel_at = time.time()
                await stub.CancelTask(t.CancelTaskRequest(name=reply.task.name), metadata=md, timeout=30)
                figures.answered = time.time() - cancel_at
                final = (
                    await stub.GetTask(t.GetTaskRequest(name=reply.task.name), metadata=md, timeout=30)
                ).task
                assert final.status == enums.TASK_STATUS_CANCELLED
                await asyncio.sleep(1.0)
                # Who was busy meanwhile (the call, its answer, a GetTask, 1 s): the control plane, its
                # event loop, and the swarm processes receiving on the same cores.
                busy = (
                    cpu_seconds(pid)["control plane"] - cp_cpu,
                    thread_cpu(pid) - cp_loop,
                    sum(cpu_seconds(p.pid)["control plane"] for p in swarms) - swarm_cpu,
                    time.time() - cancel_at,
                )
        finally:
            reports = stop_swarm(swarms, outdir)
        report_broken(reports)
        if fanout:
            figures.cancels = [c - cancel_at for r in reports for c in r["cancels"]]
            print(f"MAOS cancel fan-out (one task of {agents} subtasks, one per agent): {figures.fanout()}")
            print(
                f"CPU over the fan-out (the call, its answer, a GetTask and 1 s: {busy[3]:.1f} s): control plane {busy[0]:.2f} s "
                f"(event loop {busy[1]:.2f} s), swarm {busy[2]:.2f} s"
            )
        return figures


async def run_floor(agents: int, fanout: bool, idle_window: float, per_process: int) -> Figures:
    """The same swarm and measures against a bare grpc.aio AgentGateway (``_gateway_floor.py``)."""
    address = f"127.0.0.1:{free_port()}"
    heartbeat = OPTIONS["scheduler.heartbeat_interval"].default
    idle = OPTIONS["scheduler.idle_heartbeat_interval"].default
    server = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("_gateway_floor.py")),
            address,
            str(heartbeat),
            str(idle),
        ],
        stdin=subprocess.DEVNULL,
    )
    channel = grpc.aio.insecure_channel(address)
    calls = {name: channel.unary_unary(f"/floor.Control/{name}") for name in ("Status", "Assign", "Cancel")}

    async def status() -> tuple[int, int]:
        connected, written = (await calls["Status"](b"", timeout=30)).split()
        return int(connected), int(written)

    outdir = Path(tempfile.mkdtemp(prefix="maos-floor-"))
    swarms: list[subprocess.Popen] = []
    try:
        await wait_until(lambda: _answers(status), 30, "the floor server")
        swarms = start_swarm(address, "none", agents, per_process, outdir)

        async def all_connected() -> bool:
            return (await status())[0] >= agents

        await wait_until(all_connected, 300, f"{agents} agents on the floor server")
        await asyncio.sleep(2)
        figures = await measure_idle(server.pid, outdir, swarms, idle_window)
        print_idle("floor", figures, agents)
        if fanout:
            await calls["Assign"](b"", timeout=30)

            async def all_written() -> bool:
                return (await status())[1] >= agents

            await wait_until(all_written, 120, "every assignment written")
            await asyncio.sleep(1.0)
            cancel_at = time.time()
            await calls["Cancel"](b"", timeout=30)
            figures.answered = time.time() - cancel_at
            await asyncio.sleep(2.0)
    finally:
        reports = stop_swarm(swarms, outdir)
        await channel.close()
        server.terminate()
        server.wait(timeout=30)
    report_broken(reports)
    if fanout:
        figures.cancels = [c - cancel_at for r in reports for c in r["cancels"]]
        print(f"floor cancel fan-out (one Cancel per stream): {figures.fanout()}")
    return figures


async def _answers(status) -> bool:
    try:
        await status()
        return True
    except grpc.aio.AioRpcError:
        return False


async def run_both(agents: int, fanout: bool, idle_window: float, per_process: int, floor: bool) -> None:
    maos = await run(agents, fanout, idle_window, per_process)
    if not floor:
        return
    base = await run_floor(agents, fanout, idle_window, per_process)
    print(f"side by side, {agents} agents, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}:")
    for side, figures in (("MAOS", maos), ("grpc.aio floor", base)):
        everything, loop, net, net_loop = figures.per_beat()
        line = (
            f"  {side:15} per heartbeat {net:5.0f} µs (loop {net_loop:4.0f} µs; everything included "
            f"{everything:4.0f} µs); idle {figures.cpu / figures.window * 100:4.1f} % of a core"
        )
        if figures.cancels:
            last = max(figures.cancels) * 1000
            line += f"; fan-out reaches the last agent in {last:.0f} ms"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--fanout", action="store_true")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="Then run the same swarm against a bare grpc.aio AgentGateway and print both.",
    )
    parser.add_argument("--idle", type=float, default=10.0, help="Seconds of idle CPU measured.")
    parser.add_argument(
        "--per-process", type=int, default=PER_PROCESS, help="Agents per swarm process (default %(default)s)."
    )
    args = parser.parse_args()
    asyncio.run(run_both(args.agents, args.fanout, args.idle, args.per_process, args.floor))


if __name__ == "__main__":
    main()
