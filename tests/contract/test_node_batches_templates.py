"""A Node.js client built from the protos alone uses the BatchService and TemplateService of a real server."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from controlplane.app import App
from tests.contract.test_protos import _require_node

SCRIPT = Path(__file__).resolve().parent / "batches_templates.mjs"


@pytest.mark.node
async def test_node_client_uses_batches_and_templates(control_plane: App) -> None:
    _require_node(packages=("@grpc/proto-loader", "@grpc/grpc-js"))
    result = await asyncio.to_thread(
        subprocess.run,
        ["node", str(SCRIPT), control_plane.address],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    batch = out["created"]["batch"]
    assert batch["display_name"] == "node batch" and batch["status"] == "BATCH_STATUS_OPEN"
    assert out["added"]["batch"]["task_count"] == 2
    tasks = out["submitted"]["tasks"]
    assert [t["description"] for t in tasks] == ["first", "second"]
    assert tasks[1]["depends_on"] == [tasks[0]["name"]] and tasks[0]["priority"] == "PRIORITY_HIGH"
    assert [t["name"] for t in out["again"]["tasks"]] == [t["name"] for t in tasks]
    # no agent is connected: the first task waits for one, the second for the first
    status = out["status"]["batch"]
    assert status["status"] == "BATCH_STATUS_RUNNING" and status["schedule"] == "BATCH_SCHEDULE_SEQUENTIAL"
    assert status["tasks_queued"] + status["tasks_pending"] == 2 and status["task_count"] == 2
    assert [b["name"] for b in out["listed"]["batches"]] == [batch["name"]]
    assert out["results"]["results"] == []
    assert (
        out["deleteRunning"]["code"] == "FAILED_PRECONDITION"
        and "unfinished" in out["deleteRunning"]["details"]
    )
    assert out["missingBatch"]["code"] == "NOT_FOUND"

    template = out["template"]["template"]
    assert template["display_name"] == "node template" and template["name"].startswith("templates/")
    assert out["missingParam"]["code"] == "INVALID_ARGUMENT" and "language" in out["missingParam"]["details"]
    assert out["unknownParam"]["code"] == "INVALID_ARGUMENT" and "colour" in out["unknownParam"]["details"]
    assert out["fromTemplate"]["task"]["description"] == "Build an API in python with fastapi"
    assert out["fromTemplate"]["task"]["template"] == template["name"]
    assert out["shown"]["template"]["parameters"][1]["default_value"] == "fastapi"
    assert [t["display_name"] for t in out["templates"]["templates"]] == ["node template"]
    assert out["deleted"] == {} and out["deletedAgain"]["code"] == "NOT_FOUND"
