"""Typed settings: defaults < ``$MAOS_HOME/config.yml`` < ``MAOS_*`` environment < explicit overrides.

Every setting has a dotted key (``database.primary_url``) declared once in
:data:`OPTIONS` with its type, default and description. The environment
variable of a key is ``MAOS_`` plus the key in upper case with dots replaced by
underscores (``MAOS_DATABASE_PRIMARY_URL``, ``MAOS_SYSTEM_MAX_AGENTS``), as the
user guide shows. Values in ``config.yml`` may refer to the environment as
``${NAME}``.

Plugins declare settings of their own the same way, in sections of their own
(the ``register_settings`` hook, :func:`plugin_settings`);
:func:`load_settings` resolves them with MAOS's. A key of ``config.yml`` that
no one declares is a warning (:attr:`Settings.warnings`), not an error.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import yaml

from controlplane.errors import InvalidArgument
from maos_common.tls import ClientTls

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _duration(value: Any) -> float:
    """Seconds from a number or a string like ``300``, ``1.5s``, ``500ms``, ``5m``, ``2h``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h|d)?\s*", str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration (examples: 30, 30s, 500ms, 5m, 2h)")
        number, unit = float(match.group(1)), match.group(2) or "s"
        seconds = number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def _positive_duration(value: Any) -> float:
    seconds = _duration(value)
    if seconds <= 0:
        raise ValueError("must be a duration greater than 0")
    return seconds


def _with_server_option(url: str, option: str) -> str:
    """A PostgreSQL ``url`` whose sessions start with the server setting ``option`` (libpq ``options``)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = " ".join([*(value for key, value in query if key == "options"), f"-c {option}"])
    rest = [(key, value) for key, value in query if key != "options"]
    return urlunsplit(parts._replace(query=urlencode([*rest, ("options", options)], quote_via=quote)))


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{value!r} is not a boolean (true or false)")


def _positive_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    number = int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def _non_negative_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("expected an integer")
    number = int(value)
    if number < 0:
        raise ValueError("cannot be negative")
    return number


def _non_negative_number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError("must be a finite number, at least 0")
    return number


def _ratio(value: Any) -> float:
    number = float(value)
    if not 0 < number <= 1:
        raise ValueError("must be greater than 0 and at most 1")
    return number


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "kib": 2**10,
    "m": 10**6,
    "mb": 10**6,
    "mib": 2**20,
    "g": 10**9,
    "gb": 10**9,
    "gib": 2**30,
    "t": 10**12,
    "tb": 10**12,
    "tib": 2**40,
}


def _memory_size(value: Any) -> int:
    """Bytes from ``1GB``, ``512MiB``, ``2048`` (bytes); 0 means no limit."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512MB or 2GiB")
    match = _SIZE.fullmatch(str(value).strip())
    if match is None or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size (such as 512MB, 2GiB, or a number of bytes)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def _choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return text

    return parse


#: ``server.reflection`` levels: who may call server reflection (``off``: it is not served).
REFLECTION_LEVELS = ("off", "admin", "authenticated", "public")


def _reflection(value: Any) -> str:
    """A ``server.reflection`` level; YAML's true/false (and on/off) read as authenticated/off."""
    if isinstance(value, bool):
        return "authenticated" if value else "off"
    text = str(value).strip().lower()
    if text in {"true", "yes", "1"}:
        return "authenticated"
    if text in {"false", "no", "0"}:
        return "off"
    return _choice(*REFLECTION_LEVELS)(text)


def _pool(value: Any) -> dict[str, int]:
    """An agent pool: ``{"echo": 2}`` or ``"researcher=2,coder=1"``."""
    if isinstance(value, Mapping):
        items = list(value.items())
    else:
        items = []
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, count = part.partition("=")
            items.append((name.strip(), count.strip() if sep else "1"))
    pool: dict[str, int] = {}
    for name, count in items:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]{0,62}", str(name)):
            raise ValueError(f"{name!r} is not an agent type name")
        pool[str(name)] = _non_negative_int(count)
    return pool


_RATE_KEYS = ("requests_per_minute", "input_tokens_per_minute", "output_tokens_per_minute")


def _rate_limits(value: Any) -> dict[str, dict[str, int]]:
    """Per-model rate limits: ``{model: {requests_per_minute: 50, input_tokens_per_minute: 30000, ...}}``.

    A string is read as YAML (or JSON), so the environment variable can hold the same mapping.
    """
    if isinstance(value, str):
        value = yaml.safe_load(value) if value.strip() else {}
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError("expected a mapping of model names to limits")
    limits: dict[str, dict[str, int]] = {}
    for model, entry in value.items():
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:@/\-]{0,99}", str(model)):
            raise ValueError(f"{str(model)[:64]!r} is not a model name")
        if not isinstance(entry, Mapping):
            raise ValueError(f"{model}: expected a mapping with {', '.join(_RATE_KEYS)}")
        unknown = sorted(set(map(str, entry)) - set(_RATE_KEYS))
        if unknown:
            raise ValueError(f"{model}: unknown key {unknown[0]!r} (known: {', '.join(_RATE_KEYS)})")
        limits[str(model)] = {key: _non_negative_int(entry.get(key, 0)) for key in _RATE_KEYS}
    return limits


