"""The stored forms of webhooks and their deliveries (no dependencies: the storage layer imports them)."""

from __future__ import annotations

from dataclasses import dataclass, field

#: States of a delivery.
PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"


@dataclass
class WebhookRecord:
    """An HTTP endpoint that receives events of its owner's tasks.

    ``view_all`` records whether the caller that created (or last changed) the
    webhook held ``task:view-all``: with it, and only while the owner still
    holds that permission, the webhook receives events of every task.
    """

    id: str
    owner: str
    url: str
    secret: str
    events: list[str] = field(default_factory=list)  # empty: every webhook event
    disabled: bool = False
    view_all: bool = False
    create_time: float = 0.0
    update_time: float = 0.0
    request_id: str = ""


@dataclass
class DeliveryRecord:
    """One event for one webhook: a row of the outbox and of the delivery log.

    ``claim`` is the token of the process attempting it (empty when none is);
    while claimed, ``next_attempt_time`` is the end of that claim's lease.
    """

    id: str
    webhook_id: str
    event: str
    event_id: str
    payload: str
    task_id: str = ""
    status: str = PENDING
    attempts: int = 0
    create_time: float = 0.0
    next_attempt_time: float = 0.0
    last_attempt_time: float | None = None
    http_status: int = 0
    error: str = ""
    latency: float | None = None
    claim: str = ""
