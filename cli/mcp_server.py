"""``maos mcp``: MAOS as an MCP server (stdio, or streamable HTTP with --http) for Claude Code and others."""

from __future__ import annotations

import asyncio

import click

from maos_cli._errors import EXIT_USAGE, CliError, handle_errors
from maos_cli._options import make_client, resolve_tls, resolve_token, state
from maos_cli._output import message

INSTALL_HINT = 'maos mcp needs the mcp package: pip install "maos[mcp]" (or pip install mcp)'


@click.command("mcp")
@click.option(
    "--http",
    "http",
    is_flag=True,
    help="Serve streamable HTTP at http://HOST:PORT/mcp instead of stdio; each MCP client sends "
    "its own API key as Authorization: Bearer.",
)
@click.option("--host", default="127.0.0.1", help="With --http: the address to listen on (plain HTTP).")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8100, help="With --http: the port (0: any free)."
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="HOST:PORT",
    help="With --http: another Host header value to answer (e.g. a proxy's name; * for any port).",
)
@handle_errors
def mcp(http: bool, host: str, port: int, allowed_hosts: tuple[str, ...]) -> None:
    """Serve MAOS to MCP clients: submit, follow and cancel tasks from Claude Code.

    \b
    Over stdio (the default) every call uses this command's API key
    (--token, MAOS_TOKEN or the credentials file of `maos init`):
      claude mcp add maos -- maos mcp
    With --http, one server serves many MCP clients, each calling with the key
    of its Authorization: Bearer header (never a key in the URL).

    Tools: submit_task, get_task, wait_task, list_tasks, cancel_task,
    get_task_results. Resources: maos://tasks/running, maos://tasks/{id}.
    """
    try:
        from maos_mcp.server import HttpTransport, serve_stdio
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("mcp", "mcp_types", "starlette", "uvicorn"):
            raise CliError(INSTALL_HINT, EXIT_USAGE) from None
        raise
    s = state()
    tls = resolve_tls(s.tls, s.no_tls)
    if not http:
        token = resolve_token(s.token)

        async def stdio() -> None:  # the client is made in the loop that uses it
            async with make_client(s.addr, token=token, timeout=s.timeout, tls=tls) as client:
                await serve_stdio(client)

        asyncio.run(stdio())
        return
    try:
        import uvicorn
    except ModuleNotFoundError:
        raise CliError(INSTALL_HINT, EXIT_USAGE) from None
    if host not in ("127.0.0.1", "localhost", "::1"):
        message(
            f"warning: serving plain HTTP on {host}: API keys cross the network in clear; "
            "put a TLS proxy in front (and --allowed-host its name)"
        )

    async def serve_http() -> None:
        # No key of its own: each request brings its MCP client's.
        client = make_client(s.addr, token=None, timeout=s.timeout, tls=tls)
        transport = HttpTransport(client, host=host, allowed_hosts=allowed_hosts)
        started = asyncio.Event()

        class Server(uvicorn.Server):
            async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
                await super().startup(sockets)
                started.set()

        server = Server(
            uvicorn.Config(transport.app(), host=host, port=port, log_level="warning", lifespan="on")
        )
        async with client:
            task = asyncio.get_running_loop().create_task(server.serve())
            ready = asyncio.ensure_future(started.wait())
            await asyncio.wait([task, ready], return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if server.started:
                bound = server.servers[0].sockets[0].getsockname()[1] if server.servers else port
                message(f"MCP over streamable HTTP at http://{host}:{bound}/mcp (control plane {s.addr})")
            await task

    asyncio.run(serve_http())
