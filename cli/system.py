"""System commands: init, start, stop, restart, status, health, version."""

from __future__ import annotations

import asyncio
import functools
import os
import platform
import signal
import subprocess
import sys
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import click

from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from maos_cli._errors import (
    EXIT_FAILED_PRECONDITION,
    EXIT_GENERIC,
    EXIT_INTERRUPTED,
    EXIT_TIMEOUT,
    CliError,
    handle_errors,
)
from maos_cli._options import Duration, make_client, output_option, resolve_tls, run, start_options, state
from maos_cli._output import (
    counts_text,
    duration_text,
    emit,
    enum_label,
    health_table,
    key_values,
    message,
    table,
    to_data,
    when,
)
from maos_cli._pool import offline_notice, offline_pool
from maos_common.tls import ClientTls

PID_FILE = "maos.pid"
LOG_FILE = "controlplane.log"


def _home() -> Path:
    from controlplane.config import default_home

    return default_home()


def _client_version() -> str:
    try:
        return metadata.version("maos")
    except metadata.PackageNotFoundError:
        return "0.0.0+source"


# --- the pid file -------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) MAOS process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    try:
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
            return False
        cmdline = (proc / "cmdline").read_bytes()
        return b"maos" in cmdline or b"maos_cli.main" in cmdline  # the pid was not reused by another program
    except (OSError, IndexError):
        return True


