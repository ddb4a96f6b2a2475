"""Periodic jobs under a database lease: one replica at a time runs each, another takes over.

A :class:`LeasedJob` wraps a job with ``start()`` / ``async stop()`` (audit retention, the
automatic checkpoint job, the metrics history sampler). Every ``ttl / 3`` seconds it tries to
take the job's row in ``job_leases`` (free, expired, or already its own) or renews the one it
holds; while it holds the lease the job runs, and when it loses it (another replica took it after
an expiry, or the database could not confirm it before it ran out) the job is stopped. A clean stop
releases the lease so another replica takes over at its next attempt; a killed holder's lease
expires after ``replicas.job_lease_ttl``, so the job moves within ``ttl + ttl / 3``.

Each new holder gets a larger fencing token (:attr:`LeasedJob.grant`). Right before each run of
the job (a prune, an automatic checkpoint) the holder confirms in the database that its grant
still holds (:meth:`LeasedJob.confirm`: same holder and token, not expired) and skips the run
otherwise, so a holder whose lease was taken over (it stalled past the ttl) does not run the job
until its next round notices the loss and stops it. The check and the run are not one transaction:
a holder stalling between them can still overlap one run with the new holder's, which the jobs
bear (each is idempotent).

The metrics history is sampled on every replica (a sample is keyed by replica and time); only its
pruning runs under the ``metrics-history`` lease.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from controlplane.errors import FailedPrecondition, MaosError
from controlplane.periodic import PeriodicJob
from controlplane.storage.replicas import LeaseGrant, ReplicaStore

log = logging.getLogger(__name__)


#: The periodic jobs installed as plugins: plugin name -> (lease name, the attribute holding the job).
#: The metrics history sampler keeps sampling everywhere: its pruning job goes under the lease.
LEASED_PLUGINS = {
    "maos-checkpoints": ("checkpoints", "job"),
    "maos-metrics-history": ("metrics-history", "sampler"),
}


class JobLeases:
    """The leases of one replica: the holder name, the lease length, and the jobs under them."""

    def __init__(self, storage: Any, store: ReplicaStore, holder: str, ttl: float):
        self.storage = storage
        self.store = store
        self.holder = holder
        self.ttl = ttl
        self.jobs: dict[str, LeasedJob] = {}

    def wrap(self, name: str, job: Any) -> LeasedJob:
        """``job`` (with ``start()`` and ``async stop()``) run under the lease ``name``."""
        leased = LeasedJob(name, job, self)
        self.jobs[name] = leased
        return leased

    def wrap_plugins(self, pm: Any) -> None:
        """Put the jobs of the registered :data:`LEASED_PLUGINS` under their leases."""
        for plugin_name, (lease, attribute) in LEASED_PLUGINS.items():
            plugin = pm.get_plugin(plugin_name)
            if plugin is None:
                continue
            job = getattr(plugin, attribute)
            if hasattr(job, "pruning_job"):  # the history sampler: samples everywhere, prunes under the lease
                if job.pruning is None:
                    job.pruning = self.wrap(lease, job.pruning_job())
            elif not isinstance(job, LeasedJob):
                setattr(plugin, attribute, self.wrap(lease, job))

    def held(self) -> list[str]:
        """Names of the jobs whose lease this replica holds now."""
        return sorted(name for name, job in self.jobs.items() if job.grant is not None)


class LeasedJob:
    """Runs ``job`` only while this replica holds the lease ``name`` (see the module docstring).

    Other attributes are the wrapped job's (``app.retention.prune(...)`` still works).
    """

    def __init__(self, name: str, job: Any, leases: JobLeases):
        self.name = name
        self.job = job
        self.leases = leases
        #: The lease while held (its fencing token), else None.
        self.grant: LeaseGrant | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = False
        #: Lease rounds done (one each ``every`` seconds).
        self.rounds = 0
        self._fence(job)

    def _fence(self, job: Any) -> None:
        """Make ``job`` confirm the lease before each run (:meth:`confirm`)."""
        periodic = getattr(job, "periodic", job)
        if isinstance(periodic, PeriodicJob):
            periodic.guard = self.confirm
        elif hasattr(job, "checkpoints"):  # the automatic checkpoint job: each run takes one checkpoint
            job.checkpoints = _Fenced(job.checkpoints, self)
        else:
            raise TypeError(f"{type(job).__name__} offers no way to confirm its lease before a run")

    async def confirm(self) -> bool:
        """Whether this replica's grant still holds in the database now (else the run is skipped).

        Raises:
            MaosError: The database could not say (the run is skipped too).
        """
        grant = self.grant
        if grant is None:
            return False
        if await self.leases.storage.call(self.leases.store.fenced, grant, time.time()):
            return True
        log.warning("%s: the lease (token %d) is no longer held here; run skipped", self.name, grant.token)
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.job, name)

    @property
    def every(self) -> float:
        """Seconds between attempts to take or renew the lease."""
        return max(0.05, self.leases.ttl / 3)

    def start(self) -> None:
        """Start contending for the lease on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"maos-lease-{self.name}")

    async def stop(self) -> None:
        """Stop the job and release the lease (another replica takes it at its next attempt)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._stop_job()
        grant, self.grant = self.grant, None
        if grant is not None:
            try:
                await self.leases.storage.call(self.leases.store.release_lease, grant)
            except MaosError as exc:  # it expires within the ttl
                log.warning("could not release the lease of %s: %s", self.name, exc)

    async def _stop_job(self) -> None:
        if self._running:
            self._running = False
            await self.job.stop()

    async def _run(self) -> None:
        leases = self.leases
        while True:
            now = time.time()
            try:
                if self.grant is None:
                    self.grant = await leases.storage.call(
                        leases.store.acquire_lease, self.name, leases.holder, now, leases.ttl
                    )
                    if self.grant is not None:
                        log.info("%s: lease taken (token %d)", self.name, self.grant.token)
                        self._running = True
                        self.job.start()
                else:
                    renewed = await leases.storage.call(leases.store.renew_lease, self.grant, now, leases.ttl)
                    if renewed is None:
                        log.warning("%s: lease lost to another replica; stopping the job", self.name)
                        self.grant = None
                        await self._stop_job()
                    else:
                        self.grant = renewed
            except MaosError as exc:
                log.warning("%s: cannot reach the lease: %s", self.name, exc)
                # Unconfirmed: stop before the lease can run out, so no two replicas run the job.
                if self.grant is not None and time.time() + self.every >= self.grant.expires_at:
                    self.grant = None
                    await self._stop_job()
            except Exception:
                log.exception("%s: lease round failed", self.name)
            self.rounds += 1
            await asyncio.sleep(self.every)


class _Fenced:
    """The checkpoint service of the automatic checkpoint job, confirming the lease before each one."""

    def __init__(self, checkpoints: Any, leased: LeasedJob):
        self.checkpoints = checkpoints
        self.leased = leased

    def __getattr__(self, name: str) -> Any:
        return getattr(self.checkpoints, name)

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        if not await self.leased.confirm():
            raise FailedPrecondition(f"the {self.leased.name} lease is no longer held here; skipped")
        return await self.checkpoints.create(*args, **kwargs)
