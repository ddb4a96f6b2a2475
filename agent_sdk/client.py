"""A typed async client for the user-facing MAOS services (TaskService, AgentService, SystemService).

Usage::

    async with Client("127.0.0.1:7100", token=None) as client:
        task = await client.submit_task(description="Summarize renewable energy benefits")
        done = await client.wait_task(task.name, timeout=600)
        result = await client.get_results(done.name)

For a TLS control plane pass ``credentials=tls_credentials(ca=..., cert=..., key=...)``
(:mod:`agent_sdk.tls`). Every unary call gets a deadline (``timeout``, 10 s by default; gRPC has none),
the ``authorization: Bearer <token>`` metadata when a token is set, and
transparent retries on UNAVAILABLE for idempotent calls through the channel's
service config (mutating calls are idempotent because the client always sends
a ``request_id``). Streams are never retried by gRPC; :meth:`Client.wait_task`
re-opens its watch itself. Every failed call raises a
:class:`~agent_sdk.errors.MaosRpcError` subclass.

Ids may be given bare (``t1a2b...``) or as resource names (``tasks/t1a2b...``).
The raw services are reachable as ``client.tasks``, ``client.agents`` and
``client.system`` (stubs with the same defaults).
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import field_mask_pb2, timestamp_pb2

from agent_sdk._common import enum_value, paged
from agent_sdk.addresses import open_channel, parse_addresses
from agent_sdk.errors import MaosRpcError, UnavailableError, from_rpc_error
from agent_sdk.pipelining import SubmitPipeline
from agent_sdk.proto.maos.v1 import access_service_pb2 as access_pb
from agent_sdk.proto.maos.v1 import access_service_pb2_grpc as access_grpc
from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import agent_service_pb2_grpc as agents_grpc
from agent_sdk.proto.maos.v1 import audit_service_pb2 as audit_pb
from agent_sdk.proto.maos.v1 import audit_service_pb2_grpc as audit_grpc
from agent_sdk.proto.maos.v1 import batch_service_pb2_grpc as batches_grpc
from agent_sdk.proto.maos.v1 import checkpoint_service_pb2 as checkpoints_pb
from agent_sdk.proto.maos.v1 import checkpoint_service_pb2_grpc as checkpoints_grpc
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from agent_sdk.proto.maos.v1 import system_service_pb2_grpc as system_grpc
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from agent_sdk.proto.maos.v1 import task_service_pb2_grpc as tasks_grpc
from agent_sdk.proto.maos.v1 import template_service_pb2_grpc as templates_grpc
from agent_sdk.submitter import TaskSubmitter
from agent_sdk.webhooks import WebhookMethods
from agent_sdk.wire import set_seconds
from agent_sdk.workflows import WorkflowMethods
from maos_common.api_keys import PREFIX as API_KEY_PREFIX

__all__ = [
    "Client",
    "MaosRpcError",
    "SERVICE_CONFIG",
    "TERMINAL_TASK_STATUSES",
    "agent_name",
    "build_task",
    "priority_value",
    "task_name",
    "translate_errors",
]

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
TERMINAL_TASK_STATUSES = frozenset(
    {enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED, enums.TASK_STATUS_CANCELLED}
)

#: Unary methods safe to retry on UNAVAILABLE (reads, and writes deduplicated by request_id).
IDEMPOTENT_METHODS = {
    "maos.v1.TaskService": [
        "SubmitTask",
        "BatchSubmitTasks",
        "GetTask",
        "ListTasks",
        "CancelTask",
        "RetryTask",
        "UpdateTask",
        "GetTaskResults",
        "AnalyzeTask",
    ],
    "maos.v1.AgentService": [
        "ListAgents",
        "GetAgent",
        "SpawnAgents",
        "TerminateAgent",
        "PauseAgent",
        "ResumeAgent",
        "DrainAgent",
        "ListAgentTypes",
        "GetAgentMetrics",
    ],
    "maos.v1.SystemService": [
        "GetStatus",
        "GetHealth",
        "GetMetricsSummary",
        "ListLogs",
        "GetConfig",
        "SetConfig",
        "GetMetricsHistory",
        "GetResources",
    ],
    "maos.v1.WebhookService": ["CreateWebhook", "GetWebhook", "ListWebhooks", "ListWebhookDeliveries"],
    "maos.v1.BatchService": [
        "CreateBatch",
        "GetBatch",
        "ListBatches",
        "AddBatchTask",
        "SubmitBatch",
        "GetBatchResults",
    ],
    "maos.v1.TemplateService": ["GetTemplate", "ListTemplates", "SubmitTaskFromTemplate"],
    "grpc.health.v1.Health": ["Check"],
}

SERVICE_CONFIG = {
    "methodConfig": [
        {
            "name": [
                {"service": service, "method": method}
                for service, methods in IDEMPOTENT_METHODS.items()
                for method in methods
            ],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}

CHANNEL_OPTIONS = [
    ("grpc.enable_retries", 1),
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]

#: What every API key starts with (the format is maos_common.api_keys').
_KEY_PREFIX = API_KEY_PREFIX
_PRIORITIES = {
    "LOW": enums.PRIORITY_LOW,
    "NORMAL": enums.PRIORITY_NORMAL,
    "MEDIUM": enums.PRIORITY_NORMAL,
    "HIGH": enums.PRIORITY_HIGH,
    "CRITICAL": enums.PRIORITY_CRITICAL,
}


# --- names and values ---------------------------------------------------------------------------


def _name(collection: str, id_or_name: str) -> str:
    text = str(id_or_name).strip()
    return text if text.startswith(collection + "/") else f"{collection}/{text}"


def join_token_name(id_or_name: str) -> str:
    """``joinTokens/{id}`` from an id, a name or a whole ``id.secret`` token (its secret is dropped, not sent)."""
    return _name("joinTokens", str(id_or_name).split(".", 1)[0])


def api_key_name(id_or_name: str) -> str:
    """``apiKeys/{id}`` from a key id or name.

    Raises:
        ValueError: ``id_or_name`` is a whole key (``maos_key_...``): it is refused rather than
            sent, and the message does not repeat it.
    """
    name = _name("apiKeys", id_or_name)
    if name.removeprefix("apiKeys/").startswith(_KEY_PREFIX):
        raise ValueError(
            "that is an API key's secret, not its id: give apiKeys/ID or ID, the 12 characters "
            f"after {_KEY_PREFIX} (`maos api-key list` shows them)"
        )
    return name


def checkpoint_name(id_or_name: str) -> str:
    """``checkpoints/ID`` from a bare id or a name."""
    return id_or_name if id_or_name.startswith("checkpoints/") else f"checkpoints/{id_or_name}"


def task_name(id_or_name: str) -> str:
    """``tasks/{id}`` from a bare id or a name."""
    return _name("tasks", id_or_name)


def agent_name(id_or_name: str) -> str:
    """``agents/{id}`` from a bare id or a name."""
    return _name("agents", id_or_name)


def priority_value(priority: str | int | None) -> enums.Priority:
    """A ``Priority`` value from LOW, NORMAL (alias MEDIUM), HIGH, CRITICAL (any case, optional prefix) or an int."""
    # A proto enum value is a plain int at run time; the generated stubs name it by its enum class.
    return cast(
        enums.Priority,
        enum_value(priority, _PRIORITIES, "PRIORITY_", "LOW, NORMAL (or MEDIUM), HIGH or CRITICAL"),
    )


def _timestamp(value: datetime | float | timestamp_pb2.Timestamp) -> timestamp_pb2.Timestamp:
    if isinstance(value, timestamp_pb2.Timestamp):
        return value
    ts = timestamp_pb2.Timestamp()
    if isinstance(value, datetime):
        ts.FromDatetime(value if value.tzinfo else value.astimezone(UTC))
    else:
        set_seconds(ts, float(value))
    return ts


def build_task(
    description: str = "",
    *,
    task_type: str = "",
    priority: str | int | None = None,
    max_agents: int = 0,
    depends_on: Iterable[str] = (),
    require_consensus: bool = False,
    consensus_threshold: float | None = None,
    timeout: float | None = None,
    context: str = "",
    constraints: str = "",
    metadata: Mapping[str, str] | None = None,
    max_retries: int | None = None,
    agent_type: str = "",
    initial_backoff: float | None = None,
    backoff_multiplier: float | None = None,
    max_backoff: float | None = None,
    max_tokens: int | None = None,
    max_cost: float | None = None,
    review_rounds: int = 0,
    approve_plan: bool = False,
) -> msgs.Task:
    """A ``Task`` message from keyword arguments (``timeout`` in seconds, ids bare or as names).

    ``max_tokens`` (every token: input, output, cache reads and writes) and
    ``max_cost`` (US dollars) are the task's budget over all its model calls
    (planning, work, synthesis, votes); None takes the server's default
    (``tasks.default_max_tokens`` / ``tasks.default_max_cost``, 0: no limit).
    A task stopped by its budget fails with ERROR_REASON_BUDGET_EXCEEDED and
    keeps its completed parts.

    ``max_retries``, ``initial_backoff`` (seconds), ``backoff_multiplier`` and
    ``max_backoff`` (seconds, the cap) form the task's retry policy; each one
    left as None takes the server's default (``tasks.default_*`` settings).
    The server validates them: SubmitTask answers INVALID_ARGUMENT naming the
    field for a negative backoff, a multiplier below 1 or a cap below the
    initial backoff.

    ``review_rounds`` (0-5) has a reviewer grade the answer and a revision
    apply its changes, until it approves or the rounds run out;
    ``approve_plan`` makes the task wait, once planned, until
    :meth:`Client.approve_task` or :meth:`Client.reject_task`.
    """
    task = msgs.Task(
        description=description,
        task_type=task_type or "",
        priority=priority_value(priority),
        max_agents=max_agents or 0,
        depends_on=[task_name(d) for d in depends_on if d],
        context=context or "",
        constraints=constraints or "",
        metadata=dict(metadata or {}),
        agent_type=agent_type or "",
        review_rounds=review_rounds or 0,
        approve_plan=bool(approve_plan),
    )
    if require_consensus or consensus_threshold is not None:
        task.consensus.required = bool(require_consensus)
        if consensus_threshold is not None:
            task.consensus.threshold = consensus_threshold
    if timeout:
        set_seconds(task.timeout, timeout)
    if max_retries is not None:
        task.retry_policy.max_retries = max_retries
    if initial_backoff is not None:
        set_seconds(task.retry_policy.initial_backoff, initial_backoff)
    if backoff_multiplier is not None:
        task.retry_policy.backoff_multiplier = backoff_multiplier
    if max_backoff is not None:
        set_seconds(task.retry_policy.max_backoff, max_backoff)
    if max_tokens is not None:
        task.budget.max_total_tokens = max_tokens
    if max_cost is not None:
        task.budget.max_cost_micros = round(max_cost * 1_000_000)
    return task


# --- error translation and stub wrapping ------------------------------------------------------------


def translate_errors(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Raise :class:`MaosRpcError` subclasses instead of ``grpc.aio.AioRpcError`` from a coroutine."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return await fn(*args, **kwargs)
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from None

    return wrapper


class _Service:
    """A stub whose calls default to the client's timeout and metadata and raise MaosRpcError."""

    def __init__(self, stub: Any, client: Client):
        self._stub = stub
        self._client = client

    def __getattr__(self, method: str) -> Callable[..., Any]:
        multicallable = getattr(self._stub, method)
        client = self._client
        if isinstance(multicallable, grpc.aio.UnaryStreamMultiCallable):

            async def stream(
                request: Any, *, timeout: float | None = None, **kwargs: Any
            ) -> AsyncIterator[Any]:
                call = multicallable(request, timeout=timeout, metadata=client._metadata, **kwargs)
                try:
                    async for response in call:
                        yield response
                except grpc.aio.AioRpcError as exc:
                    raise from_rpc_error(exc) from None
                finally:
                    call.cancel()

            return stream

        @translate_errors
        async def unary(request: Any, *, timeout: float | None = None, **kwargs: Any) -> Any:
            return await multicallable(
                request,
                timeout=client.timeout if timeout is None else timeout,
                metadata=client._metadata,
                **kwargs,
            )

        return unary


