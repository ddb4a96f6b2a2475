"""CheckpointService against a real control plane (SQLite; one test on PostgreSQL)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import grpc
import pytest

from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from controlplane.app import App
from tests.harness.server import make_settings, start_app, wait_for


async def submit(client: Client, n: int) -> list[str]:
    return [(await client.submit_task(description=f"task number {i}")).name for i in range(n)]


async def task_snapshot(client: Client) -> dict[str, tuple[int, str]]:
    page = await client.list_tasks(page_size=1000)
    return {t.name: (t.status, t.description, t.create_time.ToNanoseconds()) for t in page.tasks}


@pytest.fixture
async def client(control_plane: App):
    async with Client(control_plane.address) as c:
        yield c


async def test_create_list_show(client: Client) -> None:
    await submit(client, 3)
    ck = await client.create_checkpoint("before upgrade", "manual")
    assert ck.name.startswith("checkpoints/") and not ck.automatic
    assert ck.task_count == 3 and ck.size_bytes > ck.compressed_size_bytes > 0
    assert len(ck.sha256) == 64 and set(ck.components) >= {"tasks", "agents"} and ck.format_version == "1"
    assert (await client.get_checkpoint(ck.name)) == ck
    assert (await client.get_checkpoint("latest")) == ck
    page = await client.list_checkpoints()
    assert [c.name for c in page.checkpoints] == [ck.name]


async def test_export_import_round_trip(client: Client, control_plane: App) -> None:
    await submit(client, 5)
    ck = await client.create_checkpoint("one")
    meta, payload = await client.export_checkpoint(ck.name)
    assert meta == ck and hashlib.sha256(payload).hexdigest() == ck.sha256
    await client.delete_checkpoint(ck.name)
    with pytest.raises(MaosRpcError) as err:
        await client.get_checkpoint(ck.name)
    assert (
        err.value.code == grpc.StatusCode.NOT_FOUND
        and err.value.reason == "ERROR_REASON_CHECKPOINT_NOT_FOUND"
    )
    imported = await client.import_checkpoint(meta, payload, chunk_size=1000)
    assert imported.sha256 == ck.sha256 and imported.task_count == 5 and imported.name == ck.name
    _, again = await client.export_checkpoint(ck.name)
    assert again == payload


async def test_corrupted_payload_is_refused(client: Client, control_plane: App) -> None:
    await submit(client, 2)
    ck = await client.create_checkpoint()
    meta, payload = await client.export_checkpoint(ck.name)
    bad = bytearray(payload)
    bad[len(bad) // 2] ^= 0xFF
    meta.name = "checkpoints/other"
    with pytest.raises(MaosRpcError) as err:
        await client.import_checkpoint(meta, bytes(bad))
    assert err.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.reason == "ERROR_REASON_CHECKPOINT_CORRUPT"
    assert len((await client.list_checkpoints()).checkpoints) == 1  # nothing stored

    # A stored checkpoint damaged in the database is refused by verify and by recover.
    from sqlalchemy import text

    with control_plane.storage.backend.engine.begin() as conn:
        conn.execute(
            text("UPDATE checkpoints SET payload = :p WHERE id = :i"),
            {"p": bytes(bad), "i": ck.name.split("/")[1]},
        )
    for verify in (True, False):
        with pytest.raises(MaosRpcError) as err:
            await client.recover(ck.name, verify_only=verify)
        assert err.value.reason == "ERROR_REASON_CHECKPOINT_CORRUPT"


async def test_verify_reports_later_work_and_changes_nothing(client: Client) -> None:
    before = await submit(client, 3)
    ck = await client.create_checkpoint()
    later = await submit(client, 2)
    report = await client.recover(ck.name, verify_only=True)
    assert report.integrity_ok and not report.applied
    assert sorted(report.later_tasks) == sorted(later)
    tasks = next(c for c in report.changes if c.component == "tasks")
    assert tasks.restored == 0 and tasks.changed + tasks.unchanged == len(before)
    assert len(await task_snapshot(client)) == 5


async def test_recover_keeps_or_requeues_later_work(client: Client, control_plane: App) -> None:
    await submit(client, 2)
    ck = await client.create_checkpoint()
    later = await submit(client, 1)
    for requeue in (False, True):
        report = await client.recover(ck.name, requeue_later_work=requeue)
        assert report.applied and list(report.later_tasks) == later
        assert any("accepted after the checkpoint" in w for w in report.warnings)
        assert later[0] in await task_snapshot(client)
        assert later[0].split("/")[1] in control_plane.engine.tasks


async def test_recover_after_database_wipe(maos_home: Path, tmp_path: Path) -> None:
    """Export, wipe the database, start fresh, import and recover: every task is back exactly."""
    app = await start_app(make_settings(maos_home))
    try:
        async with Client(app.address) as client:
            await submit(client, 20)
            task = await client.cancel_task((await client.list_tasks(page_size=1)).tasks[0].name, "test")
            before = await task_snapshot(client)
            ck = await client.create_checkpoint("before wipe")
            meta, payload = await client.export_checkpoint(ck.name)
    finally:
        await app.stop(grace=1.0)
    for name in ("maos.db", "maos.db-wal", "maos.db-shm"):
        (maos_home / name).unlink(missing_ok=True)
    app = await start_app(make_settings(maos_home))
    try:
        async with Client(app.address) as client:
            assert await task_snapshot(client) == {}
            fresh = await submit(client, 1)  # seq 1 again: collides with a checkpointed task's seq
            await client.import_checkpoint(meta, payload)
            report = await client.recover()  # the newest: the imported one
            assert report.applied and list(report.later_tasks) == fresh
            after = await task_snapshot(client)
            assert {k: v for k, v in after.items() if k not in fresh} == before
            assert after[task.name][0] == enums.TASK_STATUS_CANCELLED
            assert (
                len(app.engine.tasks)
                == sum(1 for s, *_ in before.values() if s != enums.TASK_STATUS_CANCELLED) + 1
            )
    finally:
        await app.stop(grace=1.0)


async def test_components_and_bad_inputs(client: Client) -> None:
    await submit(client, 1)
    ck = await client.create_checkpoint()
    report = await client.recover(ck.name, verify_only=True, components=["agents", "templates", "config"])
    assert [c.component for c in report.changes] == ["agents", "templates"]
    assert any("'config'" in w for w in report.warnings)
    for call, code, reason in [
        (client.recover(ck.name, components=["bogus"]), grpc.StatusCode.INVALID_ARGUMENT, None),
        (client.get_checkpoint("nope"), grpc.StatusCode.NOT_FOUND, "ERROR_REASON_CHECKPOINT_NOT_FOUND"),
        (client.delete_checkpoint("nope"), grpc.StatusCode.NOT_FOUND, "ERROR_REASON_CHECKPOINT_NOT_FOUND"),
        (client.recover("nope"), grpc.StatusCode.NOT_FOUND, "ERROR_REASON_CHECKPOINT_NOT_FOUND"),
        (client.list_checkpoints(page_size=-1), grpc.StatusCode.INVALID_ARGUMENT, None),
        (client.get_checkpoint("bad/name!"), grpc.StatusCode.INVALID_ARGUMENT, None),
    ]:
        with pytest.raises(MaosRpcError) as err:
            await call
        assert err.value.code == code
        if reason:
            assert err.value.reason == reason


async def test_paging(client: Client) -> None:
    names = [(await client.create_checkpoint(str(i))).name for i in range(5)]
    page = await client.list_checkpoints(page_size=2)
    seen = [c.name for c in page.checkpoints]
    while page.next_page_token:
        page = await client.list_checkpoints(page_size=2, page_token=page.next_page_token)
        seen += [c.name for c in page.checkpoints]
    assert seen == names[::-1]


async def test_interval_only_when_changed_and_retention(maos_home: Path) -> None:
    settings = make_settings(maos_home, **{"checkpoints.interval": 0.1, "checkpoints.retention.count": 2})
    app = await start_app(settings)
    try:
        async with Client(app.address) as client:
            first = await wait_for(lambda: client.list_checkpoints(), message="an automatic checkpoint")
            await wait_for(lambda: _has(client, 1))
            version = app.engine.state_version
            ticks = app.engine.started_at  # any later time works: wait for five more intervals to pass
            await wait_for(
                lambda: time.time() > ticks + 0.5 and app.engine.state_version == version,
                5,
                message="five idle intervals",
            )  # nothing changed: no new checkpoint
            page = await client.list_checkpoints()
            assert len(page.checkpoints) == 1 and page.checkpoints[0].automatic
            assert first is not None
            for i in range(3):
                await submit(client, 1)
                await wait_for(
                    lambda i=i: _newest_has(client, i + 1), message=f"checkpoint with {i + 1} tasks"
                )
            page = await client.list_checkpoints()
            assert len(page.checkpoints) == 2  # retention.count
            assert page.checkpoints[0].task_count == 3
    finally:
        await app.stop(grace=1.0)


async def _has(client: Client, n: int) -> bool:
    return len((await client.list_checkpoints()).checkpoints) >= n


async def _newest_has(client: Client, tasks: int) -> bool:
    page = await client.list_checkpoints(page_size=1)
    return bool(page.checkpoints) and page.checkpoints[0].task_count == tasks


async def test_round_trip_on_postgres(pg_control_plane: App) -> None:
    async with Client(pg_control_plane.address) as client:
        await submit(client, 3)
        ck = await client.create_checkpoint("pg")
        meta, payload = await client.export_checkpoint(ck.name)
        await client.delete_checkpoint(ck.name)
        await client.import_checkpoint(meta, payload)
        later = await submit(client, 1)
        report = await client.recover(ck.name)
        assert report.applied and list(report.later_tasks) == later and ck.task_count == 3
