"""ImportCheckpoint onto an existing checkpoint id, at the RPC level (a real control plane on SQLite).

The same content again is idempotent; other content under that id is
ALREADY_EXISTS with a message saying what to do, and the stored checkpoint
is left exactly as it was.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from agent_sdk.client import Client
from agent_sdk.proto.maos.v1 import checkpoint_service_pb2 as pb
from agent_sdk.proto.maos.v1 import checkpoint_service_pb2_grpc as pb_grpc
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from controlplane.app import App
from tests.controlplane.api.test_task_service import assert_failure, rpc_failure


@pytest.fixture
async def client(control_plane: App) -> AsyncIterator[Client]:
    async with Client(control_plane.address) as c:
        yield c


def import_call(client: Client, meta: msgs.Checkpoint, payload: bytes):
    """The raw ImportCheckpoint stream: the metadata, then the payload in two chunks."""
    half = len(payload) // 2
    parts = [
        pb.ImportCheckpointRequest(checkpoint=meta),
        pb.ImportCheckpointRequest(chunk=payload[:half]),
        pb.ImportCheckpointRequest(chunk=payload[half:]),
    ]
    return pb_grpc.CheckpointServiceStub(client.channel).ImportCheckpoint(iter(parts), timeout=10)


async def test_importing_other_content_under_an_existing_id(client: Client) -> None:
    await client.submit_task(description="in both checkpoints")
    first = await client.create_checkpoint("first")
    await client.submit_task(description="only in the second")
    second = await client.create_checkpoint("second")
    assert (first.task_count, second.task_count) == (1, 2) and first.sha256 != second.sha256
    first_meta, first_payload = await client.export_checkpoint(first.name)
    second_meta, second_payload = await client.export_checkpoint(second.name)

    # The same checkpoint again: accepted, nothing new stored.
    again = await import_call(client, first_meta, first_payload)
    assert again.checkpoint == first

    # The second's (valid, checksummed) content under the first's id.
    clash = msgs.Checkpoint()
    clash.CopyFrom(second_meta)
    clash.name = first.name
    failure = await rpc_failure(import_call(client, clash, second_payload))
    assert_failure(failure, grpc.StatusCode.ALREADY_EXISTS, "ERROR_REASON_ALREADY_EXISTS")
    assert first.name in failure.message and "delete it first" in failure.message, failure

    assert await client.get_checkpoint(first.name) == first
    meta, payload = await client.export_checkpoint(first.name)
    assert meta == first and payload == first_payload
    listed = await client.list_checkpoints()
    assert sorted(c.name for c in listed.checkpoints) == sorted([first.name, second.name])
