"""Fixtures for a real control plane: the production ``build_app`` on an ephemeral port.

``control_plane`` runs on SQLite in a temporary MAOS_HOME; ``pg_control_plane``
on the session's PostgreSQL database (tables emptied first). ``AgentProcess``
runs real ``maos-agent`` processes against them (over TLS with
``pki.client_args()`` as extra options; ``pki`` makes test certificates). Nothing here sleeps and
hopes: :func:`wait_for` polls a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy

from agent_sdk.proto.maos.v1 import (
    agent_service_pb2_grpc,
    messages_pb2,
    system_service_pb2_grpc,
    task_service_pb2,
    task_service_pb2_grpc,
)
from controlplane.app import App, build_app
from controlplane.config import Settings, load_settings

#: Fast leases so lease-expiry tests finish quickly.
TEST_OVERRIDES = {
    "server.metrics_port": 0,
    "server.http_port": 0,  # http_control_plane serves it on an ephemeral port
    "server.dashboard_port": 0,  # tests/dashboard serve it on an ephemeral port
    "scheduler.lease_ttl": 3.0,
    "scheduler.heartbeat_interval": 0.5,
    # Idle agents beat as often as busy ones, so tests can wait on any agent's next heartbeat.
    "scheduler.idle_heartbeat_interval": 0,
    "scheduler.restart_grace": 3.0,
    "tasks.default_initial_backoff": 0.05,
    "tasks.default_max_backoff": 0.5,
    "agents.pool": {},
    # The existing suites predate access control; tests/controlplane/access uses "required".
    "security.auth": "off",
}


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie, dead but not yet reaped, does not count)."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state not in ("Z", "X")


async def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01, message: str = "condition"
) -> Any:
    """Poll ``predicate`` (sync or async) until truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        await asyncio.sleep(interval)


def make_settings(home: Path, **overrides: Any) -> Settings:
    """Test settings in ``home`` with the process environment ignored."""
    return load_settings(home=home, environ={}, overrides={**TEST_OVERRIDES, **overrides})


async def start_app(settings: Settings, http: bool = False, dashboard: bool = False) -> App:
    """Build and start a control plane on an ephemeral localhost port (and HTTP, the dashboard, on others)."""
    app = build_app(settings)
    await app.start(
        "127.0.0.1:0",
        http_address="127.0.0.1:0" if http else None,
        dashboard_address="127.0.0.1:0" if dashboard else None,
    )
    return app


class Stubs:
    """gRPC stubs of the user-facing services over one channel."""

    def __init__(self, address: str):
        self.channel = grpc.aio.insecure_channel(address)
        self.tasks = task_service_pb2_grpc.TaskServiceStub(self.channel)
        self.agents = agent_service_pb2_grpc.AgentServiceStub(self.channel)
        self.system = system_service_pb2_grpc.SystemServiceStub(self.channel)

    async def all_tasks(self) -> list[messages_pb2.Task]:
        """Every task, by ListTasks pages."""
        found: list[messages_pb2.Task] = []
        token = ""
        while True:
            reply = await self.tasks.ListTasks(
                task_service_pb2.ListTasksRequest(page_size=1000, page_token=token), timeout=30
            )
            found.extend(reply.tasks)
            token = reply.next_page_token
            if not token:
                return found

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()


class AgentProcess:
    """A real ``maos-agent run`` process."""

    def __init__(self, address: str, agent_type: str = "echo", *extra: str, home: Path | None = None):
        env = dict(os.environ)
        if home is not None:
            env["MAOS_HOME"] = str(home)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent_sdk.runner",
                "run",
                "--type",
                agent_type,
                "--server",
                address,
                "--grace",
                "5",
                "--log-level",
                "warning",
                *extra,
            ],
            env=env,
            stdin=subprocess.DEVNULL,
        )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    def signal(self, sig: int) -> None:
        """Send a signal to the process."""
        os.kill(self.process.pid, sig)

    def stop(self) -> None:
        """Kill the process if it still runs."""
        if self.process.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.process.pid, sig)
            self.process.wait(timeout=10)


async def stored_audit(app: App, **filters: Any) -> list[dict[str, Any]]:
    """The audit records in the database, once every record so far is committed (they wait for company)."""
    await app.engine.committer.durable()
    return await app.storage.call(lambda: app.storage.backend.list_audit(**filters))


