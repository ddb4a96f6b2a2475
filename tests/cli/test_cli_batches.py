"""``maos batch`` through the real CLI against a real control plane: the guide's commands as it writes them,
bad input, atomic and idempotent submit, sequential schedules, and other users' batches."""

from __future__ import annotations

import json
from pathlib import Path

from agent_sdk.client import Client
from controlplane.app import App
from controlplane.domain.model import Task
from tests.cli.conftest import Maos, stdout_lines
from tests.harness.server import admin_key, stored_audit, wait_for


def short(value: str) -> str:
    """An enum value as ``-o json`` shows it, by its short name (``COMPLETED``), whichever way it is spelt."""
    for prefix in ("BATCH_STATUS_", "BATCH_SCHEDULE_", "PRIORITY_", "TASK_STATUS_"):
        value = value.removeprefix(prefix)
    return value


async def _status(maos: Maos, name: str) -> dict:
    result = await maos("-o", "json", "batch", "status", name)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


async def test_the_guides_batch_commands(maos: Maos) -> None:
    created = await maos("batch", "create", "--name", "quarterly-analysis")
    assert created.exit_code == 0, created.stderr
    batch_id = created.stdout.strip()
    assert batch_id.startswith("b") and "quarterly-analysis" in created.stderr
    for text in ("Analyze Q1 sales data", "Analyze Q1 marketing metrics", "Analyze Q1 customer satisfaction"):
        added = await maos("batch", "add-task", "quarterly-analysis", text)
        assert added.exit_code == 0, added.stderr
    assert added.stdout.strip() == "batch 'quarterly-analysis': 3 tasks"

    open_status = await maos("batch", "status", "quarterly-analysis")
    assert open_status.exit_code == 0, open_status.stderr
    assert "OPEN" in open_status.stdout and "Analyze Q1 customer satisfaction" in open_status.stdout

    submitted = await maos("batch", "submit", "quarterly-analysis")
    assert submitted.exit_code == 0, submitted.stderr
    task_ids = stdout_lines(submitted)
    assert len(task_ids) == 3 and "submitted 3 tasks" in submitted.stderr and "(parallel)" in submitted.stderr

    async def done() -> bool:
        return short((await _status(maos, "quarterly-analysis"))["batch"]["status"]) == "COMPLETED"

    await wait_for(done, timeout=30, interval=0.2)
    data = await _status(maos, "quarterly-analysis")
    assert data["batch"]["tasks_completed"] == 3 and data["batch"]["progress"] == 1
    assert [t["name"] for t in data["tasks"]] == [f"tasks/{i}" for i in task_ids]
    assert all(t["batch"] == f"batches/{batch_id}" for t in data["tasks"])

    shown = await maos("batch", "status", "quarterly-analysis")
    assert (
        "COMPLETED" in shown.stdout
        and "100% (3/3 finished)" in shown.stdout
        and "3 completed" in shown.stdout
    )

    results = await maos("batch", "results", "quarterly-analysis")
    assert results.exit_code == 0, results.stderr
    assert "3/3 tasks finished" in results.stdout
    assert all(f"## {i} (COMPLETED)" in results.stdout for i in task_ids)
    assert "Analyze Q1 sales data" in results.stdout  # the echo agent's output repeats its instructions

    # by id as well as by name
    by_id = await maos("-o", "json", "batch", "results", batch_id)
    assert len(json.loads(by_id.stdout)["results"]) == 3

    listed = await maos("batch", "list")
    assert (
        "quarterly-analysis" in listed.stdout and batch_id in listed.stdout and "COMPLETED" in listed.stdout
    )

    deleted = await maos("batch", "delete", "quarterly-analysis")
    assert deleted.exit_code == 0 and "deleted batch" in deleted.stderr
    assert "No batches." in (await maos("batch", "list")).stdout
    gone = await maos("batch", "status", "quarterly-analysis")
    assert gone.exit_code == 3 and "does not exist" in gone.stderr
    task = await maos("-o", "json", "task", "show", task_ids[0])  # forgetting a batch keeps its tasks
    assert task.exit_code == 0


