"""``maos metrics``, ``maos resources`` and ``maos agent metrics``: figures now, their history, exports."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from typing import Any, TextIO

import click

from agent_sdk.client import Client
from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.wire import epoch, seconds
from maos_cli._errors import handle_errors
from maos_cli._export import export_options, opened, resolve_export
from maos_cli._options import Duration, agent_id_argument, output_option, run
from maos_cli._output import (
    bare_id,
    counts_text,
    emit,
    enum_label,
    key_values,
    message,
    seconds_text,
    status_text,
    table,
    to_data,
)

CATEGORIES = ["system", "tasks", "agents", "rpc", "storage"]
_BARS = "▁▂▃▄▅▆▇█"


def size_text(n: float) -> str:
    """``85.7 MiB`` for a number of bytes."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _number(value: float, name: str = "") -> str:
    if name.endswith("_bytes"):
        return size_text(value)
    if name.endswith("_percent"):
        return f"{value:.1f}%"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def _labels(labels: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _trend(values: list[float]) -> str:
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    return "".join(_BARS[int((v - low) / span * (len(_BARS) - 1))] for v in values[-30:])


def _iso(ts: Any) -> str:
    return datetime.fromtimestamp(epoch(ts), UTC).isoformat(timespec="milliseconds")


# --- exports -------------------------------------------------------------------------------------


def _write_current(fmt: str, f: TextIO, samples: list[system_pb.MetricSample], exposition: str) -> int:
    if fmt == "prometheus":
        f.write(exposition)
    elif fmt == "json":
        json.dump({"samples": to_data(samples)}, f, indent=2)
        f.write("\n")
    else:
        writer = csv.writer(f)
        writer.writerow(["category", "name", "labels", "value"])
        writer.writerows([s.category, s.name, _labels(s.labels), repr(s.value)] for s in samples)
    return len(samples)


def _write_history(fmt: str, f: TextIO, history: system_pb.GetMetricsHistoryResponse) -> int:
    points = sum(len(s.points) for s in history.series)
    if fmt == "prometheus":  # one sample per point, with its timestamp in milliseconds
        for s in history.series:
            f.write(f"# HELP {s.name} {s.help}\n# TYPE {s.name} {s.type}\n")
            f.writelines(
                f"{s.name} {p.value!r} {p.time.seconds * 1000 + p.time.nanos // 1_000_000}\n"
                for p in s.points
            )
    elif fmt == "json":
        json.dump(to_data(history), f, indent=2)
        f.write("\n")
    else:
        writer = csv.writer(f)
        writer.writerow(["time", "category", "name", "value"])
        writer.writerows(
            [_iso(p.time), s.category, s.name, repr(p.value)] for s in history.series for p in s.points
        )
    return points


# --- commands ------------------------------------------------------------------------------------


@click.command()
@click.option(
    "--category",
    type=click.Choice(CATEGORIES, case_sensitive=False),
    default=None,
    help="Only this category.",
)
@click.option(
    "--timeframe",
    type=Duration(),
    default=None,
    metavar="DURATION",
    help="Instead of the figures now, their history over this time (24h, 7d; sampled every "
    "metrics.history.interval and kept for metrics.history.retention).",
)
@click.option(
    "--points", type=click.IntRange(1, 1000), default=60, help="With --timeframe: points per series."
)
@export_options(["prometheus", "json", "csv"], "the metrics")
@handle_errors
def metrics(
    category: str | None, timeframe: float | None, points: int, export: str | None, output_file: str | None
) -> None:
    """Show the control plane's metrics now, or their history with --timeframe.

    \b
    --export prometheus|json|csv --output FILE writes them to FILE instead
    (Prometheus: the text format /metrics serves; a history's points carry
    their timestamps). -o/--format is the format of what is printed on stdout.
    """
    fmt, path = resolve_export(export, output_file)
    category = (category or "").lower()
    if timeframe is not None:
        history = run(lambda client: client.metrics_history(timeframe, category=category, max_points=points))
        if fmt and path:
            with opened(path) as f:
                n = _write_history(fmt, f, history)
            message(f"wrote {n} points of {len(history.series)} series to {path}")
            return
        emit(history, lambda: _history_text(history, timeframe))
        return

    async def current(client: Client) -> tuple[list[system_pb.MetricSample], str]:
        if fmt == "prometheus":
            response = await client.system.GetMetricsSummary(
                system_pb.GetMetricsSummaryRequest(category=category, include_exposition=True)
            )
            return list(response.samples), response.exposition
        return await client.metrics_summary(category), ""

    samples, exposition = run(current)
    if fmt and path:
        with opened(path) as f:
            n = _write_current(fmt, f, samples, exposition)
        message(f"wrote {n} samples to {path}")
        return
    emit(
        {"samples": samples},
        lambda: table(
            ["CATEGORY", "NAME", "LABELS", "VALUE"],
            [
                [s.category, s.name, _labels(s.labels), _number(s.value)]
                for s in sorted(
                    samples,
                    key=lambda s: (CATEGORIES.index(s.category) if s.category in CATEGORIES else 99, s.name),
                )
            ],
            empty="(the control plane reports none)",
        ),
    )


def _history_text(history: system_pb.GetMetricsHistoryResponse, timeframe: float) -> str:
    head = (
        f"{history.samples} samples over {seconds_text(timeframe)} (one every "
        f"{seconds_text(seconds(history.interval))}, kept "
        f"{seconds_text(history.retention.seconds)})"
    )
    rows = []
    for s in history.series:
        values = [p.value for p in s.points]
        if not values:
            continue
        rows.append(
            [
                s.category,
                s.name,
                _number(values[-1], s.name),
                _number(min(values), s.name),
                _number(sum(values) / len(values), s.name),
                _number(max(values), s.name),
                _trend(values),
            ]
        )
    return (
        head
        + "\n\n"
        + table(
            ["CATEGORY", "NAME", "LAST", "MIN", "AVG", "MAX", "TREND"],
            rows,
            empty="No samples in this timeframe yet.",
        )
    )


def process_rows(
    control_plane: msgs.ProcessResources, agents: list[msgs.ProcessResources]
) -> list[list[Any]]:
    """Table rows of process readings (the control plane first)."""
    rows = []
    for p in [control_plane, *agents]:
        who = bare_id(p.agent) if p.agent else "control plane"
        if not p.measured:
            rows.append([p.pid, who, p.agent_type, "?", "?", "?", "", "", ""])
            continue
        rows.append(
            [
                p.pid,
                who,
                p.agent_type,
                f"{p.cpu_percent:.1f}",
                size_text(p.memory_bytes),
                f"{p.memory_percent:.1f}",
                p.threads,
                p.open_files,
                p.connections,
            ]
        )
    return rows


def resources_text(r: system_pb.GetResourcesResponse) -> str:
    """``maos resources`` as text: processes, then the machine, database and queue."""
    processes = [r.control_plane, *r.agents]
    cpu = sum(p.cpu_percent for p in processes)
    memory = sum(p.memory_bytes for p in processes)
    procs = table(
        ["PID", "PROCESS", "TYPE", "CPU%", "MEMORY", "MEM%", "THREADS", "FILES", "SOCKETS"],
        process_rows(r.control_plane, list(r.agents)),
    )
    h = r.host
    return (
        procs
        + "\n\n"
        + key_values(
            [
                ("Total", f"CPU {cpu:.1f}% of the machine, memory {size_text(memory)}"),
                (
                    "Machine",
                    (
                        f"{h.cpu_count} cores, {size_text(h.memory_available_bytes)} of "
                        f"{size_text(h.memory_total_bytes)} memory available"
                    )
                    + (f", load {' '.join(f'{x:.2f}' for x in h.load_average)}" if h.load_average else ""),
                ),
                ("Agent streams", r.agent_streams),
                ("Database", size_text(r.database_size_bytes) if r.database_size_bytes else "size unknown"),
                ("Unfinished tasks", r.unfinished_tasks),
                ("Queue", counts_text(r.queue)),
            ]
        )
    )


@click.command()
@output_option
@handle_errors
def resources() -> None:
    """Show CPU, memory and sockets of the control plane and its agents, the database and the queue.

    CPU is in percent of the machine (all cores together), averaged since the
    previous reading (or since the process started). Agents that connected on
    their own run elsewhere and are not measured.
    """
    r = run(lambda client: client.resources())
    emit(r, lambda: resources_text(r))


@click.command("metrics")
@agent_id_argument
@output_option
@handle_errors
def agent_metrics(agent_id: str) -> None:
    """Show an agent's figures: subtasks done and failed, tokens, its process's CPU and memory, log counts."""
    m: agents_pb.GetAgentMetricsResponse = run(lambda client: client.agent_metrics(agent_id))
    a, p = m.agent, m.process
    usage = a.usage

    def text() -> str:
        pairs: list[tuple[str, Any]] = [
            ("ID", bare_id(a.name)),
            ("Type", a.agent_type),
            ("Status", status_text(enum_label(enums.AgentStatus, a.status, "AGENT_STATUS_"))),
            ("Connected for", seconds_text(m.connected_seconds) if m.connected_seconds else "not connected"),
            ("Completed", a.completed_subtasks),
            ("Failed", a.failed_subtasks),
            ("Reliability", f"{a.reliability:.2f}"),
            ("Running", f"{len(a.assignments)} ({a.free_slots} of {a.max_concurrency} slots free)"),
            (
                "Tokens",
                f"{usage.input_tokens} input / {usage.output_tokens} output in {usage.model_calls} calls",
            ),
        ]
        if m.HasField("process") and p.measured:
            pairs += [
                (
                    "Process",
                    (
                        f"pid {p.pid}: CPU {p.cpu_percent:.1f}%, memory {size_text(p.memory_bytes)} "
                        f"({p.memory_percent:.1f}%), {p.threads} threads, {p.connections} sockets"
                    ),
                )
            ]
        else:
            pairs += [("Process", "not supervised by this control plane (not measured)")]
        pairs += [("Log records", ", ".join(f"{k}={v}" for k, v in sorted(m.log_records.items())) or "none")]
        return key_values(pairs)

    emit(m, text)


def status_resources(r: system_pb.GetResourcesResponse) -> list[tuple[str, str]]:
    """The ``maos status --resources`` lines."""
    processes = [r.control_plane, *r.agents]
    return [
        (
            "CPU",
            (
                f"{sum(p.cpu_percent for p in processes):.1f}% of the machine ({r.host.cpu_count} cores; "
                f"control plane {r.control_plane.cpu_percent:.1f}%, {len(r.agents)} supervised agents)"
            ),
        ),
        (
            "Memory",
            (
                f"{size_text(sum(p.memory_bytes for p in processes))} "
                f"({sum(p.memory_percent for p in processes):.1f}% of {size_text(r.host.memory_total_bytes)})"
            ),
        ),
        ("Connections", f"{r.agent_streams} agent streams, {r.control_plane.connections} sockets"),
        ("Database", size_text(r.database_size_bytes) if r.database_size_bytes else "size unknown"),
    ]


__all__ = ["agent_metrics", "metrics", "resources", "resources_text", "size_text", "status_resources"]
