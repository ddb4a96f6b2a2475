"""Several ``maos start`` replicas on PostgreSQL and Redis, real agents, and the faults to inflict on them.

A :class:`ReplicaCluster` is N ``maos start`` processes sharing one PostgreSQL database (made for the
test and dropped after it) and one Redis key prefix, each on its own ephemeral port, with its own
MAOS_HOME. :class:`RecordingAgentProcess` runs :mod:`tests.harness.recording_agent` (a real SDK
Worker) given every replica's address, starting with a chosen one, so the agents spread over the
replicas and fail over among them. Faults:

* :meth:`ReplicaCluster.kill` SIGKILLs a replica (no shutdown, no final commit), and
  :meth:`ReplicaCluster.freeze` SIGSTOPs one first (a stall: it answers nothing, its peers see it
  connected);
* :meth:`RecordingAgentProcess.kill` SIGKILLs an agent;
* :func:`kill_redis_connections` closes a process's connections to Redis (``CLIENT KILL ADDR`` for
  each of its sockets, found in ``/proc``), and :func:`redis_cut` keeps doing so for a while: a
  Redis outage as the replicas see it, while the shared server goes on serving everyone else (no
  ``CLIENT PAUSE``, no stopping it).

The pytest fixture ``replica_cluster`` makes clusters on the session's PostgreSQL server (a fresh
database each) and Redis (a fresh prefix each) and kills every process at the end; a benchmark uses
the classes directly (``benchmarks/replicas.py``). Linux only (``/proc``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tests.harness.recording_agent import Execution, read_executions
from tests.harness.server import ControlPlaneProcess, alive, wait_for

#: Settings every replica of a test cluster runs with (environment variables of ``maos start``):
#: short leases and heartbeats so faults are noticed within seconds.
REPLICA_ENV = {
    "MAOS_SCHEDULER_LEASE_TTL": "5",
    "MAOS_SCHEDULER_HEARTBEAT_INTERVAL": "0.5",
    "MAOS_SCHEDULER_RESTART_GRACE": "5",
    "MAOS_REPLICAS_HEARTBEAT_INTERVAL": "0.5",
    "MAOS_REPLICAS_LOST_AFTER": "8",  # a replica not heard from this long is taken over (and fences itself)
    "MAOS_REPLICAS_JOB_LEASE_TTL": "3",
    "MAOS_TASKS_DEFAULT_INITIAL_BACKOFF": "0.05",
    "MAOS_TASKS_DEFAULT_MAX_BACKOFF": "0.5",
}

#: Environment variables that would give a replica a model-backed agent pool or planner.
MODEL_KEYS = ("ANTHROPIC_API_KEY", "CLAUDE_API_KEY", "ANTHROPIC_BASE_URL")


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on ``admin_url``'s server, dropped afterwards.

    Args:
        admin_url: A libpq or SQLAlchemy URL of a database to connect to for CREATE/DROP DATABASE.

    Yields:
        The new database's SQLAlchemy URL (``postgresql+psycopg://.../maos_test_<hex>``).
    """
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url)
    libpq = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"maos_test_{secrets.token_hex(6)}"
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def rotated(addresses: Sequence[str], first: int) -> str:
    """``addresses`` as one ``--server`` list starting at index ``first`` (its pick_first choice)."""
    n = len(addresses)
    return ",".join(addresses[(first + i) % n] for i in range(n))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tcp_connections(pid: int) -> list[tuple[int, int]]:
    """``(local port, remote port)`` of each TCP connection process ``pid`` holds (from ``/proc``)."""
    inodes = set()
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                parts = line.split()
                if parts[9] in inodes and parts[3] == "01":  # ESTABLISHED
                    local, remote = parts[1], parts[2]
                    found.append((int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)))
    return found


def kill_redis_connections(redis_url: str, pids: Sequence[int]) -> int:
    """Close, on the Redis server, every connection the processes ``pids`` hold to it.

    Returns:
        How many connections Redis closed.
    """
    import redis

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        port = client.connection_pool.connection_kwargs.get("port", 6379)
        mine = {local for pid in pids for local, remote in tcp_connections(pid) if remote == port}
        if not mine:
            return 0
        killed = 0
        for entry in client.client_list():
            host, _, client_port = entry["addr"].rpartition(":")
            if int(client_port) in mine:
                with contextlib.suppress(redis.ResponseError):  # closed meanwhile
                    killed += int(client.client_kill_filter(_id=entry["id"]))
        return killed
    finally:
        client.close()


