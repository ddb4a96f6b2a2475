"""``maos``: the command line of MAOS (noun–verb groups over :mod:`agent_sdk.client`).

Every option can also come from the environment: ``MAOS_<COMMAND>_<OPTION>``
(for example ``MAOS_TASK_LIST_LIMIT``), and ``MAOS_SERVER_ADDRESS`` / ``MAOS_TOKEN`` /
``MAOS_TLS_CA`` / ``MAOS_TLS_CERT`` / ``MAOS_TLS_KEY`` for the connection (the
``client.tls.*`` settings fill in TLS options that are not given; ``MAOS_ADDR``
is the older name of the address, still read). Exit codes are documented in
:mod:`maos_cli._errors`. Installed plugins add commands through the
``register_commands`` hook (:class:`PluginCommands`).
"""

from __future__ import annotations

import os
from typing import Any

import click

from agent_sdk.command_options import AddressList, tls_from_options, tls_options
from maos_cli import (
    access,
    agents,
    batches,
    checkpoints,
    completion,
    config,
    db,
    join_tokens,
    logs,
    mcp_server,
    metrics,
    monitor,
    plugins,
    system,
    task_approval,
    task_export,
    tasks,
    templates,
    webhooks,
)
from maos_cli._options import OUTPUT_FLAGS, State
from maos_cli._output import FORMATS

DEFAULT_ADDRESS = "127.0.0.1:7100"


def default_address() -> str:
    """MAOS_SERVER_ADDRESS, else MAOS_ADDR (its older name), else server.address of config.yml."""
    legacy = os.environ.get("MAOS_ADDR", "").strip()
    if legacy and not os.environ.get("MAOS_SERVER_ADDRESS", "").strip():
        return legacy
    try:
        from controlplane.config import load_settings

        address = load_settings()["server.address"]
    except Exception:  # a broken config.yml must not break --help; `maos start` reports it
        return DEFAULT_ADDRESS
    from maos_common.addresses import local_address

    return local_address(address)


EPILOG = """\b
Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 invalid argument,
5 failed precondition, 6 unavailable, 7 unauthenticated/permission denied,
8 resource exhausted, 9 timed out, 10 task failed or cancelled.

\b
Shell completion: eval "$(maos completion bash)" (or zsh, fish).
"""


class PluginCommands(click.Group):
    """The ``maos`` group: MAOS's own commands, and those installed plugins add (``register_commands``).

    Plugins are loaded only when needed: when a command is looked up that MAOS
    does not have, or when the commands are listed (``maos --help``), so that
    MAOS's own commands do not pay for importing them. A plugin whose hook
    raises, or that returns a command of a name MAOS uses, is reported on
    stderr; the rest of the command line works.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugins_loaded = False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and not self._plugins_loaded:
            self.load_plugin_commands()
            command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.load_plugin_commands()
        return super().list_commands(ctx)

    def load_plugin_commands(self, pm: Any = None) -> None:
        """Add the commands of the plugins of ``pm`` (default: the installed ones), once."""
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        if pm is None:
            from controlplane.plugins import installed_plugin_manager

            # The built-ins add no commands; a broken plugin is skipped, with a warning on stderr.
            pm = installed_plugin_manager(quiet=False)
        arguments = {"cli": self}
        own = dict(self.commands)
        for impl in reversed(pm.hook.register_commands.get_hookimpls()):  # the order pluggy calls them
            try:
                commands = impl.function(*[arguments[name] for name in impl.argnames]) or []
                if not isinstance(commands, list | tuple) or not all(
                    isinstance(c, click.Command) for c in commands
                ):
                    raise TypeError("register_commands must return a list of click commands")
            except Exception as exc:  # noqa: BLE001  (one plugin's failure must not break the command line)
                _plugin_warning(
                    f"plugin {impl.plugin_name}: register_commands failed ({type(exc).__name__}: "
                    f"{exc}); its commands are left out"
                )
                commands = []
            for name, command in own.items():  # a plugin that decorated cli directly replaces nothing
                if self.commands.get(name) is not command:
                    self.commands[name] = command
                    _plugin_warning(
                        f"plugin {impl.plugin_name}: command {name!r} left out: maos already "
                        "has a command of that name"
                    )
            for command in commands:
                if command.name in own:
                    _plugin_warning(
                        f"plugin {impl.plugin_name}: command {command.name!r} left out: maos "
                        "already has a command of that name"
                    )
                else:
                    self.add_command(command)


def _plugin_warning(text: str) -> None:
    click.echo(f"maos: warning: {text}", err=True)


@click.group(
    name="cli",
    cls=PluginCommands,
    context_settings={
        "auto_envvar_prefix": "MAOS",
        "show_default": True,
        "help_option_names": ["-h", "--help"],
    },
    epilog=EPILOG,
)
@click.option(
    "--addr",
    default=default_address,
    metavar="HOST:PORT[,HOST:PORT...]",
    allow_from_autoenv=False,
    type=AddressList(),
    show_default="MAOS_SERVER_ADDRESS, or server.address from config.yml",
    help="Address of the control plane; several, comma-separated, to fail over between them "
    "(or a dns:///name:port target).",
)
@click.option(
    "--token", envvar="MAOS_TOKEN", default=None, show_default=False, help="API key (Bearer token)."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    metavar="SECONDS",
    help="Deadline of each call to the control plane.",
)
@click.option(
    *OUTPUT_FLAGS,
    "output",
    type=click.Choice(FORMATS, case_sensitive=False),
    default="table",
    help="Output format of data on stdout (--format is the same option).",
)
@tls_options
@click.version_option(package_name="maos", prog_name="maos", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, /, addr: str, token: str | None, timeout: float, output: str, **tls: Any) -> None:
    """MAOS: split plain-language tasks into parallel subtasks and run them on agents.

    Start a control plane with `maos start`, then submit work with
    `maos task submit "..."` and follow it with `maos task wait ID`.
    A TLS control plane needs --tls-ca (and --tls-cert/--tls-key under mutual TLS).
    """
    ctx.obj = State(
        addr=addr,
        token=token or None,
        timeout=timeout,
        output=output.lower(),
        tls=tls_from_options(tls),
        no_tls=tls["tls"] is False,
    )


for command in (
    system.init,
    system.start,
    system.stop,
    system.restart,
    system.status,
    system.health,
    system.version,
):
    cli.add_command(command)
cli.add_command(tasks.task)
tasks.task.add_command(task_export.export)
tasks.task.add_command(task_approval.approve)
tasks.task.add_command(task_approval.reject)
tasks.task.add_command(templates.submit_from_template)
cli.add_command(batches.batch)
cli.add_command(templates.template)
cli.add_command(monitor.monitor)
for command in (logs.logs, metrics.metrics, metrics.resources):
    cli.add_command(command)
agents.agent.add_command(logs.agent_logs)
agents.agent.add_command(metrics.agent_metrics)
cli.add_command(agents.agent)
cli.add_command(db.db)
cli.add_command(config.config)
cli.add_command(plugins.plugins)
cli.add_command(checkpoints.checkpoint)
cli.add_command(checkpoints.recover)
cli.add_command(completion.completion)
cli.add_command(webhooks.webhook)
cli.add_command(mcp_server.mcp)
for group in (access.user, access.role, access.api_key, join_tokens.join_token, access.audit):
    cli.add_command(group)


def main() -> None:
    """Console-script entry point (``maos``)."""
    cli(prog_name="maos")


__all__ = ["PluginCommands", "cli", "main"]

if __name__ == "__main__":
    main()
