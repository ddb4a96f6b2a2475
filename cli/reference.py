"""The CLI reference, generated from the commands' own help: ``python -m maos_cli.reference > docs/cli-reference.md``.

A test checks that ``docs/cli-reference.md`` is what this prints, so the reference cannot drift
from the commands.
"""

from __future__ import annotations

import click

from maos_cli.main import cli

HEADER = """# maos command reference

Generated from the commands' help by `python -m maos_cli.reference > docs/cli-reference.md`; do not
edit by hand. The [user guide](guide.md) shows the commands at work.
"""


def _commands(group: click.Group, path: list[str]) -> list[tuple[list[str], click.Command]]:
    found: list[tuple[list[str], click.Command]] = [(path, group)]
    for name in sorted(group.commands):
        command = group.commands[name]
        if isinstance(command, click.Group):
            found += _commands(command, [*path, name])
        else:
            found.append(([*path, name], command))
    return found


def render() -> str:
    """Every command's ``--help``, as Markdown."""
    parts = [HEADER]
    for path, command in _commands(cli, ["maos"]):
        # The help option names of cli's context_settings: click caches a command's help option once it
        # has run, so the reference must not depend on whether a command ran before in this process.
        with click.Context(
            command,
            info_name=" ".join(path),
            terminal_width=100,
            max_content_width=100,
            help_option_names=["-h", "--help"],
        ) as ctx:
            text = command.get_help(ctx)
        parts.append(f"## {' '.join(path)}\n\n```text\n{text}\n```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(render(), end="")