@contextlib.asynccontextmanager
async def redis_cut(redis_url: str, pids: Sequence[int], every: float = 0.005) -> AsyncIterator[list[int]]:
    """Keep closing the Redis connections of ``pids`` while the block runs: Redis is away for them.

    Yields:
        A list that holds, once the block ends, how many connections were closed in each round.
    """
    rounds: list[int] = []
    stop = asyncio.Event()

    async def cutter() -> None:
        while not stop.is_set():
            rounds.append(await asyncio.to_thread(kill_redis_connections, redis_url, pids))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)

    task = asyncio.create_task(cutter())
    try:
        yield rounds
    finally:
        stop.set()
        await task


class Replica(ControlPlaneProcess):
    """One ``maos start`` process of a cluster (SIGKILL it with :meth:`kill`, start it again with :meth:`start`)."""

    def __init__(self, home: Path, **env: str):
        super().__init__(home, **env)
        for name in MODEL_KEYS:  # no model-backed pool or planner from the developer's shell
            self.env.pop(name, None)

    def start(self) -> None:
        """Start ``maos start --no-migrate`` (the cluster migrated the database once, before)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "maos_cli.main", "start", "--no-migrate", "--address", self.address],
            env=self.env,
            stdin=subprocess.DEVNULL,
            cwd=self.home,
        )

    @property
    def pid(self) -> int:
        """The process id of the running (or last) process."""
        assert self.process is not None
        return self.process.pid

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and alive(self.process.pid)

    def cpu_seconds(self) -> float:
        """CPU seconds this process has used so far."""
        return cpu_seconds(self.pid) if self.process is not None else 0.0


class RecordingAgentProcess:
    """A :mod:`tests.harness.recording_agent` process (a real SDK Worker) logging its executions."""

    def __init__(
        self,
        server: str,
        log: Path,
        *,
        delay: float = 0.0,
        concurrency: int = 8,
        token: str | None = None,
        env: dict[str, str] | None = None,
    ):
        self.server = server
        self.log = log
        args = [
            sys.executable,
            "-m",
            "tests.harness.recording_agent",
            "--server",
            server,
            "--log",
            str(log),
            "--delay",
            str(delay),
            "--concurrency",
            str(concurrency),
        ]
        if token:
            args += ["--token", token]
        self.process = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)
        self.killed_ns: int | None = None

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL the agent (what it wrote before stays in its log) and note when."""
        self.killed_ns = time.monotonic_ns()
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Kill the process if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def executions(self) -> list[Execution]:
        """What this agent has recorded so far."""
        return read_executions([self.log])


