"""``maos status`` lists the replicas registered on the database (table and -o json)."""

from __future__ import annotations

import json
from pathlib import Path

from controlplane.app import App, build_app
from maos_cli.replicas import replicas_table
from tests.cli.conftest import Maos
from tests.harness.server import empty_postgres, make_settings, start_app


async def test_status_shows_this_replica(maos: Maos, control_plane: App) -> None:
    result = await maos("status")
    assert result.exit_code == 0, result.output
    assert "Replicas (* answered this call):" in result.stdout
    [row] = [line for line in result.stdout.splitlines() if line.startswith(control_plane.engine.replica)]
    assert control_plane.address in row and " ago" in row and "LOST" not in row

    data = json.loads((await maos("-o", "json", "status")).stdout)
    [me] = data["status"]["replica_status"]
    assert me["id"] == control_plane.engine.replica
    assert me["address"] == control_plane.address and me["current"] is True
    assert me["connected_agents"] == 1  # the echo agent, as of the registration
    assert "lost" not in me or me["lost"] is False


async def test_status_lists_two_replicas_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    pg = {"database.primary_url": postgres_url}
    build_app(make_settings(tmp_path / "m", **pg)).storage.close()
    empty_postgres(postgres_url)
    a = await start_app(make_settings(tmp_path / "a", **pg))
    b = await start_app(make_settings(tmp_path / "b", **pg))
    try:
        out = json.loads((await Maos(b.address, tmp_path / "cli")("-o", "json", "status")).stdout)
        rows = [(r["id"], r["address"], r.get("current", False)) for r in out["status"]["replica_status"]]
        assert rows == [(a.engine.replica, a.address, False), (b.engine.replica, b.address, True)]
        # the job leases of PostgreSQL: every periodic job is held by one replica or the other
        jobs = sorted(j for r in out["status"]["replica_status"] for j in r.get("jobs", []))
        assert set(jobs) <= {"audit-retention", "checkpoints", "metrics-history"}
        assert len(jobs) == len(set(jobs))
    finally:
        await b.stop(grace=1.0)
        await a.stop(grace=1.0)


def test_replicas_table_marks_lost_replicas() -> None:
    from agent_sdk.proto.maos.v1 import system_service_pb2 as pb

    lost = pb.ReplicaStatus(id="cp-2", address="10.0.0.2:7100", lost=True, connected_agents=3, leases_held=2)
    lost.start_time.FromSeconds(1000)
    lost.heartbeat_time.FromSeconds(1940)
    text = replicas_table([lost], now=2000)
    assert "REPLICA" in text and "HEARTBEAT" in text
    row = text.splitlines()[-1]
    assert row.split()[:2] == ["cp-2", "10.0.0.2:7100"]
    assert "LOST (last 1m ago)" in row and "16m 40s" in row
