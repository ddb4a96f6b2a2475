"""The replica registry: every control plane on a database registers, heartbeats and deregisters.

At start a control plane inserts its row in ``replicas`` (id, advertised address, version,
start time); every ``replicas.heartbeat_interval`` it renews ``heartbeat_at`` with what it holds
(connected agents, subtask leases, job leases); a clean stop deletes the row and releases its
job leases. A replica whose heartbeat is older than ``replicas.lost_after`` is shown as lost
(killed, or cut from the database); rows silent for :data:`PRUNE_AFTER` (an hour) are deleted.

A replica id is new at every start (``host-pid-random``) unless ``server.replica_id`` names one;
a named id that a live replica holds is refused at start.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from controlplane.errors import FailedPrecondition, MaosError
from controlplane.periodic import PeriodicJob
from controlplane.storage.replicas import ReplicaRow, ReplicaStore

log = logging.getLogger(__name__)

#: Rows of replicas silent this long (seconds) are deleted by the others' heartbeats (checked every minute).
PRUNE_AFTER = 3600.0


def new_replica_id(configured: str = "") -> str:
    """``configured`` when set, else ``<host>-<pid>-<6 hex>``: readable, and new at every start."""
    return configured or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class ReplicaView:
    """A registered replica as ``maos status`` shows it."""

    row: ReplicaRow
    lost: bool
    this: bool


class ReplicaRegistry:
    """This control plane's row in the registry, and the view of all of them.

    Args:
        storage: The :class:`~controlplane.storage.executor.StorageExecutor` (calls run on its thread).
        store: The backend's replica store.
        replica: This replica's id.
        version: This replica's version.
        started_at: When it started.
        interval: Seconds between heartbeats (``replicas.heartbeat_interval``).
        lost_after: Seconds of silence after which a replica is shown as lost (``replicas.lost_after``).
        details: What this replica holds now (a JSON-able dict), read at every heartbeat.
    """

    def __init__(
        self,
        storage: Any,
        store: ReplicaStore,
        replica: str,
        version: str,
        started_at: float,
        interval: float,
        lost_after: float,
        details: Callable[[], dict[str, Any]] = dict,
    ):
        self.storage = storage
        self.store = store
        self.replica = replica
        self.version = version
        self.started_at = started_at
        self.interval = interval
        self.lost_after = lost_after
        self.details = details
        self.address = ""
        self.registered = False
        #: The job leases of this replica (on a database replicas share), else None.
        self.leases: Any = None
        #: The unclaimed backlog (:mod:`controlplane.replicas.backlog`) where tasks are claimed, else None.
        self.backlog: Any = None
        #: When the last heartbeat was written (0 before registering): its ``heartbeat_at``, the wall clock.
        self.last_ok = 0.0
        #: The same moment on the monotonic clock (``time.monotonic()``): what self-fencing compares
        #: with, unmoved by changes of the wall clock.
        self.last_ok_clock = 0.0
        #: Whether a heartbeat found this replica's row gone (deleted as lost).
        self.gone = False
        #: Seconds of the longest gap between two heartbeats past ``lost_after`` (0: none).
        self.lapsed = 0.0
        #: Register again when the row is found gone (False with claims: the replica fences itself).
        self.rejoin = True
        self._job = PeriodicJob("replica heartbeat", self.heartbeat, interval)
        self._pruned = 0.0

    def check_id(self) -> None:
        """Refuse to start with an id a live replica holds (called before anything starts).

        Raises:
            FailedPrecondition: A live replica already uses this id (``server.replica_id``).
        """
        now = time.time()
        for row in self.store.list_replicas():
            if row.id == self.replica and row.heartbeat_at >= now - self.lost_after:
                self._refuse(row, now)

    def _refuse(self, other: ReplicaRow, now: float) -> None:
        raise FailedPrecondition(
            f"replica id {self.replica!r} is in use by a live control plane at {other.address} "
            f"(last heartbeat {max(0.0, now - other.heartbeat_at):.1f} s ago): give each replica its own "
            "server.replica_id, or leave it empty for a generated one",
            reason="ERROR_REASON_ALREADY_EXISTS",
            metadata={"setting": "server.replica_id"},
        )

    async def register(self, address: str) -> None:
        """Insert this replica's row (advertising ``address``) and start heartbeating.

        Raises:
            FailedPrecondition: A live replica already uses this id (``server.replica_id``).
        """
        self.address = address
        now, clock = time.time(), time.monotonic()
        row = ReplicaRow(self.replica, address, self.version, self.started_at, now, self.details())
        other = await self.storage.call(self.store.register_replica, row, now - self.lost_after)
        if other is not None:  # started meanwhile (check_id saw none)
            self._refuse(other, now)
        self.registered = True
        self.last_ok, self.last_ok_clock = now, clock
        log.info("registered as replica %s at %s", self.replica, address)
        self._job.start()

    async def heartbeat(self) -> None:
        """Renew this replica's heartbeat (re-registering if its row was pruned), prune the long silent."""
        now, clock = time.time(), time.monotonic()
        alive = await self.storage.call(self.store.heartbeat_replica, self.replica, now, self.details())
        if alive:
            if (
                self.last_ok_clock and clock - self.last_ok_clock > self.lost_after
            ):  # others may have seen it as lost
                self.lapsed = clock - self.last_ok_clock
            self.last_ok, self.last_ok_clock = now, clock
        elif not self.rejoin:
            self.gone = True
            log.error("replica %s found its registry row gone (deleted as lost)", self.replica)
        else:  # deleted as silent (this process was cut off that long): come back
            row = ReplicaRow(self.replica, self.address, self.version, self.started_at, now, self.details())
            await self.storage.call(self.store.register_replica, row, now - self.lost_after)
            log.warning("replica %s was deregistered as lost; registered again", self.replica)
        if now - self._pruned >= 60.0:
            self._pruned = now
            await self.storage.call(self.store.prune_replicas, now - PRUNE_AFTER)

    def silent_for(self) -> float:
        """Seconds since the moment the last heartbeat written was taken (monotonic clock; 0 unregistered)."""
        return time.monotonic() - self.last_ok_clock if self.registered else 0.0

    async def deregister(self) -> None:
        """Stop heartbeating and delete this replica's row (its job leases are released)."""
        await self._job.stop()
        if self.registered:
            self.registered = False
            try:
                await self.storage.call(self.store.deregister_replica, self.replica)
            except MaosError as exc:  # shown as lost after replicas.lost_after, then pruned
                log.warning("could not deregister replica %s: %s", self.replica, exc)

    async def replicas(self) -> list[ReplicaView]:
        """Every registered replica, oldest first; those silent past ``lost_after`` marked lost.

        This replica's details are read now; the others' are as of their last heartbeat.
        """
        now = time.time()
        rows = await self.storage.quick_read(self.store.list_replicas)  # (not behind a checkpoint)
        for row in rows:
            if row.id == self.replica:  # this one's figures as they are now, not as of its heartbeat
                row.details = self.details()
        return [
            ReplicaView(row, now - row.heartbeat_at > self.lost_after, row.id == self.replica) for row in rows
        ]
