"""Rendering for the CLI: aligned plain-text tables, key/value blocks, JSON and YAML.

Data goes to stdout and messages to stderr. Colour is used only when stdout is
a terminal and ``NO_COLOR`` is not set (https://no-color.org).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import click
import yaml
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from agent_sdk.proto.maos.v1 import enums_pb2 as enums

FORMATS = ("table", "json", "yaml")

_STATUS_COLORS = {
    "COMPLETED": "green",
    "HEALTHY": "green",
    "IDLE": "green",
    "SERVING": "green",
    "RUNNING": "cyan",
    "BUSY": "cyan",
    "QUEUED": "blue",
    "PENDING": "blue",
    "STARTING": "blue",
    "DEGRADED": "yellow",
    "PAUSED": "yellow",
    "DRAINING": "yellow",
    "DISCONNECTED": "yellow",
    "FAILED": "red",
    "UNHEALTHY": "red",
    "CANCELLED": "magenta",
    "TERMINATED": "magenta",
}


def output_format() -> str:
    """The ``-o`` format of the current command (table outside a command)."""
    ctx = click.get_current_context(silent=True)
    obj = ctx.find_root().obj if ctx else None
    return getattr(obj, "output", "table") or "table"


def color_enabled() -> bool:
    """Whether to colour stdout: a terminal, and NO_COLOR unset."""
    return not os.environ.get("NO_COLOR") and sys.stdout.isatty()


_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)
#: String fields that hold an enum value's name (``Event.from_status``: ``TASK_STATUS_COMPLETED``).
_STATUS_NAME_FIELDS = {"maos.v1.Event": ("from_status", "to_status")}
_STATUS_PREFIX = re.compile(r"^(?:TASK|SUBTASK|AGENT)_STATUS_")


def _enum_prefix(enum: EnumDescriptor) -> str:
    """``TASK_STATUS_`` for TaskStatus: what its UNSPECIFIED value's name has before ``UNSPECIFIED``."""
    first: str = enum.values[0].name
    return first.removesuffix("UNSPECIFIED")


def _short_enum(enum: EnumDescriptor, name: Any) -> Any:
    return name.removeprefix(_enum_prefix(enum)) if isinstance(name, str) else name


def _plain(descriptor: Descriptor, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a message as MessageToDict gives it) with short enum names and 64-bit numbers as numbers."""
    for field in descriptor.fields:
        if field.name not in data:
            continue
        value = data[field.name]
        repeated = field.is_repeated
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            if value_field.message_type is not None and not _well_known(value_field.message_type):
                data[field.name] = {k: _plain(value_field.message_type, v) for k, v in value.items()}
            elif value_field.enum_type is not None:
                data[field.name] = {k: _short_enum(value_field.enum_type, v) for k, v in value.items()}
        elif field.enum_type is not None:
            data[field.name] = (
                [_short_enum(field.enum_type, v) for v in value]
                if repeated
                else _short_enum(field.enum_type, value)
            )
        elif field.type in _INT64_TYPES:
            data[field.name] = [int(v) for v in value] if repeated else int(value)
        elif field.message_type is not None and not _well_known(field.message_type):
            data[field.name] = (
                [_plain(field.message_type, v) for v in value]
                if repeated
                else _plain(field.message_type, value)
            )
    for name in _STATUS_NAME_FIELDS.get(descriptor.full_name, ()):
        if isinstance(data.get(name), str):
            data[name] = _STATUS_PREFIX.sub("", data[name])
    return data


def _well_known(descriptor: Descriptor) -> bool:
    full_name: str = descriptor.full_name
    return full_name.startswith("google.protobuf.")


def to_data(value: Any) -> Any:
    """Plain JSON-able data from protobuf messages, lists and dicts.

    Messages keep their proto field names, and every field is present (zeros and
    empty lists too), so scripts see a stable shape. Enum values are spelt one way
    everywhere, by their short names (``COMPLETED``, ``NORMAL``: what the tables show
    and the options take), and 64-bit integers are numbers, not strings.
    """
    if isinstance(value, Message):
        data = MessageToDict(
            value, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        return _plain(value.DESCRIPTOR, data) if not _well_known(value.DESCRIPTOR) else data
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
    """A table: drawn with rich on a terminal, aligned plain text otherwise (the last column not padded).

    Plain text is what scripts and pipes get (``maos task list | grep``): columns separated
    by two spaces, no box characters, no colour.
    """
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    if not cells and empty:
        return empty
    if sys.stdout.isatty():
        return _rich_table(headers, cells)
    widths = [max([len(h), *(_width(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *cells]:
        parts = [c + " " * (widths[i] - _width(c)) if i < len(row) - 1 else c for i, c in enumerate(row)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _rich_table(headers: Sequence[str], cells: list[list[str]]) -> str:
    """The table drawn by rich for a terminal (colour unless NO_COLOR), as text to print."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    drawn = Table(
        box=box.SIMPLE_HEAD, header_style="bold" if color_enabled() else "", show_edge=False, pad_edge=False
    )
    for header in headers:
        drawn.add_column(header, overflow="fold")
    for row in cells:
        drawn.add_row(*(Text.from_ansi(cell) for cell in row))
    buffer = io.StringIO()
    width = shutil.get_terminal_size((120, 24)).columns
    Console(
        file=buffer,
        force_terminal=color_enabled(),
        no_color=not color_enabled(),
        width=width,
        highlight=False,
    ).print(drawn)
    return buffer.getvalue().rstrip("\n")


def key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    """``Key:  value`` lines, aligned; pairs whose value is None or empty are left out."""
    shown = [(k, str(v)) for k, v in pairs if v not in (None, "", [])]
    width = max((len(k) for k, _ in shown), default=0) + 1
    return "\n".join(f"{k + ':':<{width}}  {v}" for k, v in shown)


def enum_label(enum_type: Any, value: int, prefix: str) -> str:
    """``COMPLETED`` for TASK_STATUS_COMPLETED (``prefix`` is ``TASK_STATUS_``)."""
    try:
        name: str = enum_type.Name(value)
        return name.removeprefix(prefix)
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
    parts = [
        f"{days}d" if days else "",
        f"{hours}h" if hours else "",
        f"{minutes}m" if minutes else "",
        f"{secs}s" if secs else "",
    ]
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

    rows = [
        [c.component, label(c.state), duration_text(c.latency) if c.HasField("latency") else "", c.message]
        for c in h.components
    ]
    return table(["COMPONENT", "STATE", "LATENCY", "MESSAGE"], rows) + f"\n\nOverall: {label(h.state)}"
