"""A Node.js agent built from the protos alone takes part in model pacing through its stream."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import system_service_pb2 as system
from controlplane.app import App
from tests.contract.test_protos import _require_node
from tests.harness.server import Stubs

SCRIPT = Path(__file__).resolve().parent / "model_permits.mjs"


@pytest.mark.node
async def test_a_node_agent_takes_permits_and_its_529_holds_the_model(
    control_plane: App, stubs: Stubs
) -> None:
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
    assert out["registered"]["paces_model_calls"] is True
    assert out["first"]["granted"] is True and out["first"]["permit_id"]
    held = out["held"]
    assert held["granted"] is False and "overloaded (529)" in held["reason"]
    assert 0 < int(held["retry_after"]["seconds"]) * 1e9 + held["retry_after"]["nanos"] <= 2e9
    assert out["refused"]["granted"] is False and "invalid permit request" in out["refused"]["reason"]

    status = await stubs.system.GetStatus(system.GetStatusRequest(), timeout=5)
    (paced,) = status.model_pacing
    assert paced.model == "claude-node-test" and paced.overloaded_answers == 1
    assert paced.breaker in (enums.BREAKER_STATE_OPEN, enums.BREAKER_STATE_HALF_OPEN)
    assert paced.requests_per_minute == 60 and paced.in_flight == 0  # the stream ended: nothing held
