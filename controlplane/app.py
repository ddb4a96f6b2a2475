"""The composition root: ``build_app`` wires every component, in production and in tests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pluggy

from controlplane.access.join_tokens import JoinTokens
from controlplane.access.manager import AccessManager
from controlplane.access.rate_limit import CallLimits
from controlplane.access.refresh import install_access_refresh
from controlplane.agent_limits import AgentLimits
from controlplane.agent_types import agent_type, type_capabilities
from controlplane.api.admission import AgentAdmission
from controlplane.api.auth import AuthInterceptor
from controlplane.api.errors import ErrorAndMetricsInterceptor
from controlplane.api.forwarding import Forwarder
from controlplane.api.server import (
    build_server,
    check_bind_address,
    check_metrics_address,
    set_serving,
)
from controlplane.api.servicers.access import AccessServicer, AuditServicer
from controlplane.api.servicers.agents import AgentServicer
from controlplane.api.servicers.batches import BatchServicer
from controlplane.api.servicers.gateway import GatewayServicer
from controlplane.api.servicers.system import SystemServicer
from controlplane.api.servicers.tasks import TaskServicer
from controlplane.api.servicers.templates import TemplateServicer
from controlplane.api.tls import ServerCredentials, ServerTls, server_tls
from controlplane.autoscaler import Autoscaler, autoscaling_wanted
from controlplane.config import Settings
from controlplane.dashboard import DashboardServer
from controlplane.errors import FailedPrecondition, InvalidArgument
from controlplane.home import secure_home
from controlplane.http.mcp_mount import MCP_PATH, mount_mcp
from controlplane.http.server import HttpServer, check_http_address
from controlplane.launcher import LocalLauncher
from controlplane.logbook import LogBook, LogBookHandler
from controlplane.metrics import Metrics
from controlplane.observability.wiring import install_observability
from controlplane.pacing import Pacer
from controlplane.plugins import await_me_maybe, get_plugin_manager
from controlplane.pool import AgentSupply
from controlplane.replicas.event_stream import install_event_streams
from controlplane.replicas.redis_pacing import shared_pacing
from controlplane.replicas.redis_stores import share_limits
from controlplane.replicas.registry import new_replica_id
from controlplane.replicas.report_relay import install_report_relay
from controlplane.replicas.session_relay import install_session_relay
from controlplane.replicas.wiring import (
    close_unstarted,
    install_bus,
    install_redis,
    install_replicas,
    open_redis,
    running_replicas,
)
from controlplane.retention import AuditRetention
from controlplane.scheduler.engine import Engine
from controlplane.storage.base import (
    ReportsSchema,
    StorageBackend,
    StoresAccess,
    StoresAudit,
    open_storage,
    require,
)
from controlplane.storage.executor import StorageExecutor
from controlplane.storage.sql.spill import spill_store
from controlplane.wiring.checkpoints import install_checkpoints
from controlplane.wiring.webhooks import install_webhooks
from controlplane.workflows import Batches, Templates
from maos_common.addresses import local_address
from maos_common.redaction import redact_url

log = logging.getLogger(__name__)


@dataclass
class App:
    """A built control plane: start it, serve, stop it."""

    settings: Settings
    pm: pluggy.PluginManager
    metrics: Metrics
    storage: StorageExecutor
    engine: Engine
    server: grpc.aio.Server
    health: object
    launcher: LocalLauncher
    logbook: LogBook
    access: AccessManager | None = None
    tls: ServerTls | None = None
    retention: AuditRetention | None = None
    #: Autoscaling of supervised agents (``scaling.enabled``); started by :meth:`start_autoscaling`.
    autoscaler: Autoscaler | None = None
    address: str = ""
    port: int = 0
    metrics_port: int = 0
    #: The port's TLS credentials (None for plaintext); they re-read changed certificate files.
    credentials: ServerCredentials | None = None
    #: The HTTP/JSON and gRPC-Web port (``server.http_port``); mount extra ASGI apps on it before start.
    http: HttpServer | None = None
    http_port: int = 0
    #: The web dashboard's port (``server.dashboard_port``): its page, and the HTTP API on the same origin.
    dashboard: DashboardServer | None = None
    dashboard_port: int = 0
    #: What a replica that fenced itself does (it may write nothing more: others may hold its tasks).
    #: None, as in an app built in a process of its own making: the app stops itself. ``maos start``
    #: stops its process, as SIGTERM does (:mod:`controlplane.serve`).
    on_fenced: Callable[[str], None] | None = None
    _started: bool = field(default=False, repr=False)
    _stopping: asyncio.Future[None] | None = field(default=None, repr=False)
    _log_handler: logging.Handler | None = field(default=None, repr=False)

    async def start(
        self,
        address: str | None = None,
        http_address: str | None = None,
        dashboard_address: str | None = None,
    ) -> int:
        """Bind, recover state, and serve; returns the bound gRPC port.

        ``http_address`` (``host:port``, port 0 for any free one) overrides ``server.http_address``
        and ``server.http_port`` (whose 0 turns the HTTP port off); ``dashboard_address`` likewise
        ``server.dashboard_address`` and ``server.dashboard_port``.
        """
        address = address or self.settings["server.address"]
        check_bind_address(address, self.settings["server.allow_insecure_remote"], tls=self.tls is not None)
        if http_address is None and self.settings["server.http_port"]:
            http_address = f"{self.settings['server.http_address']}:{self.settings['server.http_port']}"
        if http_address is not None and self.http is not None:
            check_http_address(
                http_address.rpartition(":")[0],
                self.settings["server.allow_insecure_remote"],
                tls=self.tls is not None,
            )
            self.server.add_insecure_port(self.http.grpc_socket())  # private: the HTTP door's loopback
            if MCP_PATH not in self.http.mounts:  # before anything serves: importing mcp takes a moment
                mount_mcp(self.http, self.settings, http_address.rpartition(":")[0])
        else:
            http_address = None
        if dashboard_address is None and self.settings["server.dashboard_port"]:
            dashboard_address = (
                f"{self.settings['server.dashboard_address']}:{self.settings['server.dashboard_port']}"
            )
        if dashboard_address is not None and self.dashboard is not None:
            check_http_address(
                dashboard_address.rpartition(":")[0],
                self.settings["server.allow_insecure_remote"],
                tls=self.tls is not None,
                setting=self.dashboard.setting,
            )
            self.server.add_insecure_port(self.dashboard.grpc_socket())  # its own private loopback
        else:
            dashboard_address = None
        if self.settings["server.metrics_port"]:
            check_metrics_address(
                self.settings["server.metrics_address"], self.settings["server.allow_insecure_remote"]
            )
        if self.tls is not None:
            self.credentials = ServerCredentials(self.tls)
            self.port = self.server.add_secure_port(address, self.credentials.credentials())
        else:
            self.port = self.server.add_insecure_port(address)
        if not self.port:
            raise InvalidArgument(f"cannot listen on {address}", field="server.address")
        host = address.rsplit(":", 1)[0]
        self.address = f"{host}:{self.port}"
        self.launcher.server_address = local_address(self.address)
        self._log_handler = LogBookHandler(self.logbook)
        logging.getLogger("controlplane").addHandler(self._log_handler)
        await self.engine.start()
        self.metrics.watch_queue(lambda: self.engine.queued_snapshot)
        for result in self.pm.hook.startup(app=self):
            await await_me_maybe(result)
        await self.server.start()
        await set_serving(self.health, True)
        if self.retention is not None:
            self.retention.start()
        if self.autoscaler is not None and not self.autoscaler.apply:
            self.autoscaler.start()  # deciding and exporting only: nothing to wait for
        self._started = True  # from here on, stop() undoes what started
        if http_address is not None and self.http is not None:
            host, _, port = http_address.rpartition(":")
            self.http_port = await self.http.start(host, int(port))
        if dashboard_address is not None and self.dashboard is not None:
            host, _, port = dashboard_address.rpartition(":")
            self.dashboard_port = await self.dashboard.start(host, int(port))
        if self.settings["server.metrics_port"]:
            self.metrics_port = self.metrics.serve(
                self.settings["server.metrics_port"], self.settings["server.metrics_address"]
            )
        self._started = True
        log.info(
            "MAOS control plane %s serving on %s%s (storage %s)%s%s",
            self.engine.replica,
            self.address,
            " (mutual TLS)" if self.tls and self.tls.require_client_auth else " (TLS)" if self.tls else "",
            self.storage.backend.kind,
            f", HTTP on port {self.http_port}" if self.http_port else "",
            f", dashboard on port {self.dashboard_port}" if self.dashboard_port else "",
        )
        return self.port

    def start_autoscaling(self) -> None:
        """Start the autoscaler once the pool is launched (``scaling.enabled``: it launches and stops agents)."""
        if self.autoscaler is not None and self._started:
            self.autoscaler.start()

    def fenced(self, why: str) -> None:
        """This replica fenced itself (:mod:`controlplane.scheduler.claims`): :attr:`on_fenced`, or a stop."""
        if self.on_fenced is not None:
            self.on_fenced(why)
        elif self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(5.0))

    async def stop(self, grace: float = 5.0) -> None:
        """Drain agents, stop serving, commit what is pending and release everything.

        Calls made while a stop runs wait for that one (a fenced replica may be stopping itself).
        """
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(grace))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace: float) -> None:
        if self._started:
            try:
                await set_serving(self.health, False)
                if self.autoscaler is not None:
                    await self.autoscaler.stop()
                if self.retention is not None:
                    await self.retention.stop()
                await self.launcher.stop(grace)
                if self.http is not None:
                    await self.http.stop(grace)
                if self.dashboard is not None:
                    await self.dashboard.stop(grace)
                await self.server.stop(grace)
                if self.access is not None and self.launcher.token:
                    await self.access.revoke_local_agents_key(self.launcher.token)
                for result in self.pm.hook.shutdown(app=self):
                    await await_me_maybe(result)
            finally:
                await self.engine.stop()  # the final commit runs whatever failed above
                self.metrics.close()
        if self._log_handler is not None:
            logging.getLogger("controlplane").removeHandler(self._log_handler)
            self._log_handler = None
        self.storage.close()
        self._started = False


def shown_url(url: str) -> str:
    """A database URL without its credentials (for messages and logs): see :mod:`maos_common.redaction`."""
    return redact_url(url)


def check_schema(backend: StorageBackend, url: str) -> None:
    """Refuse a database whose schema is not the one this version needs (when not migrating at start).

    Without it, an unmigrated database fails later with a raw SQL error. Backends that
    cannot tell their schema revision (without the optional
    :class:`~controlplane.storage.base.ReportsSchema` capability) are not checked.

    Raises:
        FailedPrecondition: No MAOS schema, an older revision, or one this version does not know.
    """
    if not isinstance(backend, ReportsSchema):
        return
    status = backend.schema_status()
    if status.up_to_date:
        return
    where = shown_url(url)
    if status.current is None:
        text = (
            f"the database {where} has no MAOS schema: run `maos db migrate` "
            "(or let the server migrate: maos start --migrate, database.migrate_on_start: true)"
        )
    elif status.known:
        text = (
            f"the database schema is at revision {status.current}, this version needs {status.head}: "
            f"run `maos db migrate` (database {where})"
        )
    else:
        text = (
            f"the database schema is at revision {status.current}, which this version of MAOS does not "
            f"know (it needs {status.head}): a newer MAOS migrated {where}; run that version"
        )
    raise FailedPrecondition(
        text,
        reason="ERROR_REASON_NOT_SUPPORTED",
        metadata={"current_revision": status.current or "", "head_revision": status.head},
    )


def _no_audit_log(record: dict[str, Any]) -> None:
    """Where audit records go when the storage backend keeps no audit log: nowhere."""


def build_app(settings: Settings, pm: pluggy.PluginManager | None = None) -> App:
    """Wire a control plane from settings (storage is opened and migrated here).

    With ``database.migrate_on_start`` off (``maos start --no-migrate``), the schema is only
    checked: :func:`check_schema` refuses a database not at the latest revision.
    """
    pm = pm or get_plugin_manager()
    settings = settings.with_plugins(pm)  # the settings of plugins registered on pm alone
    for warning in settings.warnings:
        log.warning("%s", warning)
    tls = server_tls(settings)  # bad TLS settings fail before the database is touched
    redis = open_redis(settings)  # so does a Redis that does not answer (redis.url)
    try:
        secure_home(settings.home)  # 0700, files 0600 (an existing install's looser modes are tightened)
        backend = open_storage(pm, settings.database_url)
    except BaseException:
        close_unstarted(redis)
        raise
    try:
        if settings["database.migrate_on_start"]:
            backend.migrate()
        else:
            check_schema(backend, settings.database_url)
        if settings["security.auth"] == "required":  # access control keeps its users in storage
            require(backend, StoresAccess, "users, roles and API keys")
    except BaseException:
        backend.close()
        close_unstarted(redis)
        raise
    storage = StorageExecutor(backend)
    metrics = Metrics()
    planners = [p for group in pm.hook.register_planners(settings=settings) for p in group or []]
    replica = new_replica_id(settings["server.replica_id"])
    metrics.label_replica(replica)
    engine = Engine(settings=settings, storage=storage, planners=planners, metrics=metrics, replica=replica)
    engine.pacer = Pacer.from_settings(settings, metrics, **shared_pacing(redis))
    launcher = LocalLauncher(
        settings["server.address"],
        settings.home,
        settings["system.max_agents"],
        AgentLimits.from_settings(settings),
    )
    launcher.type_environment = lambda name: getattr(agent_type(pm, settings, name), "environment", ())
    engine.supply = AgentSupply(pm, settings, launcher)
    if tls is not None:
        launcher.use_tls(settings.client_tls, client_certificate_required=tls.require_client_auth)
    logbook = LogBook(
        task_owner=lambda task_id: engine.task_owner(task_id) or "",
        agent_owner=lambda agent_id: getattr(engine.agent(agent_id), "owner", ""),
    )
    access = AccessManager(storage)
    if isinstance(backend, StoresAccess):
        access.bootstrap_sync()  # users/admin and the agents' users exist from the start
    join_tokens = JoinTokens(
        storage,
        access,
        agent_exists=lambda agent_id: engine.agent(agent_id) is not None,
        type_capabilities=lambda name: type_capabilities(pm, settings, name),
    )
    admission: AgentAdmission | None = None
    limits: CallLimits | None = None
    auth: AuthInterceptor | None = None
    interceptors: list[grpc.aio.ServerInterceptor] = [ErrorAndMetricsInterceptor(metrics)]
    if settings["security.auth"] == "required":
        limits = CallLimits.from_settings(settings)
        share_limits(limits, redis)  # with redis.url, every replica takes from the same buckets
        # A backend without an audit log (no StoresAudit capability) is given no audit records.
        record_audit = engine.outbox.audit if isinstance(backend, StoresAudit) else _no_audit_log
        auth = AuthInterceptor(
            access,
            record_audit,
            limits,
            metrics,
            settings["server.reflection"],
            client_certificates=tls is not None,
        )
        interceptors.append(auth)  # inside: its denials get ErrorInfo
        admission = AgentAdmission(access, join_tokens, auth.audit, limits, metrics)
        # Earlier starts' keys are revoked, not those of replicas running on the same database.
        # (SQLite: one control plane at a time, so none of the others runs.)
        running = running_replicas(backend, settings) if backend.kind == "postgresql" else set()
        launcher.token = access.issue_local_agents_key_sync(engine.replica, running - {engine.replica})
    observing = install_observability(pm, engine, storage, launcher, metrics, settings)
    autoscaler = Autoscaler(engine, launcher, settings, metrics) if autoscaling_wanted(settings) else None
    try:
        replicas = install_replicas(pm, engine, storage, settings, redis)  # closes storage when it raises
    except BaseException:
        close_unstarted(redis)
        raise
    if autoscaler is not None and replicas is not None:
        autoscaler.attach(replicas)
    window = settings["scheduler.queue_window"]
    spill_from = spill_store(backend) if engine.claims is None and window else None
    if spill_from is None and (marked := spill_store(backend)) is not None:
        # No window here (set to 0, or replicas, which claim instead): unfinished work an earlier
        # run kept in the database is loaded or claimed like the rest.
        marked.forget_all()
    if (
        spill_from is not None
    ):  # one process holding every task: queued work beyond the window waits in the database
        engine.enable_queue_window(spill_from, window)
    install_event_streams(pm, engine, logbook, redis, settings)
    install_redis(pm, redis)
    if replicas is not None and replicas.leases is not None and isinstance(backend, StoresAccess):
        install_access_refresh(pm, access)  # replicas on one database: their access changes hold here
    servicers = {
        "tasks": TaskServicer(
            engine,
            settings,
            limits.admit if limits is not None else None,
            auth.audit if auth is not None else None,
        ),
        "agents": AgentServicer(engine, launcher, pm, settings, observing.observer, logbook),
        "system": SystemServicer(
            engine,
            settings,
            metrics,
            logbook,
            observer=observing.observer,
            history=observing.history,
            scaling=autoscaler.snapshot if autoscaler is not None else None,
            replicas=replicas,
            redis_check=redis.ping if redis is not None else None,
        ),
        "gateway": GatewayServicer(engine, launcher, logbook, admission),
        "access": AccessServicer(access, join_tokens),
        "audit": AuditServicer(storage, engine.durable),
        "batches": BatchServicer(
            Batches(engine, storage, settings["batches.max_tasks"], settings["batches.max_per_owner"]),
            settings,
        ),
        "templates": TemplateServicer(
            Templates(
                engine, storage, settings["tasks.max_description_length"], settings["templates.max_per_owner"]
            ),
            settings,
        ),
    }
    bus = install_bus(pm, settings, backend.kind, redis, replicas, replica)
    if bus is not None:  # agents and tasks other replicas hold are reached through it
        forwarder = Forwarder(bus, engine)
        servicers["agents"].use_forwarder(forwarder)  # type: ignore[attr-defined]
        servicers["tasks"].use_forwarder(forwarder)  # type: ignore[attr-defined]
        install_report_relay(bus, engine.agent_side)  # an agent's report reaches the task's holder
        install_session_relay(bus, engine.moves)  # an agent resuming here brings its work from a live replica
    server, health = build_server(servicers, interceptors, settings["server.reflection"])
    install_checkpoints(pm, engine, storage, settings, server)
    install_webhooks(pm, engine, storage, settings, server, access if auth is not None else None)
    retention: Any = AuditRetention(storage, settings["audit.retention_days"])
    if replicas is not None and replicas.leases is not None:  # several replicas: once per system
        retention = replicas.leases.wrap("audit-retention", retention)
        replicas.leases.wrap_plugins(pm)
    app = App(
        settings=settings,
        pm=pm,
        metrics=metrics,
        storage=storage,
        engine=engine,
        server=server,
        health=health,
        launcher=launcher,
        logbook=logbook,
        access=access,
        tls=tls,
        autoscaler=autoscaler,
        http=HttpServer(settings, tls),
        dashboard=DashboardServer(settings, tls),
        retention=retention,
    )
    if engine.claims is not None:  # a replica that fences itself stops (see App.fenced)
        engine.claims.on_fenced = app.fenced
    return app
