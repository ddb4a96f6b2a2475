"""``maos task approve ID`` and ``maos task reject ID --reason TEXT``: decide on a plan that waits for approval."""

from __future__ import annotations

import click

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from maos_cli._errors import handle_errors
from maos_cli._options import output_option, run, task_id_argument
from maos_cli._output import bare_id, emit, enum_label, status_text


@click.command()
@task_id_argument
@output_option
@handle_errors
def approve(task_id: str) -> None:
    """Approve the plan of a task submitted with --approve-plan; it runs as planned.

    See the plan first with `maos task show ID --execution-plan`. Needs the
    permission task:approve; exits 5 if the task is not waiting for approval.
    """
    approved = run(lambda client: client.approve_task(task_id))
    emit(
        approved,
        lambda: (
            f"{bare_id(approved.name)} approved; "
            f"{status_text(enum_label(enums.TaskStatus, approved.status, 'TASK_STATUS_'))}"
        ),
    )


@click.command()
@task_id_argument
@click.option("--reason", required=True, help="Why the plan is rejected (recorded with the task).")
@output_option
@handle_errors
def reject(task_id: str, reason: str) -> None:
    """Reject the plan of a task submitted with --approve-plan; the task is CANCELLED.

    `maos task retry ID` plans it again (and it waits for approval again).
    Needs the permission task:approve; exits 5 if the task is not waiting.
    """
    rejected = run(lambda client: client.reject_task(task_id, reason))
    emit(
        rejected,
        lambda: (
            f"{bare_id(rejected.name)} rejected; "
            f"{status_text(enum_label(enums.TaskStatus, rejected.status, 'TASK_STATUS_'))}"
        ),
    )
