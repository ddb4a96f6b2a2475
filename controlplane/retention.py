"""Audit retention: records older than ``audit.retention_days`` are deleted, at start and then daily.

A periodic job of the control plane (like automatic checkpoints). It needs a backend with the
optional :class:`~controlplane.storage.base.PrunesAudit` capability; with
``audit.retention_days: 0``, or a backend without it, every record is kept.
"""

from __future__ import annotations

import logging
import time

from controlplane.periodic import PeriodicJob
from controlplane.storage.base import PrunesAudit
from controlplane.storage.executor import StorageExecutor

log = logging.getLogger(__name__)

DAY = 86_400.0


class AuditRetention:
    """Deletes old audit records every ``interval`` seconds while the control plane runs."""

    def __init__(self, storage: StorageExecutor, retention_days: int, interval: float = DAY):
        self.storage = storage
        self.retention_days = retention_days
        #: The job's loop (a job lease sets its ``guard``).
        self.periodic = PeriodicJob("audit retention", self.prune, interval)

    @property
    def enabled(self) -> bool:
        """Whether anything is ever deleted (a retention is set and the backend can delete)."""
        return self.retention_days > 0 and isinstance(self.storage.backend, PrunesAudit)

    async def prune(self, at: float | None = None) -> int:
        """Delete the records older than the retention, as of ``at`` (now); how many went."""
        if not self.enabled:
            return 0
        backend = self.storage.backend
        assert isinstance(backend, PrunesAudit)
        cutoff = (time.time() if at is None else at) - self.retention_days * DAY
        deleted = await self.storage.call(backend.delete_audit_before, cutoff)
        if deleted:
            log.info(
                "deleted %d audit records older than %d days (audit.retention_days)",
                deleted,
                self.retention_days,
            )
        return deleted

    def start(self) -> None:
        """Prune now and then every interval, in the background."""
        if self.enabled:
            self.periodic.start()

    async def stop(self) -> None:
        """Stop the background job (a prune under way is cancelled; its transaction rolls back)."""
        await self.periodic.stop()
