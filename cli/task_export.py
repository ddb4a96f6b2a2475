"""``maos task export ID --format markdown|json --output FILE``: a task as a report to keep or share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from agent_sdk.client import Client
from agent_sdk.errors import FailedPreconditionError
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from maos_cli._errors import handle_errors
from maos_cli._options import run, task_id_argument
from maos_cli._output import bare_id, enum_label, message, to_data, when
from maos_cli._review import review_summary


async def _fetch(client: Client, task_id: str) -> tuple[tasks_pb.GetTaskResponse, msgs.TaskResult | None]:
    shown = await client.get_task(task_id, full=True)
    try:
        result = await client.get_results(task_id)
    except FailedPreconditionError:  # still running: the report has what is known so far
        result = None
    return shown, result


def as_json(shown: tasks_pb.GetTaskResponse, result: msgs.TaskResult | None) -> str:
    """The task, its subtasks, plan, consensus and result as one JSON document."""
    data: dict[str, Any] = to_data(shown)
    data["result"] = to_data(result) if result is not None else None
    return json.dumps(data, indent=2) + "\n"


def as_markdown(shown: tasks_pb.GetTaskResponse, result: msgs.TaskResult | None) -> str:
    """A readable report: summary table, plan, each subtask's output, the result and usage."""
    task = shown.task
    status = enum_label(enums.TaskStatus, task.status, "TASK_STATUS_")
    lines = [f"# Task {bare_id(task.name)}", "", task.description.strip(), "", "| | |", "|---|---|"]
    rows = [
        ("Status", status),
        ("Reason", task.status_reason),
        ("Type", task.task_type),
        ("Priority", enum_label(enums.Priority, task.priority, "PRIORITY_")),
        ("Created", when(task.create_time)),
        ("Started", when(task.start_time)),
        ("Ended", when(task.end_time)),
        ("Failure", task.failure.message),
        ("Warnings", "; ".join(task.warnings)),
    ]
    lines += [f"| {k} | {_cell(v)} |" for k, v in rows if v]
    if shown.HasField("plan") and shown.plan.subtasks:
        lines += ["", "## Plan", "", "| Step | Kind | Capability | Depends on |", "|---|---|---|---|"]
        lines += [
            f"| {_cell(p.title or p.key)} | {enum_label(enums.SubtaskKind, p.kind, 'SUBTASK_KIND_')} | "
            f"{_cell(p.capability)} | {_cell(', '.join(p.depends_on))} |"
            for p in shown.plan.subtasks
        ]
    if shown.subtasks:
        lines += ["", "## Subtasks"]
        for sub in shown.subtasks:
            state = enum_label(enums.SubtaskStatus, sub.status, "SUBTASK_STATUS_")
            lines += ["", f"### {sub.title or bare_id(sub.name)} ({state})", ""]
            if sub.agent:
                lines += [f"Agent: `{bare_id(sub.agent)}`", ""]
            lines += [sub.output.strip() or "_(no output)_"]
    if shown.HasField("review"):
        lines += [
            "",
            "## Review",
            "",
            f"Outcome: {review_summary(shown.review)}",
            "",
            "| Round | Verdict | Changes |",
            "|---|---|---|",
        ]
        lines += [
            f"| {r.round} | {'approved' if r.verdict.approved else 'changes requested'} | "
            f"{_cell('; '.join(r.verdict.changes) or r.verdict.summary or r.note)} |"
            for r in shown.review.rounds
        ]
    if result is not None:
        usage = result.usage
        lines += [
            "",
            "## Result",
            "",
            result.output.strip() or "_(no output)_",
            "",
            "## Usage",
            "",
            f"{usage.input_tokens} input and {usage.output_tokens} output tokens, "
            f"{usage.model_calls} model calls, ${usage.cost_micros / 1e6:.4f}",
        ]
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    """A value fit for one Markdown table cell."""
    return " ".join(str(value).split()).replace("|", "\\|")


@click.command("export")
@task_id_argument
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["markdown", "json"]),
    default="markdown",
    help="Report format (this command's own --format: markdown or json).",
)
@click.option(
    "--output",
    "output_file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write the report to this file (default: standard output).",
)
@handle_errors
def export(task_id: str, fmt: str, output_file: Path | None) -> None:
    """Export a task as a report: its plan, every subtask's output, the result and usage.

    Unlike other commands, --format and --output here mean the report's format
    and the file to write it to.
    """
    shown, result = run(lambda client: _fetch(client, task_id))
    text = as_markdown(shown, result) if fmt == "markdown" else as_json(shown, result)
    if output_file is None:
        click.echo(text, nl=False)
        return
    output_file.write_text(text)
    message(f"wrote {output_file}")
