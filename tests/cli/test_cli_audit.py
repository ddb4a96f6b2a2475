"""``maos audit report``: a timeframe's records and summary in JSON, CSV or Markdown."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError
from maos_cli.main import cli
from tests.harness.server import admin_key


async def test_report_formats(secured, tmp_path: Path) -> None:
    token = await admin_key(secured)
    async with Client(secured.address, token=token) as admin:
        await admin.submit_task(description="audited work")
    async with Client(secured.address, token="maos_key_bogus") as stranger:
        with pytest.raises(MaosRpcError) as denied:
            await stranger.list_tasks()
        assert denied.value.code == grpc.StatusCode.UNAUTHENTICATED

    def report(name: str) -> Path:
        path = tmp_path / name
        result = CliRunner().invoke(
            cli,
            [
                "--addr",
                secured.address,
                "--token",
                token,
                "audit",
                "report",
                "--output",
                str(path),
                "--timeframe",
                "1h",
            ],
            catch_exceptions=False,
        )
        assert result.exit_code == 0, result.output
        return path

    data = json.loads((await asyncio.to_thread(report, "audit.json")).read_text())
    methods = [r["method"].rsplit("/", 1)[-1] for r in data["records"]]
    assert "SubmitTask" in methods and "ListTasks" in methods
    assert data["summary"]["denied"] >= 1
    assert data["summary"]["records"] == len(data["records"])
    rows = list(csv.DictReader((await asyncio.to_thread(report, "audit.csv")).read_text().splitlines()))
    assert {"time", "principal", "method", "decision", "status_code"} <= set(rows[0])
    assert any(r["decision"] == "DENY" and r["status_code"] == "UNAUTHENTICATED" for r in rows)
    markdown = (await asyncio.to_thread(report, "audit.md")).read_text()
    assert markdown.startswith("# Audit report since") and "## Denied calls" in markdown


def test_report_needs_a_known_format(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["audit", "report", "--output", str(tmp_path / "audit.txt")])
    assert result.exit_code == 2 and "--format" in result.output