def _scaling_types(value: Any) -> dict[str, dict[str, int]]:
    """Per-type autoscaling bounds: ``{"echo": {"min": 1, "max": 4}}`` or ``"echo=1:4,coder=0:2"``."""
    if isinstance(value, Mapping):
        items = []
        for name, bounds in value.items():
            if not isinstance(bounds, Mapping) or set(bounds) - {"min", "max"}:
                raise ValueError(f"scaling.types.{name} takes min and max, like {{min: 1, max: 4}}")
            items.append((name, bounds.get("min", 0), bounds.get("max", bounds.get("min", 0))))
    else:
        items = []
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            name, _sep, rng = part.partition("=")
            lo, sep, hi = rng.partition(":")
            if not sep:
                raise ValueError(f"{part!r}: write type=min:max, like echo=1:4")
            items.append((name.strip(), lo.strip(), hi.strip()))
    types: dict[str, dict[str, int]] = {}
    for name, lo, hi in items:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]{0,62}", str(name)):
            raise ValueError(f"{name!r} is not an agent type name")
        low, high = _non_negative_int(lo), _non_negative_int(hi)
        if high < low:
            raise ValueError(f"{name}: max {high} is below min {low}")
        types[str(name)] = {"min": low, "max": high}
    if len(types) > 64:
        raise ValueError("at most 64 agent types can be autoscaled")
    return types


def _text(value: Any) -> str:
    return "" if value is None else str(value)


#: How the marks the control plane writes in ``tasks.claimed_by`` begin (a task given up, a task kept in
#: the database): a replica id may not, or its tasks would be taken for marked ones.
RESERVED_REPLICA_PREFIX = "~"


def _replica_id(value: Any) -> str:
    text = _text(value)
    if text.startswith(RESERVED_REPLICA_PREFIX):
        raise ValueError(
            f"{text!r} starts with {RESERVED_REPLICA_PREFIX!r}, the reserved prefix of the marks in "
            "tasks.claimed_by; choose an id that does not"
        )
    return text


def _origins(value: Any) -> list[str]:
    """CORS origins: a YAML list or a comma-separated string (``https://ops.example.com``, or ``*``)."""
    items = value if isinstance(value, list | tuple) else str(value or "").split(",")
    origins = [str(item).strip().rstrip("/") for item in items if str(item).strip()]
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], or *)")
    return origins


def _domains(value: Any) -> list[str]:
    """Domain names: a YAML list or a comma-separated string (``example.com``, ``docs.python.org``)."""
    items = value if isinstance(value, list | tuple) else str(value or "").split(",")
    domains = [str(item).strip().lower() for item in items if str(item).strip()]
    for domain in domains:
        if not re.fullmatch(r"[a-z0-9*]([a-z0-9.*-]*[a-z0-9])?(/[^\s]*)?", domain):
            raise ValueError(f"{domain!r} is not a domain name (such as example.com)")
    return domains


def _path(value: Any) -> str:
    """A file path (``~`` expanded); empty means unset."""
    text = _text(value).strip()
    return str(Path(text).expanduser()) if text else ""


#: The parsers of MAOS's own settings, for plugins' settings (``Option(key, parse_duration, 30.0, ...)``).
#: Each takes the raw value (YAML scalar, or the text of an environment variable) and returns the value,
#: or raises ``ValueError`` with a sentence saying what is expected.
parse_duration = _duration
parse_positive_duration = _positive_duration
parse_bool = _bool
parse_positive_int = _positive_int
parse_non_negative_int = _non_negative_int
parse_non_negative_number = _non_negative_number
parse_memory_size = _memory_size
parse_choice = _choice
parse_text = _text
parse_domains = _domains
parse_path = _path


@dataclass(frozen=True)
class Option:
    """One setting: its parser, default and the sentence ``maos config`` shows."""

    key: str
    parse: Callable[[Any], Any]
    default: Any
    description: str
    runtime: bool = False  # may be changed with SetConfig while running

    @property
    def env_var(self) -> str:
        """The environment variable that overrides the option."""
        return "MAOS_" + self.key.upper().replace(".", "_")


