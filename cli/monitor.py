"""``maos monitor``: the system at a glance, and with ``--follow`` every change as it is committed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Any

import click
import yaml

from agent_sdk.client import Client
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.wire import epoch
from maos_cli._errors import EXIT_INTERRUPTED, EXIT_THRESHOLD, handle_errors
from maos_cli._export import export_options, opened, resolve_export
from maos_cli._follow import resumed
from maos_cli._options import Duration, run, split_csv
from maos_cli._output import (
    bare_id,
    counts_text,
    duration_text,
    emit,
    enum_label,
    key_values,
    output_format,
    short,
    status_text,
    table,
    to_data,
)
from maos_cli._sampling import DEFAULT_METRICS, METRICS, PERCENT, Sampler, sample
from maos_cli.live import live
from maos_cli.system import pacing_summary

#: Unfinished tasks, as the snapshot lists them.
ACTIVE = [enums.TASK_STATUS_PENDING, enums.TASK_STATUS_QUEUED, enums.TASK_STATUS_RUNNING]
#: A broken event stream is opened again after this long, doubling up to the cap.


async def _snapshot(client: Client, task: str, limit: int, status: Any = None) -> dict[str, Any]:
    status = status or await client.status()
    if task:
        tasks = [(await client.get_task(task)).task]
    else:
        tasks = [t async for t in client.iter_tasks(limit=limit, statuses=ACTIVE)]
    return {"status": status, "tasks": tasks}


def _snapshot_text(snapshot: dict[str, Any]) -> str:
    s, tasks = snapshot["status"], snapshot["tasks"]
    summary = key_values(
        [
            ("Control plane", f"{s.version}, up {duration_text(s.uptime)}, {s.storage_backend}"),
            ("Agents", f"{s.connected_agents} connected, {s.free_slots} free slots"),
            ("Tasks", counts_text(s.tasks)),
            ("Queue", counts_text(s.queue)),
            ("Model calls", pacing_summary(s.model_pacing)),
        ]
    )
    rows = [
        [
            bare_id(t.name),
            status_text(enum_label(enums.TaskStatus, t.status, "TASK_STATUS_")),
            enum_label(enums.Priority, t.priority, "PRIORITY_"),
            _progress(t),
            short(t.status_reason, 60),
            short(t.description, 40),
        ]
        for t in tasks
    ]
    return (
        summary
        + "\n\n"
        + table(
            ["ID", "STATUS", "PRIORITY", "PROGRESS", "REASON", "DESCRIPTION"],
            rows,
            empty="No unfinished tasks.",
        )
    )


def _progress(task: msgs.Task) -> str:
    done = f" {task.subtasks_completed}/{task.subtasks_total}" if task.subtasks_total else ""
    return f"{task.progress * 100:.0f}%{done}"


def _event_text(event: msgs.Event) -> str:
    kind = enum_label(enums.EventType, event.type, "EVENT_TYPE_")
    at = datetime.fromtimestamp(epoch(event.time))
    parts = [at.strftime("%H:%M:%S.%f")[:-3], kind.ljust(24)]
    if event.task:
        parts.append(bare_id(event.task) + (f"/{bare_id(event.subtask)}" if event.subtask else ""))
    if event.agent:
        parts.append(f"agent {bare_id(event.agent)}")
    if event.to_status:
        plain = to_data(event)  # statuses by their short names
        parts.append(
            f"{plain['from_status']} -> {plain['to_status']}" if event.from_status else plain["to_status"]
        )
    if event.message:
        parts.append(short(event.message, 80))
    return "  ".join(parts)


async def _events(client: Client, task: str) -> AsyncGenerator[msgs.Event, None]:
    """Every event from now on; a broken stream is opened again where it broke (missed events said on stderr)."""
    async for event in resumed(
        lambda after: client.watch_events(task=task, after_event_id=after),
        lambda event: event.id,
        what="events",
        stream="event",
        verb="watching",
    ):
        yield event


def _record(data: Any) -> str:
    """One snapshot or event as a record of a stream: a JSON line, or a YAML document."""
    if output_format() == "yaml":
        document: str = yaml.safe_dump(
            to_data(data), sort_keys=False, allow_unicode=True, explicit_start=True
        )
        return document.rstrip()
    return json.dumps(to_data(data), default=str)


async def _follow(client: Client, task: str, limit: int, duration: float | None) -> None:
    text = output_format() == "table"
    deadline = None if duration is None else time.monotonic() + duration
    status = await client.status()  # an unreachable control plane fails here, before any watching
    events = _events(client, task)
    pending = asyncio.ensure_future(anext(events))  # opened first: changes made during the snapshot follow it
    try:
        snapshot = await _snapshot(client, task, limit, status)
        click.echo(_snapshot_text(snapshot) + "\n" if text else _record(snapshot))
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            done, _ = await asyncio.wait({pending}, timeout=left)
            if not done:
                return
            event = pending.result()
            click.echo(_event_text(event) if text else _record(event))
            pending = asyncio.ensure_future(anext(events))
    finally:
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        await events.aclose()


#: The shortest --interval (a CPU percentage over less is noise).
MIN_INTERVAL = 0.2


@click.command()
@click.option(
    "-f", "--follow", is_flag=True, help="After the snapshot, print every change as it is committed."
)
@click.option("--task", "task", default="", show_default=False, metavar="ID", help="Only this task.")
@click.option("--limit", type=click.IntRange(min=1), default=20, help="Most unfinished tasks listed.")
@click.option(
    "--once",
    is_flag=True,
    help="On a terminal, print one snapshot instead of the live view (piped output always does).",
)
@click.option(
    "--duration",
    type=Duration(),
    default=None,
    help="Live, with --follow or when sampling: stop after this long (5m, 30s); no limit when unset.",
)
@click.option(
    "--metric",
    "metric",
    default=None,
    metavar="A,B",
    help=f"Sample these figures every --interval: {', '.join(METRICS)} "
    f"(default {','.join(DEFAULT_METRICS)}). cpu and memory are % of the machine used by the "
    "control plane and its supervised agents.",
)
@click.option(
    "--interval", type=Duration(), default=None, help="Time between samples (default 5s, at least 0.2s)."
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 100),
    default=None,
    metavar="PERCENT",
    help="Highlight cpu or memory at or above PERCENT; the command then exits 11 when it ends.",
)
@export_options(["csv", "json"], "the samples")
@handle_errors
def monitor(
    follow: bool,
    task: str,
    limit: int,
    once: bool,
    duration: float | None,
    metric: str | None,
    interval: float | None,
    threshold: float | None,
    export: str | None,
    output_file: str | None,
) -> None:
    """Show agents, task counts and unfinished tasks; with --follow, then every change live.

    On a terminal (and with the table format) it is a live view, redrawn in
    place every second: agents, the queue, unfinished tasks with their
    progress, and throughput, until Ctrl-C or --duration. Piped, or with
    --once, it prints one snapshot.

    With --follow it runs until Ctrl-C (exit 130) or --duration; a broken
    event stream is opened again where it broke. With -o json it prints one
    JSON object per line (the snapshot, then each event), with -o yaml one
    YAML document each.

    \b
    With --metric, --interval, --threshold or --export it samples figures
    instead, one line each --interval, until --duration or Ctrl-C:
      maos monitor --metric cpu,memory,tasks --interval 5s --duration 5m
      maos monitor --metric memory,cpu --threshold 90
      maos monitor --export csv --output system_metrics.csv
    """
    fmt, path = resolve_export(export, output_file)
    if metric is not None or interval is not None or threshold is not None or fmt is not None:
        if follow or task:
            raise click.UsageError(
                "--follow and --task show tasks and events; --metric, --interval, "
                "--threshold and --export sample figures: use one or the other"
            )
        _sample(metric, interval, threshold, duration, fmt, path)
        return
    if not follow and not task and not once and output_format() == "table" and sys.stdout.isatty():
        try:
            run(lambda client: live(client, limit, duration))
        except KeyboardInterrupt:
            raise SystemExit(EXIT_INTERRUPTED) from None
        return
    if not follow:
        snapshot = run(lambda client: _snapshot(client, task, limit))
        emit(snapshot, lambda: _snapshot_text(snapshot))
        return
    try:
        run(lambda client: _follow(client, task, limit, duration))
    except KeyboardInterrupt:
        raise SystemExit(EXIT_INTERRUPTED) from None


def _sample(
    metric: str | None,
    interval: float | None,
    threshold: float | None,
    duration: float | None,
    fmt: str | None,
    path: str | None,
) -> None:
    names = [n.lower() for n in split_csv(metric)] if metric is not None else list(DEFAULT_METRICS)
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown {', '.join(map(repr, unknown)) or 'empty list'}; known: {', '.join(METRICS)}",
            param_hint="--metric",
        )
    if threshold is not None and not any(n in PERCENT for n in names):
        raise click.BadParameter(
            "applies to cpu and memory (percentages); add one of them to --metric", param_hint="--threshold"
        )
    every = 5.0 if interval is None else interval
    if every < MIN_INTERVAL:
        raise click.BadParameter(f"{every:g} s is shorter than {MIN_INTERVAL:g} s", param_hint="--interval")
    with opened(path) if path else contextlib.nullcontext() as out:
        sampler = Sampler(list(dict.fromkeys(names)), threshold, fmt, out)
        interrupted = False
        try:
            run(lambda client: sample(client, sampler, every, duration))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            sampler.finish()
    if sampler.crossings:
        raise SystemExit(EXIT_THRESHOLD)
    if interrupted:
        raise SystemExit(EXIT_INTERRUPTED)
