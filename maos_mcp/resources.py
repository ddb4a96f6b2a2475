"""The MCP resources of MAOS: the running tasks, and each task by id.

``maos://tasks/running`` lists the unfinished tasks the API key may see (pending, queued and
running); ``maos://tasks/{task_id}`` (a resource template) is one task with its subtasks and plan,
as ``get_task`` shows it. Both are JSON.
"""

from __future__ import annotations

import json
import re
from typing import Any

import mcp_types as types
from mcp.shared.exceptions import MCPError

from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError, NotFoundError
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from maos_cli._output import to_data
from maos_mcp.tools import bare_id, task_summary

RUNNING_URI = "maos://tasks/running"
TASK_TEMPLATE = "maos://tasks/{task_id}"
#: resources/list names at most this many running tasks (the listing resource holds them too).
MAX_LISTED = 50
#: The JSON-RPC error code MCP uses for an unknown resource.
RESOURCE_NOT_FOUND = -32002

_TASK_URI = re.compile(r"^maos://tasks/([A-Za-z0-9_-]{1,100})$")
_UNFINISHED = [enums.TASK_STATUS_PENDING, enums.TASK_STATUS_QUEUED, enums.TASK_STATUS_RUNNING]
_JSON = "application/json"


def task_uri(task_id: str) -> str:
    """``maos://tasks/{id}`` of a task id or name."""
    return f"maos://tasks/{bare_id(task_id)}"


async def running_tasks(client: Client) -> list[Any]:
    """The unfinished tasks the client's key may see, newest first (at most MAX_LISTED)."""
    page = await client.list_tasks(statuses=_UNFINISHED, page_size=MAX_LISTED)
    return list(page.tasks)


async def list_resources(client: Client) -> types.ListResourcesResult:
    """The running-tasks listing and one resource per running task."""
    resources = [
        types.Resource(
            name="running-tasks",
            title="Running tasks",
            uri=RUNNING_URI,
            mime_type=_JSON,
            description="Unfinished tasks (pending, queued, running) this key may see.",
        )
    ]
    for task in await running_tasks(client):
        resources.append(
            types.Resource(
                name=f"task-{bare_id(task.name)}",
                uri=task_uri(task.name),
                title=task.description[:80],
                mime_type=_JSON,
                description=f"Task {bare_id(task.name)}: status, subtasks and plan.",
            )
        )
    return types.ListResourcesResult(resources=resources)


def list_templates() -> types.ListResourceTemplatesResult:
    """The per-task resource template."""
    return types.ListResourceTemplatesResult(
        resource_templates=[
            types.ResourceTemplate(
                name="task",
                title="A task",
                uri_template=TASK_TEMPLATE,
                mime_type=_JSON,
                description="One task by id: status, progress, subtasks, plan and consensus record.",
            )
        ]
    )


async def read_resource(client: Client, uri: str) -> types.ReadResourceResult:
    """The JSON of ``uri``; an unknown URI or a task the key may not see is RESOURCE_NOT_FOUND."""
    if uri == RUNNING_URI:
        data: Any = {"tasks": [task_summary(t) for t in await running_tasks(client)]}
    else:
        match = _TASK_URI.match(uri)
        if not match:
            raise MCPError(
                RESOURCE_NOT_FOUND, f"unknown resource {uri!r}; use {RUNNING_URI} or {TASK_TEMPLATE}"
            )
        try:
            data = to_data(await client.get_task(match.group(1), full=True))
        except NotFoundError as exc:
            raise MCPError(RESOURCE_NOT_FOUND, exc.message) from None
        except MaosRpcError as exc:
            raise MCPError(types.INVALID_REQUEST, str(exc)) from None
    text = json.dumps(data, default=str, indent=2)
    contents = types.TextResourceContents(uri=uri, mime_type=_JSON, text=text)
    return types.ReadResourceResult(contents=[contents])
