"""Wiring replicas into a built control plane: the registry, periodic jobs under leases, the bus.

:func:`install_replicas` makes the registry (registered at startup with the bound address,
deregistered at shutdown) and, on a database that several replicas can share (PostgreSQL), puts
the periodic jobs that must run once per system under job leases. SQLite is single-process
(:mod:`controlplane.replicas.sqlite_lock`), so there the jobs run as they are.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import pluggy

from controlplane.errors import InvalidArgument
from controlplane.hookspecs import hookimpl
from controlplane.replicas.backlog import BacklogLifecycle, UnclaimedBacklog
from controlplane.replicas.bus import POSTGRES_MAX_PAYLOAD, REDIS_MAX_PAYLOAD, ReplicaBus
from controlplane.replicas.leases import JobLeases
from controlplane.replicas.redis_conn import CONNECT_TIMEOUT, RedisConnection
from controlplane.replicas.registry import ReplicaRegistry
from controlplane.replicas.wakeups import PostgresWakeupBus, RedisWakeupBus
from controlplane.scheduler.claims import this_process
from controlplane.storage.sql.claims import claim_store
from controlplane.storage.sql.replicas import replica_store
from controlplane.version import __version__

log = logging.getLogger(__name__)


def advertised(address: str, configured: str = "") -> str:
    """The address other replicas and ``maos status`` show: ``configured``, else the bound one
    with a wildcard host (``0.0.0.0``, ``[::]``) replaced by this machine's name."""
    if configured:
        return configured
    host, _, port = address.rpartition(":")
    if host in ("0.0.0.0", "[::]", "::", ""):
        host = socket.gethostname()
    return f"{host}:{port}"


def running_replicas(backend: Any, settings: Any) -> set[str]:
    """Ids of the replicas alive on ``backend``'s database (heard from within ``replicas.lost_after``);
    none on a backend without the replica registry. Called while building, on the caller's thread."""
    store = replica_store(backend)
    if store is None:
        return set()
    since = time.time() - settings["replicas.lost_after"]
    return {row.id for row in store.list_replicas() if row.heartbeat_at >= since}


class _Lifecycle:
    """A plugin object registering the replica at startup and deregistering it at shutdown."""

    def __init__(self, registry: ReplicaRegistry, settings: Any, claims: Any = None):
        self.registry = registry
        self.settings = settings
        self.claims = claims

    @hookimpl(tryfirst=True)
    async def startup(self, app: Any) -> None:
        await self.registry.register(advertised(app.address, self.settings["replicas.advertise_address"]))
        if self.claims is not None:  # registered first: a live row keeps what it claims its own
            await self.claims.start()

    @hookimpl(trylast=True)
    async def shutdown(self, app: Any) -> None:
        if self.claims is not None:  # gives up its tasks while its row still says it is alive
            await self.claims.stop()
        await self.registry.deregister()


def install_replicas(
    pm: pluggy.PluginManager,
    engine: Any,
    storage: Any,
    settings: Any,
    redis: RedisConnection | None = None,
) -> ReplicaRegistry | None:
    """The replica registry of this control plane (None on a backend without the capability).

    On PostgreSQL ``registry.leases`` is set: the caller puts the periodic jobs under it
    (:meth:`~controlplane.replicas.leases.JobLeases.wrap`, ``wrap_plugins``); and the engine
    claims its tasks (:mod:`controlplane.scheduler.claims`), woken through Redis pub/sub when
    ``redis`` is given, else through LISTEN/NOTIFY.

    Raises:
        InvalidArgument: ``replicas.lost_after`` is not more than twice ``replicas.heartbeat_interval``.
    """
    store = replica_store(storage.backend)
    if store is None:
        return None
    leases = JobLeases(storage, store, engine.replica, settings["replicas.job_lease_ttl"])
    process = this_process()

    def details() -> dict[str, Any]:
        return {
            "agents": len(engine.connected()),
            "leases": engine.leases_held(),
            "jobs": leases.held(),
            "process": process,  # lets a replica on this machine tell that this one died
        }

    registry = ReplicaRegistry(
        storage,
        store,
        engine.replica,
        __version__,
        engine.started_at,
        settings["replicas.heartbeat_interval"],
        settings["replicas.lost_after"],
        details,
    )
    if settings["server.replica_id"]:  # a generated id is new; a configured one may be in use
        try:
            registry.check_id()
        except BaseException:
            storage.close()
            raise
    claims = None
    claims_from = claim_store(storage.backend)
    if storage.backend.kind == "postgresql":
        registry.leases = leases

        async def live_replicas() -> set[str]:
            return {view.row.id for view in await registry.replicas() if not view.lost and not view.this}

        engine.live_replicas = live_replicas
    if claims_from is not None:
        lost_after, interval = settings["replicas.lost_after"], settings["replicas.heartbeat_interval"]
        if lost_after <= 2 * interval:
            storage.close()
            raise InvalidArgument(
                f"replicas.lost_after ({lost_after:g} s) must be more than twice replicas.heartbeat_interval "
                f"({interval:g} s): a replica missing one heartbeat would count as lost and stop itself",
                field="replicas.lost_after",
            )
        bus: Any = (
            RedisWakeupBus(redis.client, redis.prefix)
            if redis is not None
            else PostgresWakeupBus(settings.database_url)
        )
        registry.rejoin = False
        storage.backend.claimant = engine.replica  # its writes of a task another replica took change nothing
        claims = engine.enable_claims(
            claims_from,
            bus,
            registry,
            lost_after=lost_after,
            window=settings["replicas.claim_window"],
            poll_interval=settings["replicas.claim_poll_interval"],
        )
        registry.backlog = UnclaimedBacklog(storage, claims_from)
        pm.register(BacklogLifecycle(registry.backlog), name="maos-unclaimed-backlog")
        metrics = getattr(engine, "metrics", None)
        if metrics is not None:
            metrics.watch_unclaimed(registry.backlog)
    pm.register(_Lifecycle(registry, settings, claims), name="maos-replicas")
    return registry


