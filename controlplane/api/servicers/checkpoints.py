"""maos.v1.CheckpointService: proto <-> :class:`controlplane.checkpoints.service.Checkpoints`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from agent_sdk.proto.maos.v1 import checkpoint_service_pb2 as pb
from agent_sdk.proto.maos.v1 import checkpoint_service_pb2_grpc as pb_grpc
from controlplane.api import convert
from controlplane.api.context import current_principal
from controlplane.api.paging import PageTokens, page_size
from controlplane.api.pb import enums_pb, messages_pb
from controlplane.checkpoints.record import CheckpointRecord
from controlplane.checkpoints.service import Checkpoints
from controlplane.domain.limits import MAX_NAME_BYTES, MAX_TEXT_BYTES, check_bytes, size_of
from controlplane.domain.tasks import validate_request_id
from controlplane.errors import InvalidArgument

CHUNK = 1024 * 1024  # export chunk size (well under the 16 MiB message limit)


#: How long, and how many bytes of, a refused upload's remaining messages are read (and dropped)
#: before the refusal is sent.
DISCARD_SECONDS = 10.0
DISCARD_BYTES = 256 * 1024 * 1024


async def discard_rest(request_iterator: AsyncIterator[pb.ImportCheckpointRequest]) -> None:
    """Read and drop what the client still sends of a refused upload.

    A client still writing when the call ends early may see its own failed write
    (INTERNAL, "Internal error from Core") instead of the refusal: grpc.aio
    reports the write's failure over the status the server sent. Letting the
    client finish first gives it the refusal itself. A client that sends more
    than :data:`DISCARD_BYTES`, or for longer than :data:`DISCARD_SECONDS`, is
    refused at once.
    """
    dropped = 0
    try:
        async with asyncio.timeout(DISCARD_SECONDS):
            async for part in request_iterator:
                dropped += part.ByteSize()
                if dropped > DISCARD_BYTES:
                    return
    except TimeoutError:
        return


def checkpoint_to_pb(r: CheckpointRecord) -> messages_pb.Checkpoint:
    """The proto of a checkpoint's metadata."""
    return messages_pb.Checkpoint(
        name=f"checkpoints/{r.id}",
        display_name=r.display_name,
        description=r.description,
        create_time=convert.timestamp(r.create_time),
        automatic=r.automatic,
        size_bytes=r.size,
        compressed_size_bytes=r.compressed_size,
        sha256=r.sha256,
        components=r.components,
        task_count=r.task_count,
        format_version=r.format_version,
    )


def checkpoint_from_pb(m: messages_pb.Checkpoint) -> CheckpointRecord:
    """Metadata sent with an import (sizes and counts are recomputed from the payload)."""
    checkpoint_id = convert.parse_name(m.name, "checkpoints", "checkpoint.name") if m.name else ""
    return CheckpointRecord(
        id=checkpoint_id,
        display_name=m.display_name,
        description=m.description,
        create_time=convert.epoch(m.create_time) if m.HasField("create_time") else 0.0,
        automatic=m.automatic,
        sha256=m.sha256.lower(),
    )


