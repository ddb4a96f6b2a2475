"""``maos monitor --metric/--interval/--threshold/--export``: figures sampled on an interval.

Each sample reads GetResources once. CPU and memory are percentages of the
machine (the control plane plus its supervised agents); ``--threshold``
applies to them: a sample at or above it is highlighted and the command
exits 11 (``EXIT_THRESHOLD``) when it ends.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import click

from agent_sdk.client import Client
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from maos_cli._output import color_enabled, message, output_format

#: What --metric may name, with how each is read from a GetResources answer and shown.
METRICS: dict[str, tuple[Callable[[system_pb.GetResourcesResponse], float], str]] = {
    "cpu": (lambda r: r.control_plane.cpu_percent + sum(a.cpu_percent for a in r.agents), "%"),
    "memory": (lambda r: r.control_plane.memory_percent + sum(a.memory_percent for a in r.agents), "%"),
    "tasks": (lambda r: float(r.unfinished_tasks), ""),
    "agents": (lambda r: float(r.agent_streams), ""),
    "queue": (lambda r: float(sum(q.count for q in r.queue)), ""),
    "connections": (lambda r: float(r.control_plane.connections), ""),
}
#: The figures --threshold applies to (percentages).
PERCENT = ("cpu", "memory")
DEFAULT_METRICS = ["cpu", "memory", "tasks", "agents"]


class Sampler:
    """Samples, prints and exports figures; remembers every crossing of the threshold."""

    def __init__(self, metrics: list[str], threshold: float | None, export: str | None, out: TextIO | None):
        self.metrics = metrics
        self.threshold = threshold
        self.export = export
        self.out = out
        self.rows: list[dict[str, Any]] = []
        self.crossings: dict[str, list[float]] = {}
        self._csv = csv.writer(out) if out is not None and export == "csv" else None
        if self._csv is not None:
            self._csv.writerow(["time", *metrics, "crossed"])

    def _cell(self, name: str, value: float, crossed: bool) -> str:
        unit = METRICS[name][1]
        text = f"{value:.1f}{unit}" if unit else f"{value:.0f}"
        if crossed:
            return click.style(text, fg="red", bold=True) if color_enabled() else text + "!"
        return text

    def add(self, reading: system_pb.GetResourcesResponse) -> None:
        """Record one reading: print it, export it, note crossings."""
        at = datetime.now(UTC)
        values = {name: METRICS[name][0](reading) for name in self.metrics}
        crossed = [
            n
            for n in self.metrics
            if n in PERCENT and self.threshold is not None and values[n] >= self.threshold
        ]
        for name in crossed:
            self.crossings.setdefault(name, []).append(values[name])
        row = {"time": at.isoformat(timespec="milliseconds"), **values, "crossed": crossed}
        self.rows.append(row)
        if output_format() == "table":
            if len(self.rows) == 1:
                click.echo("  ".join(["TIME    ", *(f"{n.upper():>11}" for n in self.metrics)]))
            cells = [f"{self._cell(n, values[n], n in crossed):>11}" for n in self.metrics]
            click.echo("  ".join([at.astimezone().strftime("%H:%M:%S"), *cells]))
        else:
            click.echo(json.dumps(row))
        if self._csv is not None and self.out is not None:
            self._csv.writerow([row["time"], *(repr(values[n]) for n in self.metrics), ";".join(crossed)])
            self.out.flush()

    def finish(self) -> None:
        """Write a JSON export (the samples so far) and say which figures crossed the threshold."""
        if self.export == "json" and self.out is not None:
            json.dump(
                {"metrics": self.metrics, "threshold": self.threshold, "samples": self.rows},
                self.out,
                indent=2,
            )
            self.out.write("\n")
        for name, values in self.crossings.items():
            message(
                f"{name} reached --threshold {self.threshold:g}% in {len(values)} of {len(self.rows)} "
                f"samples "
                f"(highest {max(values):.1f}%)"
            )


async def sample(client: Client, sampler: Sampler, interval: float, duration: float | None) -> None:
    """Read every ``interval`` seconds until ``duration`` has passed (forever when None)."""
    deadline = None if duration is None else time.monotonic() + duration
    while True:
        started = time.monotonic()
        sampler.add(await client.resources())
        next_at = started + interval
        if deadline is not None and next_at > deadline:
            return
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
