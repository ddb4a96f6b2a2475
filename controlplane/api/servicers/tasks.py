"""maos.v1.TaskService: proto <-> engine; no business logic here.

With several replicas (a :class:`~controlplane.api.forwarding.Forwarder` set), a command for an
unfinished task held by another replica (cancel, update, retry, approve, reject) is run by that
replica; one nobody holds is claimed here first (docs/architecture.md, "Routing between replicas").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar, cast

import grpc

from controlplane.access.permissions import PLAN_WITH_MODEL, VIEW_ALL_TASKS
from controlplane.access.rate_limit import RATE_LIMITED
from controlplane.api import convert
from controlplane.api.auth import DENIALS
from controlplane.api.context import caller_may, caller_var, current_principal
from controlplane.api.errors import status_code_for, submit_error
from controlplane.api.forwarding import Forwarder
from controlplane.api.idempotency import request_fingerprint as request_hash
from controlplane.api.paging import PageTokens, fitting, page_size
from controlplane.api.pb import enums_pb, messages_pb, proto_enum, tasks_grpc, tasks_pb
from controlplane.config import Settings
from controlplane.domain.limits import MAX_TEXT_BYTES, Limits, check_bytes, clip_bytes, size_of, utf8_chunk
from controlplane.domain.model import RetryPolicy, Task, TaskStatus
from controlplane.domain.tasks import MAX_TIMEOUT, validate_request_id, validate_task
from controlplane.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    MaosError,
    NotFound,
    ResourceExhausted,
)
from controlplane.scheduler.engine import Engine
from controlplane.storage.base import TaskQuery
from maos_common.limits import max_agents_problem

R = TypeVar("R")

MAX_BATCH = 1000
#: Requests of one submit stream handled at once; the stream reads no more until one is answered.
MAX_STREAM_IN_FLIGHT = 1024
STREAM_SUBMIT = "/maos.v1.TaskService/StreamSubmitTasks"
UPDATABLE = {"priority", "max_agents"}


#: Bytes kept free in a response for what is not counted (framing, the task name, usage).
RESPONSE_MARGIN = 4096
#: Most cited sources a task's result lists (each subtask keeps its own, up to its bound).
MAX_RESULT_SOURCES = 500


def fit_outputs(
    subtasks: Sequence[messages_pb.Subtask], artifacts: Sequence[messages_pb.Artifact], budget: int
) -> bool:
    """Cut subtask outputs and drop inline artifact contents until they fit in ``budget`` bytes.

    Each output gets an equal share of the budget; an artifact whose content is over its share keeps
    its name, size and digest but not its content. Returns whether anything was cut.
    """
    total = sum(size_of(s.output) for s in subtasks) + sum(len(a.content) for a in artifacts)
    if total <= budget:
        return False
    share = max(1024, budget // max(1, len(subtasks) + len(artifacts)))
    for sub in subtasks:
        if size_of(sub.output) > share:
            sub.output = clip_bytes(sub.output, share)
    for artifact in artifacts:
        if len(artifact.content) > share:
            artifact.content = b""
    return True


#: The task commands another replica may run for us: name -> (request, response) classes.
FORWARDED = {
    "CancelTask": (tasks_pb.CancelTaskRequest, tasks_pb.CancelTaskResponse),
    "RetryTask": (tasks_pb.RetryTaskRequest, tasks_pb.RetryTaskResponse),
    "UpdateTask": (tasks_pb.UpdateTaskRequest, tasks_pb.UpdateTaskResponse),
    "ApproveTask": (tasks_pb.ApproveTaskRequest, tasks_pb.ApproveTaskResponse),
    "RejectTask": (tasks_pb.RejectTaskRequest, tasks_pb.RejectTaskResponse),
}


class TaskServicer(tasks_grpc.TaskServiceServicer):
    """Submits, inspects and steers tasks."""

    #: Carries commands for tasks other replicas hold (set by build_app on PostgreSQL).
    forwarder: Forwarder | None = None

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        admit: Callable[[str], None] | None = None,
        audit: Callable[..., None] | None = None,
    ):
        """With access control on, each request of a submit stream is a call of its own:
        ``admit(principal)`` takes one call of the principal's rate (or raises
        ResourceExhausted), and ``audit`` (:meth:`AuthInterceptor.audit`) records it with
        the task it stored; the interceptor counts and audits the stream itself once."""
        self.engine = engine
        self.settings = settings
        self.admit = admit
        self.audit = audit
        self.tokens = PageTokens("ListTasks", lambda: engine.page_secret)
        self.limits = Limits.from_settings(settings)
        self.retry_defaults = RetryPolicy(
            max_retries=settings["tasks.default_max_retries"],
            initial_backoff=settings["tasks.default_initial_backoff"],
            max_backoff=settings["tasks.default_max_backoff"],
        )

    def _new_task(self, msg: messages_pb.Task, prefix: str) -> Task:
        task = convert.task_from_pb(
            msg,
            default_max_agents=self.settings["tasks.default_max_agents"],
            retry_defaults=self.retry_defaults,
            prefix=prefix,
        )
        # A limit the task does not set takes the server's default (0 there too: no limit).
        task.max_total_tokens = task.max_total_tokens or self.settings["tasks.default_max_tokens"]
        task.max_cost_micros = task.max_cost_micros or round(
            self.settings["tasks.default_max_cost"] * 1_000_000
        )
        validate_task(
            task,
            max_description_length=self.settings["tasks.max_description_length"],
            prefix=prefix,
            limits=self.limits,
        )
        task.id = self.engine.new_task_id()
        return task

    def use_forwarder(self, forwarder: Forwarder) -> None:
        """Reach tasks other replicas hold through ``forwarder`` (and run their commands for ours)."""
        self.forwarder = forwarder
        forwarder.serve(self, FORWARDED)

    async def _forward(self, response_cls: type[R], request: Any, task: Task) -> R | None:
        """The answer of the replica holding ``task``, or None: act here (claiming it if unfinished)."""
        if self.forwarder is None:
            return None

        async def rebuild() -> R:  # its answer was too long for the bus: what it committed
            response = response_cls()
            response.task.CopyFrom(await self._task_pb(await self.engine.get_task(task.id)))  # type: ignore[attr-defined]
            return response

        method = response_cls.__name__.removesuffix("Response")
        answer = cast(R | None, await self.forwarder.task(method, request, task.id, rebuild))
        if answer is None and not task.status.finished:
            await self.forwarder.claim(task.id)
        return answer

    async def _task_pb(self, task: Task) -> messages_pb.Task:
        subtasks = await self.engine.get_subtasks(task.id)
        return convert.task_to_pb(task, self.engine.explain(task), subtasks)

    async def _submit(
        self,
        request: tasks_pb.SubmitTaskRequest | tasks_pb.StreamSubmitTasksRequest,
        principal: str,
        into: messages_pb.Task | None = None,
    ) -> messages_pb.Task:
        """Validate and store the task of one SubmitTask-shaped request; the stored task (written
        into ``into``, the response's empty task, when given).

        A SubmitTask request and a submit-stream request with the same fields
        hash alike, so a request retried through either is one submission.
        """
        validate_request_id(request.request_id)
        task = self._new_task(request.task, "task")
        outcome = await self.engine.submit(
            [task],
            principal=principal,
            request_id=request.request_id,
            request_hash=request_hash(request) if request.request_id else "",
        )
        task = outcome[0].task
        return convert.task_to_pb(task, self.engine.explain(task), into=into)

    async def SubmitTask(
        self, request: tasks_pb.SubmitTaskRequest, context: grpc.aio.ServicerContext
    ) -> tasks_pb.SubmitTaskResponse:
        response = tasks_pb.SubmitTaskResponse()
        await self._submit(request, current_principal(), into=response.task)
        return response

    async def _submit_one(
        self, request: tasks_pb.StreamSubmitTasksRequest, principal: str, context: grpc.aio.ServicerContext
    ) -> tasks_pb.StreamSubmitTasksResponse:
        """One request of a submit stream, answered (and audited) like a SubmitTask call."""
        try:
            if self.admit is not None:
                self.admit(principal)
            task = await self._submit(request, principal)
        except Exception as exc:  # one refused request must not end the stream
            if self.audit is not None:
                refused = exc if isinstance(exc, MaosError) else None
                code = status_code_for(refused).name if refused is not None else "INTERNAL"
                # a rate-limit refusal or a permission refusal is a denial, as the interceptor records it
                denial = (
                    refused.reason
                    if refused is not None and (refused.reason == RATE_LIMITED or code in DENIALS)
                    else ""
                )
                self.audit(STREAM_SUBMIT, caller_var.get(), context, request, code, denial)
            return tasks_pb.StreamSubmitTasksResponse(error=submit_error(exc))
        if self.audit is not None:
            self.audit(STREAM_SUBMIT, caller_var.get(), context, request, "OK", resource=task.name)
        return tasks_pb.StreamSubmitTasksResponse(task=task)

    async def StreamSubmitTasks(
        self,
        request_iterator: AsyncIterator[tasks_pb.StreamSubmitTasksRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[tasks_pb.StreamSubmitTasksResponse]:
        await context.send_initial_metadata(())  # the client writes once the stream is accepted
        principal = current_principal()
        loop = asyncio.get_running_loop()
        in_flight = asyncio.Semaphore(MAX_STREAM_IN_FLIGHT)
        answers: asyncio.Queue[asyncio.Task[tasks_pb.StreamSubmitTasksResponse] | None] = asyncio.Queue()

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await in_flight.acquire()
                    answers.put_nowait(loop.create_task(self._submit_one(request, principal, context)))
            finally:
                answers.put_nowait(None)

        reader = loop.create_task(read())
        try:
            while (answer := await answers.get()) is not None:
                response = await answer
                in_flight.release()
                yield response
            await reader  # a broken request stream ends the call with its error
        finally:  # the client may have gone: submits already read still complete, unanswered
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def BatchSubmitTasks(
        self, request: tasks_pb.BatchSubmitTasksRequest, context: grpc.aio.ServicerContext
    ) -> tasks_pb.BatchSubmitTasksResponse:
        validate_request_id(request.request_id)
        if not request.requests:
            raise InvalidArgument("requests is empty: give at least one task", field="requests")
        if len(request.requests) > MAX_BATCH:
            raise ResourceExhausted(f"at most {MAX_BATCH} tasks per batch; got {len(request.requests)}")
        tasks, problems = [], []
        for index, entry in enumerate(request.requests):
            try:
                tasks.append(self._new_task(entry.task, f"requests[{index}].task"))
            except InvalidArgument as exc:
                problems.extend(exc.violations or [FieldViolation(f"requests[{index}]", exc.message)])
        if problems:
            summary = "; ".join(f"{p.field}: {p.description}" for p in problems[:5])
            raise InvalidArgument(f"invalid tasks (nothing was submitted): {summary}", violations=problems)
        outcomes = await self.engine.submit(
            tasks,
            principal=current_principal(),
            request_id=request.request_id,
            request_hash=request_hash(request) if request.request_id else "",
            method="BatchSubmitTasks",
        )
        return tasks_pb.BatchSubmitTasksResponse(
            tasks=[convert.task_to_pb(o.task, self.engine.explain(o.task)) for o in outcomes]
        )

    async def _visible(self, name: str, field: str = "name") -> Task:
        return self._seen(await self.engine.get_task(convert.parse_name(name, "tasks", field)))

    @staticmethod
    def _seen(task: Task) -> Task:
        if task.owner != current_principal() and not caller_may(VIEW_ALL_TASKS):
            # Another principal's task does not exist for this caller.
            raise NotFound(f"task tasks/{task.id} does not exist", reason="ERROR_REASON_TASK_NOT_FOUND")
        return task

    async def GetTask(
        self, request: tasks_pb.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> tasks_pb.GetTaskResponse:
        task, subtasks = await self.engine.read_task(convert.parse_name(request.name, "tasks", "name"))
        self._seen(task)
        response = tasks_pb.GetTaskResponse(
            task=convert.task_to_pb(task, self.engine.explain(task), subtasks)
        )
        if request.view == enums_pb.TASK_VIEW_FULL:
            response.subtasks.extend(convert.subtask_to_pb(s) for s in subtasks)
            # Whole outputs are read with GetTaskResults; here they are cut to fit the response.
            fit_outputs(
                response.subtasks,
                [a for s in response.subtasks for a in s.artifacts],
                self.limits.response // 2,
            )
            plan = convert.plan_to_pb(task.plan)
            if plan is not None:
                response.plan.CopyFrom(plan)
            consensus = convert.consensus_to_pb(task.consensus_state)
            if consensus is not None:
                response.consensus.CopyFrom(consensus)
            review = convert.review_to_pb(task.id, task.review_state)
            if review is not None:
                response.review.CopyFrom(review)
        return response

    async def ListTasks(
        self, request: tasks_pb.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> tasks_pb.ListTasksResponse:
        size = page_size(request.page_size)
        for index, status in enumerate(request.statuses):
            if status not in TaskStatus._value2member_map_:
                raise InvalidArgument(
                    f"statuses[{index}] {status} is not a task status", field=f"statuses[{index}]"
                )
        priorities = [
            convert.priority_from_pb(p, f"priorities[{i}]") for i, p in enumerate(request.priorities)
        ]
        filters = request.__class__()
        filters.CopyFrom(request)
        filters.ClearField("page_token")
        filters.ClearField("page_size")
        view_all = caller_may(VIEW_ALL_TASKS)
        # Bound to the caller as well as the filters: a token is no way into another caller's list.
        digest = (
            filters.SerializeToString(deterministic=True) + f"\0{current_principal()}:{view_all}".encode()
        )
        before = self.tokens.read(request.page_token, digest)
        query = TaskQuery(
            statuses=[TaskStatus(s) for s in request.statuses],
            task_types=list(request.task_types),
            priorities=[int(p) for p in priorities],
            since=convert.optional_epoch(request, "since"),
            owner=(request.owner or None) if view_all else current_principal(),
            batch=convert.parse_name(request.batch, "batches", "batch") if request.batch else None,
            before_seq=before,
            limit=size + 1,
        )
        tasks = await self.engine.list_tasks(query)  # committed state, as every read
        more = len(tasks) > size
        tasks = tasks[:size]
        messages = [
            self._listed(convert.task_to_pb(t, "" if t.status.finished else self.engine.explain(t)))
            for t in tasks
        ]
        fit = fitting(messages, self.limits.response)
        if fit < len(messages):  # the page is full in bytes before it is in tasks
            more, tasks, messages = True, tasks[:fit], messages[:fit]
        response = tasks_pb.ListTasksResponse(tasks=messages)
        if more:
            response.next_page_token = self.tokens.issue(tasks[-1].seq, digest)
        return response

    def _listed(self, msg: messages_pb.Task) -> messages_pb.Task:
        """A task as a list shows it: whole, unless it alone is over the response budget (stored before
        the limits were checked); then its context and constraints are cut, with a warning saying so."""
        budget = self.limits.response
        if msg.ByteSize() <= budget:
            return msg
        cut = [name for name in ("context", "constraints") if size_of(getattr(msg, name)) > budget // 4]
        for name in cut:
            setattr(msg, name, clip_bytes(getattr(msg, name), budget // 4))
        msg.warnings.append(
            f"{' and '.join(cut)} cut to {budget // 4} bytes in this listing; GetTask shows them"
        )
        return msg

    async def CancelTask(
        self, request: tasks_pb.CancelTaskRequest, context: grpc.aio.ServicerContext
    ) -> tasks_pb.CancelTaskResponse:
        check_bytes([("reason", size_of(request.reason), MAX_TEXT_BYTES, "")])
        validate_request_id(request.request_id)
        task = await self._visible(request.name)
        if request.request_id and task.status == TaskStatus.CANCELLED:
            # A repeated cancel (same intent, retried by the client) returns the cancelled task.
            return tasks_pb.CancelTaskResponse(task=await self._task_pb(task))
        if (forwarded := await self._forward(tasks_pb.CancelTaskResponse, request, task)) is not None:
            return forwarded
        task = await self.engine.cancel(task.id, request.reason, current_principal())
        return tasks_pb.CancelTaskResponse(task=await self._task_pb(task))

    async def RetryTask(
        self, request: tasks_pb.RetryTaskRequest, context: grpc.aio.ServicerContext
    ) -> tasks_pb.RetryTaskResponse:
        validate_request_id(request.request_id)
        task = await self._visible(request.name)
        max_agents = request.max_agents if request.HasField("max_agents") else None
        if max_agents is not None and (problem := max_agents_problem(max_agents)):
            raise InvalidArgument(f"max_agents is {max_agents}; it {problem}", field="max_agents")
        timeout = convert.seconds(request.timeout) if request.HasField("timeout") else None
        if timeout is not None and not 0 < timeout <= MAX_TIMEOUT:
            raise InvalidArgument(
                f"timeout must be more than 0 and at most {int(MAX_TIMEOUT)} seconds", field="timeout"
            )
        if (forwarded := await self._forward(tasks_pb.RetryTaskResponse, request, task)) is not None:
            return forwarded
        task = await self.engine.retry(task.id, max_agents=max_agents, timeout=timeout)
        return tasks_pb.RetryTaskResponse(task=await self._task_pb(task))

    async def UpdateTask(
        self, request: tasks_pb.UpdateTaskRequest, context: grpc.aio.ServicerContext
    ) -> tasks_pb.UpdateTaskResponse:
        validate_request_id(request.request_id)
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument(
                "update_mask is empty: name the fields to change (priority, max_agents)", field="update_mask"
            )
        unknown = [p for p in paths if p not in UPDATABLE]
        if unknown:
            raise InvalidArgument(
                f"cannot update {', '.join(unknown)}; only priority and max_agents can change",
                field="update_mask",
            )
        task = await self._visible(request.task.name, "task.name")
        priority = convert.priority_from_pb(request.task.priority) if "priority" in paths else None
        max_agents = None
        if "max_agents" in paths:
            max_agents = request.task.max_agents
            if problem := max_agents_problem(max_agents):  # the bound of SubmitTask and RetryTask
                raise InvalidArgument(f"task.max_agents {problem}", field="task.max_agents")
        # Only what the update reads is carried (a task message may hold a long description).
        carried = tasks_pb.UpdateTaskRequest(request_id=request.request_id, update_mask=request.update_mask)
        carried.task.name = request.task.name
        carried.task.priority = request.task.priority
        carried.task.max_agents = request.task.max_agents
        if (forwarded := await self._forward(tasks_pb.UpdateTaskResponse, carried, task)) is not None:
            return forwarded
        task = await self.engine.update(task.id, priority=priority, max_agents=max_agents)
        return tasks_pb.UpdateTaskResponse(task=await self._task_pb(task))

    @staticmethod
    def _decided(task: Task, request_id: str, state: str) -> bool:
        """Whether this very call (its request_id, from this caller) already decided the task's plan."""
        approval = task.approval or {}
        return (
            bool(request_id)
            and approval.get("state") == state
            and approval.get("request_id") == request_id
            and approval.get("principal") == current_principal()
        )

    async def ApproveTask(
        self, request: tasks_pb.ApproveTaskRequest, context: grpc.aio.ServicerContext
    ) -> tasks_pb.ApproveTaskResponse:
        validate_request_id(request.request_id)
        task = await self._visible(request.name)
        if self._decided(task, request.request_id, "APPROVED"):
            # A repeated approval (the same call, retried by the client) returns the approved task.
            return tasks_pb.ApproveTaskResponse(task=await self._task_pb(task))
        if (forwarded := await self._forward(tasks_pb.ApproveTaskResponse, request, task)) is not None:
            return forwarded
        task = await self.engine.approve(task.id, current_principal(), request.request_id)
        return tasks_pb.ApproveTaskResponse(task=await self._task_pb(task))

    async def RejectTask(
        self, request: tasks_pb.RejectTaskRequest, context: grpc.aio.ServicerContext
    ) -> tasks_pb.RejectTaskResponse:
        validate_request_id(request.request_id)
        if not request.reason.strip():
            raise InvalidArgument("reason is required: say why the plan is rejected", field="reason")
        check_bytes([("reason", size_of(request.reason), MAX_TEXT_BYTES, "")])
        task = await self._visible(request.name)
        if self._decided(task, request.request_id, "REJECTED"):
            return tasks_pb.RejectTaskResponse(task=await self._task_pb(task))
        if (forwarded := await self._forward(tasks_pb.RejectTaskResponse, request, task)) is not None:
            return forwarded
        task = await self.engine.reject(
            task.id, current_principal(), request.reason.strip(), request.request_id
        )
        return tasks_pb.RejectTaskResponse(task=await self._task_pb(task))

    async def GetTaskResults(
        self, request: tasks_pb.GetTaskResultsRequest, context: grpc.aio.ServicerContext
    ) -> tasks_pb.GetTaskResultsResponse:
        if request.max_output_bytes < 0:
            raise InvalidArgument("max_output_bytes cannot be negative", field="max_output_bytes")
        task = await self._visible(request.name)
        if not task.status.finished:
            raise FailedPrecondition(
                f"task {task.name} is {task.status.name}; results are ready when it finishes "
                "(use `maos task wait`)",
                reason="ERROR_REASON_RESULT_NOT_READY",
            )
        budget = self.limits.response
        result = messages_pb.TaskResult(
            task=task.name,
            status=proto_enum(enums_pb.TaskStatus, task.status),
            usage=convert.usage_to_pb(task.usage),
            failure=convert.failure_to_pb(task.failure),
        )
        truncated = False
        if request.output_offset == 0:  # the first chunk carries everything else
            subtasks = await self.engine.get_subtasks(task.id)
            result.artifacts.extend(convert.artifact_to_pb(a) for s in subtasks for a in s.artifacts)
            result.subtasks.extend(convert.subtask_to_pb(s) for s in subtasks)
            result.sources.extend(convert.merged_sources(subtasks)[:MAX_RESULT_SOURCES])
            consensus = convert.consensus_to_pb(task.consensus_state)
            if consensus is not None:
                result.consensus.CopyFrom(consensus)
            review = convert.review_to_pb(task.id, task.review_state)
            if review is not None:
                result.review.CopyFrom(review)
            truncated = fit_outputs(
                result.subtasks,
                [*result.artifacts, *(a for s in result.subtasks for a in s.artifacts)],
                budget // 2,
            )
        room = budget - result.ByteSize() - RESPONSE_MARGIN
        limit = min(request.max_output_bytes or room, room)
        result.output, following = utf8_chunk(task.output, request.output_offset, limit)
        return tasks_pb.GetTaskResultsResponse(
            result=result,
            output_size=size_of(task.output),
            output_offset=request.output_offset,
            next_output_offset=following,
            truncated=truncated,
        )

    async def AnalyzeTask(
        self, request: tasks_pb.AnalyzeTaskRequest, context: grpc.aio.ServicerContext
    ) -> tasks_pb.AnalyzeTaskResponse:
        which = request.WhichOneof("target")
        if which is None:
            raise InvalidArgument("give either task (a draft) or name (an existing task)", field="target")
        if which == "name":
            task = await self._visible(request.name)
            if task.plan is not None:
                return tasks_pb.AnalyzeTaskResponse(plan=convert.plan_to_pb(task.plan))
        else:
            task = self._new_task(request.task, "task")
        # A caller who may not submit may not spend model tokens either: it gets the built-in plan.
        plan = await self.engine.analyze(task, with_model=caller_may(PLAN_WITH_MODEL))
        return tasks_pb.AnalyzeTaskResponse(plan=convert.plan_to_pb(plan))

    async def WatchTask(
        self, request: tasks_pb.WatchTaskRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[tasks_pb.WatchTaskResponse]:
        task_id = (await self._visible(request.name)).id  # another principal's task is NOT_FOUND here too
        after = convert.parse_event_resume_id(
            request.after_event_id, self.engine.incarnation, "after_event_id", self.engine.events_streamed
        )
        async for event, task, sub in self.engine.watch(task_id, request.include_progress, after):
            subtasks = self.engine.live_subtasks(task.id)  # for subtasks_total / subtasks_completed
            if subtasks is None:
                subtasks = await self.engine.get_subtasks(task.id)
            if sub is None and event is not None and event.subtask_id:  # a replayed change: the subtask now
                sub = next((s for s in subtasks if s.id == event.subtask_id), None)
            response = tasks_pb.WatchTaskResponse(
                task=convert.task_to_pb(
                    task, "" if task.status.finished else self.engine.explain(task), subtasks
                )
            )
            if event is not None:
                response.event.CopyFrom(convert.event_to_pb(event, self.engine.incarnation))
            if sub is not None:
                response.subtask.CopyFrom(convert.subtask_to_pb(sub))
            yield response
