"""Replicas and job leases on the SQLAlchemy backend: the ``replicas`` and ``job_leases`` tables.

A capability module of its own (see :mod:`controlplane.storage.replicas` for the interface): the
control plane reaches it with :func:`replica_store`, never through the backend's class.

Times are the callers' wall clocks (seconds since the epoch): replicas sharing a database must
have clocks that agree to well within a lease (NTP does).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from controlplane.storage.replicas import LeaseGrant, ReplicaRow
from controlplane.storage.sql import schema
from controlplane.storage.sql.backend import SqlBackend, translate_errors

_R = schema.replicas
_L = schema.job_leases


def replica_store(backend: Any) -> SqlReplicaStore | None:
    """The replica store of ``backend`` when it is the SQLAlchemy backend, else None."""
    if isinstance(backend, SqlBackend):
        return SqlReplicaStore(backend.engine.execution_options(maos_writes=True), backend.engine)
    return None


class SqlReplicaStore:
    """:class:`~controlplane.storage.replicas.ReplicaStore` on a SQLAlchemy engine.

    Args:
        writes: The engine for transactions that write (on SQLite they take the write lock at BEGIN).
        reads: The engine for reads.
    """

    def __init__(self, writes: Engine, reads: Engine) -> None:
        self._writes = writes
        self._reads = reads

    # --- replicas -------------------------------------------------------------------

    def register_replica(self, row: ReplicaRow, live_after: float) -> ReplicaRow | None:
        """Insert ``row``; a row of the same id whose heartbeat is at or after ``live_after`` is kept.

        Returns:
            None when registered (a stale row of the same id is replaced), else the live row in the way.
        """
        with translate_errors(), self._writes.begin() as conn:
            found = conn.execute(select(_R).where(_R.c.id == row.id).with_for_update()).first()
            if found is not None:
                if found.heartbeat_at >= live_after:
                    return _row(found)
                conn.execute(delete(_R).where(_R.c.id == row.id))
            conn.execute(_R.insert().values(**_values(row)))
        return None

    def heartbeat_replica(self, replica_id: str, at: float, details: dict[str, Any]) -> bool:
        """Renew a replica's heartbeat and details; False when its row is gone (deleted as lost)."""
        data = json.dumps(details, separators=(",", ":"))
        with translate_errors(), self._writes.begin() as conn:
            done = conn.execute(
                update(_R).where(_R.c.id == replica_id).values(heartbeat_at=at, data=data)
            ).rowcount
        return bool(done)

    def deregister_replica(self, replica_id: str) -> None:
        """Remove a replica's row and release every job lease it holds."""
        with translate_errors(), self._writes.begin() as conn:
            conn.execute(delete(_R).where(_R.c.id == replica_id))
            conn.execute(update(_L).where(_L.c.holder == replica_id).values(expires_at=0.0))

    def list_replicas(self) -> list[ReplicaRow]:
        """Every registered replica, oldest start first."""
        with translate_errors(), self._reads.connect() as conn:
            rows = conn.execute(select(_R).order_by(_R.c.started_at, _R.c.id)).all()
        return [_row(r) for r in rows]

    def prune_replicas(self, before: float) -> int:
        """Delete replicas whose last heartbeat is older than ``before``; how many."""
        with translate_errors(), self._writes.begin() as conn:
            return conn.execute(delete(_R).where(_R.c.heartbeat_at < before)).rowcount or 0

    # --- job leases -----------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, now: float, ttl: float) -> LeaseGrant | None:
        """Take the lease ``name`` for ``ttl`` seconds if it is free, expired or already ``holder``'s.

        Taking it from another holder (or anew) increments its fencing token; renewing one's own
        keeps it.

        Returns:
            The grant, or None while another holder's lease runs.
        """
        with translate_errors(), self._writes.begin() as conn:
            found = conn.execute(select(_L).where(_L.c.name == name).with_for_update()).first()
            if found is None:  # two replicas may both get here: the row goes to one, the other waits
                inserted = conn.execute(
                    _insert(conn)(_L)
                    .values(name=name, holder=holder, token=1, expires_at=now + ttl)
                    .on_conflict_do_nothing(index_elements=["name"])
                    .returning(_L.c.name)
                ).first()
                return LeaseGrant(name, holder, 1, now + ttl) if inserted is not None else None
            if found.holder == holder and found.expires_at > now:
                token = int(found.token)
            elif found.expires_at <= now:
                token = int(found.token) + 1
            else:
                return None
            conn.execute(
                update(_L).where(_L.c.name == name).values(holder=holder, token=token, expires_at=now + ttl)
            )
        return LeaseGrant(name, holder, token, now + ttl)

    def renew_lease(self, grant: LeaseGrant, now: float, ttl: float) -> LeaseGrant | None:
        """Extend a held lease (same holder and token, not yet expired); None when it was lost."""
        with translate_errors(), self._writes.begin() as conn:
            done = conn.execute(
                update(_L)
                .where(
                    _L.c.name == grant.name,
                    _L.c.holder == grant.holder,
                    _L.c.token == grant.token,
                    _L.c.expires_at > now,
                )
                .values(expires_at=now + ttl)
            ).rowcount
        return LeaseGrant(grant.name, grant.holder, grant.token, now + ttl) if done else None

    def release_lease(self, grant: LeaseGrant) -> None:
        """Give a held lease up at once (another replica may take it right away)."""
        with translate_errors(), self._writes.begin() as conn:
            conn.execute(
                update(_L)
                .where(_L.c.name == grant.name, _L.c.holder == grant.holder, _L.c.token == grant.token)
                .values(expires_at=0.0)
            )

    def list_leases(self, now: float) -> list[LeaseGrant]:
        """The leases held now (not expired), by name."""
        with translate_errors(), self._reads.connect() as conn:
            rows = conn.execute(select(_L).where(_L.c.expires_at > now).order_by(_L.c.name)).all()
        return [LeaseGrant(r.name, r.holder, int(r.token), r.expires_at) for r in rows]

    def fenced(self, grant: LeaseGrant, now: float) -> bool:
        """Whether ``grant`` still holds (its holder and token, not expired)."""
        with translate_errors(), self._reads.connect() as conn:
            row = conn.execute(
                select(_L.c.name).where(
                    _L.c.name == grant.name,
                    _L.c.holder == grant.holder,
                    _L.c.token == grant.token,
                    _L.c.expires_at > now,
                )
            ).first()
        return row is not None


def _insert(conn: Any) -> Any:
    """The dialect's INSERT (with ``on_conflict_do_nothing``) for ``conn``'s database."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


def _values(row: ReplicaRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "address": row.address,
        "version": row.version,
        "started_at": row.started_at,
        "heartbeat_at": row.heartbeat_at,
        "data": json.dumps(row.details, separators=(",", ":")),
    }


def _row(r: Any) -> ReplicaRow:
    try:
        details = json.loads(r.data)
    except ValueError:
        details = {}
    return ReplicaRow(r.id, r.address, r.version, r.started_at, r.heartbeat_at, details)
