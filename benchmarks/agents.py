"""Agent scale: memory of idle agents, many held streams, and cancel fan-out.

Workload: ``--agents`` light agents (``benchmarks/_swarm.py``, ``--per-process``
of them per process (2,500), 100 streams per channel and one TCP connection per
channel, one gRPC stream each,
heartbeating as the SDK does: on its slot grid, every 5 s while holding work and every
``scheduler.idle_heartbeat_interval`` (30 s) while idle) connect to one control plane
process on SQLite. Prints the control plane's RSS before and after they are all
connected, its CPU over ``--idle`` seconds divided by the heartbeats the swarm
sent meanwhile, how many are still connected 2 s later, and how many streams
broke on the way (each such agent reconnects, as a real one would). With ``--fanout``, submits one task of N list items (one
subtask per agent, max_agents N), waits until every subtask is RUNNING (each
agent holds its assignment), calls CancelTask and prints how long until the
first agent, half of them and the last received its Cancel (agents record
receive times; same clock).

    python benchmarks/agents.py --agents 1000 --fanout
    python benchmarks/agents.py --agents 10000 --per-process 5000 --fanout
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk.proto.maos.v1 import enums_pb2 as enums  # noqa: E402
from agent_sdk.proto.maos.v1 import messages_pb2 as m  # noqa: E402
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb  # noqa: E402
from agent_sdk.proto.maos.v1 import system_service_pb2_grpc as system_grpc  # noqa: E402
from agent_sdk.proto.maos.v1 import task_service_pb2 as t  # noqa: E402
from benchmarks._common import control_plane, cpu_seconds, tasks_stub  # noqa: E402

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


async def run(agents: int, fanout: bool, idle_window: float, per_process: int = PER_PROCESS) -> None:
    env = {"MAOS_TASKS_MAX_FANOUT": str(max(256, agents + 1)), "MAOS_SCHEDULER_LEASE_TTL": "60"}
    async with control_plane("", extra_env=env) as bench:
        address, channel, md = bench.address, bench.channel, bench.metadata
        system = system_grpc.SystemServiceStub(channel)
        pid = server_pid(address)
        before = rss_mib(pid)
        outdir = Path(tempfile.mkdtemp(prefix="maos-swarm-"))
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
                    env=dict(os.environ, MAOS_API_KEY=bench.token),
                )
            )
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
            print(f"workload: {agents} idle agents (one stream each, {per_process} per process), SQLite")
            cpu_before, loop_before = cpu_seconds(pid)["control plane"], thread_cpu(pid)
            beats_before = heartbeats_sent(outdir, swarms)
            await asyncio.sleep(idle_window)
            cpu, loop_cpu = cpu_seconds(pid)["control plane"] - cpu_before, thread_cpu(pid) - loop_before
            beats = heartbeats_sent(outdir, swarms) - beats_before
            print(
                f"idle: control plane used {cpu / idle_window * 100:.1f} % of a core over {idle_window:.0f} s "
                f"({beats} heartbeats received: {cpu * 1e6 / max(beats, 1):.0f} µs of CPU per heartbeat, "
                f"everything included; its event-loop thread {loop_cpu * 1e6 / max(beats, 1):.0f} µs of it)"
            )
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
                    timeout=30,
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
                answered = time.time()
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
            for proc in swarms:
                proc.send_signal(signal.SIGTERM)
            for proc in swarms:
                proc.wait(timeout=60)
        reports = [json.loads(f.read_text()) for f in outdir.glob("*.json")]
        broken = sum((Counter(r["broken"]) for r in reports), Counter())
        print(
            f"streams that broke and reconnected: {sum(broken.values())}"
            + (f" ({', '.join(f'{code} {n}' for code, n in broken.most_common())})" if broken else "")
        )
        if fanout:
            cancels = [c for r in reports for c in r["cancels"]]
            cancels.sort()
            first, median, last = (
                (cancels[i] - cancel_at) * 1000 for i in (0, len(cancels) // 2, len(cancels) - 1)
            )
            print(
                f"cancel fan-out: CancelTask answered in {(answered - cancel_at) * 1000:.0f} ms; "
                f"{len(cancels)}/{agents} agents got Cancel, the first {first:.0f} ms, half by {median:.0f} ms, "
                f"the last {last:.0f} ms after the call"
            )
            print(
                f"CPU over the fan-out (the call, its answer, a GetTask and 1 s: {busy[3]:.1f} s): control plane {busy[0]:.2f} s "
                f"(event loop {busy[1]:.2f} s), swarm {busy[2]:.2f} s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--fanout", action="store_true")
    parser.add_argument("--idle", type=float, default=10.0, help="Seconds of idle CPU measured.")
    parser.add_argument(
        "--per-process", type=int, default=PER_PROCESS, help="Agents per swarm process (default %(default)s)."
    )
    args = parser.parse_args()
    asyncio.run(run(args.agents, args.fanout, args.idle, args.per_process))


if __name__ == "__main__":
    main()
