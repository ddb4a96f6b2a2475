"""``maos config``: read and change settings (``maos config set consensus.voting_strategy weighted``)."""

from __future__ import annotations

import io
from typing import Any

import click
import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from agent_sdk.errors import UnavailableError
from maos_cli._errors import EXIT_INVALID_ARGUMENT, CliError, handle_errors
from maos_cli._options import output_option, run
from maos_cli._output import emit, table
from maos_common.redaction import shown_setting


@click.group()
def config() -> None:
    """Read and change settings (config.yml, and the running control plane where it can)."""


@config.command("get")
@click.argument("keys", nargs=-1)
@output_option
@handle_errors
def get(keys: tuple[str, ...]) -> None:
    """Show settings of the running control plane with where each value comes from."""
    values = run(lambda client: client.get_config(keys))
    emit(
        [{"key": v.key, "value": v.value, "source": v.source, "description": v.description} for v in values],
        lambda: table(
            ["KEY", "VALUE", "SOURCE", "DESCRIPTION"],
            [[v.key, v.value, v.source, v.description] for v in values],
        ),
    )


@config.command("set")
@click.argument("key")
@click.argument("value")
@output_option
@handle_errors
def set_(key: str, value: str) -> None:
    """Set KEY to VALUE in $MAOS_HOME/config.yml, and at once in the running control plane when the
    setting can change while it runs (consensus.*); others apply at the next start.

    The file keeps its comments and order. The guides' spellings are accepted
    (tasks.defaults.max_retries is tasks.default_max_retries); an unknown key is
    refused with the closest one."""
    # The settings' schema and config.yml are the control plane's own (imported only here).
    from controlplane.config import canonical_key, default_home, known_options, parse_value
    from controlplane.errors import InvalidArgument
    from controlplane.home import private_dir, write_private

    options = known_options()  # MAOS's own settings and the installed plugins'
    try:
        key = canonical_key(key, options)
        written = _scalar(value)
        parsed = parse_value(key, written, options)
    except InvalidArgument as exc:
        raise CliError(exc.message, EXIT_INVALID_ARGUMENT) from None
    path = default_home() / "config.yml"
    document = _round_trip().load(path.read_text()) if path.exists() else None
    if document is None:
        document = CommentedMap()
    node = document
    *sections, leaf = key.split(".")
    for section in sections:
        child = node.get(section)
        if not isinstance(child, dict):
            child = node[section] = CommentedMap()
        node = child
    node[leaf] = written
    private_dir(path.parent)
    text = io.StringIO()
    _round_trip().dump(document, text)
    write_private(path, text.getvalue())  # it may hold keys: 0600
    applied = "at the next start"
    if options[key].runtime:
        try:
            run(lambda client: client.set_config(key, value))
            applied = "now (the control plane is running)"
        except UnavailableError:
            applied = "at the next start (no control plane is running)"
    shown = shown_setting(key, parsed)  # a key or a database password is not echoed
    emit(
        {"key": key, "value": shown, "file": str(path), "applied": applied},
        lambda: f"{key} = {shown} (saved in {path}; applies {applied})",
    )


def _round_trip() -> YAML:
    """A YAML reader/writer that keeps comments, order and quoting."""
    yaml_rt = YAML()
    yaml_rt.preserve_quotes = True
    yaml_rt.indent(mapping=2, sequence=4, offset=2)
    return yaml_rt


def _scalar(value: str) -> Any:
    """VALUE as YAML reads it (``10`` a number, ``true`` a boolean, ``2GB`` text), as it is written to the file."""
    try:
        loaded = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    return loaded if isinstance(loaded, str | int | float | bool) else value
