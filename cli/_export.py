"""``--export FORMAT --output FILE``: writing data to a file, beside ``-o`` (the format on stdout).

On the commands that export (``maos metrics``, ``maos monitor``), ``-o``/``--format``
sets the output format on stdout as everywhere, and ``--output`` names the file
``--export`` writes. Without ``--export``, ``--output json`` still means the output
format, as on every other command; anything else there is a usage error that
says to add ``--export``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import click

from maos_cli._options import state
from maos_cli._output import FORMATS


def _set_format(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        state().output = value.lower()


def export_options(formats: Sequence[str], what: str) -> Callable[[Callable[..., Any]], Any]:
    """``-o/--format`` (stdout format), ``--export FORMAT`` and ``--output FILE`` on a command.

    Args:
        formats: The export formats (``csv``, ``json``, ``prometheus``).
        what: What is exported, for the help text.
    """
    options = [
        click.option(
            "-o",
            "--format",
            "output",
            type=click.Choice(FORMATS, case_sensitive=False),
            default=None,
            expose_value=False,
            callback=_set_format,
            is_eager=True,
            show_default=False,
            help="Output format on stdout (default: the global -o).",
        ),
        click.option(
            "--export",
            "export",
            type=click.Choice(list(formats), case_sensitive=False),
            default=None,
            help=f"Write {what} to --output FILE as {', '.join(formats)}.",
        ),
        click.option(
            "--output",
            "output_file",
            default=None,
            metavar="FILE",
            help="With --export: the file written ('-' for stdout). Without --export it is the output "
            "format (table, json, yaml), as on other commands.",
        ),
    ]

    def decorate(fn: Callable[..., Any]) -> Any:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def resolve_export(export: str | None, output_file: str | None) -> tuple[str | None, str | None]:
    """The export format and file; ``--output FORMAT`` without ``--export`` sets the output format instead.

    Raises:
        click.UsageError: --export without --output, or --output naming a file without --export.
    """
    if export is None:
        if output_file is None:
            return None, None
        if output_file.lower() in FORMATS:
            state().output = output_file.lower()
            return None, None
        raise click.UsageError(
            f"--output {output_file} names a file, which needs --export FORMAT "
            "(-o/--format sets the output format on stdout)"
        )
    if not output_file:
        raise click.UsageError(f"--export {export} needs --output FILE (or --output - for stdout)")
    return export.lower(), output_file


@contextlib.contextmanager
def opened(path: str) -> Iterator[TextIO]:
    """The export file opened for writing (``-``: stdout); a usage error names a path it cannot write."""
    if path == "-":
        yield sys.stdout
        return
    try:
        f = Path(path).expanduser().open("w", newline="", encoding="utf-8")
    except OSError as exc:
        raise click.UsageError(f"cannot write --output {path}: {exc.strerror or exc}") from None
    with f:
        yield f
