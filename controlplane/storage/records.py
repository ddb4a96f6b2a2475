"""The records storage backends read and write beside tasks, for the optional capabilities.

Plain data with no feature logic, so that a backend depends on nothing but
:mod:`controlplane.storage` and :mod:`controlplane.domain`: join tokens
(:class:`~controlplane.storage.base.StoresJoinTokens`), checkpoints
(:class:`~controlplane.storage.base.StoresCheckpoints`, with what a staged restore found:
:class:`StagedRestore`), webhooks and their deliveries
(:class:`~controlplane.storage.base.StoresWebhooks`), batches and templates
(:class:`~controlplane.storage.base.StoresBatches`, :class:`~controlplane.storage.base.StoresTemplates`).
The feature packages (:mod:`controlplane.access`, :mod:`controlplane.checkpoints`,
:mod:`controlplane.webhooks`, :mod:`controlplane.workflows`) use them from here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from controlplane.domain.model import Task, now

# --- access: join tokens ------------------------------------------------------------------


@dataclass(frozen=True)
class JoinTokenRecord:
    """A stored join token (never its secret: only the SHA-256 ``digest`` of it)."""

    id: str
    digest: str
    agent_types: tuple[str, ...]
    max_uses: int
    uses: int
    create_time: float
    expire_time: float
    revoke_time: float | None = None
    #: The principal that created it, owner of the agents that join with it ("" for older tokens).
    creator: str = ""

    def exhausted(self) -> bool:
        """Whether every allowed use is spent."""
        return 0 < self.max_uses <= self.uses

    def allows(self, agent_type: str) -> bool:
        """Whether an agent of ``agent_type`` may join with it."""
        return not self.agent_types or agent_type in self.agent_types


# --- checkpoints ------------------------------------------------------------------------------


@dataclass
class CheckpointRecord:
    """A checkpoint's metadata, and its compressed payload when loaded."""

    id: str
    display_name: str = ""
    description: str = ""
    create_time: float = 0.0
    automatic: bool = False
    size: int = 0
    compressed_size: int = 0
    sha256: str = ""
    content_sha256: str = ""
    components: list[str] = field(default_factory=list)
    task_count: int = 0
    format_version: str = ""
    payload: bytes | None = None


# --- webhooks -------------------------------------------------------------------------------

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


# --- batches and templates ----------------------------------------------------------------


class BatchStatus(enum.IntEnum):
    """See ``maos.v1.BatchStatus``. Only OPEN and RUNNING (submitted) are stored; the rest is derived."""

    OPEN = 1
    RUNNING = 2
    COMPLETED = 3
    FAILED = 4


class BatchSchedule(enum.IntEnum):
    """See ``maos.v1.BatchSchedule``."""

    PARALLEL = 1
    SEQUENTIAL = 2


@dataclass
class BatchRecord:
    """A named group of tasks: OPEN while tasks are added, then submitted once."""

    id: str
    display_name: str
    owner: str = ""
    create_time: float = field(default_factory=now)
    submitted: bool = False
    schedule: BatchSchedule | None = None
    submit_time: float | None = None
    #: The submitted tasks' ids, in the order they were added.
    task_ids: list[str] = field(default_factory=list)
    #: How many tasks were added (filled in by storage when read).
    entry_count: int = 0
    #: The request_id of the CreateBatch call that made it (a repeated call returns it).
    request_id: str = ""
    #: Set while a submit holds the batch (SUBMITTING): when it claimed it.
    claim_time: float | None = None

    @property
    def name(self) -> str:
        """The resource name, ``batches/{id}``."""
        return f"batches/{self.id}"


@dataclass
class TemplateParameter:
    """A parameter of a template: required unless it has a default."""

    name: str
    description: str = ""
    default: str | None = None


@dataclass
class TemplateRecord:
    """A reusable task definition whose text fields hold ``{param}`` placeholders."""

    id: str
    display_name: str
    task: Task
    owner: str = ""
    description: str = ""
    parameters: list[TemplateParameter] = field(default_factory=list)
    source_task: str = ""
    create_time: float = field(default_factory=now)

    @property
    def name(self) -> str:
        """The resource name, ``templates/{id}``."""
        return f"templates/{self.id}"


@dataclass
class StagedRestore:
    """What a staged restore found (and whether it applied the rows)."""

    #: By component: (restored, changed, unchanged) groups, as ``service.recover`` reports them.
    changes: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    #: Ids of stored tasks the checkpoint does not hold (in id order).
    later_tasks: list[str] = field(default_factory=list)
