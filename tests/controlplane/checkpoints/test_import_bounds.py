"""ImportCheckpoint bounds, through a real control plane (issue 11).

The upload is checked as it arrives: over ``limits.checkpoint_import_bytes``
compressed, or decompressing past ``limits.checkpoint_inflated_bytes``, it is
refused with INVALID_ARGUMENT before it is inflated whole; a payload naming
components or tables that are not ours is refused as corrupt. Nothing is
stored either way.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest

from agent_sdk.client import Client
from agent_sdk.proto.maos.v1 import checkpoint_service_pb2 as pb
from agent_sdk.proto.maos.v1 import checkpoint_service_pb2_grpc as pb_grpc
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from controlplane.app import App
from tests.controlplane.api.test_task_service import assert_failure, rpc_failure
from tests.harness.server import make_settings, start_app

MB = 1024 * 1024
CORRUPT = "ERROR_REASON_CHECKPOINT_CORRUPT"


@pytest.fixture
async def plane(tmp_path: Path) -> AsyncIterator[tuple[App, Client]]:
    """A control plane accepting uploads of at most 1 MB that inflate to at most 4 MB."""
    app = await start_app(
        make_settings(
            tmp_path / "home",
            **{"limits.checkpoint_import_bytes": MB, "limits.checkpoint_inflated_bytes": 4 * MB},
        )
    )
    client = Client(app.address)
    try:
        yield app, client
    finally:
        await client.close()
        await app.stop(grace=1.0)


def payload(header: dict[str, Any], *parts: dict[str, Any], padding: bytes = b"") -> bytes:
    """A compressed checkpoint payload of ``header`` and table lines (``padding`` appended to the header)."""
    lines = [orjson.dumps(header) + padding, *(orjson.dumps(p) for p in parts)]
    return zlib.compress(b"\n".join(lines), 9)


HEADER = {"format": "maos-checkpoint", "format_version": "1", "create_time": 1.0, "components": ["agents"]}


def upload(client: Client, data: bytes, chunk: int = 64 * 1024) -> Any:
    """The raw ImportCheckpoint call: metadata (with the payload's checksum), then the payload in chunks."""
    meta = msgs.Checkpoint(name="checkpoints/imported", sha256=hashlib.sha256(data).hexdigest())
    parts = [pb.ImportCheckpointRequest(checkpoint=meta)]
    parts += [pb.ImportCheckpointRequest(chunk=data[i : i + chunk]) for i in range(0, len(data), chunk)]
    return pb_grpc.CheckpointServiceStub(client.channel).ImportCheckpoint(iter(parts), timeout=30)


async def stored(client: Client) -> list[str]:
    return [c.name for c in (await client.list_checkpoints()).checkpoints]


async def test_a_decompression_bomb_is_refused_before_it_is_inflated(plane: tuple[App, Client]) -> None:
    """About 20 KB that inflate to 20 MB: refused once 4 MB are inflated."""
    _, client = plane
    bomb = payload(HEADER, padding=b" " * (20 * MB))
    assert len(bomb) < 100_000
    failure = await rpc_failure(upload(client, bomb))
    assert_failure(failure, grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_FIELD", "chunk")
    assert "limits.checkpoint_inflated_bytes" in failure.message and str(4 * MB) in failure.message
    assert await stored(client) == []


async def test_an_upload_over_the_size_limit_is_refused(plane: tuple[App, Client]) -> None:
    _, client = plane
    failure = await rpc_failure(upload(client, zlib.compress(os.urandom(6 * MB))))  # incompressible
    assert_failure(failure, grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_FIELD", "chunk")
    assert "limits.checkpoint_import_bytes" in failure.message
    assert await stored(client) == []


ROW = {"table": "agents", "columns": ["id", "data"], "binary": [], "rows": [["a1", "{}"]]}


@pytest.mark.parametrize(
    ("header", "part", "why"),
    [
        pytest.param(
            {**HEADER, "components": ["agents", "evil"]},
            ROW,
            "unknown or repeated components",
            id="component",
        ),
        pytest.param(
            HEADER, {**ROW, "table": "api_keys"}, "'api_keys' is unknown", id="table-of-no-component"
        ),
        pytest.param(
            HEADER, {**ROW, "table": "tasks"}, "'tasks' is unknown", id="table-of-another-component"
        ),
        pytest.param(
            HEADER, {**ROW, "columns": ["id", "data; DROP TABLE tasks"]}, "column names", id="column-name"
        ),
        pytest.param(HEADER, {**ROW, "columns": ["id", "id"]}, "column names", id="repeated-column"),
        pytest.param(HEADER, {**ROW, "rows": [["a1"]]}, "does not match its columns", id="short-row"),
        pytest.param(HEADER, {**ROW, "binary": ["secret"]}, "binary names", id="binary-column"),
        pytest.param({**HEADER, "create_time": "yesterday"}, ROW, "create_time", id="create-time"),
    ],
)
async def test_headers_naming_what_is_not_ours_are_refused(
    plane: tuple[App, Client], header: dict[str, Any], part: dict[str, Any], why: str
) -> None:
    _, client = plane
    failure = await rpc_failure(upload(client, payload(header, part)))
    assert_failure(failure, grpc.StatusCode.FAILED_PRECONDITION, CORRUPT)
    assert why in failure.message
    assert await stored(client) == []


async def test_a_well_formed_payload_within_the_limits_imports(plane: tuple[App, Client]) -> None:
    _, client = plane
    imported = await upload(client, payload(HEADER, ROW), chunk=100)
    assert imported.checkpoint.name == "checkpoints/imported" and imported.checkpoint.components == ["agents"]
    assert await stored(client) == ["checkpoints/imported"]
