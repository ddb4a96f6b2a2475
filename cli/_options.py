"""Shared CLI state, option decorators and parameter types."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click

from agent_sdk.client import Client
from agent_sdk.command_options import tls_from_options
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from maos_cli._errors import EXIT_INVALID_ARGUMENT, EXIT_USAGE, CliError
from maos_cli._output import FORMATS
from maos_common.tls import ClientTls, TlsFileError

T = TypeVar("T")

PRIORITIES = ["LOW", "NORMAL", "MEDIUM", "HIGH", "CRITICAL"]
TASK_STATUSES = [
    n.removeprefix("TASK_STATUS_")
    for n in enums.TaskStatus.DESCRIPTOR.values_by_name
    if not n.endswith("UNSPECIFIED")
]
AGENT_STATUSES = [
    n.removeprefix("AGENT_STATUS_")
    for n in enums.AgentStatus.DESCRIPTOR.values_by_name
    if not n.endswith("UNSPECIFIED")
]


# click.Choice is generic only in newer clicks; subscripting it fails on the older ones we accept.
class UpperChoice(click.Choice):  # type: ignore[type-arg]
    """A case-insensitive choice shown (and returned) in upper case: ``[LOW|NORMAL|HIGH]``."""

    def __init__(self, choices: Iterable[str]):
        super().__init__([c.upper() for c in choices], case_sensitive=True)

    def normalize_choice(self, choice: Any, ctx: click.Context | None) -> str:
        return str(choice).upper()


@dataclass
class State:
    """Global options, shared by every command through ``ctx.obj``."""

    addr: str = "127.0.0.1:7100"
    token: str | None = None
    timeout: float = 10.0
    output: str = "table"
    #: The --tls* options (each field falls back to its client.tls setting).
    tls: ClientTls = field(default_factory=ClientTls)
    #: --no-tls: plaintext whatever the client.tls settings say.
    no_tls: bool = False


def state() -> State:
    """The :class:`State` of the running command."""
    ctx = click.get_current_context()
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj


def credentials_hint() -> str:
    """Why the credentials file's key may be refused: it was issued by another database than the configured one."""
    from controlplane.access.bootstrap import credentials_database, credentials_path
    from controlplane.app import shown_url
    from controlplane.config import default_home, load_settings

    home = default_home()
    if state().token or not credentials_path(home).exists():  # a key given as --token or MAOS_TOKEN
        return ""
    try:
        configured = shown_url(load_settings().database_url)
    except Exception:  # noqa: BLE001 - a hint must never hide the real error
        return ""
    recorded = credentials_database(home)
    if recorded is None or recorded == configured:
        return ""
    return (
        f"\n  the key in {credentials_path(home)} was issued by {recorded}, but database.primary_url is now "
        f"{configured}: run `maos init` to issue an admin key there"
    )


def resolve_token(token: str | None) -> str | None:
    """``--token``/MAOS_TOKEN, else the ``token:`` of ``$MAOS_HOME/credentials`` (written by ``maos init``)."""
    if token:
        return token
    from controlplane.access.bootstrap import read_token
    from controlplane.config import default_home

    return read_token(default_home())


def resolve_tls(tls: ClientTls, no_tls: bool = False) -> ClientTls:
    """The --tls* options, each unset one from its ``client.tls`` setting (config.yml, MAOS_CLIENT_TLS_*)."""
    from controlplane.config import load_settings
    from controlplane.errors import InvalidArgument

    if no_tls:
        return ClientTls()
    try:
        return tls.or_else(load_settings().client_tls)
    except InvalidArgument as exc:  # a broken config.yml: say so rather than fall back to plaintext
        raise CliError(exc.message, EXIT_INVALID_ARGUMENT) from None


def make_client(address: str, *, token: str | None, timeout: float, tls: ClientTls) -> Client:
    """A client of ``address``; over TLS when ``tls`` (already resolved) says so.

    An unusable TLS file is a usage error (exit 2) naming the file and the problem.
    """
    try:
        credentials = tls.credentials()
    except TlsFileError as exc:
        raise CliError(
            f"TLS: {exc.message} (--tls-ca/--tls-cert/--tls-key or client.tls.*)", EXIT_USAGE
        ) from None
    return Client(
        address,
        token=token,
        timeout=timeout,
        credentials=credentials,
        tls_server_name=tls.server_name or None,
    )