async def test_the_best_practices_batch_with_a_schedule(maos: Maos) -> None:
    assert (await maos("batch", "create", "--name", "q1_marketing_analysis")).exit_code == 0
    for text in ("Analyze social media engagement Q1 2025", "Competitive pricing analysis Q1 2025"):
        assert (await maos("batch", "add-task", "q1_marketing_analysis", text)).exit_code == 0
    result = await maos("batch", "submit", "q1_marketing_analysis", "--schedule", "parallel")
    assert result.exit_code == 0, result.stderr
    assert len(stdout_lines(result)) == 2


async def test_sequential_schedule_chains_the_tasks(maos: Maos) -> None:
    await maos("batch", "create", "--name", "pipeline")
    await maos(
        "batch",
        "add-task",
        "pipeline",
        "Research user requirements",
        "--priority",
        "HIGH",
        "--metadata",
        "team=research",
    )
    await maos("batch", "add-task", "pipeline", "Design system architecture", "--type", "analysis")
    await maos("batch", "add-task", "pipeline", "Implement the system")
    result = await maos("-o", "json", "batch", "submit", "pipeline", "--schedule", "sequential")
    assert result.exit_code == 0, result.stderr
    ids = json.loads(result.stdout)["task_ids"]
    tasks = [json.loads((await maos("-o", "json", "task", "show", i)).stdout)["task"] for i in ids]
    assert [t["depends_on"] for t in tasks] == [[], [f"tasks/{ids[0]}"], [f"tasks/{ids[1]}"]]
    assert short(tasks[0]["priority"]) == "HIGH" and tasks[0]["metadata"] == {"team": "research"}
    assert tasks[1]["task_type"] == "analysis"
    assert short(json.loads(result.stdout)["batch"]["schedule"]) == "SEQUENTIAL"

    # submitting again stores nothing and answers the same tasks; another schedule is refused
    again = await maos("batch", "submit", "pipeline")
    assert again.exit_code == 0 and stdout_lines(again) == ids
    other = await maos("batch", "submit", "pipeline", "--schedule", "parallel")
    assert other.exit_code == 5 and "already submitted with schedule sequential" in other.stderr
    late = await maos("batch", "add-task", "pipeline", "One more")
    assert late.exit_code == 5 and "already submitted" in late.stderr
    listed = json.loads((await maos("-o", "json", "task", "list", "--all")).stdout)["tasks"]
    assert len(listed) == 3


async def test_submit_is_atomic(maos: Maos, control_plane: App) -> None:
    await maos("batch", "create", "--name", "atomic")
    assert (await maos("batch", "add-task", "atomic", "Fine")).exit_code == 0
    assert (await maos("batch", "add-task", "atomic", "Also fine")).exit_code == 0
    # A task whose dependency is unknown when the batch is submitted (the server checks dependencies
    # when a task is added, so it is stored directly, as a task whose dependency has since gone).
    store = control_plane.storage.backend.batches
    batch = await control_plane.storage.call(store.find_batch, "users/local", "atomic")
    orphan = Task(id="", description="Needs a task that is gone", depends_on=["t00000000000000000000000"])
    assert await control_plane.storage.call(store.add_batch_task, batch.id, orphan) == 3

    before = json.loads((await maos("-o", "json", "task", "list", "--all")).stdout)["tasks"]
    refused = await maos("batch", "submit", "atomic")
    assert refused.exit_code == 3, refused.stderr
    assert "dependency tasks/t00000000000000000000000 does not exist" in refused.stderr
    after = json.loads((await maos("-o", "json", "task", "list", "--all")).stdout)["tasks"]
    assert after == before  # not even the first two tasks were stored
    status = await _status(maos, "atomic")
    assert short(status["batch"]["status"]) == "OPEN" and status["batch"]["task_count"] == 3