class ReplicaCluster:
    """N replicas on one PostgreSQL database and one Redis key prefix, and the agents given to them.

    Args:
        folder: Where each replica's MAOS_HOME and each agent's log go.
        database_url: The cluster's database (SQLAlchemy URL); migrated by :meth:`start`.
        redis_url: The Redis server.
        redis_prefix: The cluster's key prefix (``redis.key_prefix``).
        count: How many replicas.
        env: More ``MAOS_*`` settings for every replica (over :data:`REPLICA_ENV`).
        overrides: Settings of single replicas, by index (over ``env``).
    """

    def __init__(
        self,
        folder: Path,
        database_url: str,
        redis_url: str,
        redis_prefix: str,
        count: int = 3,
        env: dict[str, str] | None = None,
        overrides: dict[int, dict[str, str]] | None = None,
    ):
        self.folder = folder
        self.database_url = database_url
        self.redis_url = redis_url
        self.redis_prefix = redis_prefix
        shared = {
            **REPLICA_ENV,
            "MAOS_DATABASE_PRIMARY_URL": database_url,
            "MAOS_REDIS_URL": redis_url,
            "MAOS_REDIS_KEY_PREFIX": redis_prefix,
            **(env or {}),
        }
        self._shared = shared
        self.replicas = []
        for index in range(count):
            home = folder / f"replica-{index}"
            home.mkdir(parents=True, exist_ok=True)
            own = {**shared, "MAOS_SERVER_REPLICA_ID": f"replica-{index}", **(overrides or {}).get(index, {})}
            self.replicas.append(Replica(home, **own))
        self.agents: list[RecordingAgentProcess] = []

    @property
    def addresses(self) -> list[str]:
        """Every replica's ``host:port``, in order."""
        return [r.address for r in self.replicas]

    @property
    def env(self) -> dict[str, str]:
        """The environment the replicas run with (the first one's; only the replica id differs)."""
        return self.replicas[0].env

    def migrate(self) -> None:
        """``maos db migrate`` once, so the replicas start together on a migrated database."""
        done = subprocess.run(
            [sys.executable, "-m", "maos_cli.main", "db", "migrate"],
            env={**self.env, **self._shared},  # (the database directly, not what one replica's overrides say)
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0:
            raise AssertionError(f"maos db migrate exited {done.returncode}: {done.stderr}")

    async def start(
        self, timeout: float = 60.0, prepare: Callable[[dict[str, str]], None] | None = None
    ) -> None:
        """Migrate, start every replica, and wait until each serves.

        ``prepare`` is called with the replicas' environment once the database is migrated, before
        any replica starts (a benchmark issues its admin key there).
        """
        self.migrate()
        if prepare is not None:
            prepare(self.env)
        for replica in self.replicas:
            replica.start()
        await asyncio.gather(*(r.wait_ready(timeout) for r in self.replicas))

    def freeze(self, index: int) -> None:
        """SIGSTOP replica ``index``: it holds its connections but reads and writes nothing (a stall)."""
        os.kill(self.replicas[index].pid, signal.SIGSTOP)

    def kill(self, index: int) -> int:
        """SIGKILL replica ``index`` (frozen or not); returns when, in ``CLOCK_MONOTONIC`` nanoseconds."""
        when = time.monotonic_ns()
        self.replicas[index].kill()
        return when

    def live(self) -> list[Replica]:
        """The replicas whose process runs."""
        return [r for r in self.replicas if r.running]

    def agent(
        self, first: int, *, delay: float = 0.0, concurrency: int = 8, only: bool = False, **kwargs: Any
    ) -> RecordingAgentProcess:
        """Start a recording agent given every replica's address, replica ``first``'s first.

        With ``only`` it is given replica ``first`` alone (it cannot fail over).
        """
        server = self.addresses[first] if only else rotated(self.addresses, first)
        log = self.folder / f"agent-{len(self.agents)}.jsonl"
        agent = RecordingAgentProcess(server, log, delay=delay, concurrency=concurrency, **kwargs)
        self.agents.append(agent)
        return agent

    def executions(self) -> list[Execution]:
        """Every execution every agent of the cluster recorded."""
        return read_executions([a.log for a in self.agents])

    def redis_pids(self) -> list[int]:
        """The live replicas' process ids (whose Redis connections :func:`redis_cut` closes)."""
        return [r.pid for r in self.live()]

    def control_plane_cpu(self) -> float:
        """CPU seconds the replica processes have used so far (their sum)."""
        return sum(r.cpu_seconds() for r in self.replicas)

    async def wait_for_connections(self, agents: int, timeout: float = 30.0) -> None:
        """Wait until ``agents`` agent processes hold a connection to some replica (seen in ``/proc``)."""
        ports = {r.port for r in self.replicas}

        def connected() -> bool:
            return (
                sum(any(remote in ports for _, remote in tcp_connections(a.pid)) for a in self.agents)
                >= agents
            )

        await wait_for(connected, timeout, interval=0.05, message=f"{agents} agents connected")

    def replica_of(self, agent: RecordingAgentProcess) -> Replica | None:
        """The replica ``agent`` is connected to right now (from its sockets), if any."""
        remotes = {remote for _, remote in tcp_connections(agent.pid)}
        return next((r for r in self.replicas if r.port in remotes), None)

    def stop(self) -> None:
        """Kill every agent, then stop every replica."""
        for agent in self.agents:
            agent.stop()
        for replica in self.replicas:
            replica.stop()