def run(action: Callable[[Client], Awaitable[T]]) -> T:
    """Run ``action(client)`` with a client of the configured control plane."""
    s = state()
    token = resolve_token(s.token)
    tls = resolve_tls(s.tls, s.no_tls)

    async def main() -> T:
        async with make_client(s.addr, token=token, timeout=s.timeout, tls=tls) as client:
            return await action(client)

    return asyncio.run(main())


def _set_output(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        state().output = value.lower()


#: The spellings of the output format option, on the group and on each command.
OUTPUT_FLAGS = ("-o", "--output", "--format")


def output_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``-o/--output/--format`` on a command too (``maos task list -o json``), overriding the global one."""
    return click.option(
        *OUTPUT_FLAGS,
        "output",
        type=click.Choice(FORMATS, case_sensitive=False),
        default=None,
        expose_value=False,
        callback=_set_output,
        is_eager=True,
        show_default=False,
        help="Output format (default: the global -o); --format is the same option.",
    )(fn)


def priority_option(help_text: str, default: str | None = None) -> Callable[[Callable[..., Any]], Any]:
    """``--priority LOW|NORMAL|MEDIUM|HIGH|CRITICAL``, case-insensitive (MEDIUM means NORMAL)."""
    return click.option("--priority", type=UpperChoice(PRIORITIES), default=default, help=help_text)


def normalize_priority(value: str | None) -> str | None:
    """NORMAL for MEDIUM; other names unchanged (upper case)."""
    if value is None:
        return None
    value = value.upper()
    return "NORMAL" if value == "MEDIUM" else value


def split_csv(values: Iterable[str] | str | None) -> list[str]:
    """Items of repeated and/or comma-separated values, stripped, without empties."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


# click.ParamType is generic only from click 8.4; subscripting it fails on the older ones we accept.
class KeyValue(click.ParamType):  # type: ignore[type-arg]
    """``key=value``."""

    name = "KEY=VALUE"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        key, sep, val = str(value).partition("=")
        if not sep or not key.strip():
            self.fail(f"{value!r} is not KEY=VALUE", param, ctx)
        return key.strip(), val


# click.ParamType is generic only from click 8.4; subscripting it fails on the older ones we accept.
class Metadata(click.ParamType):  # type: ignore[type-arg]
    """Task metadata: ``KEY=VALUE``, or a JSON object of several (``'{"team": "docs", "run": 3}'``).

    Values are text: JSON numbers and booleans become their JSON spelling, objects and lists their JSON.
    """

    name = "KEY=VALUE|JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dict[str, str]:
        if isinstance(value, dict):
            return value
        text = str(value)
        if text.lstrip().startswith("{"):
            try:
                loaded = json.loads(text)
            except json.JSONDecodeError as exc:
                self.fail(
                    f"{short_text(text)!r} is not a JSON object: {exc.msg} at character {exc.pos}", param, ctx
                )
            if not isinstance(loaded, dict):
                self.fail("a JSON value here must be an object of KEY: VALUE", param, ctx)
            return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in loaded.items()}
        key, val = KeyValue().convert(text, param, ctx)
        return {key: val}


def merge_metadata(items: tuple[dict[str, str], ...]) -> dict[str, str]:
    """The ``--metadata`` options given, later ones winning."""
    return {k: v for item in items for k, v in item.items()}


