"""``maos-agent``: run an agent process against a control plane.

Usable as a command (``maos-agent run --type echo --server 127.0.0.1:7100``)
and as a library (:func:`run_agent`, a coroutine: ``asyncio.run(run_agent(...))``).
SIGTERM and SIGINT drain the agent: running work gets ``--grace`` seconds to
finish, then the process exits.

The control plane's address: ``--server``, else ``MAOS_SERVER_ADDRESS`` (the
variable every MAOS command reads), else ``server.address`` of config.yml, else
127.0.0.1:7100. ``MAOS_ADDR``, the name this command used to read, still works
with a deprecation warning.

Credentials: ``--token`` (``MAOS_TOKEN``), an API key holding ``agent:connect``
or an agent credential; or ``--join-token`` (``MAOS_JOIN_TOKEN``), exchanged
at the first Register for this agent's own credential, which the process then
uses to reconnect (see :mod:`agent_sdk.worker`). A refused credential or
token exits with status 1.

Against a TLS control plane give ``--tls-ca`` (and ``--tls-cert``/``--tls-key``
under mutual TLS; ``--tls`` alone trusts the system's CAs); each defaults to
its ``MAOS_TLS_*`` variable, then to the ``client.tls.*`` settings.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from typing import Any

import click
import grpc

from agent_sdk.addresses import AddressError, parse_addresses
from agent_sdk.agent import Agent
from agent_sdk.command_options import AddressList, tls_from_options, tls_options
from agent_sdk.errors import MaosRpcError
from agent_sdk.installed import InstalledSettings, UnknownAgentType, find_agent_type, installed_settings
from agent_sdk.worker import Worker
from maos_common.addresses import local_address
from maos_common.heap import settle_heap
from maos_common.redaction import RedactingFilter
from maos_common.tls import TlsFileError


async def run_agent(
    agent: Agent,
    server: str,
    *,
    token: str | None = None,
    join_token: str | None = None,
    capabilities: list[str] | None = None,
    max_concurrency: int | None = None,
    launch_id: str = "",
    grace: float = 30.0,
    credentials: grpc.ChannelCredentials | None = None,
    tls_server_name: str | None = None,
) -> Worker:
    """Run ``agent`` until SIGTERM/SIGINT (drained with ``grace``) or a drain-with-exit.

    A coroutine: await it in a running event loop, or ``asyncio.run(run_agent(agent, address))``.
    ``credentials`` (from :func:`agent_sdk.tls_credentials`) connect over TLS; plaintext when None.
    """
    worker = Worker(
        agent,
        server,
        token=token,
        join_token=join_token,
        capabilities=capabilities,
        max_concurrency=max_concurrency,
        launch_id=launch_id,
        credentials=credentials,
        tls_server_name=tls_server_name,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: loop.create_task(worker.shutdown(grace)))
    await worker.run()
    return worker


@click.group()
def cli() -> None:
    """Run MAOS agents."""


@cli.command()
@click.option(
    "--type",
    "agent_type",
    required=True,
    help="Agent type to run (see `maos agent types`): one the installed `maos.agents` entry points offer.",
)
@click.option(
    "--server",
    default=None,
    metavar="HOST:PORT[,HOST:PORT...]",
    type=AddressList(),
    help="Control plane address; several, comma-separated, to fail over between them, or a "
    "dns:///name:port target [default: MAOS_SERVER_ADDRESS, else server.address of "
    "config.yml, else 127.0.0.1:7100].",
)
@click.option("--token", envvar="MAOS_TOKEN", default=None, help="API key or agent credential.")
@click.option(
    "--join-token",
    envvar="MAOS_JOIN_TOKEN",
    default=None,
    metavar="ID.SECRET",
    help="Join token, exchanged at the first Register for this agent's own credential.",
)
@click.option("--capabilities", default=None, help="Comma-separated capabilities (default: the type's).")
@click.option(
    "--max-concurrency",
    type=click.IntRange(1, 1024),
    default=None,
    help="Assignments run at once (default: the type's).",
)
@click.option("--launch-id", default="", hidden=True, help="Set by the control plane's launcher.")
@click.option(
    "--grace", type=float, default=30.0, show_default=True, help="Seconds to finish work on SIGTERM."
)
@click.option(
    "--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
@tls_options
def run(
    agent_type: str,
    server: str | None,
    token: str | None,
    join_token: str | None,
    capabilities: str | None,
    max_concurrency: int | None,
    launch_id: str,
    grace: float,
    log_level: str,
    **tls_params: Any,
) -> None:
    """Run one agent of TYPE until stopped."""
    if token and join_token:
        raise click.UsageError("give --token (MAOS_TOKEN) or --join-token (MAOS_JOIN_TOKEN), not both")
    tls = tls_from_options(tls_params)
    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s agent[%(process)d] %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())  # the agent's log file carries no credential either
    # Reading the installed agent types loads the plugins, the storage one with alembic, whose
    # start-up notes (INFO) say nothing about the agent: as in the control plane's log, quieted.
    logging.getLogger("alembic").setLevel(logging.WARNING)

    settings = installed_settings()
    try:
        server = ",".join(parse_addresses(server_address(server, settings)))
    except AddressError as exc:
        raise click.BadParameter(str(exc), param_hint="'--server' / MAOS_SERVER_ADDRESS") from None
    try:
        spec = find_agent_type(agent_type)
    except UnknownAgentType as exc:
        raise click.BadParameter(exc.message, param_hint="--type") from None
    caps = [c.strip() for c in capabilities.split(",") if c.strip()] if capabilities else None
    if tls_params["tls"] is not False:  # --no-tls: plaintext whatever client.tls says
        tls = tls.or_else(settings.client_tls)
    try:
        credentials = tls.credentials()
    except TlsFileError as exc:
        raise click.BadParameter(exc.message, param_hint="'--tls-ca' / '--tls-cert' / '--tls-key'") from None
    agent = spec.build()
    settle_heap()  # this process is the agent's alone: start-up is over
    try:
        asyncio.run(
            run_agent(
                agent,
                server,
                token=token,
                join_token=join_token,
                capabilities=caps,
                max_concurrency=max_concurrency or spec.max_concurrency,
                launch_id=launch_id,
                grace=grace,
                credentials=credentials,
                tls_server_name=tls.server_name or None,
            )
        )
    except MaosRpcError as exc:
        if exc.code not in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.INVALID_ARGUMENT,
        ):
            raise
        raise click.ClickException(
            f"the control plane refused the agent: {exc.code.name}: {exc.message}"
        ) from None


def server_address(
    flag: str | None, settings: InstalledSettings, environ: Mapping[str, str] | None = None
) -> str:
    """The control plane's address: ``flag``, MAOS_SERVER_ADDRESS, MAOS_ADDR (deprecated), config.yml."""
    environ = os.environ if environ is None else environ
    if flag:
        return flag
    if settings.source("server.address") in ("env", "override"):
        return local_address(settings["server.address"])
    legacy = environ.get("MAOS_ADDR", "").strip()
    if legacy:
        logging.getLogger("maos-agent").warning(
            "MAOS_ADDR is deprecated: set MAOS_SERVER_ADDRESS, the variable every MAOS command reads"
        )
        return legacy
    return local_address(settings["server.address"])


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
