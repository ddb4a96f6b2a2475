"""``maos checkpoint ...`` and ``maos recover``: system checkpoints and recovery from them.

An exported checkpoint file is one line of JSON metadata (the ``Checkpoint``
message) followed by the exact stored payload (zlib-compressed, its SHA-256
in the metadata), so a damaged file is refused on import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from google.protobuf import json_format

from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from maos_cli._errors import EXIT_INVALID_ARGUMENT, CliError, handle_errors
from maos_cli._options import output_option, run
from maos_cli._output import bare_id, emit, key_values, message, table, when


def write_file(path: Path, meta: msgs.Checkpoint, payload: bytes) -> None:
    """Write an export file (mode 0600: it holds every user's tasks): the metadata line, then the payload."""
    from controlplane.home import write_private

    write_private(path, json_format.MessageToJson(meta, indent=None).encode() + b"\n" + payload)


def read_file(path: Path) -> tuple[msgs.Checkpoint, bytes]:
    """Read an export file (INVALID_ARGUMENT exit if it is not one)."""
    data = path.read_bytes()
    head, sep, payload = data.partition(b"\n")
    try:
        if not sep:
            raise ValueError("no metadata line")
        return json_format.Parse(head, msgs.Checkpoint()), payload
    except (ValueError, json_format.ParseError) as exc:
        raise CliError(f"{path} is not an exported MAOS checkpoint ({exc})", EXIT_INVALID_ARGUMENT) from None


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _details(c: msgs.Checkpoint) -> str:
    return key_values(
        [
            ("ID", bare_id(c.name)),
            ("Name", c.display_name),
            ("Description", c.description),
            ("Created", when(c.create_time)),
            ("Automatic", "yes" if c.automatic else "no"),
            ("Tasks", c.task_count),
            ("Components", ", ".join(c.components)),
            ("Size", f"{_size(c.size_bytes)} ({_size(c.compressed_size_bytes)} compressed)"),
            ("SHA-256", c.sha256),
            ("Format", c.format_version),
        ]
    )


@click.group()
def checkpoint() -> None:
    """Take, list, export and import system checkpoints (see also `maos recover`)."""


@checkpoint.command()
@click.option("--name", "display_name", default="", help="A display name.")
@click.option("--description", default="", help="What the checkpoint is for.")
@output_option
@handle_errors
def create(display_name: str, description: str) -> None:
    """Take a checkpoint now (prints its id)."""
    c = run(lambda client: client.create_checkpoint(display_name, description))
    emit(c, lambda: bare_id(c.name))


@checkpoint.command(name="list")
@click.option("--limit", type=click.IntRange(min=1), default=50, help="At most this many, newest first.")
@output_option
@handle_errors
def list_(limit: int) -> None:
    """List checkpoints, newest first."""

    async def fetch(client: Any) -> list[msgs.Checkpoint]:
        found: list[msgs.Checkpoint] = []
        token = ""
        while len(found) < limit:
            page = await client.list_checkpoints(page_size=min(limit - len(found), 1000), page_token=token)
            found += list(page.checkpoints)
            token = page.next_page_token
            if not token:
                break
        return found[:limit]

    items = run(fetch)
    emit(
        {"checkpoints": items},
        lambda: table(
            ["ID", "CREATED", "AUTO", "TASKS", "SIZE", "NAME"],
            [
                [
                    bare_id(c.name),
                    when(c.create_time),
                    "yes" if c.automatic else "",
                    c.task_count,
                    _size(c.compressed_size_bytes),
                    c.display_name,
                ]
                for c in items
            ],
            empty="No checkpoints.",
        ),
    )


@checkpoint.command()
@click.argument("checkpoint_id", metavar="ID")
@output_option
@handle_errors
def show(checkpoint_id: str) -> None:
    """Show a checkpoint (`latest` names the newest)."""
    c = run(lambda client: client.get_checkpoint(checkpoint_id))
    emit(c, lambda: _details(c))


@checkpoint.command()
@click.argument("checkpoint_id", metavar="ID")
@click.option(
    "--output",
    "--file",
    "output_file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="File to write.",
)
@handle_errors
def export(checkpoint_id: str, output_file: Path) -> None:
    """Export a checkpoint (metadata and checksummed payload) to a file."""
    meta, payload = run(lambda client: client.export_checkpoint(checkpoint_id))
    write_file(output_file, meta, payload)
    message(f"exported {meta.name} ({_size(len(payload))}) to {output_file}")


@checkpoint.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@output_option
@handle_errors
def import_(file: Path) -> None:
    """Import an exported checkpoint; a damaged file is refused (exit 5) and nothing is stored."""
    meta, payload = read_file(file)
    c = run(lambda client: client.import_checkpoint(meta, payload))
    emit(c, lambda: bare_id(c.name))


@checkpoint.command()
@click.argument("checkpoint_id", metavar="ID")
@handle_errors
def delete(checkpoint_id: str) -> None:
    """Delete a checkpoint."""
    run(lambda client: client.delete_checkpoint(checkpoint_id))
    message(f"deleted checkpoints/{bare_id(checkpoint_id)}")


def _report_text(r: Any) -> str:
    lines = [
        f"Checkpoint {bare_id(r.checkpoint.name)} ({when(r.checkpoint.create_time)}): integrity "
        f"{'ok' if r.integrity_ok else 'FAILED'}; {'applied' if r.applied else 'not applied (verify only)'}",
        table(
            ["COMPONENT", "RESTORED", "CHANGED", "UNCHANGED"],
            [[c.component, c.restored, c.changed, c.unchanged] for c in r.changes],
        ),
    ]
    if r.later_tasks:
        lines.append("Accepted after the checkpoint: " + ", ".join(bare_id(t) for t in r.later_tasks))
    lines += [f"warning: {w}" for w in r.warnings]
    return "\n".join(lines)


@click.command()
@click.option(
    "--checkpoint", "checkpoint_id", default="", metavar="ID", help="Checkpoint (default: the newest)."
)
@click.option("--verify", is_flag=True, help="Check integrity and report what would change; change nothing.")
@click.option(
    "--component",
    "components",
    multiple=True,
    metavar="NAME",
    help="Restore only this component (tasks, agents, ...; the guide's task_manager and agent_pool "
    "name tasks and agents); repeatable.",
)
@click.option(
    "--requeue-later-work",
    is_flag=True,
    help="Queue work accepted after the checkpoint again from the start (default: keep it).",
)
@click.option(
    "--offline", is_flag=True, help="Recover directly in the database (no control plane may be running)."
)
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="With --offline: import this exported checkpoint first and recover from it.",
)
@output_option
@handle_errors
def recover(
    checkpoint_id: str,
    verify: bool,
    components: tuple[str, ...],
    requeue_later_work: bool,
    offline: bool,
    file: Path | None,
) -> None:
    """Restore state from a checkpoint; work accepted after it is reported and kept or re-queued."""
    if file is not None and not offline:
        raise click.UsageError("--file needs --offline (online: `maos checkpoint import FILE` first)")
    if offline:
        report = _recover_offline(checkpoint_id, verify, list(components), requeue_later_work, file)
    else:
        report = run(
            lambda client: client.recover(
                checkpoint_id,
                verify_only=verify,
                components=components,
                requeue_later_work=requeue_later_work,
            )
        )
    emit(report, lambda: _report_text(report))


