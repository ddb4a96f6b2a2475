"""Batches and task templates: domain services over the engine and the optional storage capabilities."""

from controlplane.workflows.batches import Batches, BatchView
from controlplane.workflows.records import (
    BatchRecord,
    BatchSchedule,
    BatchStatus,
    TemplateParameter,
    TemplateRecord,
)
from controlplane.workflows.templates import Templates

__all__ = [
    "BatchRecord",
    "BatchSchedule",
    "BatchStatus",
    "BatchView",
    "Batches",
    "TemplateParameter",
    "TemplateRecord",
    "Templates",
]
