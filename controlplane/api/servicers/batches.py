"""maos.v1.BatchService: proto <-> :class:`controlplane.workflows.Batches`; no business logic here."""

from __future__ import annotations

import grpc

from controlplane.access.permissions import VIEW_ALL_TASKS
from controlplane.api import convert
from controlplane.api.context import caller_may, current_principal
from controlplane.api.drafts import draft_from_pb, draft_to_pb
from controlplane.api.paging import PageTokens, page_size
from controlplane.api.pb import batches_grpc, batches_pb, enums_pb, messages_pb, proto_enum
from controlplane.config import Settings
from controlplane.domain.model import Subtask, Task, TaskStatus
from controlplane.domain.tasks import validate_request_id
from controlplane.errors import InvalidArgument
from controlplane.workflows import Batches, BatchRecord, BatchSchedule, BatchView

#: Batches listed per page at most (each is summarized from its tasks).
MAX_LIST_PAGE = 100


def batch_to_pb(view: BatchView, *, with_pending: bool = False) -> messages_pb.Batch:
    """The proto of a batch and the summary of its tasks."""
    b, counts = view.batch, view.progress.counts
    msg = messages_pb.Batch(
        name=b.name,
        display_name=b.display_name,
        status=proto_enum(enums_pb.BatchStatus, view.progress.status),
        owner=b.owner,
        tasks=[f"tasks/{t}" for t in b.task_ids],
        tasks_completed=counts[TaskStatus.COMPLETED],
        tasks_failed=counts[TaskStatus.FAILED],
        tasks_pending=counts[TaskStatus.PENDING],
        tasks_queued=counts[TaskStatus.QUEUED],
        tasks_running=counts[TaskStatus.RUNNING],
        tasks_cancelled=counts[TaskStatus.CANCELLED],
        task_count=b.entry_count,
        progress=view.progress.progress,
        create_time=convert.timestamp(b.create_time),
        submit_time=convert.timestamp(b.submit_time),
        schedule=proto_enum(enums_pb.BatchSchedule, b.schedule or 0),
    )
    if with_pending:
        msg.pending_tasks.extend(draft_to_pb(t) for t in view.pending)
    return msg


def task_result_pb(task: Task, subtasks: list[Subtask]) -> messages_pb.TaskResult:
    """The result of a finished task (as GetTaskResults gives it, without the subtasks)."""
    return messages_pb.TaskResult(
        task=task.name,
        status=proto_enum(enums_pb.TaskStatus, task.status),
        output=task.output,
        artifacts=[convert.artifact_to_pb(a) for s in subtasks for a in s.artifacts],
        usage=convert.usage_to_pb(task.usage),
        failure=convert.failure_to_pb(task.failure),
        consensus=convert.consensus_to_pb(task.consensus_state),
        sources=convert.merged_sources(subtasks),
    )


def schedule_from_pb(value: int) -> BatchSchedule | None:
    """The schedule asked for (None: unspecified)."""
    if value == 0:
        return None
    if value not in BatchSchedule._value2member_map_:
        raise InvalidArgument(
            f"schedule {value} is not a batch schedule (PARALLEL or SEQUENTIAL)", field="schedule"
        )
    return BatchSchedule(value)


class BatchServicer(batches_grpc.BatchServiceServicer):
    """Creates, fills, submits, shows and deletes batches."""

    def __init__(self, batches: Batches, settings: Settings):
        self.batches = batches
        self.settings = settings
        self.tokens = PageTokens("ListBatches", lambda: batches.engine.page_secret)

    async def _batch(self, ref: str) -> BatchRecord:
        return await self.batches.resolve(ref, current_principal(), caller_may(VIEW_ALL_TASKS))

    async def CreateBatch(
        self, request: batches_pb.CreateBatchRequest, context: grpc.aio.ServicerContext
    ) -> batches_pb.CreateBatchResponse:
        validate_request_id(request.request_id)
        batch = await self.batches.create(
            request.display_name,
            current_principal(),
            batch_id=request.batch_id,
            request_id=request.request_id,
        )
        return batches_pb.CreateBatchResponse(batch=batch_to_pb(await self.batches.view(batch)))

    async def GetBatch(
        self, request: batches_pb.GetBatchRequest, context: grpc.aio.ServicerContext
    ) -> batches_pb.GetBatchResponse:
        view = await self.batches.view(await self._batch(request.name), with_pending=True)
        return batches_pb.GetBatchResponse(
            batch=batch_to_pb(view, with_pending=True), tasks=[convert.task_to_pb(t) for t in view.tasks]
        )

    async def ListBatches(
        self, request: batches_pb.ListBatchesRequest, context: grpc.aio.ServicerContext
    ) -> batches_pb.ListBatchesResponse:
        size = min(page_size(request.page_size), MAX_LIST_PAGE)
        principal, view_all = current_principal(), caller_may(VIEW_ALL_TASKS)
        filters = f"batches:{principal}:{view_all}".encode()  # the caller's list, not another's
        offset = self.tokens.read(request.page_token, filters) or 0
        found = await self.batches.list(principal, view_all, offset, size + 1)
        response = batches_pb.ListBatchesResponse(
            batches=[batch_to_pb(await self.batches.view(b)) for b in found[:size]]
        )
        if len(found) > size:
            response.next_page_token = self.tokens.issue(offset + size, filters)
        return response

    async def AddBatchTask(
        self, request: batches_pb.AddBatchTaskRequest, context: grpc.aio.ServicerContext
    ) -> batches_pb.AddBatchTaskResponse:
        validate_request_id(request.request_id)
        batch = await self._batch(request.batch)
        task = draft_from_pb(request.task, self.settings)
        batch = await self.batches.add(batch, task, request_id=request.request_id)
        return batches_pb.AddBatchTaskResponse(batch=batch_to_pb(await self.batches.view(batch)))

    async def SubmitBatch(
        self, request: batches_pb.SubmitBatchRequest, context: grpc.aio.ServicerContext
    ) -> batches_pb.SubmitBatchResponse:
        validate_request_id(request.request_id)
        schedule = schedule_from_pb(request.schedule)
        batch, tasks = await self.batches.submit(await self._batch(request.name), schedule)
        return batches_pb.SubmitBatchResponse(
            batch=batch_to_pb(await self.batches.view(batch)), tasks=[convert.task_to_pb(t) for t in tasks]
        )

    async def GetBatchResults(
        self, request: batches_pb.GetBatchResultsRequest, context: grpc.aio.ServicerContext
    ) -> batches_pb.GetBatchResultsResponse:
        view = await self.batches.view(await self._batch(request.name))
        results = [task_result_pb(task, subtasks) for task, subtasks in await self.batches.finished(view)]
        return batches_pb.GetBatchResultsResponse(batch=batch_to_pb(view), results=results)

    async def DeleteBatch(
        self, request: batches_pb.DeleteBatchRequest, context: grpc.aio.ServicerContext
    ) -> batches_pb.DeleteBatchResponse:
        await self.batches.delete(await self._batch(request.name))
        return batches_pb.DeleteBatchResponse()