OPTIONS: dict[str, Option] = {
    o.key: o
    for o in [
        Option("system.max_agents", _positive_int, 10, "Most supervised agent processes on this machine."),
        Option("system.log_level", _choice("debug", "info", "warning", "error"), "info", "Log level."),
        Option(
            "system.max_concurrent_tasks",
            _non_negative_int,
            0,
            "Most tasks running at once; further tasks wait QUEUED, saying so; 0: no cap.",
        ),
        Option(
            "system.max_memory",
            _memory_size,
            0,
            "Memory all supervised agent processes may reserve together (e.g. 8GB); 0: no cap.",
        ),
        Option(
            "system.max_cpu_cores",
            _non_negative_number,
            0.0,
            "CPUs supervised agents may run on (the first N, rounded up); 0: all.",
        ),
        Option(
            "agents.defaults.max_memory",
            _memory_size,
            0,
            "Data segment limit of each supervised agent process (e.g. 1GB); 0: its share of "
            "system.max_memory, or none.",
        ),
        Option(
            "agents.defaults.max_cpu_cores",
            _non_negative_number,
            0.0,
            "CPUs each supervised agent may run on (rounded up); 0: all those of system.max_cpu_cores.",
        ),
        Option(
            "audit.retention_days",
            _non_negative_int,
            365,
            "Days audit records are kept (older ones are deleted daily); 0 keeps them forever.",
        ),
        Option("database.primary_url", _text, "", "SQLAlchemy URL; empty means SQLite in MAOS_HOME."),
        Option(
            "database.migrate_on_start",
            _bool,
            True,
            "Apply migrations when the server starts; off, it refuses a database not at the latest "
            "schema revision (run `maos db migrate`). `maos start --migrate/--no-migrate` overrides it.",
        ),
        Option(
            "database.synchronous_commit",
            _bool,
            True,
            "PostgreSQL only: off, a commit is acknowledged before the server has flushed it to disk "
            "(survives a control-plane crash, not a PostgreSQL crash: the durability SQLite has here).",
        ),
        Option(
            "redis.url",
            _text,
            "",
            "Redis URL (the health component, API rate-limit buckets and model pacing shared by replicas); "
            "empty disables Redis.",
        ),
        Option("redis.key_prefix", _text, "maos:", "Prefix of every Redis key and channel MAOS uses."),
        Option(
            "redis.stream_max_len",
            _positive_int,
            100_000,
            "Entries the replicas' event and log streams in Redis keep, approximately: how far back "
            "a watcher can resume from an event id.",
        ),
        Option(
            "replicas.heartbeat_interval",
            _positive_duration,
            5.0,
            "Seconds between a replica's heartbeats in the replica registry.",
        ),
        Option(
            "replicas.lost_after",
            _positive_duration,
            30.0,
            "A replica silent this long is lost: maos status shows it so, other replicas on "
            "PostgreSQL take over its tasks, and a replica that could not heartbeat this long stops "
            "itself. More than twice replicas.heartbeat_interval.",
        ),
        Option(
            "replicas.claim_window",
            _non_negative_int,
            32,
            "On PostgreSQL: unstarted tasks a replica keeps beyond what its agents can start now; "
            "the rest are left (or given back) for other replicas to claim.",
        ),
        Option(
            "replicas.claim_poll_interval",
            _positive_duration,
            1.0,
            "On PostgreSQL: seconds between claim passes of a replica with no wake-up (wake-ups "
            "from Redis, else LISTEN/NOTIFY, start work within milliseconds; this is the fallback).",
        ),
        Option(
            "replicas.job_lease_ttl",
            _positive_duration,
            15.0,
            "Lease of a periodic job on PostgreSQL (renewed every third of it); a dead holder's jobs "
            "move to another replica within it.",
        ),
        Option(
            "replicas.route_timeout",
            _positive_duration,
            3.0,
            "Seconds a replica waits for the one holding an agent or task to answer a call it "
            "carried to it (pause, drain, cancel, ...); every live replica declining ends it sooner.",
        ),
        Option(
            "replicas.advertise_address",
            _text,
            "",
            "host:port other replicas and maos status show for this one; empty: server.address "
            "(a wildcard host replaced by the host name).",
        ),
        Option("server.address", _text, "127.0.0.1:7100", "gRPC listen address (host:port)."),
        Option("server.metrics_port", _non_negative_int, 9464, "Prometheus /metrics port; 0 disables."),
        Option(
            "server.metrics_address",
            _text,
            "127.0.0.1",
            "Address /metrics listens on (plaintext HTTP: beyond localhost only with "
            "server.allow_insecure_remote).",
        ),
        Option(
            "server.http_port",
            _non_negative_int,
            8000,
            "HTTP/JSON, Server-Sent Events and gRPC-Web port (same keys, TLS files and address rule as "
            "the gRPC port); 0 disables.",
        ),
        Option(
            "server.http_address",
            _text,
            "127.0.0.1",
            "Address the HTTP port listens on (beyond localhost only with TLS or server.allow_insecure_remote).",
        ),
        Option(
            "server.http_cors_origins",
            _origins,
            [],
            "Browser origins allowed to call the HTTP port (a list, or comma-separated); none by default.",
        ),
        Option(
            "server.http_max_body_bytes",
            _memory_size,
            4 * 1024 * 1024,
            "Largest HTTP request body (e.g. 4MiB); larger ones are refused with 413.",
        ),
        Option(
            "server.http_timeout",
            _duration,
            60.0,
            "Deadline of each unary call made over HTTP (streams run until the client leaves).",
        ),
        Option(
            "server.http_mcp",
            _bool,
            True,
            "Serve MCP (streamable HTTP) at /mcp on the HTTP port, for Claude Code and other MCP clients; "
            "each request acts with its own Authorization: Bearer key. Needs the mcp package (maos[mcp]).",
        ),
        Option(
            "server.dashboard_port",
            _non_negative_int,
            3001,
            "Web dashboard port (its pages and the same HTTP API, same keys, TLS files and address "
            "rule as the gRPC port); 0 disables.",
        ),
        Option(
            "server.dashboard_address",
            _text,
            "127.0.0.1",
            "Address the dashboard listens on (beyond localhost only with TLS or "
            "server.allow_insecure_remote).",
        ),
        Option(
            "server.reflection",
            _reflection,
            "authenticated",
            "gRPC server reflection: off, admin (admin keys), authenticated (any valid key) or public "
            "(no key, for clients that cannot send a header); true means authenticated, false off.",
        ),
        Option(
            "server.allow_insecure_remote",
            _bool,
            False,
            "Allow a plaintext port beyond localhost (the gRPC port without TLS, /metrics).",
        ),
        Option(
            "server.tls.cert_file", _path, "", "Server certificate chain (PEM); with key_file, serve TLS."
        ),
        Option("server.tls.key_file", _path, "", "Private key (PEM, unencrypted) of server.tls.cert_file."),
        Option(
            "server.tls.client_ca_file", _path, "", "CA certificates (PEM) that verify client certificates."
        ),
        Option(
            "server.tls.require_client_auth",
            _bool,
            False,
            "Mutual TLS: refuse connections without a client certificate signed by client_ca_file.",
        ),
        Option(
            "client.tls.enabled",
            _bool,
            False,
            "Clients (CLI, maos-agent, launched agents) connect over TLS; implied by the other client.tls keys.",
        ),
        Option(
            "client.tls.ca_file",
            _path,
            "",
            "CA certificates (PEM) that verify the server; empty: system CAs.",
        ),
        Option("client.tls.cert_file", _path, "", "Client certificate (PEM) for mutual TLS."),
        Option("client.tls.key_file", _path, "", "Private key (PEM, unencrypted) of client.tls.cert_file."),
        Option(
            "client.tls.server_name", _text, "", "Name the server certificate must carry, if not the host."
        ),
        Option(
            "security.auth",
            _choice("required", "off"),
            "required",
            "API keys on every call (required); off trusts every caller as users/local (tests only).",
        ),
        Option(
            "security.rate_limit.rate",
            _non_negative_number,
            5000.0,
            "Calls per second each principal may make (with security.auth: required); 0 disables.",
        ),
        Option(
            "security.rate_limit.burst",
            _non_negative_int,
            10000,
            "Calls a principal may make at once above the rate; 0 disables the limit.",
        ),
        Option(
            "security.rate_limit.failed_auth_rate",
            _non_negative_number,
            1.0,
            "Failed authentications per second allowed from one address; 0 disables.",
        ),
        Option(
            "security.rate_limit.failed_auth_burst",
            _non_negative_int,
            30,
            "Failed authentications from one address before it is throttled; 0 disables.",
        ),
        Option(
            "server.replica_id",
            _replica_id,
            "",
            "This replica's id; empty means hostname-pid-random, new at each start.",
        ),
        Option("scheduler.lease_ttl", _duration, 15.0, "Seconds a lease lives without a heartbeat."),
        Option("scheduler.heartbeat_interval", _duration, 5.0, "Seconds between agent heartbeats."),
        Option(
            "scheduler.idle_heartbeat_interval",
            _duration,
            30.0,
            "Seconds between the heartbeats of an idle agent; 0: every heartbeat_interval.",
        ),
        Option("scheduler.aging_interval", _duration, 120.0, "Seconds of waiting worth one priority level."),
        Option("scheduler.commit_interval", _duration, 0.0, "Extra seconds to gather a group commit."),
        Option("scheduler.restart_grace", _duration, 15.0, "Seconds agents have to resume after a restart."),
        Option(
            "scheduler.queue_window",
            _non_negative_int,
            20_000,
            "On SQLite: queued tasks kept in memory; beyond them queued tasks wait in the database only, "
            "taken back in priority order as work starts (0: keep every queued task in memory).",
        ),
        Option("tasks.default_max_agents", _positive_int, 4, "max_agents of a task that sets none."),
        Option("tasks.max_description_length", _positive_int, 100_000, "Longest task description."),
        Option("tasks.max_fanout", _positive_int, 256, "Most subtasks in one plan."),
        Option("tasks.planning_timeout", _duration, 120.0, "Seconds a model planner may take."),
        Option("tasks.default_max_retries", _non_negative_int, 3, "Retries of a subtask by default."),
        Option("tasks.default_initial_backoff", _duration, 1.0, "First retry delay by default."),
        Option("tasks.default_max_backoff", _duration, 100.0, "Longest retry delay by default."),
        Option("limits.task_context_bytes", _positive_int, 1024 * 1024, "Largest task context (bytes)."),
        Option(
            "limits.task_constraints_bytes", _positive_int, 64 * 1024, "Largest task constraints (bytes)."
        ),
        Option(
            "limits.task_metadata_bytes",
            _positive_int,
            64 * 1024,
            "Largest task metadata, keys and values together (bytes).",
        ),
        Option(
            "limits.agent_labels_bytes",
            _positive_int,
            16 * 1024,
            "Largest labels of an agent, keys and values together (bytes).",
        ),
        Option(
            "limits.agent_hostname_bytes", _positive_int, 255, "Longest hostname an agent reports (bytes)."
        ),
        Option(
            "limits.result_bytes",
            _positive_int,
            4 * 1024 * 1024,
            "Largest subtask result: output plus inline artifacts (bytes); larger fails its subtask.",
        ),
        Option(
            "limits.progress_message_bytes",
            _positive_int,
            4096,
            "Longest progress text an agent reports (bytes; longer is cut).",
        ),
        Option(
            "limits.log_message_bytes",
            _positive_int,
            8192,
            "Longest log line an agent forwards (bytes; longer is cut).",
        ),
        Option(
            "limits.response_bytes",
            _positive_int,
            3 * 1024 * 1024,
            "Most bytes of one list page or result chunk; pages stop early below it.",
        ),
        Option(
            "limits.custom_agent_file_bytes",
            _positive_int,
            64 * 1024,
            "Largest custom agent type file in MAOS_HOME/agents (bytes).",
        ),
        Option(
            "limits.checkpoint_import_bytes",
            _positive_int,
            64 * 1024 * 1024,
            "Largest checkpoint upload ImportCheckpoint accepts (bytes, compressed).",
        ),
        Option(
            "limits.checkpoint_inflated_bytes",
            _positive_int,
            256 * 1024 * 1024,
            "Largest size an imported checkpoint may decompress to (bytes).",
        ),
        Option(
            "tasks.default_max_tokens",
            _non_negative_int,
            0,
            "Token budget of a task that sets none (0: no limit).",
        ),
        Option(
            "tasks.default_max_cost",
            _non_negative_number,
            0.0,
            "Cost budget in US dollars of a task that sets none (0: no limit).",
        ),
        Option(
            "tasks.context_max_chars",
            _positive_int,
            60_000,
            "Most characters of earlier results (its steps', its dependencies') one step sees; "
            "longer ones are cut with a note.",
        ),
        Option("batches.max_tasks", _positive_int, 1000, "Most tasks one batch may hold."),
        Option("batches.max_per_owner", _positive_int, 1000, "Most batches one principal may have."),
        Option("templates.max_per_owner", _positive_int, 1000, "Most templates one principal may have."),
        Option("agents.pool", _pool, {"echo": 2}, "Local agents `maos start` launches (type=count,...)."),
        Option(
            "scaling.enabled", _bool, False, "Autoscale the supervised agents of the types in scaling.types."
        ),
        Option(
            "scaling.types",
            _scaling_types,
            {},
            "Autoscaled types with their bounds (type=min:max,... or {type: {min, max}}).",
        ),
        Option("scaling.interval", _positive_duration, 5.0, "Seconds between autoscaling decisions."),
        Option(
            "scaling.queue_depth_threshold",
            _positive_int,
            1,
            "Queued subtasks per agent of a type that add an agent.",
        ),
        Option(
            "scaling.wait_threshold",
            _positive_duration,
            10.0,
            "Seconds queued work may wait before its type gets another agent.",
        ),
        Option(
            "scaling.idle_seconds",
            _positive_duration,
            60.0,
            "Seconds an agent is idle before it is drained and stopped (never below min).",
        ),
        Option("scaling.cooldown", _duration, 30.0, "Seconds after a type's scale event before the next."),
        Option("scaling.scale_up_increment", _positive_int, 1, "Agents added per scale-up."),
        Option("scaling.scale_down_increment", _positive_int, 1, "Agents stopped per scale-down."),
        Option("agents.allow_shell", _bool, False, "Allow the shell agent type to run commands."),
        Option(
            "agents.allow_exec",
            _bool,
            False,
            "Give coder and tester agents a local workspace per task, with tools that read and write "
            "its files and run commands on this machine.",
        ),
        Option(
            "agents.workspace.command_timeout",
            _positive_duration,
            60.0,
            "Seconds one run_command of a workspace may take; then its process group is killed.",
        ),
        Option(
            "agents.workspace.max_output_bytes",
            _positive_int,
            64 * 1024,
            "Most bytes of a command's output (or a file read) a workspace tool hands the model.",
        ),
        Option(
            "agents.workspace.max_file_bytes",
            _positive_int,
            1024 * 1024,
            "Largest file write_file may write in a workspace.",
        ),
        Option(
            "agents.workspace.max_artifact_bytes",
            _positive_int,
            1024 * 1024,
            "Most bytes of files one step stores with its result as artifacts (files written in the step).",
        ),
        Option(
            "agents.workspace.retention",
            _positive_duration,
            86400.0,
            "How long a task's workspace is kept after it was last used (seconds, or 24h, 7d).",
        ),
        Option(
            "consensus.voting_strategy",
            _choice("majority", "weighted", "unanimous"),
            "majority",
            "How votes are counted.",
            runtime=True,
        ),
        Option("consensus.timeout", _duration, 300.0, "Seconds one voting round may take.", runtime=True),
        Option("checkpoints.interval", _duration, 30.0, "Seconds between automatic checkpoints."),
        Option(
            "checkpoints.cpu_budget",
            _ratio,
            0.05,
            "Most of one core automatic checkpoints use on average: after one that took T seconds, the "
            "next waits at least T / cpu_budget seconds.",
        ),
        Option(
            "metrics.history.interval",
            _duration,
            60.0,
            "Seconds between samples of the metrics history (`maos metrics --timeframe`); 0 disables.",
        ),
        Option(
            "metrics.history.retention",
            _duration,
            7 * 86400.0,
            "How long metrics history samples are kept (seconds, or 7d, 24h).",
        ),
        Option("checkpoints.retention.count", _positive_int, 20, "Checkpoints kept."),
        Option("checkpoints.retention.age_days", _positive_int, 30, "Days a checkpoint is kept."),
        Option(
            "webhooks.allow_private",
            _bool,
            False,
            "Let webhooks call loopback, private and link-local addresses (refused by default: SSRF).",
        ),
        Option("webhooks.timeout", _positive_duration, 10.0, "Seconds one delivery attempt may take."),
        Option(
            "webhooks.retry_initial_backoff",
            _positive_duration,
            10.0,
            "Delay before the first retry of a failed delivery; each next one doubles (with jitter).",
        ),
        Option(
            "webhooks.retry_max_backoff", _positive_duration, 3600.0, "Longest delay between two attempts."
        ),
        Option(
            "webhooks.retry_window",
            _positive_duration,
            3 * 86400.0,
            "How long after its event a failing delivery is retried before it is marked failed.",
        ),
        Option("webhooks.max_per_owner", _positive_int, 25, "Most webhooks one user may have."),
        Option(
            "webhooks.max_payload_bytes",
            _positive_int,
            65536,
            "Largest event body; a task's output is cut to fit (at least 4096).",
        ),
        Option("webhooks.concurrency", _positive_int, 8, "Deliveries this process attempts at once."),
        Option(
            "webhooks.poll_interval",
            _positive_duration,
            2.0,
            "Seconds between looks at the outbox for deliveries due (new events wake it at once).",
        ),
        Option(
            "webhooks.delivery_retention",
            _positive_duration,
            30 * 86400.0,
            "How long finished deliveries stay in the delivery log.",
        ),
        Option(
            "models.rate_limits",
            _rate_limits,
            {},
            "Per-model limits every model-backed agent's calls share: {model: {requests_per_minute, "
            "input_tokens_per_minute, output_tokens_per_minute}} (0 or absent: only what the API's "
            "anthropic-ratelimit-* headers announce).",
        ),
        Option(
            "models.breaker.failure_threshold",
            _positive_int,
            3,
            "Failed model calls in a row (5xx, no answer) that open a model's circuit breaker; "
            "429 and 529 open it at once.",
        ),
        Option(
            "models.breaker.cooldown",
            _positive_duration,
            5.0,
            "How long an open breaker holds model calls when the API names no retry-after.",
        ),
        Option(
            "models.breaker.max_cooldown",
            _positive_duration,
            60.0,
            "Longest hold: the cool-down doubles each time the breaker opens again without a success.",
        ),
    ]
}


