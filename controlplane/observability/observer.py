"""The control plane's readings of itself: resources now, and the figures the metrics history samples."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from controlplane.domain.model import TaskStatus
from controlplane.metrics import Metrics
from controlplane.observability.resources import CpuMeter, HostReading, ProcessReading, host
from controlplane.storage.base import ReportsSize


@dataclass
class AgentProcess:
    """A supervised agent process and its reading."""

    agent_id: str
    agent_type: str
    reading: ProcessReading


@dataclass
class Resources:
    """What the control plane and its supervised agents use now."""

    control_plane: ProcessReading
    agents: list[AgentProcess]
    host: HostReading
    agent_streams: int
    database_size_bytes: int
    queue: dict[str, int]
    unfinished_tasks: int
    tasks: dict[str, int] = field(default_factory=dict)

    @property
    def cpu_percent(self) -> float:
        """The control plane's CPU plus its agents', in percent of the machine."""
        return self.control_plane.cpu_percent + sum(a.reading.cpu_percent for a in self.agents)

    @property
    def memory_bytes(self) -> int:
        """The control plane's resident memory plus its agents'."""
        return self.control_plane.memory_bytes + sum(a.reading.memory_bytes for a in self.agents)


class Observer:
    """Reads resources and summary figures (one CPU meter, so percentages span successive readings).

    Args:
        engine: The scheduler engine (sessions, queue, storage).
        launcher: The local launcher whose processes are the supervised agents (or None).
        metrics: The Prometheus metrics (RPC and submission counters).
    """

    def __init__(self, engine: Any, storage: Any, launcher: Any, metrics: Metrics):
        self.engine = engine
        self.storage = storage
        self.launcher = launcher
        self.metrics = metrics
        self._meter = CpuMeter()

    def _supervised(self) -> list[tuple[str, str, int]]:
        """(agent id, type, pid) of each running supervised process."""
        if self.launcher is None:
            return []
        return [
            (launch.agent_id, launch.agent_type, launch.process.pid)
            for launch in list(self.launcher.launches.values())
            if launch.process is not None and launch.process.returncode is None
        ]

    def agent_process(self, agent_id: str) -> ProcessReading | None:
        """The reading of a supervised agent's process, or None when it is not supervised here."""
        pids = [pid for aid, _, pid in self._supervised() if aid == agent_id]
        return self._meter.read(pids)[0] if pids else None

    async def resources(self) -> Resources:
        """Every reading (the database's size from the storage thread, task counts from a quick read)."""
        storage = self.storage
        backend = storage.backend
        size = await storage.call(backend.database_size_bytes) if isinstance(backend, ReportsSize) else 0
        counts = await storage.quick_read(backend.count_tasks_by_status)
        machine = host()
        supervised = self._supervised()
        readings = self._meter.read([os.getpid(), *(pid for _, _, pid in supervised)], machine)
        return Resources(
            control_plane=readings[0],
            agents=[
                AgentProcess(aid, kind, reading)
                for (aid, kind, _), reading in zip(supervised, readings[1:], strict=True)
            ],
            host=machine,
            agent_streams=len(self.engine.connected()),
            database_size_bytes=size,
            queue=self.engine.queued_by_priority(),
            unfinished_tasks=sum(n for status, n in counts.items() if not status.finished),
            tasks={status.name: n for status, n in counts.items()},
        )

    async def figures(self) -> dict[str, float]:
        """The summary figures of one history sample (named as in ``history.SERIES``)."""
        r = await self.resources()
        sessions = self.engine.connected()
        figures = {
            "maos_cpu_percent": r.cpu_percent,
            "maos_memory_bytes": float(r.memory_bytes),
            "maos_memory_percent": (
                100.0 * r.memory_bytes / r.host.memory_total_bytes if r.host.memory_total_bytes else 0.0
            ),
            "maos_connections": float(r.control_plane.connections),
            "maos_subtasks_queued": float(sum(r.queue.values())),
            "maos_agents_connected": float(len(sessions)),
            "maos_agent_slots_free": float(sum(s.free for s in sessions)),
            "maos_agent_processes": float(len(r.agents)),
            "maos_database_size_bytes": float(r.database_size_bytes),
            "maos_uptime_seconds": time.time() - self.engine.started_at,
        }
        for status in TaskStatus:
            figures[f"maos_tasks_{status.name.lower()}"] = float(r.tasks.get(status.name, 0))
        calls = errors = submitted = commits = 0.0
        for family in self.metrics.registry.collect():
            for sample in family.samples:
                if sample.name == "grpc_server_handled_total":
                    calls += sample.value
                    errors += sample.value if sample.labels.get("grpc_code") != "OK" else 0.0
                elif sample.name == "maos_tasks_submitted_total":
                    submitted += sample.value
                elif sample.name == "maos_storage_commit_seconds_count":
                    commits += sample.value
        figures.update(
            {
                "maos_rpc_calls_total": calls,
                "maos_rpc_errors_total": errors,
                "maos_tasks_submitted_total": submitted,
                "maos_storage_commits_total": commits,
            }
        )
        return figures
