"""``maos completion bash|zsh|fish``: the shell completion script of ``maos``."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class

SHELLS = ("bash", "zsh", "fish")
_INSTALL = {
    "bash": 'eval "$(maos completion bash)"        # in ~/.bashrc',
    "zsh": 'eval "$(maos completion zsh)"         # in ~/.zshrc',
    "fish": "maos completion fish > ~/.config/fish/completions/maos.fish",
}


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the completion script of SHELL (bash, zsh or fish) for `maos`.

    \b
      eval "$(maos completion bash)"        # in ~/.bashrc
      eval "$(maos completion zsh)"         # in ~/.zshrc
      maos completion fish > ~/.config/fish/completions/maos.fish
    """
    completer_class = get_completion_class(shell)
    assert completer_class is not None  # every name of SHELLS has one
    root = ctx.find_root().command
    click.echo(completer_class(root, {}, "maos", "_MAOS_COMPLETE").source())
