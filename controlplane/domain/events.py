"""State-change events, published after the change is committed."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from controlplane.domain.model import now


class EventType(enum.IntEnum):
    """See ``maos.v1.EventType``."""

    TASK_SUBMITTED = 1
    TASK_STATUS_CHANGED = 2
    TASK_UPDATED = 3
    SUBTASK_STATUS_CHANGED = 4
    SUBTASK_PROGRESS = 5
    SUBTASK_OUTPUT = 6
    AGENT_CONNECTED = 7
    AGENT_DISCONNECTED = 8
    AGENT_STATUS_CHANGED = 9
    LEASE_EXPIRED = 10
    PLAN_APPROVAL = 14
    REVIEW_ROUND = 15


@dataclass
class Event:
    """One state change."""

    type: EventType
    task_id: str = ""
    subtask_id: str = ""
    agent_id: str = ""
    from_status: str = ""
    to_status: str = ""
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=now)
    id: int = 0
    #: The principal owning the event's task (set when published; decides who may watch it).
    owner: str = ""
    #: Its id in the replicas' shared event stream (``<ms>-<seq>``; empty when events stay local).
    stream_id: str = ""
