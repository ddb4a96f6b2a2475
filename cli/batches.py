"""``maos batch``: group tasks under a name, submit them together, follow them as one."""

from __future__ import annotations

from typing import Any

import click

from agent_sdk.client import Client
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from maos_cli._errors import handle_errors
from maos_cli._options import UpperChoice, output_option, run
from maos_cli._output import (
    bare_id,
    emit,
    enum_label,
    key_values,
    message,
    short,
    status_text,
    table,
    to_data,
    when,
)
from maos_cli._task_options import draft, pop_options, task_options

SCHEDULES = ("PARALLEL", "SEQUENTIAL")


def _status(batch: msgs.Batch) -> str:
    return enum_label(enums.BatchStatus, batch.status, "BATCH_STATUS_")


def _schedule(batch: msgs.Batch) -> str:
    return (
        enum_label(enums.BatchSchedule, batch.schedule, "BATCH_SCHEDULE_").lower() if batch.schedule else ""
    )


def _counts(batch: msgs.Batch) -> str:
    """``2 completed, 1 running, 1 queued`` (states with tasks only)."""
    parts = [
        (batch.tasks_completed, "completed"),
        (batch.tasks_failed, "failed"),
        (batch.tasks_cancelled, "cancelled"),
        (batch.tasks_running, "running"),
        (batch.tasks_queued, "queued"),
        (batch.tasks_pending, "pending"),
    ]
    return ", ".join(f"{n} {label}" for n, label in parts if n) or "none submitted"


def _finished(batch: msgs.Batch) -> int:
    return batch.tasks_completed + batch.tasks_failed + batch.tasks_cancelled


def _pairs(batch: msgs.Batch) -> list[tuple[str, Any]]:
    submitted = batch.status != enums.BATCH_STATUS_OPEN
    return [
        ("Batch", batch.display_name),
        ("ID", bare_id(batch.name)),
        ("Status", status_text(_status(batch))),
        ("Schedule", _schedule(batch)),
        ("Tasks", batch.task_count),
        (
            "Progress",
            f"{batch.progress * 100:.0f}% ({_finished(batch)}/{batch.task_count} finished)"
            if submitted
            else "",
        ),
        ("States", _counts(batch) if submitted else ""),
        ("Owner", batch.owner),
        ("Created", when(batch.create_time)),
        ("Submitted", when(batch.submit_time)),
    ]


@click.group()
def batch() -> None:
    """Group tasks under a name, submit them together and follow them as one.

    \b
    maos batch create --name quarterly-analysis
    maos batch add-task quarterly-analysis "Analyze Q1 sales data" --priority HIGH
    maos batch submit quarterly-analysis --schedule parallel
    maos batch status quarterly-analysis
    maos batch results quarterly-analysis

    A batch is named by the name you gave it (unique among yours) or by its id.
    """


@batch.command()
@click.option(
    "--name", required=True, help="The batch's name, unique among your batches (at most 100 characters)."
)
@click.option(
    "--id",
    "batch_id",
    default="",
    show_default=False,
    help="Choose the id (a-z, 0-9, '-'; made by the server when unset).",
)
@output_option
@handle_errors
def create(name: str, batch_id: str) -> None:
    """Create an empty batch; prints its id."""
    created = run(lambda client: client.create_batch(name, batch_id=batch_id))
    message(f'created batch {created.display_name!r}; add tasks with `maos batch add-task {name!r} "..."`')
    emit({"batch": created}, lambda: bare_id(created.name))


@batch.command("add-task")
@click.argument("name")
@click.argument("description")
@task_options
@output_option
@handle_errors
def add_task(name: str, description: str, **kwargs: Any) -> None:
    """Add a task to an open batch (the options of `maos task submit`).

    The task is checked now and submitted with the batch.
    """
    task = draft(description, pop_options(kwargs))
    updated = run(lambda client: client.add_batch_task(name, task))
    emit({"batch": updated}, lambda: f"batch {updated.display_name!r}: {updated.task_count} tasks")


