"""The guide's and the API examples' paths, each a thin mapping onto one RPC.

``POST /api/tasks`` takes the guide's body (``{"description", "type", "max_agents",
"priority": "HIGH"}``) and answers ``{"task_id", "task"}``; the others pass their path and
query to the RPC and answer its response. They use proto field names (``task_id``,
``max_agents``), as the guide does; the ``/v1`` routes use proto3 JSON names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.errors import InvalidArgument

Json = dict[str, Any]


@dataclass(frozen=True)
class Alias:
    """One alias route: its HTTP verb and path, the RPC, and how JSON is shaped each way."""

    verb: str
    path: str  # Starlette-style: /api/tasks/{task_id}
    rpc: str  # maos.v1.TaskService.GetTask
    request: Callable[[Mapping[str, str], Any], Json]  # (path params, body) -> request JSON
    response: Callable[[Mapping[str, str], Json], Json] = lambda params, reply: reply
    query: bool = False  # query parameters go to the request too
    summary: str = ""
    #: The name an error's field has in this route's body (``task.priority`` -> ``priority``).
    field: Callable[[str], str] = lambda name: name


def _priority(value: Any) -> Any:
    """``HIGH`` -> ``PRIORITY_HIGH`` (``MEDIUM`` is ``NORMAL``, as on the CLI)."""
    if isinstance(value, str) and not value.upper().startswith("PRIORITY_"):
        name = value.strip().upper()
        return "PRIORITY_" + ("NORMAL" if name == "MEDIUM" else name)
    return value


def submit_request(params: Mapping[str, str], body: Any) -> Json:
    """The guide's body as a SubmitTaskRequest: ``type`` is ``task_type``; request_id stays outside the task."""
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object", field="body")
    task = dict(body)
    request_id = task.pop("request_id", task.pop("requestId", ""))
    if "type" in task:
        task["task_type"] = task.pop("type")
    if "priority" in task:
        task["priority"] = _priority(task["priority"])
    return {"task": task, "request_id": request_id}


def guide_field(name: str) -> str:
    """A SubmitTaskRequest field as the guide's body names it: ``task.task_type`` -> ``type``."""
    if name.startswith("task."):
        name = name.removeprefix("task.")
        return "type" if name == "task_type" else name
    return name


def path_field(name: str) -> str:
    """The request's ``name`` is the path's ``task_id``."""
    return "task_id" if name == "name" else name


def task_id(name: str) -> str:
    """``tasks/abc`` -> ``abc``."""
    return name.rpartition("/")[2]


def submitted(params: Mapping[str, str], reply: Json) -> Json:
    """``{"task_id": ..., "task": {...}}``."""
    return {"task_id": task_id(reply.get("task", {}).get("name", "")), **reply}


def with_task_id(params: Mapping[str, str], reply: Json) -> Json:
    """The response with the task id of the path beside it."""
    return {"task_id": params["task_id"], **reply}


def _name(params: Mapping[str, str], body: Any) -> Json:
    return {"name": f"tasks/{params['task_id']}"}


def _nothing(params: Mapping[str, str], body: Any) -> Json:
    return {}


def _body(params: Mapping[str, str], body: Any) -> Json:
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object", field="body")
    return dict(body)


def _serving(params: Mapping[str, str], reply: Json) -> Json:
    return {"status": reply.get("status", "UNKNOWN")}


ALIASES: list[Alias] = [
    Alias(
        "POST",
        "/api/tasks",
        "maos.v1.TaskService.SubmitTask",
        submit_request,
        submitted,
        summary="Submit a task (the guide's body: description, type, max_agents, priority).",
        field=guide_field,
    ),
    Alias(
        "GET",
        "/api/tasks/{task_id}",
        "maos.v1.TaskService.GetTask",
        _name,
        with_task_id,
        query=True,
        summary="A task.",
        field=path_field,
    ),
    Alias(
        "GET",
        "/api/tasks/{task_id}/results",
        "maos.v1.TaskService.GetTaskResults",
        _name,
        with_task_id,
        summary="A finished task's results.",
        field=path_field,
    ),
    Alias(
        "GET",
        "/health",
        "grpc.health.v1.Health.Check",
        _nothing,
        _serving,
        summary="Whether the control plane serves (no key needed).",
    ),
    Alias(
        "GET",
        "/health/detailed",
        "maos.v1.SystemService.GetHealth",
        _nothing,
        query=True,
        summary="Each component's health.",
    ),
    Alias(
        "POST",
        "/api/v1/tasks",
        "maos.v1.TaskService.SubmitTask",
        submit_request,
        submitted,
        summary="Submit a task.",
        field=guide_field,
    ),
    Alias(
        "GET", "/api/v1/tasks", "maos.v1.TaskService.ListTasks", _nothing, query=True, summary="List tasks."
    ),
    Alias(
        "GET",
        "/api/v1/tasks/{task_id}",
        "maos.v1.TaskService.GetTask",
        _name,
        with_task_id,
        query=True,
        summary="A task.",
        field=path_field,
    ),
    Alias(
        "DELETE",
        "/api/v1/tasks/{task_id}",
        "maos.v1.TaskService.CancelTask",
        _name,
        with_task_id,
        query=True,
        summary="Cancel a task.",
        field=path_field,
    ),
    Alias(
        "GET",
        "/api/v1/agents",
        "maos.v1.AgentService.ListAgents",
        _nothing,
        query=True,
        summary="List agents.",
    ),
    Alias(
        "POST",
        "/api/v1/agents",
        "maos.v1.AgentService.SpawnAgents",
        _body,
        summary="Spawn agents (agent_type, count, ...).",
    ),
    Alias(
        "GET",
        "/api/v1/system/status",
        "maos.v1.SystemService.GetStatus",
        _nothing,
        query=True,
        summary="Version, uptime and counts.",
    ),
    Alias(
        "GET",
        "/api/v1/system/metrics",
        "maos.v1.SystemService.GetMetricsSummary",
        _nothing,
        query=True,
        summary="A summary of the metrics.",
    ),
]
