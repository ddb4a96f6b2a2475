"""``maos-agent``: run an agent process against a control plane.

Usable as a command (``maos-agent run --type echo --server 127.0.0.1:7100``)
and as a library (:func:`run_agent`). SIGTERM and SIGINT drain the agent:
running work gets ``--grace`` seconds to finish, then the process exits.

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
import signal
import sys
from typing import Any

import click
import grpc

from agent_sdk.addresses import AddressList
from agent_sdk.agent import Agent
from agent_sdk.heap import settle_heap
from agent_sdk.tls import TlsFileError, tls_from_options, tls_options
from agent_sdk.worker import Worker


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

    ``credentials`` (from :func:`agent_sdk.tls_credentials`) connect over TLS; plaintext when None.
    """
    worker = Worker(agent, server, token=token, join_token=join_token, capabilities=capabilities,
                    max_concurrency=max_concurrency, launch_id=launch_id, credentials=credentials,
                    tls_server_name=tls_server_name)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: loop.create_task(worker.shutdown(grace)))
    await worker.run()
    return worker


@click.group()
def cli() -> None:
    """Run MAOS agents."""


@cli.command()
@click.option("--type", "agent_type", required=True, help="Agent type to run (see `maos agent types`).")
@click.option("--server", envvar="MAOS_ADDR", default="127.0.0.1:7100", show_default=True, type=AddressList(),
              help="Control plane address host:port; several, comma-separated, to fail over between them "
                   "(or a dns:///name:port target).")
@click.option("--token", envvar="MAOS_TOKEN", default=None, help="API key or agent credential.")
@click.option("--join-token", envvar="MAOS_JOIN_TOKEN", default=None, metavar="ID.SECRET",
              help="Join token, exchanged at the first Register for this agent's own credential.")
@click.option("--capabilities", default=None, help="Comma-separated capabilities (default: the type's).")
@click.option("--max-concurrency", type=click.IntRange(1, 1024), default=None,
              help="Assignments run at once (default: the type's).")
@click.option("--launch-id", default="", hidden=True, help="Set by the control plane's launcher.")
@click.option("--grace", type=float, default=30.0, show_default=True, help="Seconds to finish work on SIGTERM.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@tls_options
def run(agent_type: str, server: str, token: str | None, join_token: str | None, capabilities: str | None,
        max_concurrency: int | None, launch_id: str, grace: float, log_level: str, **tls_params: Any) -> None:
    """Run one agent of TYPE until stopped."""
    if token and join_token:
        raise click.UsageError("give --token (MAOS_TOKEN) or --join-token (MAOS_JOIN_TOKEN), not both")
    tls = tls_from_options(tls_params)
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s agent[%(process)d] %(name)s: %(message)s")
    from controlplane.agent_types import agent_type as find_type
    from controlplane.config import load_settings
    from controlplane.errors import InvalidArgument
    from controlplane.plugins import get_plugin_manager
    from controlplane.redaction import RedactingFilter

    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())  # the agent's log file carries no credential either

    settings = load_settings()
    try:
        spec = find_type(get_plugin_manager(), settings, agent_type, field="--type")
    except InvalidArgument as exc:
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
        asyncio.run(run_agent(agent, server, token=token, join_token=join_token, capabilities=caps,
                              max_concurrency=max_concurrency or spec.max_concurrency, launch_id=launch_id,
                              grace=grace, credentials=credentials, tls_server_name=tls.server_name or None))
    except grpc.aio.AioRpcError as exc:
        if exc.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                              grpc.StatusCode.INVALID_ARGUMENT):
            raise
        raise click.ClickException(f"the control plane refused the agent: {exc.code().name}: {exc.details()}") \
            from None


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