@batch.command()
@click.argument("name")
@click.option(
    "--schedule",
    type=UpperChoice(SCHEDULES),
    default=None,
    show_default="parallel",
    help="parallel: the tasks run side by side; sequential: each waits for the one added before it "
    "(and fails if it fails).",
)
@output_option
@handle_errors
def submit(name: str, schedule: str | None) -> None:
    """Submit every task of the batch at once; prints their ids, one per line.

    All tasks are stored, or none (a missing dependency names the task). Submitting
    again changes nothing and prints the same ids.
    """
    response = run(lambda client: client.submit_batch(name, schedule=schedule))
    ids = [bare_id(t.name) for t in response.tasks]
    message(
        f"submitted {len(ids)} tasks of batch {response.batch.display_name!r} ({_schedule(response.batch)})"
    )
    emit({"batch": response.batch, "task_ids": ids}, lambda: "\n".join(ids))


@batch.command()
@click.argument("name")
@output_option
@handle_errors
def status(name: str) -> None:
    """Show a batch: its state, progress, and its tasks' states."""
    response = run(lambda client: client.get_batch(name))
    b = response.batch

    def text() -> str:
        parts = [key_values(_pairs(b))]
        if b.status == enums.BATCH_STATUS_OPEN:
            parts.append(
                table(
                    ["#", "PRIORITY", "TYPE", "DESCRIPTION"],
                    [
                        [
                            i + 1,
                            enum_label(enums.Priority, t.priority, "PRIORITY_"),
                            t.task_type,
                            short(t.description, 60),
                        ]
                        for i, t in enumerate(b.pending_tasks)
                    ],
                    empty="No tasks yet.",
                )
            )
        else:
            parts.append(
                table(
                    ["ID", "STATUS", "PROGRESS", "DESCRIPTION"],
                    [
                        [
                            bare_id(t.name),
                            status_text(enum_label(enums.TaskStatus, t.status, "TASK_STATUS_")),
                            f"{t.progress * 100:.0f}%",
                            short(t.description, 60),
                        ]
                        for t in response.tasks
                    ],
                )
            )
        return "\n\n".join(parts)

    emit(to_data(response), text)


@batch.command()
@click.argument("name")
@output_option
@handle_errors
def results(name: str) -> None:
    """Print the results of the batch's finished tasks (and how many are still running)."""
    response = run(lambda client: client.get_batch_results(name))
    b = response.batch

    def text() -> str:
        head = f"batch {b.display_name!r}: {status_text(_status(b))}, {_finished(b)}/{b.task_count} tasks finished"
        parts = [head]
        for r in response.results:
            label = enum_label(enums.TaskStatus, r.status, "TASK_STATUS_")
            body = r.output or (r.failure.message if r.failure.message else "(no output)")
            parts.append(f"## {bare_id(r.task)} ({label})\n{body}")
        return "\n\n".join(parts)

    emit(to_data(response), text)


@batch.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=50, help="Most batches shown.")
@output_option
@handle_errors
def list_(limit: int) -> None:
    """List your batches, newest first."""

    async def action(client: Client) -> list[msgs.Batch]:
        return [b async for b in client.iter_batches(limit=limit)]

    found = run(action)
    emit(
        {"batches": found},
        lambda: table(
            ["NAME", "ID", "STATUS", "TASKS", "PROGRESS", "CREATED"],
            [
                [
                    b.display_name,
                    bare_id(b.name),
                    status_text(_status(b)),
                    b.task_count,
                    f"{b.progress * 100:.0f}%" if b.status != enums.BATCH_STATUS_OPEN else "",
                    when(b.create_time),
                ]
                for b in found
            ],
            empty="No batches.",
        ),
    )


@batch.command()
@click.argument("name")
@handle_errors
def delete(name: str) -> None:
    """Delete an open batch, or forget a finished one (its tasks remain)."""
    run(lambda client: client.delete_batch(name))
    message(f"deleted batch {name!r}")