def short_text(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters (with ``…``), for quoting input back in an error."""
    return text if len(text) <= limit else text[:limit] + "…"


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


# click.ParamType is generic only from click 8.4; subscripting it fails on the older ones we accept.
class Since(click.ParamType):  # type: ignore[type-arg]
    """A time: relative to now (``90s``, ``30m``, ``1h``, ``7d``, ``2w``) or ISO 8601 (local time if naive)."""

    name = "DURATION|ISO"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        match = _RELATIVE.match(str(value))
        if match:
            delta = timedelta(**{_UNITS[match.group(2).lower()]: float(match.group(1))})
            return datetime.now(UTC) - delta
        try:
            moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            self.fail(
                f"{value!r} is neither a duration like 1h, 30m, 7d nor an ISO time like 2025-08-11T10:30",
                param,
                ctx,
            )
        return moment if moment.tzinfo else moment.astimezone()


def complete_task_ids(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Shell completion of task ids (the 50 newest), best effort and quick."""
    from click.shell_completion import CompletionItem

    params = ctx.find_root().params
    addr, token = params.get("addr") or State.addr, resolve_token(params.get("token"))

    async def fetch() -> list[Any]:
        tls = resolve_tls(tls_from_options(params), params.get("tls") is False)
        async with make_client(addr, token=token, timeout=1.0, tls=tls) as client:
            page = await client.list_tasks(page_size=50)
            return [CompletionItem(t.name.rsplit("/", 1)[-1], help=t.description[:40]) for t in page.tasks]

    try:
        items = asyncio.run(fetch())
    except Exception:
        return []
    return [item for item in items if item.value.startswith(incomplete.removeprefix("tasks/"))]


def task_id_argument(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The ``ID`` argument of a task (bare id or ``tasks/ID``)."""
    return click.argument("task_id", metavar="ID", shell_complete=complete_task_ids)(fn)


def agent_id_argument(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The ``ID`` argument of an agent (bare id or ``agents/ID``)."""
    return click.argument("agent_id", metavar="ID")(fn)


_DURATION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$", re.IGNORECASE)  # "-" to say "negative"


# click.ParamType is generic only from click 8.4; subscripting it fails on the older ones we accept.
class Duration(click.ParamType):  # type: ignore[type-arg]
    """Seconds, given as ``30``, ``30s``, ``500ms``, ``5m``, ``2h`` or ``1d`` (never negative).

    Args:
        max_seconds: The longest duration accepted (a usage error above it), or None.
    """

    name = "DURATION"

    def __init__(self, max_seconds: float | None = None) -> None:
        self.max_seconds = max_seconds

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            seconds = float(value)
        else:
            match = _DURATION.match(str(value))
            if not match:
                self.fail(f"{value!r} is not a duration (examples: 30, 30s, 500ms, 5m, 2h)", param, ctx)
            unit = (match.group(2) or "s").lower()
            seconds = float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
        if seconds < 0:
            self.fail(f"{value!r} is negative; a duration is 0 or more", param, ctx)
        if self.max_seconds is not None and seconds > self.max_seconds:
            self.fail(f"{value!r} is {seconds:g} s, more than the {self.max_seconds:g} s allowed", param, ctx)
        return seconds


def _check_pool(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Validate ``--agents TYPE=N,...`` like the ``agents.pool`` setting (a usage error otherwise)."""
    if value is None:
        return None
    from controlplane.config import parse_value
    from controlplane.errors import InvalidArgument

    try:
        parse_value("agents.pool", value)
    except InvalidArgument as exc:
        raise click.BadParameter(
            f"{exc.message} (expected TYPE=COUNT,... like researcher=2,coder=2)"
        ) from None
    return value


_START_OPTIONS = [
    click.option(
        "--agents",
        default=None,
        callback=_check_pool,
        metavar="TYPE=N,...",
        help="Local agents to launch, e.g. researcher=2,coder=2 (default: agents.pool).",
    ),
    click.option(
        "--address", default=None, metavar="HOST:PORT", help="Listen address (default: server.address)."
    ),
    click.option(
        "--metrics-port",
        type=click.IntRange(min=0),
        default=None,
        help="Prometheus /metrics port; 0 disables (default: server.metrics_port).",
    ),
    click.option(
        "--startup-timeout",
        type=click.FloatRange(min=0, min_open=True),
        default=60.0,
        metavar="SECONDS",
        help="In the background: how long to wait until it serves.",
    ),
    click.option(
        "--migrate/--no-migrate",
        default=None,
        show_default=False,
        help="Apply database migrations before serving (default: database.migrate_on_start, on). "
        "With --no-migrate a database that is not at the latest schema revision is refused; "
        "run `maos db migrate` first.",
    ),
]


def start_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options shared by ``maos start`` and ``maos restart``."""
    for option in reversed(_START_OPTIONS):
        fn = option(fn)
    return fn
