"""The MCP tools of MAOS: their input schemas and what each one calls on the control plane.

Each tool mirrors one TaskService RPC (through :class:`agent_sdk.client.Client`); its input schema
takes the keyword names of :func:`agent_sdk.client.build_task` and the RPC requests. A tool answers
with a short text for the model and the same data as structured content. Bad input (refused by the
schema here, or by the server) and refused calls are tool errors whose text names the field and says
what is wrong, so the model can correct itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jsonschema
import mcp_types as types

from agent_sdk.client import TERMINAL_TASK_STATUSES, Client, build_task
from agent_sdk.errors import MaosRpcError
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from controlplane.domain.tasks import (
    MAX_BACKOFF,
    MAX_BACKOFF_MULTIPLIER,
    MAX_DEPENDENCIES,
    MAX_INITIAL_BACKOFF,
    MAX_METADATA_ENTRIES,
    MAX_RETRIES,
    MAX_REVIEW_ROUNDS,
    MAX_TIMEOUT,
)
from maos_cli._output import to_data

#: wait_task waits this long when no timeout is given, and never longer than MAX_WAIT.
DEFAULT_WAIT = 60.0
MAX_WAIT = 600.0
#: How long wait_task gives the server to store an end WatchTask already reported.
STORED_WAIT = 10.0
#: list_tasks pages.
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

PRIORITIES = ["LOW", "NORMAL", "MEDIUM", "HIGH", "CRITICAL"]
STATUSES = [
    n.removeprefix("TASK_STATUS_")
    for n in enums.TaskStatus.keys()  # noqa: SIM118 - not a dict
    if not n.endswith("UNSPECIFIED")
]

_TASK_ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "description": "The task's id (t...) or name (tasks/t...), as submit_task or list_tasks gave it.",
}


def _schema(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": required or [],
        "additionalProperties": False,
    }


SUBMIT_SCHEMA = _schema(
    {
        "description": {
            "type": "string",
            "minLength": 1,
            "description": "The work, in plain language; MAOS splits it into parallel subtasks.",
        },
        "task_type": {"type": "string", "description": "research, coding, analysis, mixed or an agent type."},
        "priority": {
            "type": "string",
            "enum": PRIORITIES,
            "description": "Default NORMAL (MEDIUM means NORMAL).",
        },
        "max_agents": {
            "type": "integer",
            "minimum": 1,
            "description": "Most agents working on the task at once (default: the server's setting).",
        },
        "depends_on": {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "maxItems": MAX_DEPENDENCIES,
            "description": "Ids of tasks that must complete first.",
        },
        "require_consensus": {"type": "boolean", "description": "Let several agents decide by vote."},
        "consensus_threshold": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "description": "Share of votes the winner needs (default 0.5).",
        },
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": MAX_TIMEOUT,
            "description": "Wall-clock limit of the task in seconds (none when unset).",
        },
        "context": {"type": "string", "description": "Background every agent sees."},
        "constraints": {"type": "string", "description": "Rules the result must follow."},
        "metadata": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "maxProperties": MAX_METADATA_ENTRIES,
            "description": "Labels, text to text.",
        },
        "max_retries": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_RETRIES,
            "description": "Retries of each failed subtask (default: the server's setting).",
        },
        "initial_backoff": {
            "type": "number",
            "minimum": 0,
            "maximum": MAX_INITIAL_BACKOFF,
            "description": "Seconds before the first retry.",
        },
        "backoff_multiplier": {
            "type": "number",
            "minimum": 1,
            "maximum": MAX_BACKOFF_MULTIPLIER,
            "description": "Each retry waits this many times longer than the previous one.",
        },
        "max_backoff": {
            "type": "number",
            "minimum": 0,
            "maximum": MAX_BACKOFF,
            "description": "Longest delay between retries in seconds, at least initial_backoff.",
        },
        "agent_type": {"type": "string", "description": "Run every subtask on agents of this type."},
        "max_tokens": {
            "type": "integer",
            "minimum": 0,
            "description": "Token budget of the whole task (0 or unset: the server's default).",
        },
        "max_cost": {
            "type": "number",
            "minimum": 0,
            "description": "Cost budget of the whole task in US dollars (0 or unset: the server's default).",
        },
        "review_rounds": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_REVIEW_ROUNDS,
            "description": "Rounds in which a reviewer grades the answer and a revision applies the "
            "changes it asks for, until it approves (0 or unset: no review).",
        },
        "approve_plan": {
            "type": "boolean",
            "description": "Once planned, wait until a person approves the plan "
            "(`maos task approve ID`) or rejects it (`maos task reject ID`).",
        },
        "request_id": {
            "type": "string",
            "maxLength": 100,
            "description": "Idempotency key (a UUID): one task per key; generated when unset.",
        },
    },
    ["description"],
)

GET_SCHEMA = _schema({"task_id": _TASK_ID}, ["task_id"])

WAIT_SCHEMA = _schema(
    {
        "task_id": _TASK_ID,
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": MAX_WAIT,
            "description": f"Seconds to wait at most (default {DEFAULT_WAIT:g}); call again while it runs.",
        },
    },
    ["task_id"],
)

LIST_SCHEMA = _schema(
    {
        "statuses": {
            "type": "array",
            "items": {"type": "string", "enum": STATUSES},
            "maxItems": len(STATUSES),
            "description": "Only tasks in these states.",
        },
        "task_types": {
            "type": "array",
            "items": {"type": "string"},
            "maxItems": 20,
            "description": "Only tasks of these types.",
        },
        "priorities": {
            "type": "array",
            "items": {"type": "string", "enum": PRIORITIES},
            "maxItems": len(PRIORITIES),
            "description": "Only tasks of these priorities.",
        },
        "since": {
            "type": "string",
            "format": "date-time",
            "description": "Only tasks created since this ISO 8601 time (e.g. 2026-01-31T09:00:00Z).",
        },
        "batch": {
            "type": "string",
            "maxLength": 200,
            "description": "Only tasks of this batch (batches/ID).",
        },
        "owner": {
            "type": "string",
            "maxLength": 200,
            "description": "Only tasks of this owner (users/ID); others' tasks need task:view-all.",
        },
        "page_size": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PAGE_SIZE,
            "description": f"Tasks per page, newest first (default {DEFAULT_PAGE_SIZE}).",
        },
        "page_token": {
            "type": "string",
            "maxLength": 1000,
            "description": "next_page_token of the previous page, for the next one.",
        },
    }
)

CANCEL_SCHEMA = _schema(
    {
        "task_id": _TASK_ID,
        "reason": {"type": "string", "maxLength": 1000, "description": "Why; recorded with the task."},
    },
    ["task_id"],
)


class ToolInputError(Exception):
    """Arguments that do not fit a tool's schema."""