async def test_bad_input(maos: Maos, control_plane: App) -> None:
    no_name = await maos("batch", "create")
    assert no_name.exit_code == 2 and "--name" in no_name.stderr
    long = await maos("batch", "create", "--name", "x" * 101)
    assert long.exit_code == 4 and "at most 100" in long.stderr
    slash = await maos("batch", "create", "--name", "a/b")
    assert slash.exit_code == 4 and "'/'" in slash.stderr
    bad_id = await maos("batch", "create", "--name", "ok", "--id", "Not_An_Id")
    assert bad_id.exit_code == 4 and "batch_id" in bad_id.stderr
    assert (await maos("batch", "create", "--name", "ok")).exit_code == 0
    twice = await maos("batch", "create", "--name", "ok")
    assert twice.exit_code == 5 and "already have a batch named 'ok'" in twice.stderr

    missing = await maos("batch", "add-task", "nope", "text")
    assert missing.exit_code == 3 and "batch 'nope' does not exist" in missing.stderr
    empty = await maos("batch", "add-task", "ok", "   ")
    assert empty.exit_code == 4 and "description" in empty.stderr
    dep = await maos("batch", "add-task", "ok", "text", "--depends-on", "t0123456789abcdef")
    assert dep.exit_code == 3 and "dependency tasks/t0123456789abcdef does not exist" in dep.stderr
    bad_schedule = await maos("batch", "submit", "ok", "--schedule", "sideways")
    assert bad_schedule.exit_code == 2
    nothing = await maos("batch", "submit", "ok")
    assert nothing.exit_code == 5 and "has no tasks" in nothing.stderr
    assert (await _status(maos, "ok"))["batch"]["task_count"] == 0


async def test_tasks_per_batch_are_bounded(maos: Maos, maos_home: Path) -> None:
    from tests.harness.server import make_settings, start_app

    app = await start_app(make_settings(maos_home / "small", **{"batches.max_tasks": 2}))
    try:
        small = Maos(app.address, maos_home)
        await small("batch", "create", "--name", "small")
        assert (await small("batch", "add-task", "small", "one")).exit_code == 0
        assert (await small("batch", "add-task", "small", "two")).exit_code == 0
        third = await small("batch", "add-task", "small", "three")
        assert third.exit_code == 8 and "batches.max_tasks" in third.stderr
    finally:
        await app.stop(grace=1.0)


async def test_other_users_cannot_see_submit_or_delete_a_batch(secured: App, maos_home: Path) -> None:
    token = await admin_key(secured)
    async with Client(secured.address, token=token) as admin:
        await admin.create_user("alice@example.com", ["developer"])
        await admin.create_user("bob@example.com", ["developer"])
        alice_key = (await admin.create_api_key("alice", user="alice")).secret
        bob_key = (await admin.create_api_key("bob", user="bob")).secret
    maos = Maos(secured.address, maos_home)
    created = await maos("batch", "create", "--name", "private", MAOS_TOKEN=alice_key)
    assert created.exit_code == 0, created.stderr
    batch_id = created.stdout.strip()
    assert (await maos("batch", "add-task", "private", "secret work", MAOS_TOKEN=alice_key)).exit_code == 0

    for ref in ("private", batch_id, f"batches/{batch_id}"):
        for command in (
            ("status", ref),
            ("results", ref),
            ("submit", ref),
            ("delete", ref),
            ("add-task", ref, "sneaky"),
        ):
            result = await maos("batch", *command, MAOS_TOKEN=bob_key)
            assert result.exit_code == 3, (command, result.stderr)
    assert "No batches." in (await maos("batch", "list", MAOS_TOKEN=bob_key)).stdout
    # bob may use the same name for his own batch
    assert (await maos("batch", "create", "--name", "private", MAOS_TOKEN=bob_key)).exit_code == 0

    mine = json.loads((await maos("-o", "json", "batch", "status", "private", MAOS_TOKEN=alice_key)).stdout)
    assert mine["batch"]["task_count"] == 1 and short(mine["batch"]["status"]) == "OPEN"
    # an admin (task:view-all) sees it by id
    assert (await maos("batch", "status", batch_id, MAOS_TOKEN=token)).exit_code == 0
    # changes are audited, with the caller and the outcome; reads are not
    created_records = await stored_audit(secured, action="BatchService/CreateBatch")
    assert sorted(r["principal"] for r in created_records) == ["users/alice", "users/bob"]
    denied = await stored_audit(secured, action="BatchService/DeleteBatch")
    assert denied and all(r["principal"] == "users/bob" and r["status_code"] == "NOT_FOUND" for r in denied)
    assert await stored_audit(secured, action="BatchService/GetBatch") == []