async def wait_for_agents(app: App, count: int, timeout: float = 15.0) -> None:
    """Wait until ``count`` agents are connected to ``app``."""
    await wait_for(lambda: len(app.engine.sessions) >= count, timeout, message=f"{count} connected agents")


@pytest.fixture
def maos_home(tmp_path: Path) -> Path:
    """A fresh MAOS_HOME."""
    return tmp_path / "maos-home"


@pytest.fixture
async def control_plane(maos_home: Path) -> AsyncIterator[App]:
    """A started control plane on SQLite."""
    app = await start_app(make_settings(maos_home))
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


def empty_postgres(url: str) -> None:
    """Drop every MAOS row (the schema stays) so a test starts from nothing."""
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as conn:
            names = [
                r[0]
                for r in conn.execute(
                    sqlalchemy.text(
                        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
                    )
                )
            ]
            if names:
                conn.execute(sqlalchemy.text("TRUNCATE " + ", ".join(f'"{n}"' for n in names)))
    finally:
        engine.dispose()


@pytest.fixture
async def pg_control_plane(maos_home: Path, postgres_url: str) -> AsyncIterator[App]:
    """A started control plane on the session's PostgreSQL database, emptied first."""
    settings = make_settings(maos_home, **{"database.primary_url": postgres_url})
    app = build_app(settings)  # migrates
    empty_postgres(postgres_url)
    await app.start("127.0.0.1:0")
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


@pytest.fixture
async def stubs(control_plane: App) -> AsyncIterator[Stubs]:
    """Stubs connected to ``control_plane``."""
    s = Stubs(control_plane.address)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def agent_processes() -> Any:
    """Start real agent processes; all are killed at the end of the test."""
    started: list[AgentProcess] = []

    def start(address: str, agent_type: str = "echo", *extra: str, home: Path | None = None) -> AgentProcess:
        proc = AgentProcess(address, agent_type, *extra, home=home)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


SERVE_SNIPPET = """
import asyncio, sys
from controlplane.config import load_settings
from controlplane.serve import configure_logging, serve
settings = load_settings()
configure_logging(settings)
asyncio.run(serve(settings, address=sys.argv[1]))
"""


def free_port() -> int:
    """A localhost TCP port that is free right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ControlPlaneProcess:
    """A control plane in its own process (so a test can SIGKILL and restart it)."""

    def __init__(self, home: Path, port: int | None = None, **env: str):
        self.home = home
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "MAOS_HOME": str(home),
            "MAOS_AGENTS_POOL": "",
            "MAOS_SERVER_METRICS_PORT": "0",
            "MAOS_SERVER_HTTP_PORT": "0",
            "MAOS_SERVER_DASHBOARD_PORT": "0",
            "MAOS_SYSTEM_LOG_LEVEL": "warning",
            "MAOS_SCHEDULER_LEASE_TTL": "3",
            "MAOS_SCHEDULER_HEARTBEAT_INTERVAL": "0.5",
            "MAOS_SCHEDULER_RESTART_GRACE": "5",
            "MAOS_SECURITY_AUTH": "off",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) the process on the same port and database."""
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVE_SNIPPET, self.address], env=self.env, stdin=subprocess.DEVNULL
        )

    async def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the gRPC health check says SERVING."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        async def serving() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the control plane exited with {self.process.returncode}")
            async with grpc.aio.insecure_channel(self.address) as channel:
                try:
                    reply = await health_pb2_grpc.HealthStub(channel).Check(
                        health_pb2.HealthCheckRequest(service=""), timeout=1
                    )
                except grpc.aio.AioRpcError:
                    return False
                return reply.status == health_pb2.HealthCheckResponse.SERVING

        await wait_for(serving, timeout, interval=0.05, message="the control plane to serve")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final commit."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def pki(tmp_path: Path) -> Any:
    """Test certificates (:class:`tests.harness.certs.Pki`): a CA, server and client certificates, a stranger."""
    from tests.harness.certs import make_pki

    return make_pki(tmp_path / "pki")


@pytest.fixture
async def secured(maos_home: Path) -> AsyncIterator[App]:
    """A control plane that requires API keys (``security.auth: required``)."""
    app = await start_app(make_settings(maos_home, **{"security.auth": "required"}))
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


async def admin_key(app: App) -> str:
    """A fresh admin API key (as ``maos init`` makes)."""
    _, secret = await app.storage.call(app.access.issue_key_sync, "admin", "test admin")
    return secret
