"""Rendering for the CLI: aligned plain-text tables, key/value blocks, JSON and YAML.

Data goes to stdout and messages to stderr. Colour is used only when stdout is
a terminal and ``NO_COLOR`` is not set (https://no-color.org).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import click
import yaml
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from agent_sdk.proto.maos.v1 import enums_pb2 as enums

FORMATS = ("table", "json", "yaml")

_STATUS_COLORS = {
    "COMPLETED": "green", "HEALTHY": "green", "IDLE": "green", "SERVING": "green",
    "RUNNING": "cyan", "BUSY": "cyan", "QUEUED": "blue", "PENDING": "blue", "STARTING": "blue",
    "DEGRADED": "yellow", "PAUSED": "yellow", "DRAINING": "yellow", "DISCONNECTED": "yellow",
    "FAILED": "red", "UNHEALTHY": "red", "CANCELLED": "magenta", "TERMINATED": "magenta",
}


def output_format() -> str:
    """The ``-o`` format of the current command (table outside a command)."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx else None
    return getattr(obj, "output", "table") or "table"


def color_enabled() -> bool:
    """Whether to colour stdout: a terminal, and NO_COLOR unset."""
    return not os.environ.get("NO_COLOR") and sys.stdout.isatty()


def to_data(value: Any) -> Any:
    """Plain JSON-able data from protobuf messages, lists and dicts.

    Messages keep their proto field names and enum value names, and every
    field is present (zeros and empty lists too), so scripts see a stable shape.
    """
    if isinstance(value, Message):
        return MessageToDict(value, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    if isinstance(value, dict):
        return {k: to_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_data(v) for v in value]
    return value


def emit(data: Any, table: Callable[[], str | None] | None = None) -> None:
    """Print ``data`` as JSON or YAML, or call ``table`` for the text rendering (stdout)."""
    fmt = output_format()
    if fmt == "json":
        click.echo(json.dumps(to_data(data), indent=2, default=str))
    elif fmt == "yaml":
        click.echo(yaml.safe_dump(to_data(data), sort_keys=False, allow_unicode=True).rstrip())
    else:
        text = table() if table else None
        if text is None:
            text = yaml.safe_dump(to_data(data), sort_keys=False, allow_unicode=True).rstrip()
        if text:
            click.echo(text)


def message(text: str) -> None:
    """A progress or informational message on stderr."""
    click.echo(text, err=True)


def status_text(label: str) -> str:
    """A state name, coloured when colour is enabled."""
    color = _STATUS_COLORS.get(label)
    return click.style(label, fg=color) if color and color_enabled() else label


def _width(cell: str) -> int:
    return len(click.unstyle(cell))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], empty: str = "") -> str:
    """An aligned plain-text table (the last column is not padded)."""
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    if not cells and empty:
        return empty
    widths = [max([len(h), *(_width(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *cells]:
        parts = [c + " " * (widths[i] - _width(c)) if i < len(row) - 1 else c for i, c in enumerate(row)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    """``Key:  value`` lines, aligned; pairs whose value is None or empty are left out."""
    shown = [(k, str(v)) for k, v in pairs if v not in (None, "", [])]
    width = max((len(k) for k, _ in shown), default=0) + 1
    return "\n".join(f"{k + ':':<{width}}  {v}" for k, v in shown)


def enum_label(enum_type: Any, value: int, prefix: str) -> str:
    """``COMPLETED`` for TASK_STATUS_COMPLETED (``prefix`` is ``TASK_STATUS_``)."""
    try:
        return enum_type.Name(value).removeprefix(prefix)
    except ValueError:
        return str(value)


def when(ts: Any) -> str:
    """A protobuf Timestamp as local time (``YYYY-MM-DD HH:MM:SS``), or empty when unset."""
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return ""
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9).strftime("%Y-%m-%d %H:%M:%S")


def seconds_text(seconds: float) -> str:
    """``1h 2m 3s`` / ``4.2s`` / ``35ms``."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes else "",
             f"{secs}s" if secs else ""]
    return " ".join(p for p in parts if p) or "0s"


def duration_text(d: Any) -> str:
    """A protobuf Duration as :func:`seconds_text`."""
    return seconds_text(d.seconds + d.nanos / 1e9)


def short(text: str, width: int = 60) -> str:
    """One line of at most ``width`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


def bare_id(name: str) -> str:
    """The last segment of a resource name (``t1a2b`` for ``tasks/t1a2b``)."""
    return name.rsplit("/", 1)[-1]


def counts_text(items: Iterable[Any]) -> str:
    """``RUNNING=2, COMPLETED=5`` from StateCount messages (zero counts left out)."""
    return ", ".join(f"{c.state}={c.count}" for c in items if c.count) or "none"


def health_table(h: Any) -> str:
    """The components of a GetHealthResponse as a table, then the overall state."""
    def label(value: int) -> str:
        return status_text(enum_label(enums.ComponentState, value, "COMPONENT_STATE_"))

    rows = [[c.component, label(c.state), duration_text(c.latency) if c.HasField("latency") else "", c.message]
            for c in h.components]
    return table(["COMPONENT", "STATE", "LATENCY", "MESSAGE"], rows) + f"\n\nOverall: {label(h.state)}"
