"""The storage seam of replicas and job leases (an optional capability of a storage backend).

The SQLAlchemy backend's implementation is :mod:`controlplane.storage.sql.replicas`; methods are
synchronous and run on the storage thread (``StorageExecutor.call``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class ReplicaRow:
    """One registered control plane.

    Attributes:
        id: Its replica id (``server.replica_id``, else ``host-pid-random``), new at every start.
        address: The gRPC address it advertises (``host:port``).
        version: Its MAOS version.
        started_at: When it started (seconds since the epoch).
        heartbeat_at: Its last heartbeat.
        details: What it last reported: ``agents`` (connected), ``leases`` (subtask leases held),
            ``jobs`` (periodic jobs whose lease it holds), ``autoscaling`` (the agent types it
            autoscales, when any) and ``scaling_room`` (those of them it can add agents of now).
    """

    id: str
    address: str
    version: str
    started_at: float
    heartbeat_at: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LeaseGrant:
    """A held job lease: its name, holder, fencing token (grows with each new holder) and expiry."""

    name: str
    holder: str
    token: int
    expires_at: float


class ReplicaStore(Protocol):
    """Rows of replicas and job leases (see :class:`controlplane.storage.sql.replicas.SqlReplicaStore`)."""

    def register_replica(self, row: ReplicaRow, live_after: float) -> ReplicaRow | None: ...

    def heartbeat_replica(self, replica_id: str, at: float, details: dict[str, Any]) -> bool: ...

    def deregister_replica(self, replica_id: str) -> None: ...

    def list_replicas(self) -> list[ReplicaRow]: ...

    def prune_replicas(self, before: float) -> int: ...

    def acquire_lease(self, name: str, holder: str, now: float, ttl: float) -> LeaseGrant | None: ...

    def renew_lease(self, grant: LeaseGrant, now: float, ttl: float) -> LeaseGrant | None: ...

    def release_lease(self, grant: LeaseGrant) -> None: ...

    def list_leases(self, now: float) -> list[LeaseGrant]: ...

    def fenced(self, grant: LeaseGrant, now: float) -> bool: ...