@dataclass(frozen=True)
class Call:
    """One tool call: the caller's client, and a way to report progress (a no-op unless asked for)."""

    client: Client
    report_progress: Callable[[float, float | None, str | None], Awaitable[None]]


Handler = Callable[[Call, dict[str, Any]], Awaitable[tuple[str, dict[str, Any]]]]


def bare_id(name: str) -> str:
    """``t123`` from ``tasks/t123``."""
    return name.rsplit("/", 1)[-1]


def _status(value: int) -> str:
    name: str = enums.TaskStatus.Name(value)
    return name.removeprefix("TASK_STATUS_")


def task_summary(task: msgs.Task) -> dict[str, Any]:
    """The fields of a task a listing shows."""
    return {
        "task_id": bare_id(task.name),
        "status": _status(task.status),
        "status_reason": task.status_reason,
        "progress": round(task.progress, 4),
        "description": task.description[:200],
        "task_type": task.task_type,
        "priority": enums.Priority.Name(task.priority).removeprefix("PRIORITY_"),
        "create_time": task.create_time.ToJsonString() if task.create_time.seconds else "",
        "subtasks_total": task.subtasks_total,
        "subtasks_completed": task.subtasks_completed,
    }


def _task_line(task: msgs.Task) -> str:
    line = f"{bare_id(task.name)} {_status(task.status)} {task.progress * 100:.0f}%"
    if task.subtasks_total:
        line += f" ({task.subtasks_completed}/{task.subtasks_total} subtasks)"
    reason = task.failure.message or task.status_reason
    return line + (f": {reason}" if reason else "") + f" - {task.description[:80]}"


def _result_text(result: msgs.TaskResult) -> str:
    failure = f"\nFailure: {result.failure.message}" if result.failure.message else ""
    head = f"Task {bare_id(result.task)} {_status(result.status)}{failure}"
    return f"{head}\n\n{result.output or '(no output)'}"


