"""Which events webhooks receive, who may receive them, and the JSON body each delivery carries."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from controlplane.domain.events import Event, EventType
from controlplane.domain.model import Task
from controlplane.errors import InvalidArgument
from controlplane.webhooks.records import WebhookRecord

#: The events a webhook may subscribe to, in the order they happen.
EVENT_NAMES = ("task.submitted", "task.started", "task.completed", "task.failed", "task.cancelled")
#: The event ``TestWebhook`` sends (to any webhook, whatever its events).
TEST_EVENT = "webhook.test"
#: A task status reached -> the event it makes.
_STATUS_EVENTS = {
    "RUNNING": "task.started",
    "COMPLETED": "task.completed",
    "FAILED": "task.failed",
    "CANCELLED": "task.cancelled",
}
#: The longest task description a body carries (the task is one GetTask away).
MAX_DESCRIPTION = 1000
#: The body a delivery never exceeds, whatever ``webhooks.max_payload_bytes`` says, is at least this.
MIN_PAYLOAD_BYTES = 4096


def event_name(event: Event) -> str | None:
    """The webhook event an engine event makes, or None when webhooks do not deliver it."""
    if event.type == EventType.TASK_SUBMITTED:
        return "task.submitted"
    if event.type == EventType.TASK_STATUS_CHANGED:
        return _STATUS_EVENTS.get(event.to_status)
    return None


def validate_events(names: Iterable[str], field: str = "webhook.events") -> list[str]:
    """Known event names without repeats, in :data:`EVENT_NAMES` order (empty: every event).

    ``*`` stands for every event.

    Raises:
        InvalidArgument: Naming ``field`` and the unknown names.
    """
    wanted = {str(n).strip().lower() for n in names if str(n).strip()}
    if "*" in wanted:
        return []
    unknown = sorted(wanted - set(EVENT_NAMES))
    if unknown:
        shown = ", ".join(repr(n[:40]) for n in unknown[:5])
        raise InvalidArgument(
            f"{field}: unknown event name(s) {shown}; known: {', '.join(EVENT_NAMES)}", field=field
        )
    return [n for n in EVENT_NAMES if n in wanted]


def subscribed(hook: WebhookRecord, name: str) -> bool:
    """Whether ``hook`` (enabled) takes the event ``name``."""
    return not hook.disabled and (not hook.events or name in hook.events)


#: What tasks a webhook owner may see now: every task, its own, or none (disabled or deleted).
ALL, OWN, NONE = "all", "own", "none"


def may_receive(hook: WebhookRecord, task_owner: str, owner_reach: str) -> bool:
    """Whether ``hook`` may receive events of a task owned by ``task_owner``.

    ``owner_reach`` is what the webhook's owner may see now (:data:`ALL`, :data:`OWN` or
    :data:`NONE`). Its owner's own tasks; every task only when the webhook was made by a caller
    holding ``task:view-all`` *and* its owner holds that permission still.
    """
    if owner_reach == NONE:
        return False
    return task_owner == hook.owner or (hook.view_all and owner_reach == ALL)


def _iso(seconds: float | None) -> str | None:
    if not seconds:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def task_payload(
    event_id: str, name: str, created: float, task: Task, previous_status: str, max_bytes: int
) -> str:
    """The JSON body of a task event: ``{"id", "event", "created", "data": {...}}``, at most ``max_bytes``.

    ``data`` holds the task's identity and state; its ``output`` (and then its
    description) is cut to fit ``max_bytes``, with ``output_truncated`` set.
    """
    data: dict[str, Any] = {
        "task_id": task.id,
        "name": task.name,
        "status": task.status.name,
        "previous_status": previous_status,
        "owner": task.owner,
        "task_type": task.task_type,
        "priority": task.priority.name,
        "description": task.description[:MAX_DESCRIPTION],
        "batch": task.batch,
        "create_time": _iso(task.create_time),
        "start_time": _iso(task.start_time),
        "end_time": _iso(task.end_time),
        "metadata": dict(task.metadata),
        "failure": None
        if task.failure is None
        else {"reason": task.failure.reason, "message": task.failure.message},
        "output": task.output,
        "output_truncated": False,
    }
    return fit({"id": event_id, "event": name, "created": int(created), "data": data}, max_bytes)


def test_payload(event_id: str, created: float, webhook_id: str, owner: str) -> str:
    """The JSON body of a ``webhook.test`` event."""
    return fit(
        {
            "id": event_id,
            "event": TEST_EVENT,
            "created": int(created),
            "data": {
                "webhook": f"webhooks/{webhook_id}",
                "owner": owner,
                "message": "A test event sent by `maos webhook test`.",
            },
        },
        MIN_PAYLOAD_BYTES,
    )


def fit(body: dict[str, Any], max_bytes: int) -> str:
    """``body`` as compact JSON, its ``data.output`` then ``data.description`` cut until it fits."""
    max_bytes = max(max_bytes, MIN_PAYLOAD_BYTES)
    text = _dumps(body)
    data = body["data"]
    for key in ("output", "description"):
        excess = len(text.encode()) - max_bytes
        if excess <= 0:
            break
        value = data.get(key) or ""
        if not value:
            continue
        # Cut by characters, at least the excess in bytes (a character is at least one byte).
        data[key] = value[: max(0, len(value) - excess - 16)]
        if key == "output":
            data["output_truncated"] = True
        text = _dumps(body)
        while len(text.encode()) > max_bytes and data[key]:
            data[key] = data[key][: len(data[key]) // 2]
            text = _dumps(body)
    return text


def _dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))
