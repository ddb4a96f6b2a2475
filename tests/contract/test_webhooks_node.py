"""A Node.js client built from protos/ alone manages webhooks and receives a signed test event."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from controlplane.webhooks import signing
from tests.contract.test_protos import ROOT, _require_node
from tests.harness.receiver import Receiver
from tests.harness.server import make_settings, start_app

CLIENT = Path(__file__).resolve().parent / "webhooks_client.mjs"


async def test_node_client_creates_tests_and_lists_a_webhook(maos_home: Path, receiver: Receiver) -> None:
    _require_node(packages=("@grpc/proto-loader", "@grpc/grpc-js"))
    app = await start_app(make_settings(maos_home, **{"webhooks.allow_private": True}))
    secret = "whsec_from-node-0123456789"
    try:
        args = ["node", str(CLIENT), app.address, receiver.url, secret]
        done = await asyncio.to_thread(
            subprocess.run, args, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )
    finally:
        await app.stop(grace=1.0)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["events"] == ["task.completed", "task.failed"]
    assert out["delivery"]["succeeded"] is True
    assert out["delivery"]["state"] == "WEBHOOK_DELIVERY_STATE_SUCCEEDED"
    assert [d["id"] for d in out["log"]] == [out["delivery"]["id"]]
    assert out["badField"].startswith("INVALID_ARGUMENT") and "webhook.url" in out["badField"]
    [r] = receiver.snapshot()
    assert r.delivery == out["delivery"]["id"] and signing.verify(secret, r.body, r.headers["MAOS-Signature"])