async def test_batches_and_templates_on_postgresql(pg_control_plane: App, maos_home: Path) -> None:
    maos = Maos(pg_control_plane.address, maos_home)
    assert (await maos("batch", "create", "--name", "pg batch")).exit_code == 0
    for text in ("first", "second"):
        assert (await maos("batch", "add-task", "pg batch", text)).exit_code == 0
    submitted = await maos("-o", "json", "batch", "submit", "pg batch", "--schedule", "sequential")
    assert submitted.exit_code == 0, submitted.stderr
    ids = json.loads(submitted.stdout)["task_ids"]
    status = await _status(maos, "pg batch")
    assert [t["name"] for t in status["tasks"]] == [f"tasks/{i}" for i in ids]
    assert status["tasks"][1]["depends_on"] == [f"tasks/{ids[0]}"] and status["batch"]["task_count"] == 2
    assert stdout_lines(await maos("batch", "submit", "pg batch")) == ids

    assert (await maos("template", "create", "--name", "pg", "--description", "Hello {who}")).exit_code == 0
    used = await maos("task", "submit-from-template", "pg", "--param", "who=postgres")
    shown = json.loads((await maos("-o", "json", "task", "show", used.stdout.strip())).stdout)["task"]
    assert shown["description"] == "Hello postgres"


async def test_a_long_name_is_refused_without_being_echoed(maos: Maos) -> None:
    result = await maos("batch", "status", "n" * 5000)
    assert result.exit_code == 4 and "5000 characters" in result.stderr and len(result.stderr) < 300


async def test_a_submit_in_progress_elsewhere_or_cut_short(maos: Maos, control_plane: App) -> None:
    """Another replica holding the claim (exit 6), and claims left by a submitter that died."""
    from controlplane.domain.model import now
    from controlplane.workflows.records import BatchSchedule

    store = control_plane.storage.backend.batches
    call = control_plane.storage.call

    async def batch_with_tasks(name: str) -> str:
        assert (await maos("batch", "create", "--name", name)).exit_code == 0
        for text in ("one", "two"):
            assert (await maos("batch", "add-task", name, text)).exit_code == 0
        return (await call(store.find_batch, "users/local", name)).id

    busy = await batch_with_tasks("busy")
    await call(store.claim_batch_submit, busy, ["t1a", "t1b"], BatchSchedule.PARALLEL, now(), 0.0)
    refused = await maos("batch", "submit", "busy")
    assert refused.exit_code == 6 and "being submitted by another control-plane replica" in refused.stderr
    assert (await maos("batch", "add-task", "busy", "three")).exit_code == 5
    assert (await maos("batch", "delete", "busy")).exit_code == 5

    # a submitter died after claiming, before storing anything: its claim is taken over, with its ids
    # (and with the schedule asked now, or else the one it was asked)
    orphan = await batch_with_tasks("orphan")
    ids = [control_plane.engine.new_task_id() for _ in range(2)]
    await call(store.claim_batch_submit, orphan, ids, BatchSchedule.SEQUENTIAL, now() - 120, 0.0)
    taken = await maos("-o", "json", "batch", "submit", "orphan")
    assert taken.exit_code == 0, taken.stderr
    data = json.loads(taken.stdout)
    assert data["task_ids"] == ids and short(data["batch"]["schedule"]) == "SEQUENTIAL"
    assert data["batch"]["tasks"] == [f"tasks/{i}" for i in ids]

    # a submitter died after storing the tasks, before recording it: they are found, none is added
    stored = await batch_with_tasks("stored")
    ids = [control_plane.engine.new_task_id() for _ in range(2)]
    await call(store.claim_batch_submit, stored, ids, BatchSchedule.SEQUENTIAL, now() - 120, 0.0)
    drafts = await call(store.batch_tasks, stored)
    for task, task_id in zip(drafts, ids, strict=True):
        task.id, task.batch = task_id, stored
    await control_plane.engine.submit(drafts, principal="users/local")
    before = len(json.loads((await maos("-o", "json", "task", "list", "--all")).stdout)["tasks"])
    found = await maos("-o", "json", "batch", "submit", "stored")
    assert found.exit_code == 0, found.stderr
    data = json.loads(found.stdout)
    assert data["task_ids"] == ids and short(data["batch"]["schedule"]) == "SEQUENTIAL"
    assert len(json.loads((await maos("-o", "json", "task", "list", "--all")).stdout)["tasks"]) == before