class CheckpointServicer(pb_grpc.CheckpointServiceServicer):
    """Creates, lists, exports, imports and deletes checkpoints, and recovers from them."""

    def __init__(self, checkpoints: Checkpoints):
        self.checkpoints = checkpoints
        self.tokens = PageTokens("ListCheckpoints", lambda: checkpoints.engine.page_secret)

    async def CreateCheckpoint(
        self, request: pb.CreateCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateCheckpointResponse:
        validate_request_id(request.request_id)
        check_bytes(
            [
                ("display_name", size_of(request.display_name), MAX_NAME_BYTES, ""),
                ("description", size_of(request.description), MAX_TEXT_BYTES, ""),
            ]
        )
        record = await self.checkpoints.create(request.display_name, request.description)
        assert record is not None  # only automatic checkpoints are skipped
        return pb.CreateCheckpointResponse(checkpoint=checkpoint_to_pb(record))

    async def ListCheckpoints(
        self, request: pb.ListCheckpointsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCheckpointsResponse:
        size = page_size(request.page_size)
        filters = f"checkpoints\0{current_principal()}:".encode()  # the caller's token only
        offset = self.tokens.read(request.page_token, filters) or 0
        records = await self.checkpoints.list(offset, size + 1)
        response = pb.ListCheckpointsResponse(checkpoints=[checkpoint_to_pb(r) for r in records[:size]])
        if len(records) > size:
            response.next_page_token = self.tokens.issue(offset + size, filters)
        return response

    async def GetCheckpoint(
        self, request: pb.GetCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetCheckpointResponse:
        record = await self.checkpoints.get(convert.parse_name(request.name, "checkpoints"))
        return pb.GetCheckpointResponse(checkpoint=checkpoint_to_pb(record))

    async def ExportCheckpoint(
        self, request: pb.ExportCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ExportCheckpointResponse]:
        record = await self.checkpoints.get(
            convert.parse_name(request.name, "checkpoints"), with_payload=True
        )
        data = record.payload or b""
        yield pb.ExportCheckpointResponse(checkpoint=checkpoint_to_pb(record))
        for start in range(0, len(data), CHUNK):
            yield pb.ExportCheckpointResponse(chunk=data[start : start + CHUNK])

    async def ImportCheckpoint(
        self, request_iterator: AsyncIterator[pb.ImportCheckpointRequest], context: grpc.aio.ServicerContext
    ) -> pb.ImportCheckpointResponse:
        meta: CheckpointRecord | None = None
        upload = self.checkpoints.upload()  # bounded and checked chunk by chunk as it arrives
        try:
            async for part in request_iterator:
                if part.HasField("checkpoint"):
                    if meta is not None:
                        raise InvalidArgument("the checkpoint metadata was sent twice", field="checkpoint")
                    meta = checkpoint_from_pb(part.checkpoint)
                elif part.HasField("chunk"):
                    if meta is None:
                        raise InvalidArgument(
                            "send the checkpoint metadata before the payload", field="checkpoint"
                        )
                    upload.add(part.chunk)
        except InvalidArgument:
            await discard_rest(request_iterator)
            raise
        if meta is None:
            raise InvalidArgument("no checkpoint metadata was sent", field="checkpoint")
        if not meta.sha256:
            raise InvalidArgument("checkpoint.sha256 is required", field="checkpoint.sha256")
        record = await self.checkpoints.import_(meta, upload.payload())
        return pb.ImportCheckpointResponse(checkpoint=checkpoint_to_pb(record))

    async def DeleteCheckpoint(
        self, request: pb.DeleteCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteCheckpointResponse:
        await self.checkpoints.delete(convert.parse_name(request.name, "checkpoints"))
        return pb.DeleteCheckpointResponse()

    async def Recover(
        self, request: pb.RecoverRequest, context: grpc.aio.ServicerContext
    ) -> pb.RecoverResponse:
        validate_request_id(request.request_id)
        checkpoint_id = (
            convert.parse_name(request.checkpoint, "checkpoints", "checkpoint") if request.checkpoint else ""
        )
        if request.later_work not in enums_pb.LaterWorkPolicy.values():
            raise InvalidArgument(
                f"later_work {request.later_work} is not a LaterWorkPolicy", field="later_work"
            )
        report = await self.checkpoints.recover(
            checkpoint_id,
            list(request.components),
            verify_only=request.verify_only,
            requeue_later=request.later_work == enums_pb.LATER_WORK_POLICY_REQUEUE,
        )
        return pb.RecoverResponse(
            checkpoint=checkpoint_to_pb(report.record),
            integrity_ok=True,
            applied=report.applied,
            changes=[
                pb.ComponentChange(component=c, restored=r, changed=ch, unchanged=u)
                for c, (r, ch, u) in report.changes.items()
            ],
            later_tasks=report.later_tasks,
            warnings=report.warnings,
        )
