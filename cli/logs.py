"""``maos logs`` and ``maos agent logs``: the records the control plane keeps, filtered, or followed live."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import yaml

from agent_sdk.client import Client
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from maos_cli._errors import EXIT_INTERRUPTED, handle_errors
from maos_cli._follow import resumed
from maos_cli._options import Since, UpperChoice, agent_id_argument, output_option, run
from maos_cli._output import bare_id, emit, enum_label, output_format, to_data

LEVELS = ["DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL"]
#: How far back --since may reach (records are kept in memory; older ones are in $MAOS_HOME/logs).
MAX_SINCE = timedelta(days=30)
#: Records asked for per page, and the most --limit allows.
PAGE, MAX_LIMIT = 1000, 10_000
#: Seconds before following again after the stream broke (doubling up to the cap).


def _level(name: str | None) -> int:
    if not name:
        return 0
    level: int = enums.LogLevel.Value("LOG_LEVEL_" + ("WARNING" if name == "WARN" else name))
    return level


def _check_since(ctx: click.Context, param: click.Parameter, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    now = datetime.now(UTC)
    if value > now + timedelta(minutes=1):
        raise click.BadParameter(f"{value.isoformat(timespec='seconds')} is in the future")
    if now - value > MAX_SINCE:
        raise click.BadParameter(
            "goes back more than 30d; records are kept in memory for a shorter time "
            "(older ones are in $MAOS_HOME/logs)"
        )
    return value


def log_options(fn: Any) -> Any:
    """The filters shared by ``maos logs`` and ``maos agent logs``."""
    for option in reversed(
        [
            click.option(
                "-f",
                "--follow",
                is_flag=True,
                help="Keep printing records as they are written (Ctrl-C stops).",
            ),
            click.option("--level", type=UpperChoice(LEVELS), default=None, help="At least this level."),
            click.option(
                "--grep",
                "contains",
                default="",
                show_default=False,
                metavar="TEXT",
                help="Only records whose message contains TEXT (case-insensitive, at most 256 characters).",
            ),
            click.option(
                "--since",
                type=Since(),
                default=None,
                callback=_check_since,
                help="Only records since then: 1h, 30m, 7d or an ISO time (at most 30d back).",
            ),
            click.option(
                "--limit",
                type=click.IntRange(1, MAX_LIMIT),
                default=100,
                help="Most records printed (the newest); with --follow, before the live ones.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def _line(r: msgs.LogRecord) -> str:
    at = datetime.fromtimestamp(r.time.seconds + r.time.nanos / 1e9).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    level = enum_label(enums.LogLevel, r.level, "LOG_LEVEL_")
    extra = [f"task={bare_id(r.task)}" if r.task else ""]
    extra += [f"{k}={v}" for k, v in sorted(r.fields.items())]
    tail = "  ".join(e for e in extra if e)
    return f"{at}  {level:<8} {r.component:<24} {r.message}" + (f"  [{tail}]" if tail else "")


def _record(r: msgs.LogRecord) -> str:
    if output_format() == "yaml":
        document: str = yaml.safe_dump(to_data(r), sort_keys=False, allow_unicode=True, explicit_start=True)
        return document.rstrip()
    if output_format() == "json":
        return json.dumps(to_data(r), default=str)
    return _line(r)


async def _recent(client: Client, limit: int, **filters: Any) -> list[msgs.LogRecord]:
    """The newest ``limit`` matching records, oldest first."""
    found: list[msgs.LogRecord] = []
    token = ""
    while len(found) < limit:
        page = await client.list_logs(
            newest_first=True, page_size=min(PAGE, limit - len(found)), page_token=token, **filters
        )
        found.extend(page.records)
        token = page.next_page_token
        if not token:
            break
    return found[::-1]


async def _follow(client: Client, limit: int, since: datetime | None, **filters: Any) -> None:
    # TailLogs sends the backlog and then live records from one subscription: nothing falls between.
    # A broken stream is opened again after the last record shown, so none is lost or shown twice.
    floor = since.timestamp() if since else None
    records = resumed(
        lambda after: client.tail_logs(tail=min(limit, 1000), after_record_id=after, **filters),
        lambda record: record.id,
        what="log records",
        stream="log",
        verb="following",
    )
    async for record in records:
        if floor is None or record.time.seconds + record.time.nanos / 1e9 >= floor:
            click.echo(_record(record))


def show_logs(follow: bool, limit: int, since: datetime | None, **filters: Any) -> None:
    """Print the newest records (or follow them) with the given server-side filters."""
    if follow:
        try:
            run(lambda client: _follow(client, limit, since, **filters))
        except KeyboardInterrupt:
            raise SystemExit(EXIT_INTERRUPTED) from None
        return
    records = run(lambda client: _recent(client, limit, since=since, **filters))
    emit({"records": records}, lambda: "\n".join(_line(r) for r in records) or "No log records.")


@click.command()
@log_options
@click.option(
    "--component",
    default="",
    show_default=False,
    metavar="NAME",
    help="orchestrator (the control plane's own records), agents (every agent's), or one part: "
    "api, scheduler, launcher, checkpoints, agents/ID.",
)
@click.option("--task", default="", show_default=False, metavar="ID", help="Only records about this task.")
@output_option
@handle_errors
def logs(
    follow: bool,
    level: str | None,
    contains: str,
    since: datetime | None,
    limit: int,
    component: str,
    task: str,
) -> None:
    """Show the recent log records of the control plane and its agents, newest last.

    The control plane keeps the last 20,000 records in memory (agents forward
    theirs over their streams); the complete logs are in $MAOS_HOME/logs.
    With --follow it prints new records until Ctrl-C (exit 130), and after a
    broken connection follows again from the last record it printed; with
    -o json one JSON object per line.
    """
    show_logs(follow, limit, since, level=_level(level), component=component, contains=contains, task=task)


@click.command("logs")
@agent_id_argument
@log_options
@click.option("--task", default="", show_default=False, metavar="ID", help="Only records about this task.")
@output_option
@handle_errors
def agent_logs(
    agent_id: str,
    follow: bool,
    level: str | None,
    contains: str,
    since: datetime | None,
    limit: int,
    task: str,
) -> None:
    """Show the log records an agent forwarded (its ctx.log lines), newest last.

    An unknown agent is an error (exit 3); --follow keeps printing until Ctrl-C.
    """
    show_logs(follow, limit, since, level=_level(level), agent=agent_id, contains=contains, task=task)
