"""``maos monitor`` on a terminal: one screen, redrawn in place, of agents, queue, running tasks and throughput."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agent_sdk.client import Client
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from maos_cli._output import bare_id, color_enabled, counts_text, duration_text, enum_label, short

#: Seconds between redraws.
REFRESH = 1.0
#: Width of a task's progress bar, in characters.
BAR = 20
_ACTIVE = [enums.TASK_STATUS_PENDING, enums.TASK_STATUS_QUEUED, enums.TASK_STATUS_RUNNING]


def _bar(fraction: float) -> str:
    done = round(max(0.0, min(1.0, fraction)) * BAR)
    return "█" * done + "░" * (BAR - done)


class Screen:
    """What the live view shows; :meth:`update` takes a new reading, :meth:`render` draws it."""

    def __init__(self) -> None:
        self.status: Any = None
        self.agents: list[msgs.Agent] = []
        self.tasks: list[msgs.Task] = []
        self.throughput = 0.0
        self._last: tuple[float, int] | None = None

    def update(self, status: Any, agents: list[msgs.Agent], tasks: list[msgs.Task], at: float) -> None:
        """A new reading; throughput is finished tasks per second since the previous one."""
        finished = sum(c.count for c in status.tasks if c.state in ("COMPLETED", "FAILED", "CANCELLED"))
        if self._last is not None and at > self._last[0]:
            self.throughput = max(0.0, (finished - self._last[1]) / (at - self._last[0]))
        self._last = (at, finished)
        self.status, self.agents, self.tasks = status, agents, tasks

    def render(self) -> Any:
        """A rich renderable of the current reading."""
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        s = self.status
        head = Text.assemble(
            ("MAOS ", "bold"),
            f"{s.version}, up {duration_text(s.uptime)}, {s.storage_backend}   ",
            ("Agents ", "bold"),
            f"{s.connected_agents} connected, {s.free_slots} free slots   ",
            ("Throughput ", "bold"),
            f"{self.throughput:.1f} tasks/s\n",
            ("Tasks ", "bold"),
            f"{counts_text(s.tasks) or 'none'}   ",
            ("Queue ", "bold"),
            counts_text(s.queue) or "empty",
        )
        agents = Table(
            title="Agents", title_justify="left", expand=True, box=box.SIMPLE_HEAD, show_edge=False
        )
        for column in ("ID", "TYPE", "STATUS", "SLOTS", "RUNNING", "DONE"):
            agents.add_column(column)
        for a in self.agents:
            agents.add_row(
                bare_id(a.name),
                a.agent_type,
                enum_label(enums.AgentStatus, a.status, "AGENT_STATUS_"),
                f"{a.free_slots}/{a.max_concurrency}",
                str(len(a.assignments)),
                str(a.completed_subtasks),
            )
        tasks = Table(
            title="Unfinished tasks", title_justify="left", expand=True, box=box.SIMPLE_HEAD, show_edge=False
        )
        for column in ("ID", "STATUS", "PROGRESS", "REASON", "DESCRIPTION"):
            tasks.add_column(column)
        for t in self.tasks:
            steps = f" {t.subtasks_completed}/{t.subtasks_total}" if t.subtasks_total else ""
            tasks.add_row(
                bare_id(t.name),
                enum_label(enums.TaskStatus, t.status, "TASK_STATUS_"),
                f"{_bar(t.progress)} {t.progress * 100:3.0f}%{steps}",
                short(t.status_reason, 50),
                short(t.description, 40),
            )
        return Group(head, agents, tasks, Text("Ctrl-C to stop", style="dim"))


async def _read(client: Client, limit: int) -> tuple[Any, list[msgs.Agent], list[msgs.Task]]:
    status = await client.status()
    agents = list((await client.list_agents()).agents)
    tasks = [t async for t in client.iter_tasks(limit=limit, statuses=_ACTIVE)]
    return status, agents, tasks


async def live(client: Client, limit: int, duration: float | None) -> None:
    """Redraw the screen every :data:`REFRESH` seconds until ``duration`` (or Ctrl-C)."""
    from rich.console import Console
    from rich.live import Live

    screen = Screen()
    screen.update(*await _read(client, limit), time.monotonic())  # an unreachable control plane fails here
    deadline = None if duration is None else time.monotonic() + duration
    console = Console(no_color=not color_enabled())
    with Live(screen.render(), console=console, refresh_per_second=4, transient=False) as view:
        while deadline is None or time.monotonic() < deadline:
            wait = REFRESH if deadline is None else max(0.0, min(REFRESH, deadline - time.monotonic()))
            await asyncio.sleep(wait)
            screen.update(*await _read(client, limit), time.monotonic())
            view.update(screen.render())