class _RedisLifecycle:
    """A plugin object closing the Redis clients at shutdown."""

    def __init__(self, redis: RedisConnection):
        self.redis = redis

    @hookimpl(trylast=True)
    async def shutdown(self, app: Any) -> None:
        await self.redis.close()


def open_redis(settings: Any) -> RedisConnection | None:
    """The Redis connection of ``redis.url`` once it answered PING, or None when unset.

    Raises:
        FailedPrecondition: The redis package is missing or the URL is not one.
        Unavailable: Redis does not answer (see :mod:`controlplane.replicas.redis_conn`).
    """
    if not settings["redis.url"]:
        return None
    redis = RedisConnection(settings["redis.url"], settings["redis.key_prefix"])
    try:
        redis.check()
    except BaseException:
        close_unstarted(redis)
        raise
    log.info("Redis at %s answers (keys under %r)", redis.shown, redis.prefix)
    return redis


def close_unstarted(redis: RedisConnection | None) -> None:
    """Close ``redis`` when the control plane using it failed to build (before any loop used it)."""
    if redis is not None:
        redis.sync.close()


def install_redis(pm: pluggy.PluginManager, redis: RedisConnection | None) -> None:
    """Close ``redis`` when the app stops."""
    if redis is not None:
        pm.register(_RedisLifecycle(redis), name="maos-redis")


class _BusLifecycle:
    """A plugin object connecting the replicas' bus at startup and closing it at shutdown."""

    def __init__(self, bus: ReplicaBus, connect: Callable[[], tuple[Any, Any]]):
        self.bus = bus
        self.connect = connect
        self._client: Any = None

    @hookimpl
    async def startup(self, app: Any) -> None:
        self.bus.transport, self._client = self.connect()
        await self.bus.start()

    @hookimpl(tryfirst=True)
    async def shutdown(self, app: Any) -> None:
        if self.bus.transport is not None:
            await self.bus.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def install_bus(
    pm: pluggy.PluginManager,
    settings: Any,
    backend_kind: str,
    redis: RedisConnection | None,
    registry: ReplicaRegistry | None,
    replica: str,
) -> ReplicaBus | None:
    """The replicas' bus (:mod:`controlplane.replicas.bus`) on a database several replicas share.

    Over Redis pub/sub with ``redis.url``, else PostgreSQL LISTEN/NOTIFY; None on SQLite (one
    control plane: nothing to route). Connected when the app starts, closed when it stops.
    """
    if backend_kind != "postgresql":
        return None

    def connect() -> tuple[Any, Any]:
        if redis is not None:
            import redis.asyncio as aioredis

            # Its own client: a subscription waits without a read timeout (the shared client has one).
            client = aioredis.Redis.from_url(redis.url, socket_connect_timeout=CONNECT_TIMEOUT)
            return RedisWakeupBus(client, redis.prefix, max_payload=REDIS_MAX_PAYLOAD), client
        return PostgresWakeupBus(settings.database_url, max_payload=POSTGRES_MAX_PAYLOAD), None

    async def peers() -> int:
        assert registry is not None
        return sum(1 for view in await registry.replicas() if not view.lost and not view.this)

    where = f"Redis at {redis.shown}" if redis is not None else "PostgreSQL LISTEN/NOTIFY"
    bus = ReplicaBus(
        None,
        replica,
        timeout=settings["replicas.route_timeout"],
        peers=peers if registry is not None else None,
        where=where,
    )
    pm.register(_BusLifecycle(bus, connect), name="maos-replica-bus")
    return bus