def _running_pid(pid_file: Path) -> int | None:
    """The pid in the pid file if that process is alive; a stale file is removed."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if _alive(pid):
        return pid
    pid_file.unlink(missing_ok=True)
    return None


def _release(pid_file: Path, pid: int) -> None:
    try:
        if int(pid_file.read_text().split()[0]) == pid:
            pid_file.unlink()
    except (OSError, ValueError, IndexError):
        pass


def _serving(address: str, tls: ClientTls, timeout: float = 1.0) -> bool:
    async def check() -> bool:
        async with make_client(address, token=None, timeout=timeout, tls=tls) as client:
            return await client.serving()

    try:
        return asyncio.run(check())
    except MaosRpcError:
        return False


def _tail(path: Path, offset: int, lines: int = 25) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --- init, start, stop, restart -------------------------------------------------------------------


@click.command()
@click.option(
    "--force", is_flag=True, help="Overwrite an existing config.yml with the defaults (and issue a new key)."
)
@click.option(
    "--new-admin-key",
    is_flag=True,
    help="Issue a new admin key in the configured database (keeps config.yml).",
)
@output_option
@handle_errors
def init(force: bool, new_admin_key: bool) -> None:
    """Create $MAOS_HOME (default ~/.maos) with config.yml, agents/, logs/ and an admin API key.

    The key is written to $MAOS_HOME/credentials (mode 0600), which the CLI
    uses when neither --token nor MAOS_TOKEN is given. Run again after
    changing database.primary_url: the old key lives in the old database, so
    a new admin key is issued in the new one.
    """
    from controlplane.config import DEFAULT_CONFIG_YML, config_with_pool
    from controlplane.home import private_dir, secure_home, write_private

    home = _home()
    created, kept = [], []
    for folder in (home, home / "agents", home / "logs"):
        if not folder.is_dir():
            private_dir(folder)
            created.append(str(folder))
    config = home / "config.yml"
    if config.exists() and not force:
        kept.append(str(config))
        message(f"kept the existing {config} (use --force to overwrite it)")
    else:
        pool = _initial_pool(home)
        write_private(config, config_with_pool(DEFAULT_CONFIG_YML, pool))  # it may hold an API key
        created.append(str(config))
        message(
            "agent pool: "
            + ", ".join(f"{name}={count}" for name, count in pool.items())
            + (
                " (Claude agents: an Anthropic API key is set)"
                if "echo" not in pool
                else " (offline agents; with an Anthropic API key, put Claude types in agents.pool: "
                "see config.yml)"
            )
        )
    from controlplane.access.bootstrap import bootstrap_admin
    from controlplane.config import load_settings

    credentials = bootstrap_admin(load_settings(home=home), force=force or new_admin_key)
    if credentials is not None:
        created.append(str(credentials))
    else:
        kept.append(str(home / "credentials"))
    secure_home(home)  # an existing install's maos.db, logs... become private too
    emit(
        {"home": str(home), "created": created, "kept": kept},
        lambda: "\n".join(f"created {p}" for p in created) or f"{home} is already initialized",
    )


def _initial_pool(home: Path) -> dict[str, int]:
    """The pool `maos init` writes: Claude agents when an API key is set, else the offline one."""
    from controlplane.config import load_settings
    from controlplane.plugins import get_plugin_manager
    from controlplane.pool import default_pool

    return default_pool(get_plugin_manager(), load_settings(home=home))


def _check_start(settings: Any) -> dict[str, int]:
    """The pool `maos start` launches, checked before anything starts (unknown types, missing keys)."""
    from controlplane.agent_types import agent_types
    from controlplane.plugins import get_plugin_manager
    from controlplane.pool import check_pool, model_backed, pool_is_offline, the_pool, unavailable

    pm = get_plugin_manager()
    pool = the_pool(pm, settings)
    check_pool(pm, settings, pool, field="agents.pool")
    if pool and pool_is_offline(pm, settings, pool):
        key_set = any(model_backed(s) and not unavailable(s) for s in agent_types(pm, settings).values())
        offline_notice([name for name, count in pool.items() if count], key_set=key_set)
    return pool


def _settings(agents: str | None, address: str | None, metrics_port: int | None, migrate: bool | None) -> Any:
    from controlplane.config import load_settings

    overrides: dict[str, Any] = {}
    if migrate is not None:
        overrides["database.migrate_on_start"] = migrate
    if agents is not None:
        overrides["agents.pool"] = agents
    if address:
        overrides["server.address"] = address
    if metrics_port is not None:
        overrides["server.metrics_port"] = metrics_port
    return load_settings(overrides=overrides)


def _serve_foreground(settings: Any, detached: bool) -> None:
    import logging

    from controlplane.home import PRIVATE_UMASK, private_dir, write_private
    from controlplane.serve import configure_logging, serve

    pool = _check_start(settings) if not detached else None  # a detached child was checked by its parent
    pid_file = settings.home / PID_FILE
    other = _running_pid(pid_file)
    if other is not None and other != os.getpid():
        raise CliError(
            f"MAOS is already running (pid {other}, {pid_file}); run `maos stop` first",
            EXIT_FAILED_PRECONDITION,
        )
    os.umask(PRIVATE_UMASK)  # what the control plane and its agents create is their owner's only
    private_dir(settings.home)  # build_app tightens what is already there, once logging is set up
    write_private(pid_file, f"{os.getpid()}\n")
    if detached:  # stderr already is the log file
        private_dir(settings.home / "logs")
        logging.basicConfig(
            level=settings["system.log_level"].upper(),
            stream=sys.stderr,
            force=True,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        from maos_common.redaction import RedactingFilter

        for handler in logging.getLogger().handlers:
            handler.addFilter(RedactingFilter())  # no credential reaches the log file
        logging.getLogger("alembic").setLevel(logging.WARNING)
    else:
        configure_logging(settings)

    def ready(app: Any) -> None:
        scheme = "https" if app.tls else "http"
        http = (
            f", HTTP on {scheme}://{settings['server.http_address']}:{app.http_port}" if app.http_port else ""
        )
        if app.dashboard_port:
            http += f", dashboard on {scheme}://{settings['server.dashboard_address']}:{app.dashboard_port}"
        message(f"MAOS control plane serving on {app.address}{http} (pid {os.getpid()}); Ctrl-C stops it")

    try:
        asyncio.run(serve(settings, pool=pool, address=settings["server.address"], on_ready=ready))
    finally:
        _release(pid_file, os.getpid())


def _start_daemon(
    settings: Any, agents: str | None, metrics_port: int | None, migrate: bool | None, startup_timeout: float
) -> dict[str, Any]:
    pid_file, logs = settings.home / PID_FILE, settings.home / "logs"
    address = settings["server.address"]
    pid = _running_pid(pid_file)
    if pid is not None:
        raise CliError(
            f"MAOS is already running (pid {pid}, {pid_file}); run `maos stop` first",
            EXIT_FAILED_PRECONDITION,
        )
    from maos_common.addresses import local_address

    target = local_address(address)
    tls = resolve_tls(state().tls, state().no_tls)
    if _serving(target, tls):
        raise CliError(
            f"something already serves gRPC on {address}; choose another --address", EXIT_FAILED_PRECONDITION
        )
    from controlplane.home import open_private, private_dir, write_private

    private_dir(logs)
    log_path = logs / LOG_FILE
    offset = log_path.stat().st_size if log_path.exists() else 0
    args = [sys.executable, "-m", "maos_cli.main", "start", "--detached", "--address", address]
    if agents is not None:
        args += ["--agents", agents]
    if metrics_port is not None:
        args += ["--metrics-port", str(metrics_port)]
    if migrate is not None:
        args.append("--migrate" if migrate else "--no-migrate")
    with open_private(log_path) as log:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    write_private(pid_file, f"{proc.pid}\n")
    deadline = time.monotonic() + startup_timeout
    while not _serving(target, tls):
        if proc.poll() is not None:
            _release(pid_file, proc.pid)
            raise CliError(
                f"the control plane exited with code {proc.returncode} while starting; "
                f"{log_path}:\n{_tail(log_path, offset)}",
                EXIT_GENERIC,
            )
        if time.monotonic() > deadline:
            hint = (
                "; it serves TLS (server.tls.cert_file), so this command checks it with --tls-ca or "
                "client.tls.ca_file (and --tls-cert/--tls-key under mutual TLS)"
                if settings["server.tls.cert_file"]
                else ""
            )
            raise CliError(
                f"the control plane (pid {proc.pid}) is not serving after {startup_timeout:g} s{hint}; "
                f"{log_path}:\n{_tail(log_path, offset)}",
                EXIT_TIMEOUT,
            )
        time.sleep(0.2)
    proc.returncode = 0  # detached on purpose: it outlives this command
    return {"address": target, "pid": proc.pid, "pid_file": str(pid_file), "log": str(log_path)}


def _stop(home: Path, stop_timeout: float, force: bool) -> dict[str, Any]:
    pid_file = home / PID_FILE
    pid = _running_pid(pid_file)
    if pid is None:
        message(f"MAOS is not running (no live process in {pid_file})")
        return {"stopped": False, "pid": None}
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + stop_timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            if not force:
                raise CliError(
                    f"pid {pid} did not stop within {stop_timeout:g} s; retry, or use --force", EXIT_TIMEOUT
                )
            os.kill(pid, signal.SIGKILL)
            force, deadline = False, time.monotonic() + 5
        time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
    return {"stopped": True, "pid": pid}


@click.command()
@start_options
@click.option("-d", "--daemon", is_flag=True, help="Run in the background (pid file and log in $MAOS_HOME).")
@click.option("--detached", is_flag=True, hidden=True)
@output_option
@handle_errors
def start(
    agents: str | None,
    address: str | None,
    metrics_port: int | None,
    startup_timeout: float,
    migrate: bool | None,
    daemon: bool,
    detached: bool,
) -> None:
    """Start the control plane and its local agents.

    Runs in the foreground until Ctrl-C or SIGTERM, unless --daemon; either
    way $MAOS_HOME/maos.pid names the process while it runs. With --daemon
    the command returns once the server answers its health check and logs go
    to $MAOS_HOME/logs/controlplane.log.

    It first migrates the database (database.migrate_on_start); with
    --no-migrate it refuses a database that is not at the latest schema
    revision (exit 5) and says to run `maos db migrate`.
    """
    settings = _settings(agents, address, metrics_port, migrate)
    if not daemon:
        _serve_foreground(settings, detached)
        return
    _check_start(settings)
    for warning in settings.warnings:  # the server logs them to its file; say them here too
        message(f"warning: {warning}")
    info = _start_daemon(settings, agents, metrics_port, migrate, startup_timeout)
    emit(
        info,
        lambda: f"MAOS control plane started on {info['address']} (pid {info['pid']})\nLogs: {info['log']}",
    )


@click.command()
@click.option(
    "--timeout",
    "stop_timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    metavar="SECONDS",
    help="How long to wait for it to exit.",
)
@click.option("--force", is_flag=True, help="SIGKILL it if it has not exited in time.")
@output_option
@handle_errors
def stop(stop_timeout: float, force: bool) -> None:
    """Stop the control plane named by $MAOS_HOME/maos.pid (SIGTERM, then wait)."""
    info = _stop(_home(), stop_timeout, force)
    if info["stopped"]:
        emit(info, lambda: f"stopped MAOS (pid {info['pid']})")
    elif state().output != "table":
        emit(info)


@click.command()
@start_options
@click.option(
    "--stop-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    metavar="SECONDS",
    help="How long to wait for the old process to exit.",
)
@output_option
@handle_errors
def restart(
    agents: str | None,
    address: str | None,
    metrics_port: int | None,
    startup_timeout: float,
    migrate: bool | None,
    stop_timeout: float,
) -> None:
    """Stop the control plane if it runs, then start it in the background."""
    settings = _settings(agents, address, metrics_port, migrate)
    _check_start(settings)
    stopped = _stop(settings.home, stop_timeout, force=False)
    info = _start_daemon(settings, agents, metrics_port, migrate, startup_timeout)
    emit(
        {"stopped": stopped, **info},
        lambda: f"MAOS control plane restarted on {info['address']} (pid {info['pid']})\nLogs: {info['log']}",
    )


# --- status, health, version ---------------------------------------------------------------------


@click.command()
@click.option("--detailed", is_flag=True, help="Also subtasks, queue, replicas and component health.")
@click.option("--resources", is_flag=True, help="CPU, memory, connections, database size, queue and limits.")
@click.option("--performance", is_flag=True, help="Task and RPC metrics.")
@click.option("--memory", is_flag=True, help="Memory metrics the control plane reports.")
@click.option("--system", "system_info", is_flag=True, help="Versions and platform (for support requests).")
@output_option
@handle_errors
def status(detailed: bool, resources: bool, performance: bool, memory: bool, system_info: bool) -> None:
    """Show the control plane's version, uptime and counts of tasks and agents."""

    async def action(client: Client) -> dict[str, Any]:
        out: dict[str, Any] = {"status": await client.status(detailed)}
        out["offline_types"] = await offline_pool(client)
        if detailed:
            out["health"] = await client.health()
        if resources:
            out["limits"] = await client.get_config(["system.max_agents", "tasks.default_max_agents"])
            out["resources"] = await client.resources()
        if performance:
            out["metrics"] = [*await client.metrics_summary("tasks"), *await client.metrics_summary("rpc")]
        if memory:
            out["memory"] = [
                s for s in await client.metrics_summary() if "memory" in s.name or "bytes" in s.name
            ]
        return out

    got = run(action)
    s = got["status"]
    offline = got.pop("offline_types")
    if offline:
        offline_notice(offline)
    data: dict[str, Any] = dict(got)
    if system_info:
        data["system"] = {
            "client_version": _client_version(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "address": state().addr,
        }

    def text() -> str:
        pairs = [
            ("Version", s.version),
            ("Replica", s.replica),
            ("Uptime", duration_text(s.uptime)),
            ("Storage", s.storage_backend),
            ("Agents", f"{s.connected_agents} connected, {s.free_slots} free slots"),
            ("Tasks", counts_text(s.tasks)),
            ("Waiting for plan approval", s.tasks_awaiting_approval or ""),
        ]
        if s.HasField("unclaimed_tasks"):  # replicas: work waiting for a replica to claim it
            oldest = f", oldest waiting {duration_text(s.unclaimed_oldest_wait)}" if s.unclaimed_tasks else ""
            pairs.append(("Unclaimed tasks", f"{s.unclaimed_tasks} (all replicas){oldest}"))
        if detailed:
            pairs += [
                ("Started", when(s.start_time)),
                ("Agent states", counts_text(s.agents)),
                ("Subtasks", counts_text(s.subtasks)),
                ("Queue", counts_text(s.queue)),
                ("Replicas", ", ".join(s.replicas)),
            ]
        if resources:
            from maos_cli.metrics import status_resources

            pairs += status_resources(got["resources"])
            pairs += [("Queue", counts_text(s.queue))] if not detailed else []
            pairs += [(f"Limit {v.key}", f"{v.value} ({v.source})") for v in got["limits"]]
        if system_info:
            pairs += [(k.replace("_", " ").capitalize(), v) for k, v in data["system"].items()]
        parts = [key_values(pairs)]
        if s.model_pacing:
            parts.append(pacing_table(s.model_pacing))
        if s.replica_status:
            from maos_cli.replicas import replicas_table

            parts.append(replicas_table(s.replica_status))
        unclaimed = any(r.HasField("unclaimed") for r in s.scaling)
        if s.scaling:
            parts.append(
                "Autoscaling:\n"
                + table(
                    ["TYPE", "MIN", "MAX", "CURRENT", "DESIRED", "QUEUED", "OLDEST WAIT", "LAST DECISION"]
                    + (["UNCLAIMED", "SHARE"] if unclaimed else []),
                    [
                        [
                            r.agent_type,
                            str(r.min),
                            str(r.max),
                            str(r.current),
                            str(r.desired),
                            str(r.queued),
                            duration_text(r.oldest_wait),
                            r.reason,
                        ]
                        + (
                            [
                                str(r.unclaimed),
                                str(r.unclaimed_share) if r.HasField("unclaimed_share") else "-",
                            ]
                            if unclaimed
                            else []
                        )
                        for r in s.scaling
                    ],
                )
            )
        if detailed:
            parts.append(health_table(got["health"]))
        for key, title in (("metrics", "Metrics"), ("memory", "Memory")):
            if key in got:
                parts.append(
                    f"{title}:\n"
                    + table(
                        ["NAME", "LABELS", "VALUE"],
                        [
                            [
                                m.name,
                                ",".join(f"{k}={v}" for k, v in sorted(m.labels.items())),
                                f"{m.value:g}",
                            ]
                            for m in got[key]
                        ],
                        empty="(the control plane reports none)",
                    )
                )
        return "\n\n".join(parts)

    emit(data, text)


def pacing_summary(models: Any) -> str:
    """One line of the models whose calls are held back (breaker not closed, or calls waiting); "" if none."""
    parts = []
    for m in models:
        if m.breaker == enums.BREAKER_STATE_CLOSED and not m.held:
            continue
        breaker = enum_label(enums.BreakerState, m.breaker, "BREAKER_STATE_")
        parts.append(
            f"{m.model} {breaker}, {m.held} held" + (f" ({m.last_problem})" if m.last_problem else "")
        )
    return "; ".join(parts)


def pacing_table(models: Any) -> str:
    """``Model calls:`` and one row per paced model: breaker, calls in flight and held, rate use."""

    def rate(used: float, limit: int) -> str:
        return f"{used:.0%} of {limit}" if limit else "-"

    rows = []
    for m in models:
        breaker = enum_label(enums.BreakerState, m.breaker, "BREAKER_STATE_")
        if m.breaker == enums.BREAKER_STATE_OPEN:
            breaker += f" ({duration_text(m.reopens_in)} left)"
        in_flight = f"{m.in_flight}/{m.in_flight_cap}" if m.in_flight_cap else str(m.in_flight)
        rows.append(
            [
                m.model,
                breaker,
                in_flight,
                m.held,
                rate(m.requests_used, m.requests_per_minute),
                rate(m.input_tokens_used, m.input_tokens_per_minute),
                rate(m.output_tokens_used, m.output_tokens_per_minute),
                m.granted,
                m.overloaded_answers,
                m.last_problem,
            ]
        )
    return "Model calls (paced across agents):\n" + table(
        [
            "MODEL",
            "BREAKER",
            "IN FLIGHT",
            "HELD",
            "REQUESTS/MIN",
            "INPUT TOKENS/MIN",
            "OUTPUT TOKENS/MIN",
            "GRANTED",
            "429/529",
            "LAST PROBLEM",
        ],
        rows,
    )


def _timed_health_table(checked: datetime, result: Any) -> str:
    """One check of ``maos health --continuous``: when it was made, then the table."""
    return f"== {checked:%Y-%m-%d %H:%M:%S %Z} ==\n{health_table(result)}\n"


@click.command()
@click.option(
    "--component",
    "components",
    multiple=True,
    metavar="NAME",
    help="Only this component: database, redis, scheduler, agents (repeatable).",
)
@click.option("--all", "all_", is_flag=True, help="Every component (the default).")
@click.option("--continuous", is_flag=True, help="Check again every --interval until interrupted.")
@click.option("--interval", type=Duration(), default="60s", help="Time between checks with --continuous.")
@click.option(
    "--probe",
    is_flag=True,
    help="Only ask the standard gRPC health service (no API key needed): exit 0 when it answers "
    "SERVING, 1 otherwise. For container health checks and Kubernetes exec probes.",
)
@output_option
@handle_errors
def health(components: tuple[str, ...], all_: bool, continuous: bool, interval: float, probe: bool) -> None:
    """Check the control plane's components; exits 1 when one is UNHEALTHY."""
    if probe:
        if components or all_ or continuous:
            raise click.UsageError(
                "--probe checks the server as a whole: it takes no --component, --all or --continuous"
            )
        _probe()
        return
    wanted = () if all_ else components
    try:
        while True:
            result = run(lambda client: client.health(wanted))
            if continuous:  # each check says when it was made
                checked = datetime.now().astimezone()
                emit(
                    {"time": checked.isoformat(timespec="seconds"), **to_data(result)},
                    functools.partial(_timed_health_table, checked, result),
                )
            else:
                emit(result, functools.partial(health_table, result))
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        raise SystemExit(EXIT_INTERRUPTED) from None
    if result.state == enums.COMPONENT_STATE_UNHEALTHY:
        raise CliError("the control plane is UNHEALTHY", EXIT_GENERIC)


def _probe() -> None:
    """``maos health --probe``: the standard gRPC health check of the whole server, without a key.

    Every failure exits 1 (container runtimes read 1 as unhealthy and reserve other codes),
    with the reason on stderr: NOT_SERVING (starting or draining), unreachable, a refused TLS
    handshake, or an unusable TLS file.
    """
    s = state()

    async def check() -> bool:
        async with make_client(
            s.addr, token=None, timeout=s.timeout, tls=resolve_tls(s.tls, s.no_tls)
        ) as client:
            return await client.serving()

    try:
        serving = asyncio.run(check())
    except MaosRpcError as exc:
        raise CliError(f"{s.addr}: not reachable ({exc.code.name}: {exc.message})", EXIT_GENERIC) from None
    except CliError as exc:
        raise CliError(exc.message, EXIT_GENERIC) from None
    if not serving:
        raise CliError(f"{s.addr}: NOT_SERVING (starting or shutting down)", EXIT_GENERIC)
    emit({"address": s.addr, "status": "SERVING"}, lambda: f"{s.addr}: SERVING")


@click.command()
@output_option
def version() -> None:
    """Show the client version, and the server's when it is reachable."""
    s = state()
    try:
        server = run(lambda client: client.status()).version
    except MaosRpcError as exc:
        server = None
        message(f"server: not reachable at {s.addr} ({exc.code.name})")
    data = {"client": _client_version(), "server": server, "address": s.addr if server else None}
    emit(
        data,
        lambda: key_values(
            [("Client", data["client"]), ("Server", f"{server} at {s.addr}" if server else "")]
        ),
    )
