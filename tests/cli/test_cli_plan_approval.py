"""`maos task submit --approve-plan`, `maos task approve` and `maos task reject` against a secured server.

The task waits, planned, with the reason "waiting for plan approval" (in show, status, list and the
events of WatchTask) until someone holding task:approve decides; a viewer is refused and changes
nothing; deciding on a task that is not waiting is FAILED_PRECONDITION; the wait survives a restart
of the control plane, and the task's timeout does not run while it waits.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent_sdk.builtin import EchoAgent
from agent_sdk.client import Client
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.worker import Worker
from controlplane.app import App
from maos_cli._errors import EXIT_FAILED_PRECONDITION, EXIT_TASK_FAILED, EXIT_UNAUTHENTICATED, EXIT_USAGE
from tests.cli.conftest import Maos
from tests.controlplane.access.test_access import user_key
from tests.harness.server import admin_key, make_settings, start_app, stored_audit, wait_for

WAITING = "waiting for plan approval"


@pytest.fixture
async def agent(secured: App) -> AsyncIterator[Worker]:
    """An echo agent on the secured server (it joins with an admin key)."""
    worker = Worker(EchoAgent(), secured.address, token=await admin_key(secured), max_backoff=0.2)
    runner = asyncio.get_running_loop().create_task(worker.run())
    try:
        await asyncio.wait_for(worker.registered.wait(), 15)
        yield worker
    finally:
        await worker.shutdown(grace=1.0)
        await asyncio.wait_for(runner, 15)


async def _submit_waiting(maos: Maos, token: str, *extra: str) -> str:
    submitted = await maos(
        "task", "submit", "Compare:\n- PostgreSQL\n- SQLite", "--approve-plan", *extra, MAOS_TOKEN=token
    )
    assert submitted.exit_code == 0, submitted.output
    task_id = submitted.stdout.strip()

    async def waiting() -> bool:
        shown = await maos("task", "show", task_id, "-o", "json", MAOS_TOKEN=token)
        return json.loads(shown.stdout)["task"].get("status_reason") == WAITING

    await wait_for(waiting, 10, interval=0.05, message="the task to wait for approval")
    return task_id


async def test_a_planned_task_waits_until_approved_and_a_viewer_cannot_approve(
    secured: App, agent: Worker, maos_home: Path
) -> None:
    maos = Maos(secured.address, maos_home)
    dev = await user_key(secured, "dev@example.com", "developer")
    viewer = await user_key(secured, "viewer@example.com", "viewer")
    task_id = await _submit_waiting(maos, dev)

    shown = await maos("task", "show", task_id, "--execution-plan", MAOS_TOKEN=dev)
    assert shown.exit_code == 0, shown.output
    assert "Status:" in shown.stdout and "PENDING" in shown.stdout and WAITING in shown.stdout
    assert "Plan approval:" in shown.stdout and "waiting since" in shown.stdout
    assert (
        "Execution plan:" in shown.stdout
        and "synthesis" in shown.stdout
        and "(not planned yet)" not in shown.stdout
    )
    assert "Subtasks:" not in shown.stdout  # nothing runs before the approval
    listed = await maos("task", "list", "--detailed", MAOS_TOKEN=dev)
    assert WAITING in listed.stdout
    status = await maos("status", MAOS_TOKEN=dev)
    assert any(
        line.split() == ["Waiting", "for", "plan", "approval:", "1"] for line in status.stdout.splitlines()
    ), status.stdout
    engine_task = secured.engine.tasks[task_id]
    assert engine_task.status.name == "PENDING" and not secured.engine.subtasks[task_id]

    refused = await maos("task", "approve", task_id, MAOS_TOKEN=viewer)
    assert refused.exit_code == EXIT_UNAUTHENTICATED, refused.output
    assert "task:approve" in refused.stderr
    refused = await maos("task", "reject", task_id, "--reason", "no", MAOS_TOKEN=viewer)
    assert refused.exit_code == EXIT_UNAUTHENTICATED, refused.output
    assert engine_task.approval["state"] == "WAITING" and not secured.engine.subtasks[task_id]

    async with Client(secured.address, token=dev) as client:
        events: list[str] = []
        snapshot = asyncio.Event()

        async def watch() -> None:
            async for update in client.watch_task(task_id):
                snapshot.set()  # the first message: the watch is open
                if update.HasField("event") and update.event.type == enums.EVENT_TYPE_PLAN_APPROVAL:
                    events.append(update.event.message)

        watching = asyncio.get_running_loop().create_task(watch())
        try:
            await asyncio.wait_for(snapshot.wait(), 5)
            approved = await maos("task", "approve", task_id, MAOS_TOKEN=dev)
            assert approved.exit_code == 0, approved.output
            assert f"{task_id} approved" in approved.stdout
            await asyncio.wait_for(watching, 20)  # the watch ends when the task is done
        finally:
            watching.cancel()
    assert events == ["plan approved by users/dev"]
    waited = await maos("task", "wait", task_id, "--timeout", "20", MAOS_TOKEN=dev)
    assert waited.exit_code == 0, waited.output
    shown = await maos("task", "show", task_id, MAOS_TOKEN=dev)
    assert "approved by users/dev" in shown.stdout
    # the plan that ran is the plan that was shown
    full = json.loads(
        (await maos("task", "show", task_id, "--execution-plan", "-o", "json", MAOS_TOKEN=dev)).stdout
    )
    assert [s["name"].rsplit("/", 1)[1] for s in full["subtasks"]] == [
        p["key"] for p in full["plan"]["subtasks"]
    ]

    again = await maos("task", "approve", task_id, MAOS_TOKEN=dev)
    assert again.exit_code == EXIT_FAILED_PRECONDITION, again.output
    assert "not waiting for plan approval" in again.stderr and "COMPLETED" in again.stderr

    records = await stored_audit(secured)
    decisions = [
        (r["method"].rsplit("/", 1)[1], r["principal"], r["status_code"])
        for r in records
        if r["method"].endswith(("/ApproveTask", "/RejectTask"))
    ]
    assert ("ApproveTask", "users/viewer", "PERMISSION_DENIED") in decisions
    assert ("RejectTask", "users/viewer", "PERMISSION_DENIED") in decisions
    assert ("ApproveTask", "users/dev", "OK") in decisions
    assert ("ApproveTask", "users/dev", "FAILED_PRECONDITION") in decisions


async def test_a_rejected_plan_cancels_the_task_with_the_reason(
    secured: App, agent: Worker, maos_home: Path
) -> None:
    maos = Maos(secured.address, maos_home)
    dev = await user_key(secured, "dev@example.com", "developer")
    task_id = await _submit_waiting(maos, dev)
    async with Client(secured.address, token=dev) as client:
        events: list[str] = []
        snapshot = asyncio.Event()

        async def watch() -> None:
            async for update in client.watch_task(task_id):
                snapshot.set()  # the first message: the watch is open
                if update.HasField("event") and update.event.type == enums.EVENT_TYPE_PLAN_APPROVAL:
                    events.append(update.event.message)

        watching = asyncio.get_running_loop().create_task(watch())
        try:
            await asyncio.wait_for(snapshot.wait(), 5)
            no_reason = await maos("task", "reject", task_id, MAOS_TOKEN=dev)
            assert no_reason.exit_code == EXIT_USAGE and "--reason" in no_reason.output
            rejected = await maos(
                "task", "reject", task_id, "--reason", "too broad; split it", MAOS_TOKEN=dev
            )
            assert rejected.exit_code == 0, rejected.output
            assert "CANCELLED" in rejected.stdout
            await asyncio.wait_for(watching, 10)  # the watch ends with the task
        finally:
            watching.cancel()
        assert events == ["plan rejected by users/dev: too broad; split it"]
    waited = await maos("task", "wait", task_id, MAOS_TOKEN=dev)
    assert waited.exit_code == EXIT_TASK_FAILED
    assert "plan rejected by users/dev: too broad; split it" in waited.stderr
    shown = await maos("task", "show", task_id, MAOS_TOKEN=dev)
    assert "rejected by users/dev" in shown.stdout and "too broad" in shown.stdout
    again = await maos("task", "reject", task_id, "--reason", "again", MAOS_TOKEN=dev)
    assert again.exit_code == EXIT_FAILED_PRECONDITION and "CANCELLED" in again.stderr

    # Retried, it is planned again and waits for approval again.
    retried = await maos("task", "retry", task_id, MAOS_TOKEN=dev)
    assert retried.exit_code == 0, retried.output
    await wait_for(
        lambda: secured.engine.awaiting_approval(secured.engine.tasks[task_id]),
        10,
        message="the retried task to wait for approval",
    )


async def test_approving_a_task_that_never_asked_for_approval_is_refused(
    secured: App, maos_home: Path
) -> None:
    maos = Maos(secured.address, maos_home)
    dev = await user_key(secured, "dev@example.com", "developer")
    submitted = await maos("task", "submit", "No approval needed", MAOS_TOKEN=dev)
    task_id = submitted.stdout.strip()
    refused = await maos("task", "approve", task_id, MAOS_TOKEN=dev)
    assert refused.exit_code == EXIT_FAILED_PRECONDITION, refused.output
    assert "was not submitted with approve_plan" in refused.stderr
    other = await user_key(secured, "other@example.com", "developer")
    hidden = await maos("task", "approve", task_id, MAOS_TOKEN=other)  # another's task does not exist for it
    assert hidden.exit_code == 3, hidden.output

    waiting = await _submit_waiting(maos, dev)  # cancelled while it waits: there is nothing left to decide
    assert (await maos("task", "cancel", waiting, MAOS_TOKEN=dev)).exit_code == 0
    late = await maos("task", "approve", waiting, MAOS_TOKEN=dev)
    assert late.exit_code == EXIT_FAILED_PRECONDITION and "it is CANCELLED" in late.stderr, late.output
    shown = await maos("task", "show", waiting, MAOS_TOKEN=dev)
    assert "never decided" in shown.stdout, shown.stdout


async def test_the_wait_survives_a_restart_and_the_timeout_counts_from_the_start_of_work(
    maos_home: Path,
) -> None:
    settings = make_settings(maos_home, **{"security.auth": "required"})
    app = await start_app(settings)
    try:
        maos = Maos(app.address, maos_home)
        admin = await admin_key(app)
        task_id = await _submit_waiting(maos, admin, "--timeout", "1")
        plan_before = app.engine.tasks[task_id].plan
    finally:
        await app.stop(grace=1.0)

    app = await start_app(settings)  # a new control plane on the same database
    try:
        maos = Maos(app.address, maos_home)
        task = app.engine.tasks[task_id]
        assert app.engine.awaiting_approval(task) and task.plan == plan_before
        # Waiting does not count against its timeout: the timeout's clock starts with its work.
        assert task.start_time is None and task_id not in app.engine._timeouts
        shown = await maos("task", "show", task_id, MAOS_TOKEN=admin)
        assert WAITING in shown.stdout and "PENDING" in shown.stdout, shown.stdout
        worker = Worker(EchoAgent(), app.address, token=admin, max_backoff=0.2)
        runner = asyncio.get_running_loop().create_task(worker.run())
        try:
            await asyncio.wait_for(worker.registered.wait(), 15)
            approved = await maos("task", "approve", task_id, MAOS_TOKEN=admin)
            assert approved.exit_code == 0, approved.output
            waited = await maos("task", "wait", task_id, "--timeout", "20", MAOS_TOKEN=admin)
            assert waited.exit_code == 0, waited.output
        finally:
            await worker.shutdown(grace=1.0)
            await asyncio.wait_for(runner, 15)
    finally:
        await app.stop(grace=1.0)