#: The guides' spellings of settings MAOS names otherwise (``tasks.defaults.max_retries``).
ALIASES: dict[str, str] = {
    f"tasks.defaults.{key.removeprefix('tasks.default_')}": key
    for key in OPTIONS
    if key.startswith("tasks.default_")
}


#: The sections of MAOS's own settings. A plugin registers its settings (``register_settings``) in
#: sections of its own, never in one of these.
CORE_SECTIONS = frozenset(key.split(".", 1)[0] for key in OPTIONS)


def canonical_key(key: str, options: Mapping[str, Option] = OPTIONS) -> str:
    """The option ``key`` names (itself, or what an alias stands for).

    Args:
        key: A dotted key as a user wrote it.
        options: The settings known (MAOS's own by default; :func:`known_options` adds the plugins').

    Raises:
        InvalidArgument: No such setting; the message suggests the closest one.
    """
    if key in options:
        return key
    if key in ALIASES:
        return ALIASES[key]
    raise InvalidArgument(
        f"unknown setting {key!r}{did_you_mean(key, options)}; `maos config get` lists every setting",
        field="key",
    )


def did_you_mean(key: str, options: Mapping[str, Option] = OPTIONS) -> str:
    """`` (did you mean 'x'?)`` for the setting closest to ``key``, or ``""``."""
    close = difflib.get_close_matches(key, [*options, *ALIASES], n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def known_options(pm: Any = None) -> dict[str, Option]:
    """MAOS's own settings and those plugins register (``register_settings``), by key.

    Args:
        pm: The plugin manager whose plugins count; None: the plugins installed in this
            environment (the ``maos`` entry points, loaded without the built-ins).
    """
    return {**OPTIONS, **plugin_settings(pm)}


_SETTING_KEY = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")


def plugin_settings(pm: Any = None) -> dict[str, Option]:
    """The settings the plugins of ``pm`` register (``register_settings``), by key, checked.

    Args:
        pm: A plugin manager; None: :func:`controlplane.plugins.installed_plugin_manager`.
    """
    from controlplane.plugins import installed_plugin_manager

    return _collect_settings(installed_plugin_manager() if pm is None else pm)[0]


def settings_by_plugin(pm: Any) -> dict[str, list[str]]:
    """The setting keys each plugin of ``pm`` registers, by plugin name (``maos plugins list``)."""
    return _collect_settings(pm)[1]


def _collect_settings(pm: Any) -> tuple[dict[str, Option], dict[str, list[str]]]:
    """Every plugin's settings, checked: each plugin owns the sections it registers.

    A plugin whose settings are not :class:`~controlplane.config.Option` objects with
    dotted lower-case keys, or use a section of MAOS's own or of another plugin, is
    reported and its settings are left out.
    """
    from controlplane.plugins import MaosPluginManager

    options: dict[str, Option] = {}
    by_plugin: dict[str, list[str]] = {}
    owners: dict[str, str] = {}
    caller = getattr(pm.hook, "register_settings", None)
    impls = [i for i in (caller.get_hookimpls() if caller else []) if not (i.wrapper or i.hookwrapper)]
    for impl in reversed(impls):  # the order pluggy calls them: plugins before built-ins
        name = impl.plugin_name
        try:
            result = impl.function() or []
        except Exception as exc:  # noqa: BLE001  (reported like a failing hook of an installed plugin)
            result, problem = [], f"register_settings failed ({type(exc).__name__}: {exc})"
        else:
            problem = _settings_problem(name, result, options, owners, CORE_SECTIONS, Option)
        if problem:
            if isinstance(pm, MaosPluginManager):
                pm.report(f"plugin {name}: its settings are left out: {problem}")
            continue
        for option in result:
            owners.setdefault(option.key.split(".", 1)[0], name)
            options[option.key] = option
        if result:
            by_plugin[name] = [option.key for option in result]
    return options, by_plugin


def _settings_problem(
    name: str,
    result: Any,
    options: dict[str, Any],
    owners: dict[str, str],
    core: frozenset[str],
    option_type: type,
) -> str:
    """What is wrong with the settings one plugin registers ("" when nothing)."""
    if not isinstance(result, list | tuple) or not all(isinstance(o, option_type) for o in result):
        return "register_settings must return a list of controlplane.config.Option"
    for option in result:
        section = option.key.split(".", 1)[0]
        if not _SETTING_KEY.fullmatch(option.key):
            return f"setting {option.key!r} is not a dotted lower-case key (section.name)"
        if section in core:
            return f"setting {option.key!r} is in the section {section!r}, which is MAOS's own"
        if owners.get(section, name) != name:
            return f"setting {option.key!r} is in the section {section!r} of the plugin {owners[section]}"
        if option.key in options or sum(o.key == option.key for o in result) > 1:
            return f"setting {option.key!r} is registered twice"
        if option.runtime:
            return f"setting {option.key!r} is marked runtime; plugin settings apply when MAOS starts"
    return ""


def default_home() -> Path:
    """``$MAOS_HOME`` or ``~/.maos``."""
    return Path(os.environ.get("MAOS_HOME") or Path.home() / ".maos").expanduser()


def _flatten(data: Mapping[str, Any], options: Mapping[str, Option], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and dotted not in options:
            flat.update(_flatten(value, options, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _expand_env(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: environ.get(m.group(1), ""), value)
    return value


@dataclass(frozen=True)
class _Sources:
    """What settings are resolved from, kept so that plugins' settings can be resolved later."""

    config_file: Path
    loaded: Mapping[str, Any] | None  # config.yml as read, or None when there is none
    environ: Mapping[str, str]
    overrides: Mapping[str, Any]


class Settings:
    """Resolved settings; read them as ``settings["scheduler.lease_ttl"]``.

    They hold MAOS's own settings and those of the plugins known when they were
    loaded (:func:`load_settings`); :meth:`with_plugins` adds a plugin manager's.
    """

    def __init__(
        self,
        home: Path,
        values: dict[str, Any],
        sources: dict[str, str],
        warnings: list[str] | None = None,
        *,
        options: Mapping[str, Option] | None = None,
        inputs: _Sources | None = None,
    ):
        self.home = home
        self._values = values
        self._sources = sources
        #: What loading found but ignored (unknown keys of config.yml), one sentence each.
        self.warnings = list(warnings or [])
        self._options = dict(OPTIONS if options is None else options)
        self._inputs = inputs

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    @property
    def options(self) -> Mapping[str, Option]:
        """Every setting these settings hold (MAOS's own, then the plugins'), by key."""
        return MappingProxyType(self._options)

    def source(self, key: str) -> str:
        """Where the value of ``key`` comes from: default, file, env or override."""
        return self._sources[key]

    def with_overrides(self, overrides: Mapping[str, Any]) -> Settings:
        """A copy with some values replaced (validated like any other source)."""
        values, sources = dict(self._values), dict(self._sources)
        for key, raw in overrides.items():
            canonical = canonical_key(key, self._options)
            values[canonical] = parse_value(key, raw, self._options)
            sources[canonical] = "override"
        inputs = self._inputs
        if inputs is not None:
            inputs = _Sources(
                inputs.config_file, inputs.loaded, inputs.environ, {**inputs.overrides, **overrides}
            )
        return Settings(self.home, values, sources, self.warnings, options=self._options, inputs=inputs)

    def with_plugins(self, pm: Any) -> Settings:
        """These settings with those the plugins of ``pm`` register, resolved like MAOS's own.

        Raises:
            InvalidArgument: A plugin's setting has a bad value in config.yml or the environment.
        """
        added = {key: o for key, o in known_options(pm).items() if key not in self._options}
        if not added:
            return self
        options = {**self._options, **added}
        if self._inputs is None:
            values = {**self._values, **{key: o.default for key, o in added.items()}}
            sources = {**self._sources, **dict.fromkeys(added, "default")}
            return Settings(self.home, values, sources, self.warnings, options=options)
        return _resolve(self.home, self._inputs, options)

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL, defaulting to SQLite in MAOS_HOME."""
        url: str = self["database.primary_url"]
        if not url:
            return f"sqlite:///{self.home / 'maos.db'}"
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        if url.startswith("postgresql") and not self["database.synchronous_commit"]:
            url = _with_server_option(url, "synchronous_commit=off")
        return url

    @property
    def client_tls(self) -> ClientTls:
        """How clients on this machine connect (``client.tls.*``)."""
        return ClientTls(
            enabled=self["client.tls.enabled"],
            ca_file=self["client.tls.ca_file"],
            cert_file=self["client.tls.cert_file"],
            key_file=self["client.tls.key_file"],
            server_name=self["client.tls.server_name"],
        )

    def items(self) -> list[tuple[str, Any]]:
        """Every key with its value, in declaration order (MAOS's own, then the plugins')."""
        return [(key, self._values[key]) for key in self._options]


def parse_value(key: str, raw: Any, options: Mapping[str, Option] = OPTIONS) -> Any:
    """Validate and convert one value; unknown keys and bad values raise InvalidArgument."""
    option = options[canonical_key(key, options)]
    try:
        return option.parse(raw)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{key}: {exc}", field=key) from None


def load_settings(
    home: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    pm: Any = None,
) -> Settings:
    """Resolve every option from defaults, the config file, the environment and overrides.

    Args:
        home: MAOS_HOME (default: ``$MAOS_HOME`` or ``~/.maos``).
        environ: The environment (default ``os.environ``).
        overrides: Values that win over every other source (command-line flags).
        pm: The plugin manager whose plugins' settings are resolved too; None: those of the
            plugins installed in this environment.
    """
    environ = os.environ if environ is None else environ
    home = (home or Path(environ.get("MAOS_HOME") or Path.home() / ".maos")).expanduser()
    config_file = home / "config.yml"
    loaded = None
    if config_file.exists():
        loaded = yaml.safe_load(config_file.read_text()) or {}
        if not isinstance(loaded, Mapping):
            raise InvalidArgument(f"{config_file} must hold a mapping of sections", field="config.yml")
    return _resolve(home, _Sources(config_file, loaded, environ, dict(overrides or {})), known_options(pm))


def _resolve(home: Path, inputs: _Sources, options: Mapping[str, Option]) -> Settings:
    values = {key: o.default for key, o in options.items()}
    sources = dict.fromkeys(options, "default")
    warnings: list[str] = []
    for key, raw in _flatten(inputs.loaded or {}, options).items():
        if key in options or key in ALIASES:
            values[canonical_key(key, options)] = parse_value(key, _expand_env(raw, inputs.environ), options)
            sources[canonical_key(key, options)] = "file"
        else:
            warnings.append(_unknown_setting(inputs.config_file, key, options))
    for key, option in options.items():
        if option.env_var in inputs.environ:
            values[key] = parse_value(key, inputs.environ[option.env_var], options)
            sources[key] = "env"
    settings = Settings(
        home,
        values,
        sources,
        warnings,
        options=options,
        inputs=_Sources(inputs.config_file, inputs.loaded, inputs.environ, {}),
    )
    return settings.with_overrides(inputs.overrides) if inputs.overrides else settings


def _unknown_setting(config_file: Path, key: str, options: Mapping[str, Option]) -> str:
    """The warning for a key of config.yml that names no setting (in a known section or not)."""
    section = key.split(".", 1)[0]
    if any(known.split(".", 1)[0] == section for known in options):
        return f"{config_file}: unknown setting {key!r} ignored{did_you_mean(key, options)}"
    return (
        f"{config_file}: unknown setting {key!r} ignored{did_you_mean(key, options)}: no installed plugin "
        f"registers settings in the section {section!r} (`maos plugins list` shows the sections plugins "
        "register)"
    )


def config_with_pool(text: str, pool: Mapping[str, int]) -> str:
    """``text`` (a config.yml) with the ``agents.pool`` block replaced by ``pool``."""
    lines = "".join(f"    {name}: {count}\n" for name, count in pool.items())
    return re.sub(r"(?m)^  pool:\n(?:    .*\n)+", lambda _m: f"  pool:\n{lines}", text, count=1)


DEFAULT_CONFIG_YML = """\
# MAOS configuration. Environment variables MAOS_<SECTION>_<KEY> override
# these values (for example MAOS_SYSTEM_MAX_AGENTS=20).
system:
  max_agents: 10
  log_level: "info"

# Empty: SQLite in this folder. Production: postgresql://user:pass@host:5432/maos
# migrate_on_start: false leaves schema changes to `maos db migrate` (the server then
# refuses to start on a database not at the latest revision); maos start --no-migrate does the same.
database:
  primary_url: ""
  migrate_on_start: true
  # PostgreSQL: false acknowledges commits before the server flushes them to disk (they
  # survive a control-plane crash, not a PostgreSQL crash). SQLite here always works that way.
  synchronous_commit: true

# Redis carries the API rate-limit buckets and the model pacer shared by replicas (and a
# health component); wake-ups and shared state are not in it yet. Empty disables Redis.
redis:
  url: ""

server:
  address: "127.0.0.1:7100"
  metrics_port: 9464
  # TLS (needed to listen beyond localhost); mutual TLS adds client_ca_file and
  # require_client_auth: true. Clients then need client.tls (ca_file, cert_file, key_file).
  # tls:
  #   cert_file: "~/.maos/tls/server.pem"
  #   key_file: "~/.maos/tls/server.key"

# The local agents `maos start` launches when no --agents is given. `maos init` writes a
# Claude pool when an Anthropic API key is set (ANTHROPIC_API_KEY, CLAUDE_API_KEY or
# claude.api_key), else the offline echo agents, which answer without a model.
# For Claude agents later: researcher: 2, coordinator: 1, coder: 1, analyst: 1, tester: 1
agents:
  pool:
    echo: 2

claude:
  api_key: "${CLAUDE_API_KEY}"
  model: ""

consensus:
  voting_strategy: "majority"
  timeout: 300

checkpoints:
  interval: 30
  retention:
    count: 20
    age_days: 30
"""
