"""Batches and templates as stored (no dependencies beyond the domain model: the storage layer imports it)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from controlplane.domain.model import Task, now


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