async def submit_task(call: Call, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """SubmitTask with every option of ``maos task submit``."""
    priority = args.get("priority")
    draft = build_task(
        args["description"],
        task_type=args.get("task_type", ""),
        priority="NORMAL" if priority == "MEDIUM" else priority,
        max_agents=args.get("max_agents", 0),
        depends_on=args.get("depends_on", ()),
        require_consensus=args.get("require_consensus", False),
        consensus_threshold=args.get("consensus_threshold"),
        timeout=args.get("timeout"),
        context=args.get("context", ""),
        constraints=args.get("constraints", ""),
        metadata=args.get("metadata"),
        max_retries=args.get("max_retries"),
        agent_type=args.get("agent_type", ""),
        initial_backoff=args.get("initial_backoff"),
        backoff_multiplier=args.get("backoff_multiplier"),
        max_backoff=args.get("max_backoff"),
        max_tokens=args.get("max_tokens"),
        max_cost=args.get("max_cost"),
        review_rounds=args.get("review_rounds", 0),
        approve_plan=args.get("approve_plan", False),
    )
    created = await call.client.submit_task(draft, request_id=args.get("request_id"))
    task_id = bare_id(created.name)
    return (
        f"Submitted task {task_id} ({_status(created.status)}). Follow it with wait_task or get_task.",
        {"task_id": task_id, "task": to_data(created)},
    )


async def get_task(call: Call, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """GetTask, full view: the task, its subtasks, plan and consensus record."""
    response = await call.client.get_task(args["task_id"], full=True)
    lines = [_task_line(response.task)]
    for s in response.subtasks:
        status = enums.SubtaskStatus.Name(s.status).removeprefix("SUBTASK_STATUS_")
        lines.append(f"  subtask {bare_id(s.name)} {status} {(s.title or s.instructions)[:80]}")
    return "\n".join(lines), to_data(response)


async def wait_task(call: Call, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Follow WatchTask until the task finishes or the timeout ends, reporting its progress.

    A finished task comes with its result; one still running is no error (``finished`` is false).
    """
    timeout = float(args.get("timeout", DEFAULT_WAIT))

    async def follow() -> bool:
        async for update in call.client.watch_task(args["task_id"], include_progress=True):
            task = update.task
            await call.report_progress(task.progress, 1.0, _task_line(task))
            if task.status in TERMINAL_TASK_STATUSES:
                return True
        return False

    try:
        finished = await asyncio.wait_for(follow(), timeout)
    except TimeoutError:
        finished = False
    if finished:  # WatchTask can report the end a moment before it is stored: wait until GetTask agrees
        task = await call.client.wait_task(args["task_id"], timeout=STORED_WAIT)
    else:
        task = (await call.client.get_task(args["task_id"])).task
    data: dict[str, Any] = {
        "task_id": bare_id(task.name),
        "status": _status(task.status),
        "finished": task.status in TERMINAL_TASK_STATUSES,
        "task": to_data(task),
    }
    if not data["finished"]:
        return (
            f"{_task_line(task)}\nStill running after {timeout:g} s; call wait_task again to wait more.",
            data,
        )
    result = await call.client.get_results(task.name)
    data["result"] = to_data(result)
    return _result_text(result), data


def _since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ToolInputError(f"since: {text!r} is not an ISO 8601 time like 2026-01-31T09:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def list_tasks(call: Call, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """ListTasks: one page, newest first, of the tasks the key may see."""
    page = await call.client.list_tasks(
        statuses=[enums.TaskStatus.Value("TASK_STATUS_" + s) for s in args.get("statuses", ())],
        task_types=args.get("task_types", ()),
        priorities=["NORMAL" if p == "MEDIUM" else p for p in args.get("priorities", ())],
        since=_since(args["since"]) if args.get("since") else None,
        batch=args.get("batch", ""),
        owner=args.get("owner", ""),
        page_size=args.get("page_size", DEFAULT_PAGE_SIZE),
        page_token=args.get("page_token", ""),
    )
    text = "\n".join(_task_line(t) for t in page.tasks) or "No tasks."
    if page.next_page_token:
        text += f"\n(more: page_token {page.next_page_token})"
    return text, {"tasks": [task_summary(t) for t in page.tasks], "next_page_token": page.next_page_token}


async def cancel_task(call: Call, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """CancelTask (a finished task cannot be cancelled)."""
    task = await call.client.cancel_task(args["task_id"], args.get("reason", ""))
    data = {"task_id": bare_id(task.name), "status": _status(task.status), "task": to_data(task)}
    return _task_line(task), data


async def get_task_results(call: Call, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """GetTaskResults: the combined output, usage and artifacts of a finished task."""
    result = await call.client.get_results(args["task_id"])
    return _result_text(result), to_data(result)


@dataclass(frozen=True)
class ToolSpec:
    """A tool: its MCP definition and handler."""

    tool: types.Tool
    handler: Handler


def _spec(
    name: str,
    title: str,
    description: str,
    schema: dict[str, Any],
    handler: Handler,
    *,
    read_only: bool,
    idempotent: bool = True,
) -> ToolSpec:
    annotations = types.ToolAnnotations(
        read_only_hint=read_only, destructive_hint=False, idempotent_hint=idempotent, open_world_hint=False
    )
    return ToolSpec(
        types.Tool(
            name=name, title=title, description=description, input_schema=schema, annotations=annotations
        ),
        handler,
    )


TOOLS: dict[str, ToolSpec] = {
    spec.tool.name: spec
    for spec in [
        _spec(
            "submit_task",
            "Submit a task",
            "Hand a piece of work, described in plain language, to the MAOS cluster: it is split into subtasks "
            "that agents run in parallel, and their answers are combined. Returns the task id at once; use "
            "wait_task to wait for the result.",
            SUBMIT_SCHEMA,
            submit_task,
            read_only=False,
            idempotent=False,
        ),
        _spec(
            "get_task",
            "Show a task",
            "A task's status, progress, failure, subtasks (with their agents) and execution plan.",
            GET_SCHEMA,
            get_task,
            read_only=True,
        ),
        _spec(
            "wait_task",
            "Wait for a task",
            f"Wait until a task finishes (at most timeout seconds, default {DEFAULT_WAIT:g}, "
            f"up to {MAX_WAIT:g}) "
            "and return its result; reports progress while waiting. A task still running after the timeout is "
            "no error: call again.",
            WAIT_SCHEMA,
            wait_task,
            read_only=True,
        ),
        _spec(
            "list_tasks",
            "List tasks",
            "Tasks visible to this API key, newest first, filtered by status, type, priority and "
            "creation time; "
            f"pages of at most {MAX_PAGE_SIZE}.",
            LIST_SCHEMA,
            list_tasks,
            read_only=True,
        ),
        _spec(
            "cancel_task",
            "Cancel a task",
            "Cancel a task that has not finished (its running subtasks stop).",
            CANCEL_SCHEMA,
            cancel_task,
            read_only=False,
        ),
        _spec(
            "get_task_results",
            "Read a task's result",
            "The combined output of a finished task, with token usage, cost and artifacts.",
            GET_SCHEMA,
            get_task_results,
            read_only=True,
        ),
    ]
}


def validate(schema: Mapping[str, Any], arguments: dict[str, Any]) -> None:
    """Raise :class:`ToolInputError` naming the first field that does not fit ``schema``."""
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is None:
        return
    where = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties" and not where:
        allowed = ", ".join(sorted(schema.get("properties", {})))
        raise ToolInputError(f"{error.message}; the arguments are: {allowed}")
    if error.validator == "required":
        raise ToolInputError(error.message)
    raise ToolInputError(f"{where or 'arguments'}: {error.message}")


def error_result(text: str, error: dict[str, Any]) -> types.CallToolResult:
    """A tool error: ``text`` for the model, ``error`` as structured content."""
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content={"error": error},
        is_error=True,
    )


def rpc_error_result(exc: MaosRpcError) -> types.CallToolResult:
    """A tool error from a refused call: the server's code, reason, message and the fields it named."""
    lines = [f"{exc.code.name}: {exc.message}"]
    lines += [f"  {field}: {description}" for field, description in exc.field_violations]
    return error_result(
        "\n".join(lines),
        {
            "code": exc.code.name,
            "reason": exc.reason,
            "message": exc.message,
            "field_violations": [{"field": f, "description": d} for f, d in exc.field_violations],
        },
    )


async def call_tool(call: Call, name: str, arguments: dict[str, Any] | None) -> types.CallToolResult:
    """Run tool ``name``; every failure becomes a tool error the model can read."""
    spec = TOOLS.get(name)
    if spec is None:
        return error_result(
            f"unknown tool {name!r}; the tools are: {', '.join(TOOLS)}",
            {"code": "NOT_FOUND", "message": f"unknown tool {name!r}"},
        )
    args = dict(arguments or {})
    try:
        validate(spec.tool.input_schema, args)
        text, data = await spec.handler(call, args)
    except ToolInputError as exc:
        return error_result(f"INVALID_ARGUMENT: {exc}", {"code": "INVALID_ARGUMENT", "message": str(exc)})
    except MaosRpcError as exc:
        return rpc_error_result(exc)
    except ValueError as exc:  # build_task's own checks (an unknown priority)
        return error_result(f"INVALID_ARGUMENT: {exc}", {"code": "INVALID_ARGUMENT", "message": str(exc)})
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text)],
        structured_content=json.loads(json.dumps(data, default=str)),
    )