class Client(WebhookMethods, WorkflowMethods):
    """An async client of one MAOS control plane.

    The WebhookService methods (``create_webhook``, ...) come from :class:`~agent_sdk.webhooks.WebhookMethods`;
    batches and templates from :class:`agent_sdk.workflows.WorkflowMethods`.

    Args:
        address: ``host:port`` of the control plane, or several (a comma-separated string or a sequence)
            to fail over between, or a ``dns:///name:port`` target (see :mod:`agent_sdk.addresses`).
        token: An API key sent as ``authorization: Bearer <token>``.
        timeout: Default deadline in seconds of every unary call.
        credentials: TLS channel credentials (:func:`agent_sdk.tls_credentials`); plaintext when None.
        tls_server_name: The name the server certificate must carry, when not the address's host.
        pipeline_submits: Carry concurrent :meth:`submit_task` calls over one shared
            StreamSubmitTasks stream instead of one SubmitTask call each (see
            :mod:`agent_sdk.pipelining`): each call is answered as before, at a fraction of the cost.
    """

    def __init__(
        self,
        address: str | Sequence[str],
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
        tls_server_name: str | None = None,
        pipeline_submits: bool = False,
    ):
        self.addresses = parse_addresses(address)
        self.address = ",".join(self.addresses)
        self.token = token
        self.timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] | None = (
            (("authorization", f"Bearer {token}"),) if token else None
        )
        self.channel = open_channel(
            self.addresses, options=CHANNEL_OPTIONS, credentials=credentials, tls_server_name=tls_server_name
        )
        self.tasks = _Service(tasks_grpc.TaskServiceStub(self.channel), self)
        self.agents = _Service(agents_grpc.AgentServiceStub(self.channel), self)
        self.system = _Service(system_grpc.SystemServiceStub(self.channel), self)
        self.access = _Service(access_grpc.AccessServiceStub(self.channel), self)
        self.audit = _Service(audit_grpc.AuditServiceStub(self.channel), self)
        self.batches = _Service(batches_grpc.BatchServiceStub(self.channel), self)
        self.templates = _Service(templates_grpc.TemplateServiceStub(self.channel), self)
        self._pipeline = self._new_pipeline() if pipeline_submits else None

    def _new_pipeline(self) -> SubmitPipeline:
        async def unary(request: tasks_pb.SubmitTaskRequest) -> msgs.Task:
            response: tasks_pb.SubmitTaskResponse = await self.tasks.SubmitTask(request)
            return response.task

        return SubmitPipeline(self.submitter, unary, self.timeout)

    @classmethod
    async def connect(
        cls,
        address: str | Sequence[str],
        *,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        credentials: grpc.ChannelCredentials | None = None,
        tls_server_name: str | None = None,
        pipeline_submits: bool = False,
    ) -> Client:
        """A client whose channel is ready; UnavailableError if it cannot connect within ``timeout``."""
        client = cls(
            address,
            token=token,
            timeout=timeout,
            credentials=credentials,
            tls_server_name=tls_server_name,
            pipeline_submits=pipeline_submits,
        )
        try:
            await asyncio.wait_for(client.channel.channel_ready(), timeout)
        except TimeoutError:
            await client.close()
            raise UnavailableError(
                f"cannot reach the MAOS control plane at {client.address} within {timeout:g} s"
            ) from None
        return client

    def with_token(self, token: str | None, metadata: Sequence[tuple[str, str]] = ()) -> Client:
        """A client sending ``token`` instead (and ``metadata`` with every call), over this client's channel.

        One connection, many callers: the new client shares the channel, so close this one, not it.
        """
        clone = copy.copy(self)
        clone.token = token
        pairs = ((("authorization", f"Bearer {token}"),) if token else ()) + tuple(metadata)
        clone._metadata = pairs or None
        for attr, value in vars(self).items():
            if isinstance(value, _Service):
                setattr(clone, attr, _Service(value._stub, clone))
        if self._pipeline is not None:  # its stream carries this client's token: the clone needs its own
            clone._pipeline = clone._new_pipeline()
        return clone

    async def close(self) -> None:
        """Close the channel (calls in flight are cancelled; pipelined submits are answered first)."""
        if self._pipeline is not None:
            await self._pipeline.close()
        await self.channel.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- tasks ------------------------------------------------------------------------------------

    async def submit_task(
        self, task: msgs.Task | None = None, *, request_id: str | None = None, **fields: Any
    ) -> msgs.Task:
        """Submit a task (a ``Task`` message or :func:`build_task` keyword arguments); returns it as stored.

        With ``pipeline_submits`` the request travels on the client's shared submit stream.
        """
        message = task if task is not None else build_task(**fields)
        if self._pipeline is not None:
            return await self._pipeline.submit(message, request_id or str(uuid.uuid4()))
        response: tasks_pb.SubmitTaskResponse = await self.tasks.SubmitTask(
            tasks_pb.SubmitTaskRequest(task=message, request_id=request_id or str(uuid.uuid4()))
        )
        return response.task

    def submitter(self) -> TaskSubmitter:
        """A :class:`~agent_sdk.submitter.TaskSubmitter`: many submits in flight on one stream.

        Use it as ``async with client.submitter() as submitter: await submitter.submit(...)``;
        each submit is answered like :meth:`submit_task`, at a fraction of the cost per task.
        """
        return TaskSubmitter(tasks_grpc.TaskServiceStub(self.channel), self._metadata, build_task)

    async def batch_submit(
        self, tasks: Sequence[msgs.Task | Mapping[str, Any]], *, request_id: str | None = None
    ) -> list[msgs.Task]:
        """Submit many tasks atomically; returns them in order."""
        requests = [
            tasks_pb.SubmitTaskRequest(task=t if isinstance(t, msgs.Task) else build_task(**t)) for t in tasks
        ]
        response = await self.tasks.BatchSubmitTasks(
            tasks_pb.BatchSubmitTasksRequest(requests=requests, request_id=request_id or str(uuid.uuid4()))
        )
        return list(response.tasks)

    async def get_task(self, id_or_name: str, full: bool = False) -> tasks_pb.GetTaskResponse:
        """One task; with ``full`` also its subtasks, plan and consensus record."""
        view = enums.TASK_VIEW_FULL if full else enums.TASK_VIEW_BASIC
        response: tasks_pb.GetTaskResponse = await self.tasks.GetTask(
            tasks_pb.GetTaskRequest(name=task_name(id_or_name), view=view)
        )
        return response

    def _list_tasks_request(
        self,
        statuses: Iterable[int],
        task_types: Iterable[str],
        priorities: Iterable[Any],
        since: datetime | float | None,
        batch: str,
        owner: str,
    ) -> tasks_pb.ListTasksRequest:
        request = tasks_pb.ListTasksRequest(
            statuses=cast("list[enums.TaskStatus]", list(statuses)),
            task_types=list(task_types),
            priorities=[priority_value(p) for p in priorities],
            batch=batch,
            owner=owner,
        )
        if since is not None:
            request.since.CopyFrom(_timestamp(since))
        return request

    async def list_tasks(
        self,
        *,
        statuses: Iterable[int] = (),
        task_types: Iterable[str] = (),
        priorities: Iterable[Any] = (),
        since: datetime | float | None = None,
        batch: str = "",
        owner: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> tasks_pb.ListTasksResponse:
        """One page of tasks, newest first (``since``: a datetime or epoch seconds)."""
        request = self._list_tasks_request(statuses, task_types, priorities, since, batch, owner)
        request.page_size, request.page_token = page_size, page_token
        response: tasks_pb.ListTasksResponse = await self.tasks.ListTasks(request)
        return response

    async def iter_tasks(
        self, *, limit: int | None = None, page_size: int = 0, **filters: Any
    ) -> AsyncIterator[msgs.Task]:
        """Every task matching the filters of :meth:`list_tasks`, across pages (at most ``limit``)."""
        size = min(page_size or 1000, limit) if limit else page_size

        async def fetch(token: str) -> tasks_pb.ListTasksResponse:
            return await self.list_tasks(page_size=size, page_token=token, **filters)

        async for task in paged(fetch, "tasks", limit):
            yield task

    async def cancel_task(
        self, id_or_name: str, reason: str = "", *, request_id: str | None = None
    ) -> msgs.Task:
        """Cancel an unfinished task (FailedPreconditionError if it is finished)."""
        response: tasks_pb.CancelTaskResponse = await self.tasks.CancelTask(
            tasks_pb.CancelTaskRequest(
                name=task_name(id_or_name), reason=reason, request_id=request_id or str(uuid.uuid4())
            )
        )
        return response.task

    async def approve_task(self, id_or_name: str, *, request_id: str | None = None) -> msgs.Task:
        """Approve the plan of a task waiting for plan approval; it then runs (FailedPreconditionError if it
        is not waiting)."""
        response: tasks_pb.ApproveTaskResponse = await self.tasks.ApproveTask(
            tasks_pb.ApproveTaskRequest(
                name=task_name(id_or_name), request_id=request_id or str(uuid.uuid4())
            )
        )
        return response.task

    async def reject_task(self, id_or_name: str, reason: str, *, request_id: str | None = None) -> msgs.Task:
        """Reject the plan of a task waiting for plan approval; the task is CANCELLED with ``reason``."""
        response: tasks_pb.RejectTaskResponse = await self.tasks.RejectTask(
            tasks_pb.RejectTaskRequest(
                name=task_name(id_or_name), reason=reason, request_id=request_id or str(uuid.uuid4())
            )
        )
        return response.task

    async def retry_task(
        self,
        id_or_name: str,
        *,
        max_agents: int | None = None,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> msgs.Task:
        """Run a FAILED or CANCELLED task again, optionally with a new ``max_agents`` and ``timeout`` (seconds)."""
        request = tasks_pb.RetryTaskRequest(
            name=task_name(id_or_name), request_id=request_id or str(uuid.uuid4()), max_agents=max_agents
        )
        if timeout is not None:
            set_seconds(request.timeout, timeout)
        response: tasks_pb.RetryTaskResponse = await self.tasks.RetryTask(request)
        return response.task

    async def update_task(
        self,
        id_or_name: str,
        priority: str | int | None = None,
        max_agents: int | None = None,
        *,
        request_id: str | None = None,
    ) -> msgs.Task:
        """Change the priority and/or max_agents of an unfinished task."""
        task, paths = msgs.Task(name=task_name(id_or_name)), []
        if priority is not None:
            task.priority = priority_value(priority)
            paths.append("priority")
        if max_agents is not None:
            task.max_agents = max_agents
            paths.append("max_agents")
        response: tasks_pb.UpdateTaskResponse = await self.tasks.UpdateTask(
            tasks_pb.UpdateTaskRequest(
                task=task,
                update_mask=field_mask_pb2.FieldMask(paths=paths),
                request_id=request_id or str(uuid.uuid4()),
            )
        )
        return response.task

    async def get_results(self, id_or_name: str) -> msgs.TaskResult:
        """The result of a finished task, its whole output (FailedPreconditionError while it runs).

        An output larger than one response is read in chunks (``output_offset``) and joined.
        """
        name = task_name(id_or_name)
        response: tasks_pb.GetTaskResultsResponse = await self.tasks.GetTaskResults(
            tasks_pb.GetTaskResultsRequest(name=name)
        )
        result = response.result
        parts = [result.output]
        offset = response.next_output_offset
        while offset:
            chunk: tasks_pb.GetTaskResultsResponse = await self.tasks.GetTaskResults(
                tasks_pb.GetTaskResultsRequest(name=name, output_offset=offset)
            )
            parts.append(chunk.result.output)
            offset = chunk.next_output_offset
        if len(parts) > 1:
            result.output = "".join(parts)
        return result

    async def analyze_task(
        self, task: msgs.Task | None = None, *, name: str | None = None, **fields: Any
    ) -> msgs.ExecutionPlan:
        """Plan without running: an existing task (``name``), a ``Task`` draft, or build_task keywords."""
        if name:
            request = tasks_pb.AnalyzeTaskRequest(name=task_name(name))
        else:
            request = tasks_pb.AnalyzeTaskRequest(task=task if task is not None else build_task(**fields))
        response: tasks_pb.AnalyzeTaskResponse = await self.tasks.AnalyzeTask(request)
        return response.plan

    async def watch_task(
        self,
        id_or_name: str,
        *,
        include_progress: bool = False,
        timeout: float | None = None,
        after_event_id: str = "",
    ) -> AsyncIterator[tasks_pb.WatchTaskResponse]:
        """A snapshot of the task, then one message per change until it finishes (no deadline by default).

        With ``after_event_id`` (the ``event.id`` of the last message received) it resumes instead:
        the changes after that event, then the live ones, with no snapshot first.
        """
        request = tasks_pb.WatchTaskRequest(
            name=task_name(id_or_name), include_progress=include_progress, after_event_id=after_event_id
        )
        async for response in self.tasks.WatchTask(request, timeout=timeout):
            yield response

    async def wait_task(self, id_or_name: str, timeout: float | None = None) -> msgs.Task:
        """Wait until the task is finished and return it; TimeoutError after ``timeout`` seconds.

        Built on WatchTask; a broken stream (UNAVAILABLE, or one that ends early) is re-opened with backoff.
        WatchTask sends committed changes only and GetTask answers committed state (the read rule in
        docs/clients.md), so once the terminal event arrives GetTask, and GetTaskResults after this call,
        show the finished task: it is read once with GetTask for the whole message, without polling.
        """

        async def watch_until_finished() -> msgs.Task:
            delay = 0.1
            while True:
                try:
                    async for response in self.watch_task(id_or_name):
                        if response.task.status in TERMINAL_TASK_STATUSES:
                            return response.task
                except UnavailableError:
                    pass
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

        async def wait() -> msgs.Task:
            finished = await watch_until_finished()
            task = (await self.get_task(id_or_name)).task
            return task if task.status in TERMINAL_TASK_STATUSES else finished  # retried meanwhile

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise TimeoutError(f"{task_name(id_or_name)} did not finish within {timeout:g} s") from None

    # --- agents -----------------------------------------------------------------------------------

    async def list_agents(
        self,
        *,
        statuses: Iterable[int] = (),
        agent_types: Iterable[str] = (),
        include_terminated: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> agents_pb.ListAgentsResponse:
        """One page of agents, connected ones first."""
        response: agents_pb.ListAgentsResponse = await self.agents.ListAgents(
            agents_pb.ListAgentsRequest(
                statuses=cast("list[enums.AgentStatus]", list(statuses)),
                agent_types=list(agent_types),
                include_terminated=include_terminated,
                page_size=page_size,
                page_token=page_token,
            )
        )
        return response

    async def iter_agents(self, **filters: Any) -> AsyncIterator[msgs.Agent]:
        """Every agent matching the filters of :meth:`list_agents`, across pages."""
        token = ""
        while True:
            page = await self.list_agents(page_token=token, **filters)
            for agent in page.agents:
                yield agent
            token = page.next_page_token
            if not token:
                return

    async def get_agent(self, id_or_name: str) -> msgs.Agent:
        """One agent with its assignments and track record."""
        response: agents_pb.GetAgentResponse = await self.agents.GetAgent(
            agents_pb.GetAgentRequest(name=agent_name(id_or_name))
        )
        return response.agent

    async def spawn_agents(
        self,
        agent_type: str,
        count: int = 1,
        *,
        capabilities: Iterable[str] = (),
        max_concurrency: int = 0,
        labels: Mapping[str, str] | None = None,
        request_id: str | None = None,
    ) -> list[msgs.Agent]:
        """Launch supervised agent processes on the control plane's machine (they start as STARTING)."""
        response = await self.agents.SpawnAgents(
            agents_pb.SpawnAgentsRequest(
                agent_type=agent_type,
                count=count,
                capabilities=list(capabilities),
                max_concurrency=max_concurrency,
                labels=dict(labels or {}),
                request_id=request_id or str(uuid.uuid4()),
            )
        )
        return list(response.agents)

    async def terminate_agent(
        self,
        id_or_name: str,
        *,
        force: bool = False,
        grace: float | None = None,
        request_id: str | None = None,
    ) -> msgs.Agent:
        """Stop an agent: drain it within ``grace`` seconds (default 30), or at once with ``force``."""
        request = agents_pb.TerminateAgentRequest(
            name=agent_name(id_or_name), force=force, request_id=request_id or str(uuid.uuid4())
        )
        if grace is not None:
            set_seconds(request.grace, grace)
        response: agents_pb.TerminateAgentResponse = await self.agents.TerminateAgent(request)
        return response.agent

    async def pause_agent(self, id_or_name: str) -> msgs.Agent:
        """Stop sending new work to an agent."""
        response: agents_pb.PauseAgentResponse = await self.agents.PauseAgent(
            agents_pb.PauseAgentRequest(name=agent_name(id_or_name))
        )
        return response.agent

    async def resume_agent(self, id_or_name: str) -> msgs.Agent:
        """Let a paused agent take work again."""
        response: agents_pb.ResumeAgentResponse = await self.agents.ResumeAgent(
            agents_pb.ResumeAgentRequest(name=agent_name(id_or_name))
        )
        return response.agent

    async def drain_agent(self, id_or_name: str, grace: float | None = None) -> msgs.Agent:
        """Ask an agent to finish its work, take no more, then leave."""
        request = agents_pb.DrainAgentRequest(name=agent_name(id_or_name))
        if grace is not None:
            set_seconds(request.grace, grace)
        response: agents_pb.DrainAgentResponse = await self.agents.DrainAgent(request)
        return response.agent

    async def restart_agent(
        self, id_or_name: str, *, force: bool = False, grace: float | None = None
    ) -> agents_pb.RestartAgentResponse:
        """Restart a supervised agent's process (the new one registers as a new agent); waits for it."""
        request = agents_pb.RestartAgentRequest(name=agent_name(id_or_name), force=force)
        if grace is not None:
            set_seconds(request.grace, grace)
        drain = 0.0 if force else 30.0 if grace is None else grace
        wait = self.timeout + drain + 15.0  # the old process drains, then the new one registers
        response: agents_pb.RestartAgentResponse = await self.agents.RestartAgent(request, timeout=wait)
        return response

    async def agent_metrics(self, id_or_name: str) -> agents_pb.GetAgentMetricsResponse:
        """An agent's record, its process's CPU and memory (when supervised) and its log counts."""
        request = agents_pb.GetAgentMetricsRequest(name=agent_name(id_or_name))
        response: agents_pb.GetAgentMetricsResponse = await self.agents.GetAgentMetrics(request)
        return response

    async def list_agent_types(self) -> list[agents_pb.AgentType]:
        """The agent types the control plane knows."""
        return list((await self.agent_types_report()).agent_types)

    async def agent_types_report(self) -> agents_pb.ListAgentTypesResponse:
        """The agent types, and the custom type files that could not be loaded."""
        response: agents_pb.ListAgentTypesResponse = await self.agents.ListAgentTypes(
            agents_pb.ListAgentTypesRequest()
        )
        return response

    # --- system -----------------------------------------------------------------------------------

    async def status(self, detailed: bool = False) -> system_pb.GetStatusResponse:
        """Version, uptime and counts of tasks, subtasks and agents."""
        response: system_pb.GetStatusResponse = await self.system.GetStatus(
            system_pb.GetStatusRequest(detailed=detailed)
        )
        return response

    async def watch_events(
        self,
        *,
        task: str = "",
        event_types: Iterable[int] = (),
        after_event_id: str = "",
        timeout: float | None = None,
    ) -> AsyncIterator[msgs.Event]:
        """Every change as it is committed (no deadline by default): of one task, or of every type in ``event_types``.

        ``after_event_id`` (an earlier ``Event.id``) first replays the kept events after it;
        FAILED_PRECONDITION when they are no longer kept.
        """
        request = system_pb.WatchEventsRequest(
            event_types=cast("list[enums.EventType]", list(event_types)),
            after_event_id=after_event_id,
            task=task_name(task) if task else "",
        )
        async for response in self.system.WatchEvents(request, timeout=timeout):
            yield response.event

    async def health(self, components: Iterable[str] = ()) -> system_pb.GetHealthResponse:
        """The state of each component (all when ``components`` is empty) and the worst of them."""
        response: system_pb.GetHealthResponse = await self.system.GetHealth(
            system_pb.GetHealthRequest(components=list(components))
        )
        return response

    async def metrics_summary(self, category: str = "") -> list[system_pb.MetricSample]:
        """Metric samples ("system", "tasks", "agents", "rpc", "storage"; empty means all)."""
        return list(
            (
                await self.system.GetMetricsSummary(system_pb.GetMetricsSummaryRequest(category=category))
            ).samples
        )

    async def metrics_exposition(self, category: str = "") -> str:
        """The metrics in the Prometheus text format (as /metrics serves them), of one category or all."""
        response: system_pb.GetMetricsSummaryResponse = await self.system.GetMetricsSummary(
            system_pb.GetMetricsSummaryRequest(category=category, include_exposition=True)
        )
        return response.exposition

    async def metrics_history(
        self, timeframe: float, *, category: str = "", max_points: int = 0
    ) -> system_pb.GetMetricsHistoryResponse:
        """The summary figures of the last ``timeframe`` seconds, downsampled to ``max_points`` per series."""
        request = system_pb.GetMetricsHistoryRequest(category=category, max_points=max_points)
        set_seconds(request.timeframe, timeframe)
        response: system_pb.GetMetricsHistoryResponse = await self.system.GetMetricsHistory(request)
        return response

    async def resources(self) -> system_pb.GetResourcesResponse:
        """CPU, memory, sockets of the control plane and its supervised agents; the machine, database, queue."""
        response: system_pb.GetResourcesResponse = await self.system.GetResources(
            system_pb.GetResourcesRequest()
        )
        return response

    async def list_logs(
        self,
        *,
        level: int = 0,
        component: str = "",
        contains: str = "",
        task: str = "",
        agent: str = "",
        since: datetime | float | None = None,
        newest_first: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> system_pb.ListLogsResponse:
        """One page of kept log records (``level`` a ``maos.v1.LogLevel``: at least that level)."""
        request = system_pb.ListLogsRequest(
            min_level=cast(enums.LogLevel, level),
            component=component,
            contains=contains,
            task=task_name(task) if task else "",
            agent=agent_name(agent) if agent else "",
            order_by="time desc" if newest_first else "",
            page_size=page_size,
            page_token=page_token,
        )
        if since is not None:
            request.since.CopyFrom(_timestamp(since))
        response: system_pb.ListLogsResponse = await self.system.ListLogs(request)
        return response

    async def tail_logs(
        self,
        *,
        level: int = 0,
        component: str = "",
        contains: str = "",
        task: str = "",
        agent: str = "",
        tail: int = 0,
        after_record_id: str = "",
    ) -> AsyncIterator[msgs.LogRecord]:
        """Log records as they are written (no deadline), after the ``tail`` most recent matching ones.

        With ``after_record_id`` (the ``id`` of the last record received) it resumes instead: the
        kept records after that one, then the live ones.
        """
        request = system_pb.TailLogsRequest(
            min_level=cast(enums.LogLevel, level),
            component=component,
            contains=contains,
            task=task_name(task) if task else "",
            agent=agent_name(agent) if agent else "",
            tail=tail,
            after_record_id=after_record_id,
        )
        async for response in self.system.TailLogs(request):
            yield response.record

    async def get_config(self, keys: Iterable[str] = ()) -> list[system_pb.ConfigValue]:
        """Configuration values with their sources (every key when ``keys`` is empty)."""
        return list((await self.system.GetConfig(system_pb.GetConfigRequest(keys=list(keys)))).values)

    async def set_config(self, key: str, value: Any) -> system_pb.ConfigValue:
        """Set one runtime configuration value."""
        response: system_pb.SetConfigResponse = await self.system.SetConfig(
            system_pb.SetConfigRequest(key=key, value=str(value))
        )
        return response.value

    @translate_errors
    async def serving(self, service: str = "", timeout: float | None = None) -> bool:
        """Whether the standard gRPC health check answers SERVING (``""`` is the whole server)."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        response = await health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(service=service),
            timeout=self.timeout if timeout is None else timeout,
            metadata=self._metadata,
        )
        return bool(response.status == health_pb2.HealthCheckResponse.SERVING)

    # --- checkpoints ------------------------------------------------------------------------------

    @property
    def checkpoints(self) -> Any:
        """The CheckpointService stub (same defaults as the other services)."""
        if "_checkpoints" not in self.__dict__:
            self.__dict__["_checkpoints"] = _Service(
                checkpoints_grpc.CheckpointServiceStub(self.channel), self
            )
        return self.__dict__["_checkpoints"]

    async def create_checkpoint(
        self, display_name: str = "", description: str = "", *, request_id: str | None = None
    ) -> msgs.Checkpoint:
        """Take a checkpoint now; returns its metadata once stored."""
        response: checkpoints_pb.CreateCheckpointResponse = await self.checkpoints.CreateCheckpoint(
            checkpoints_pb.CreateCheckpointRequest(
                display_name=display_name,
                description=description,
                request_id=request_id or str(uuid.uuid4()),
            )
        )
        return response.checkpoint

    async def list_checkpoints(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> checkpoints_pb.ListCheckpointsResponse:
        """One page of checkpoints, newest first."""
        response: checkpoints_pb.ListCheckpointsResponse = await self.checkpoints.ListCheckpoints(
            checkpoints_pb.ListCheckpointsRequest(page_size=page_size, page_token=page_token)
        )
        return response

    async def get_checkpoint(self, id_or_name: str) -> msgs.Checkpoint:
        """One checkpoint's metadata (``latest`` names the newest)."""
        response: checkpoints_pb.GetCheckpointResponse = await self.checkpoints.GetCheckpoint(
            checkpoints_pb.GetCheckpointRequest(name=checkpoint_name(id_or_name))
        )
        return response.checkpoint

    async def export_checkpoint(self, id_or_name: str) -> tuple[msgs.Checkpoint, bytes]:
        """A checkpoint's metadata and its exact stored (compressed) payload."""
        meta, chunks = msgs.Checkpoint(), []
        async for part in self.checkpoints.ExportCheckpoint(
            checkpoints_pb.ExportCheckpointRequest(name=checkpoint_name(id_or_name)),
            timeout=self.timeout * 30,
        ):
            if part.HasField("checkpoint"):
                meta = part.checkpoint
            else:
                chunks.append(part.chunk)
        return meta, b"".join(chunks)

    @translate_errors
    async def import_checkpoint(
        self, meta: msgs.Checkpoint, payload: bytes, chunk_size: int = 1024 * 1024
    ) -> msgs.Checkpoint:
        """Store an exported checkpoint; FailedPrecondition (CHECKPOINT_CORRUPT) if its checksum does not match."""

        def parts() -> Iterable[checkpoints_pb.ImportCheckpointRequest]:
            yield checkpoints_pb.ImportCheckpointRequest(checkpoint=meta)
            for start in range(0, len(payload), chunk_size):
                yield checkpoints_pb.ImportCheckpointRequest(chunk=payload[start : start + chunk_size])

        stub = checkpoints_grpc.CheckpointServiceStub(self.channel)
        response: checkpoints_pb.ImportCheckpointResponse = await stub.ImportCheckpoint(
            iter(list(parts())), timeout=self.timeout * 30, metadata=self._metadata
        )
        return response.checkpoint

    async def delete_checkpoint(self, id_or_name: str) -> None:
        """Delete a checkpoint."""
        await self.checkpoints.DeleteCheckpoint(
            checkpoints_pb.DeleteCheckpointRequest(name=checkpoint_name(id_or_name))
        )

    async def recover(
        self,
        checkpoint: str = "",
        *,
        verify_only: bool = False,
        components: Iterable[str] = (),
        requeue_later_work: bool = False,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> checkpoints_pb.RecoverResponse:
        """Restore from a checkpoint (the newest when empty), or only verify and report with ``verify_only``."""
        policy = enums.LATER_WORK_POLICY_REQUEUE if requeue_later_work else enums.LATER_WORK_POLICY_KEEP
        response: checkpoints_pb.RecoverResponse = await self.checkpoints.Recover(
            checkpoints_pb.RecoverRequest(
                checkpoint=checkpoint_name(checkpoint) if checkpoint else "",
                verify_only=verify_only,
                components=list(components),
                later_work=policy,
                request_id=request_id or str(uuid.uuid4()),
            ),
            timeout=timeout if timeout is not None else self.timeout * 30,
        )
        return response

    # --- access control and audit ---------------------------------------------------------------

    async def get_caller(self) -> access_pb.GetCallerResponse:
        """Who the client authenticates as, and its effective permissions."""
        response: access_pb.GetCallerResponse = await self.access.GetCaller(access_pb.GetCallerRequest())
        return response

    async def create_user(self, email: str, roles: Sequence[str] = ()) -> msgs.User:
        """Create a user with roles (names or ``roles/NAME``)."""
        user = msgs.User(email=email, roles=[r if r.startswith("roles/") else f"roles/{r}" for r in roles])
        response: access_pb.CreateUserResponse = await self.access.CreateUser(
            access_pb.CreateUserRequest(user=user)
        )
        return response.user

    async def list_users(self) -> list[msgs.User]:
        """Every user (admin)."""
        return list((await self.access.ListUsers(access_pb.ListUsersRequest(page_size=1000))).users)

    async def get_user(self, id_or_name: str) -> msgs.User:
        """One user (admin)."""
        response: access_pb.GetUserResponse = await self.access.GetUser(
            access_pb.GetUserRequest(name=_name("users", id_or_name))
        )
        return response.user

    async def update_user(
        self, id_or_name: str, *, roles: Sequence[str] | None = None, disabled: bool | None = None
    ) -> msgs.User:
        """Replace a user's roles and/or disable or enable it (None: unchanged; admin)."""
        paths = [p for p, v in (("roles", roles), ("disabled", disabled)) if v is not None]
        user = msgs.User(
            name=_name("users", id_or_name),
            roles=[_name("roles", r) for r in roles or []],
            disabled=bool(disabled),
        )
        response: access_pb.UpdateUserResponse = await self.access.UpdateUser(
            access_pb.UpdateUserRequest(user=user, update_mask=field_mask_pb2.FieldMask(paths=paths))
        )
        return response.user

    async def delete_user(self, id_or_name: str) -> None:
        """Delete a user and revoke its keys (admin; not the built-in users, not yourself)."""
        await self.access.DeleteUser(access_pb.DeleteUserRequest(name=_name("users", id_or_name)))

    async def create_role(self, name: str, permissions: Sequence[str], description: str = "") -> msgs.Role:
        """Create a custom role."""
        role = msgs.Role(permissions=list(permissions), description=description)
        response: access_pb.CreateRoleResponse = await self.access.CreateRole(
            access_pb.CreateRoleRequest(role_id=name, role=role)
        )
        return response.role

    async def update_role(
        self, name: str, permissions: Sequence[str] | None = None, description: str | None = None
    ) -> msgs.Role:
        """Change a custom role's permissions and/or description."""
        paths = [p for p, v in (("permissions", permissions), ("description", description)) if v is not None]
        role = msgs.Role(
            name=name if name.startswith("roles/") else f"roles/{name}",
            permissions=list(permissions or []),
            description=description or "",
        )
        response: access_pb.UpdateRoleResponse = await self.access.UpdateRole(
            access_pb.UpdateRoleRequest(role=role, update_mask=field_mask_pb2.FieldMask(paths=paths))
        )
        return response.role

    async def list_roles(self) -> list[msgs.Role]:
        """Every role, built-in ones included."""
        return list((await self.access.ListRoles(access_pb.ListRolesRequest(page_size=1000))).roles)

    async def delete_role(self, name: str) -> None:
        """Delete a custom role that no user holds (admin)."""
        await self.access.DeleteRole(access_pb.DeleteRoleRequest(name=_name("roles", name)))

    async def create_api_key(
        self, name: str = "", permissions: Sequence[str] = (), ttl: float | None = None, user: str = ""
    ) -> access_pb.CreateApiKeyResponse:
        """A new API key (its secret is in the response, and only there)."""
        request = access_pb.CreateApiKeyRequest(
            api_key=msgs.ApiKey(display_name=name, permissions=list(permissions), user=user),
            request_id=str(uuid.uuid4()),
        )
        if ttl:
            set_seconds(request.ttl, ttl)
        response: access_pb.CreateApiKeyResponse = await self.access.CreateApiKey(request)
        return response

    async def list_api_keys(self, user: str = "", include_revoked: bool = False) -> list[msgs.ApiKey]:
        """The caller's keys (an admin: everyone's)."""
        return list(
            (
                await self.access.ListApiKeys(
                    access_pb.ListApiKeysRequest(page_size=1000, user=user, include_revoked=include_revoked)
                )
            ).api_keys
        )

    async def revoke_api_key(self, name: str) -> msgs.ApiKey:
        """Revoke a key (``apiKeys/ID`` or ID); the next call made with it fails.

        A whole key (``maos_key_...``) raises ValueError without being sent (:func:`api_key_name`).
        """
        response: access_pb.RevokeApiKeyResponse = await self.access.RevokeApiKey(
            access_pb.RevokeApiKeyRequest(name=api_key_name(name))
        )
        return response.api_key

    async def rotate_api_key(self, name: str, overlap: float | None = None) -> access_pb.RotateApiKeyResponse:
        """A new secret for a key; the old one works for ``overlap`` seconds (default 24 h).

        A whole key (``maos_key_...``) raises ValueError without being sent (:func:`api_key_name`).
        """
        request = access_pb.RotateApiKeyRequest(name=api_key_name(name))
        if overlap is not None:
            set_seconds(request.overlap, overlap)
        response: access_pb.RotateApiKeyResponse = await self.access.RotateApiKey(request)
        return response

    async def create_join_token(
        self, agent_types: Sequence[str] = (), max_uses: int = 0, ttl: float | None = None
    ) -> access_pb.CreateJoinTokenResponse:
        """A new agent join token (``id.secret`` in ``token``, and only there).

        ``agent_types`` empty: any type; ``max_uses`` 0: unlimited; ``ttl`` None or 0: 24 h (at most 30 days).
        """
        request = access_pb.CreateJoinTokenRequest(
            join_token=msgs.JoinToken(agent_types=list(agent_types), max_uses=max_uses)
        )
        if ttl is not None:
            set_seconds(request.ttl, ttl)
        response: access_pb.CreateJoinTokenResponse = await self.access.CreateJoinToken(request)
        return response

    async def list_join_tokens(self) -> list[msgs.JoinToken]:
        """Every join token, revoked and expired ones included (never secrets)."""
        found: list[msgs.JoinToken] = []
        token = ""
        while True:
            page = await self.access.ListJoinTokens(
                access_pb.ListJoinTokensRequest(page_size=1000, page_token=token)
            )
            found.extend(page.join_tokens)
            token = page.next_page_token
            if not token:
                return found

    async def revoke_join_token(self, name: str) -> msgs.JoinToken:
        """Revoke a join token (``joinTokens/ID``, ID, or the whole token, whose secret is not sent).

        Agents that joined with it keep working.
        """
        request = access_pb.RevokeJoinTokenRequest(name=join_token_name(name))
        response: access_pb.RevokeJoinTokenResponse = await self.access.RevokeJoinToken(request)
        return response.join_token

    async def list_audit_records(
        self,
        *,
        since: datetime | float | None = None,
        principal: str = "",
        action: str = "",
        page_size: int = 100,
    ) -> list[msgs.AuditRecord]:
        """Audit records, newest first."""
        request = audit_pb.ListAuditRecordsRequest(page_size=page_size, principal=principal, action=action)
        if since is not None:
            request.since.CopyFrom(_timestamp(since))
        return list((await self.audit.ListAuditRecords(request)).records)

    async def all_audit_records(
        self, *, since: datetime | float | None = None, principal: str = "", action: str = ""
    ) -> list[msgs.AuditRecord]:
        """Every audit record matching the filters (all pages), newest first."""
        request = audit_pb.ListAuditRecordsRequest(page_size=1000, principal=principal, action=action)
        if since is not None:
            request.since.CopyFrom(_timestamp(since))
        found: list[msgs.AuditRecord] = []
        while True:
            page = await self.audit.ListAuditRecords(request)
            found.extend(page.records)
            if not page.next_page_token:
                return found
            request.page_token = page.next_page_token