def _recover_offline(
    checkpoint_id: str, verify: bool, components: list[str], requeue: bool, file: Path | None
) -> Any:
    """Recovery against the configured database, without a server (e.g. after the database was wiped)."""
    from agent_sdk.proto.maos.v1 import checkpoint_service_pb2 as pb
    from controlplane.api.servicers.checkpoints import checkpoint_from_pb, checkpoint_to_pb
    from controlplane.checkpoints import service
    from controlplane.config import load_settings
    from controlplane.plugins import get_plugin_manager
    from controlplane.storage.base import CheckpointStore, StoresCheckpoints, open_storage, require

    settings = load_settings()
    if settings.database_url.startswith("sqlite"):
        from controlplane.home import private_dir

        private_dir(settings.home)
    opened = open_storage(get_plugin_manager(), settings.database_url)
    backend: CheckpointStore = require(opened, StoresCheckpoints, "checkpoints")  # type: ignore[assignment]
    try:
        backend.migrate()
        if file is not None:
            meta, payload = read_file(file)
            checkpoint_id = service.import_payload(backend, checkpoint_from_pb(meta), payload).id
        # Without its payload: recover reads it chunk by chunk.
        record = backend.get_checkpoint(bare_id(checkpoint_id) if checkpoint_id else "latest")
        if record is None:
            raise service.not_found(checkpoint_id or "latest")
        r = service.recover(backend, record, components, verify_only=verify, requeue_later=requeue)
    finally:
        backend.close()
    return pb.RecoverResponse(
        checkpoint=checkpoint_to_pb(r.record),
        integrity_ok=True,
        applied=r.applied,
        changes=[
            pb.ComponentChange(component=c, restored=a, changed=b, unchanged=u)
            for c, (a, b, u) in r.changes.items()
        ],
        later_tasks=r.later_tasks,
        warnings=r.warnings,
    )
