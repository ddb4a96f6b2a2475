"""Memory and CPU limits of supervised agent processes (``system.max_*``, ``agents.defaults.max_*``).

* ``agents.defaults.max_memory``: each agent process's data segment (heap and anonymous
  memory, ``RLIMIT_DATA``), so an agent that grows past it gets ``MemoryError`` instead of
  taking the machine. Unset, an agent gets its share of ``system.max_memory`` (that divided by
  ``system.max_agents``).
* ``system.max_memory``: what all supervised agents may reserve together; an agent whose limit
  would bring the sum above it is not started (FAILED_PRECONDITION).
* ``system.max_cpu_cores``: the CPUs supervised agents may run on (the first N of this machine's,
  by CPU affinity); ``agents.defaults.max_cpu_cores`` narrows each agent to N of those, spread
  round robin. Fractions round up to whole CPUs: affinity cannot give half a CPU.

Limits are set on the process right after it starts (``prlimit``, ``sched_setaffinity``), so
they hold from its first import on. 0 means no limit everywhere.
"""

from __future__ import annotations

import math
import os
import resource
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from controlplane.errors import FailedPrecondition

if TYPE_CHECKING:
    from controlplane.config import Settings

__all__ = ["AgentLimits"]


@dataclass
class AgentLimits:
    """The limits the launcher applies to each agent process it starts."""

    #: Bytes of data segment per agent (0: none).
    memory_per_agent: int = 0
    #: Bytes all agents may reserve together (0: no cap).
    memory_total: int = 0
    #: CPUs agents may run on (empty: all).
    cpus: list[int] = field(default_factory=list)
    #: CPUs each agent runs on (0: all of :attr:`cpus`).
    cpus_per_agent: int = 0
    _next_cpu: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> AgentLimits:
        """The limits ``settings`` (a :class:`~controlplane.config.Settings`) ask for."""
        get = settings.__getitem__
        total = int(get("system.max_memory"))
        per_agent = int(get("agents.defaults.max_memory")) or (
            total // int(get("system.max_agents")) if total else 0
        )
        available = sorted(os.sched_getaffinity(0))
        wanted = math.ceil(float(get("system.max_cpu_cores")))
        cpus = available[:wanted] if wanted else []
        return cls(
            memory_per_agent=per_agent,
            memory_total=total,
            cpus=cpus,
            cpus_per_agent=math.ceil(float(get("agents.defaults.max_cpu_cores"))),
        )

    def admit(self, running: int, count: int = 1) -> None:
        """Refuse ``count`` further agents when their memory limits would bring the total over ``memory_total``.

        Args:
            running: Agents already started (and not stopping).
            count: Agents about to start.

        Raises:
            FailedPrecondition: The total would exceed ``system.max_memory``.
        """
        if not self.memory_total or not self.memory_per_agent:
            return
        if (running + count) * self.memory_per_agent > self.memory_total:
            raise FailedPrecondition(
                f"system.max_memory ({_size(self.memory_total)}) leaves no room for {count} more agent(s) of "
                f"agents.defaults.max_memory {_size(self.memory_per_agent)} ({running} running): stop an "
                "agent or raise system.max_memory",
                reason="ERROR_REASON_LIMIT_EXCEEDED",
            )

    def apply(self, pid: int) -> None:
        """Set the limits on the process ``pid`` (just started by the launcher)."""
        if self.memory_per_agent:
            resource.prlimit(pid, resource.RLIMIT_DATA, (self.memory_per_agent, self.memory_per_agent))
        cpus = self._cpus_for_next_agent()
        if cpus:
            os.sched_setaffinity(pid, cpus)

    def _cpus_for_next_agent(self) -> list[int]:
        pool = self.cpus or sorted(os.sched_getaffinity(0))
        if not self.cpus_per_agent or self.cpus_per_agent >= len(pool):
            return list(self.cpus)
        start = self._next_cpu
        self._next_cpu = (start + self.cpus_per_agent) % len(pool)
        return [pool[(start + i) % len(pool)] for i in range(self.cpus_per_agent)]


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:g} {unit}"
    return f"{count} bytes"
