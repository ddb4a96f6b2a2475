"""What the deploy tests share: paths, the project's version, and the real CLIs to parse commands with."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import click

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
OVERLAYS = sorted(p for p in (KUBERNETES / "overlays").iterdir() if (p / "kustomization.yaml").exists())
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
#: The image's user and MAOS_HOME (deploy/Dockerfile).
IMAGE_UID = 10001
MAOS_HOME = "/var/lib/maos"


def _roots() -> dict[str, click.Group]:
    from agent_sdk.runner import cli as agent_cli
    from maos_cli.main import cli as maos_cli

    return {"maos": maos_cli, "maos-agent": agent_cli}


def parse_command(argv: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Parse ``maos ...`` or ``maos-agent ...`` with the real click commands, without running it.

    Returns:
        The command path (``["maos", "db", "migrate"]``) and the parameters of the last command.

    Raises:
        click.UsageError: An unknown command or option, a missing or bad value.
    """
    program, *args = argv
    root = _roots()[program]
    ctx = root.make_context(program, list(args))
    path, command = [program], root
    while isinstance(command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        if not rest:
            raise click.UsageError(f"{' '.join(argv)}: names no command")
        name, sub, rest = command.resolve_command(ctx, rest)
        assert name is not None and sub is not None
        ctx = sub.make_context(name, rest, parent=ctx)
        path.append(name)
        command = sub
    return path, ctx.params


def cli_env_vars() -> set[str]:
    """Every environment variable an option of ``maos`` or ``maos-agent`` reads by name."""
    found: set[str] = set()

    def walk(command: click.Command) -> None:
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            found.update([envvar] if isinstance(envvar, str) else envvar or [])
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    for root in _roots().values():
        walk(root)
    return found


def allowed_maos_env_vars() -> set[str]:
    """``MAOS_*`` variables that do something: settings (MAOS's own and the plugins'), CLI options, MAOS_HOME."""
    from controlplane.config import known_options

    return {o.env_var for o in known_options().values()} | cli_env_vars() | {"MAOS_HOME"}


def check_maos_command(argv: list[str], where: str) -> list[str]:
    """Problems of one MAOS command line (parsed by the real CLI; agent types must exist)."""
    try:
        path, params = parse_command(argv)
    except click.ClickException as exc:
        return [f"{where}: {' '.join(argv)!r}: {exc.format_message()}"]
    if path[:2] == ["maos-agent", "run"]:
        from controlplane.agent_types import agent_type
        from controlplane.config import load_settings
        from controlplane.errors import InvalidArgument
        from controlplane.plugins import get_plugin_manager

        try:
            agent_type(get_plugin_manager(), load_settings(), params["agent_type"], field="--type")
        except InvalidArgument as exc:
            return [f"{where}: {exc.message}"]
    return []
