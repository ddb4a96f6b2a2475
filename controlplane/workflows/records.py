"""Batches and templates as stored, kept with the other records storage backends use
(:mod:`controlplane.storage.records`)."""

from controlplane.storage.records import (
    BatchRecord,
    BatchSchedule,
    BatchStatus,
    TemplateParameter,
    TemplateRecord,
)

__all__ = ["BatchRecord", "BatchSchedule", "BatchStatus", "TemplateParameter", "TemplateRecord"]
