"""``audit.retention_days``: the control plane deletes audit records older than the retention."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent_sdk import Client
from controlplane.retention import DAY
from tests.harness.server import admin_key, make_settings, start_app


@pytest.mark.parametrize("days", [90, 0])
async def test_records_older_than_the_retention_are_deleted(tmp_path: Path, days: int) -> None:
    app = await start_app(
        make_settings(tmp_path / "home", **{"security.auth": "required", "audit.retention_days": days})
    )
    try:
        async with Client(app.address, token=await admin_key(app)) as client:
            await client.submit_task(description="audited")
        await app.engine.committer.durable()
        backend = app.storage.backend
        before = await app.storage.call(lambda: backend.list_audit(limit=1000))
        assert any(r["method"].endswith("/SubmitTask") for r in before)
        assert app.retention is not None
        # 89 days on, nothing is old enough; 91 days on, everything is (unless kept forever).
        assert await app.retention.prune(at=time.time() + 89 * DAY) == 0
        deleted = await app.retention.prune(at=time.time() + 91 * DAY)
        after = await app.storage.call(lambda: backend.list_audit(limit=1000))
        if days:
            assert deleted == len(before) and after == []
        else:
            assert deleted == 0 and len(after) == len(before)
    finally:
        await app.stop(grace=1.0)
