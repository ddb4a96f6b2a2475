"""maos.v1.SystemService: status, health and metrics of the control plane."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc

from controlplane.access.permissions import MANAGE_ALL_AGENTS, VIEW_ALL_TASKS
from controlplane.api import convert
from controlplane.api.context import caller_may, current_principal
from controlplane.api.log_pages import read_page, token_after_stream_id, token_for
from controlplane.api.paging import PageTokens, fitting, page_size
from controlplane.api.pb import enums_pb, system_grpc, system_pb
from controlplane.config import Settings, parse_value
from controlplane.domain.events import Event
from controlplane.domain.limits import Limits, quote
from controlplane.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from controlplane.logbook import LEVELS, LogBook, LogEntry, LogFilter, Visibility
from controlplane.metrics import Metrics
from controlplane.observability.history import DEFAULT_TIMEFRAME, SERIES, HistorySampler, check_category
from controlplane.observability.observer import Observer
from controlplane.replicas.streams import position as stream_position
from controlplane.scheduler.engine import Engine
from controlplane.version import __version__
from maos_common.redaction import redact, shown_setting

MAX_PENDING_EVENTS = 10_000
#: Bounds of the log filters: a component name, the text searched for, and how far ahead ``since`` may be.
MAX_COMPONENT, MAX_CONTAINS, MAX_SINCE_AHEAD = 128, 256, 60.0
#: ``ListLogsRequest.order_by`` values: oldest first, newest first.
LOG_ORDERS = {"": False, "time": False, "time asc": False, "time desc": True}
HEALTHY = enums_pb.COMPONENT_STATE_HEALTHY
UNHEALTHY = enums_pb.COMPONENT_STATE_UNHEALTHY
DISABLED = enums_pb.COMPONENT_STATE_DISABLED


def replica_to_pb(view: Any) -> system_pb.ReplicaStatus:
    """A :class:`~controlplane.replicas.registry.ReplicaView` as its proto."""
    row = view.row
    return system_pb.ReplicaStatus(
        id=row.id,
        address=row.address,
        version=row.version,
        start_time=convert.timestamp(row.started_at),
        heartbeat_time=convert.timestamp(row.heartbeat_at),
        lost=view.lost,
        connected_agents=int(row.details.get("agents", 0)),
        leases_held=int(row.details.get("leases", 0)),
        jobs=[str(j) for j in row.details.get("jobs", ())],
        current=view.this,
    )


class SystemServicer(system_grpc.SystemServiceServicer):
    """Status, health, metrics and runtime configuration."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        metrics: Metrics,
        logbook: LogBook,
        redis_check: Callable[[], Awaitable[object]] | None = None,
        observer: Observer | None = None,
        history: HistorySampler | None = None,
        scaling: Callable[[], list[Any]] | None = None,
        replicas: Any = None,
    ):
        self.engine = engine
        #: The replica registry (:class:`~controlplane.replicas.registry.ReplicaRegistry`), or None.
        self.replicas = replicas
        #: The autoscaler's last decisions (``scaling.enabled``), or None.
        self.scaling = scaling
        self.observer = observer
        self.history = history
        self.logbook = logbook
        self.tokens = PageTokens("ListLogs", lambda: engine.page_secret)
        self.limits = Limits.from_settings(settings)
        self.settings = settings
        self.metrics = metrics
        self.redis_check = redis_check

    async def GetStatus(
        self, request: system_pb.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> system_pb.GetStatusResponse:
        engine = self.engine
        counts = await engine.count_tasks_by_status()
        sub_counts = engine.subtasks_by_status()
        sessions = engine.connected()
        agent_counts: Counter[str] = Counter(s.status().name for s in sessions)
        uptime = time.time() - engine.started_at
        replicas = await self.replicas.replicas() if self.replicas is not None else []
        return system_pb.GetStatusResponse(
            version=__version__,
            replica=engine.replica,
            start_time=convert.timestamp(engine.started_at),
            uptime=convert.duration(uptime),
            storage_backend=engine.storage_kind,
            tasks=[system_pb.StateCount(state=s.name, count=n) for s, n in sorted(counts.items())],
            subtasks=[system_pb.StateCount(state=k, count=v) for k, v in sorted(sub_counts.items())],
            agents=[system_pb.StateCount(state=k, count=v) for k, v in sorted(agent_counts.items())],
            queue=[
                system_pb.StateCount(state=k, count=v) for k, v in sorted(engine.queued_by_priority().items())
            ],
            connected_agents=len(sessions),
            free_slots=sum(s.free for s in sessions),
            replicas=[engine.replica] if request.detailed else [],
            model_pacing=[convert.model_pacing_to_pb(p) for p in engine.pacer.status()]
            if engine.pacer
            else [],
            tasks_awaiting_approval=engine.awaiting_approval_count(),
            scaling=[
                system_pb.TypeScaling(
                    agent_type=row.agent_type,
                    min=row.min,
                    max=row.max,
                    current=row.current,
                    desired=row.desired,
                    queued=row.queued,
                    oldest_wait=convert.duration(row.oldest_wait),
                    reason=row.reason,
                    **({"decided_at": convert.timestamp(row.decided_at)} if row.decided_at else {}),
                    **({"unclaimed": row.unclaimed} if row.unclaimed is not None else {}),
                    **({"unclaimed_share": row.unclaimed_share} if row.unclaimed_share is not None else {}),
                )
                for row in (self.scaling() if self.scaling is not None else [])
            ],
            replica_status=[replica_to_pb(view) for view in replicas],
            **self._unclaimed(),
        )

    def _unclaimed(self) -> dict[str, Any]:
        """GetStatus's unclaimed backlog fields (none on a single control plane)."""
        backlog = self.replicas.backlog if self.replicas is not None else None
        if backlog is None:
            return {}
        return {
            "unclaimed_tasks": backlog.total(),
            "unclaimed_oldest_wait": convert.duration(backlog.oldest_wait()),
        }

    async def GetHealth(
        self, request: system_pb.GetHealthRequest, context: grpc.aio.ServicerContext
    ) -> system_pb.GetHealthResponse:
        wanted = set(request.components)
        known = {"database", "redis", "scheduler", "agents"}
        unknown = wanted - known
        if unknown:
            raise InvalidArgument(
                f"unknown components {sorted(unknown)}; known: {sorted(known)}", field="components"
            )
        results = []
        if not wanted or "database" in wanted:
            results.append(await self._timed("database", self._database))
        if not wanted or "redis" in wanted:
            results.append(await self._timed("redis", self._redis))
        if not wanted or "scheduler" in wanted:
            failed = self.engine.commit_failure
            results.append(
                system_pb.ComponentHealth(
                    component="scheduler",
                    state=UNHEALTHY if failed else HEALTHY,
                    message=str(failed)
                    if failed
                    else f"{self.engine.tasks_in_memory()} unfinished tasks in memory",
                )
            )
        if not wanted or "agents" in wanted:
            n = len(self.engine.connected())
            results.append(
                system_pb.ComponentHealth(
                    component="agents",
                    state=HEALTHY if n else enums_pb.COMPONENT_STATE_DEGRADED,
                    message=f"{n} connected" if n else "no agent is connected; tasks will wait",
                )
            )
        worst = max((r.state for r in results if r.state != DISABLED), default=HEALTHY)
        return system_pb.GetHealthResponse(state=worst, components=results)

    async def _timed(
        self, name: str, check: Callable[[], Awaitable[tuple[enums_pb.ComponentState, str]]]
    ) -> system_pb.ComponentHealth:
        started = time.perf_counter()
        state, message = await check()
        return system_pb.ComponentHealth(
            component=name,
            state=state,
            message=message,
            latency=convert.duration(time.perf_counter() - started),
        )

    async def _database(self) -> tuple[enums_pb.ComponentState, str]:
        kind = self.engine.storage_kind
        try:
            await self.engine.ping_storage()
        except Exception as exc:
            return UNHEALTHY, redact(f"{kind}: {exc}")
        return HEALTHY, f"{kind} reachable"

    async def _redis(self) -> tuple[enums_pb.ComponentState, str]:
        if not self.settings["redis.url"]:
            return DISABLED, "redis.url is not set"
        if self.redis_check is None:
            return DISABLED, "no Redis component is configured"
        try:
            await self.redis_check()
        except Exception as exc:
            return UNHEALTHY, redact(str(exc))
        return HEALTHY, "reachable"

    async def GetMetricsSummary(
        self, request: system_pb.GetMetricsSummaryRequest, context: grpc.aio.ServicerContext
    ) -> system_pb.GetMetricsSummaryResponse:
        check_category(request.category)
        families = [(family, self._category(family.name)) for family in self.metrics.exported.collect()]
        samples = []
        for family, category in families:
            if request.category and category != request.category:
                continue
            for sample in family.samples:
                if sample.name.endswith("_bucket") or sample.name.endswith("_created"):
                    continue
                samples.append(
                    system_pb.MetricSample(
                        name=sample.name,
                        labels=sample.labels,
                        value=sample.value,
                        help=family.documentation,
                        category=category,
                    )
                )
        response = system_pb.GetMetricsSummaryResponse(samples=samples)
        if request.include_exposition:
            from prometheus_client import generate_latest

            class Chosen:  # a registry of the chosen families, as generate_latest reads one
                def collect(self) -> Iterator[Any]:
                    return (f for f, c in families if not request.category or c == request.category)

            response.exposition = generate_latest(Chosen()).decode()
        return response

    @staticmethod
    def _category(name: str) -> str:
        prefixes = {
            "tasks": ("maos_task", "maos_subtask"),
            "agents": ("maos_agent",),
            "rpc": ("grpc_",),
            "storage": ("maos_storage",),
        }
        return next((c for c, p in prefixes.items() if name.startswith(p)), "system")

    async def GetMetricsHistory(
        self, request: system_pb.GetMetricsHistoryRequest, context: grpc.aio.ServicerContext
    ) -> system_pb.GetMetricsHistoryResponse:
        if self.history is None:
            raise FailedPrecondition(
                "this control plane keeps no metrics history", reason="ERROR_REASON_NOT_SUPPORTED"
            )
        timeframe = convert.seconds(request.timeframe) if request.HasField("timeframe") else DEFAULT_TIMEFRAME
        answer = await self.history.read(request.category, timeframe, request.max_points)
        return system_pb.GetMetricsHistoryResponse(
            series=[
                system_pb.MetricSeries(
                    name=name,
                    category=SERIES[name].category,
                    help=SERIES[name].help,
                    type=SERIES[name].type,
                    points=[system_pb.MetricPoint(time=convert.timestamp(t), value=v) for t, v in points],
                )
                for name, points in answer.series.items()
            ],
            interval=convert.duration(self.history.interval),
            retention=convert.duration(self.history.retention),
            samples=answer.samples,
        )

    async def GetResources(
        self, request: system_pb.GetResourcesRequest, context: grpc.aio.ServicerContext
    ) -> system_pb.GetResourcesResponse:
        if self.observer is None:
            raise FailedPrecondition(
                "this control plane measures no resources", reason="ERROR_REASON_NOT_SUPPORTED"
            )
        r = await self.observer.resources()
        return system_pb.GetResourcesResponse(
            control_plane=convert.process_to_pb(r.control_plane),
            agents=[convert.process_to_pb(a.reading, a.agent_id, a.agent_type) for a in r.agents],
            host=system_pb.HostResources(
                cpu_count=r.host.cpu_count,
                memory_total_bytes=r.host.memory_total_bytes,
                memory_available_bytes=r.host.memory_available_bytes,
                load_average=r.host.load_average,
            ),
            agent_streams=r.agent_streams,
            database_size_bytes=r.database_size_bytes,
            queue=[system_pb.StateCount(state=k, count=v) for k, v in sorted(r.queue.items())],
            unfinished_tasks=r.unfinished_tasks,
        )

    @staticmethod
    def _visibility() -> Visibility | None:
        """What of other principals' tasks and agents the caller may read (None: everything)."""
        if caller_may(VIEW_ALL_TASKS) and caller_may(MANAGE_ALL_AGENTS):
            return None
        return Visibility(
            current_principal(),
            all_tasks=caller_may(VIEW_ALL_TASKS),
            all_agents=caller_may(MANAGE_ALL_AGENTS),
        )

    def _log_filter(self, request: system_pb.ListLogsRequest | system_pb.TailLogsRequest) -> LogFilter:
        if request.min_level and request.min_level not in LEVELS:
            raise InvalidArgument(f"min_level {request.min_level} is not a log level", field="min_level")
        if len(request.component) > MAX_COMPONENT:
            raise InvalidArgument(f"component is at most {MAX_COMPONENT} characters", field="component")
        if len(request.contains) > MAX_CONTAINS:
            raise InvalidArgument(
                f"contains is at most {MAX_CONTAINS} characters (got {len(request.contains)})",
                field="contains",
            )
        since = (
            convert.optional_epoch(request, "since") if hasattr(request, "since") else None
        )  # not TailLogs
        if since is not None and since > time.time() + MAX_SINCE_AHEAD:
            raise InvalidArgument("since is in the future", field="since")
        agent_id = convert.parse_name(request.agent, "agents", "agent") if request.agent else ""
        if agent_id and self.engine.agent(agent_id) is None:
            raise NotFound(f"agent agents/{agent_id} does not exist", reason="ERROR_REASON_AGENT_NOT_FOUND")
        return LogFilter(
            visibility=self._visibility(),
            min_level=LEVELS.get(request.min_level, logging.NOTSET),
            component=request.component,
            contains=request.contains,
            task_id=convert.parse_name(request.task, "tasks", "task") if request.task else "",
            agent_id=agent_id,
            since=since,
        )

    async def ListLogs(
        self, request: system_pb.ListLogsRequest, context: grpc.aio.ServicerContext
    ) -> system_pb.ListLogsResponse:
        size = page_size(request.page_size, default=100)
        if request.order_by.strip().lower() not in LOG_ORDERS:
            raise InvalidArgument(
                f"order_by {request.order_by!r} is not one of: time, time desc", field="order_by"
            )
        newest_first = LOG_ORDERS[request.order_by.strip().lower()]
        wanted = self._log_filter(request)
        filters = system_pb.ListLogsRequest()
        filters.CopyFrom(request)
        filters.ClearField("page_token")
        filters.ClearField("page_size")
        # Bound to the caller as well as the filters: a token is no way into another caller's records.
        seen = wanted.visibility
        caller = f"\0{current_principal()}:{seen is None or seen.all_tasks}:{seen is None or seen.all_agents}"
        digest = filters.SerializeToString(deterministic=True) + caller.encode()
        incarnation = self.engine.incarnation
        page = await read_page(
            self.logbook, self.tokens, request.page_token, digest, wanted, newest_first, size + 1, incarnation
        )
        entries = page.entries
        records = [convert.log_entry_to_pb(e, incarnation) for e in entries[:size]]
        fit = fitting(records, self.limits.response)
        if fit < len(records):  # the page is full in bytes before it is in records
            entries, records, size = entries[: fit + 1], records[:fit], fit
        response = system_pb.ListLogsResponse(records=records)
        if len(entries) > size:
            response.next_page_token = token_for(self.tokens, entries[size - 1], incarnation, digest)
        elif page.scanned_to:  # the stream was read as far as one call reads: more may follow
            response.next_page_token = token_after_stream_id(self.tokens, page.scanned_to, digest)
        return response

    async def TailLogs(
        self, request: system_pb.TailLogsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[system_pb.TailLogsResponse]:
        if request.tail > 1000:
            raise InvalidArgument("tail is at most 1000 records", field="tail")
        wanted = self._log_filter(request)
        incarnation = self.engine.incarnation
        shared = self.logbook.shared  # log records across replicas (Redis), else None
        after = convert.parse_record_resume_id(request.after_record_id, incarnation, shared is not None)
        queue: asyncio.Queue[LogEntry | None] = asyncio.Queue()

        def subscriber(entry: LogEntry) -> None:
            if wanted.matches(entry):
                queue.put_nowait(entry if queue.qsize() < MAX_PENDING_EVENTS else None)

        # No await between reading the ring and subscribing: no record is missed or sent twice.
        backlog: list[LogEntry] = []  # (a resume after a stream id reads the stream once subscribed)
        if after is None:
            backlog = self.logbook.tail(wanted, request.tail)
        elif isinstance(after, int):
            backlog = self.logbook.after(wanted, after)
        self.logbook.subscribers.append(subscriber)
        #: Records up to this stream position were sent (a resume from the stream): live ones
        #: already among them are skipped.
        sent_up_to: tuple[int, int] | None = None
        entry: LogEntry | None
        try:
            if isinstance(after, str):  # read from the stream, after subscribing: none falls between
                backlog = [e for e in await shared.after(after) if wanted.matches(e)]
                sent_up_to = stream_position(backlog[-1].stream_id if backlog else after)
            for entry in backlog:
                yield system_pb.TailLogsResponse(record=convert.log_entry_to_pb(entry, incarnation))
            while True:
                entry = await queue.get()
                if entry is None:
                    raise ResourceExhausted(
                        "the reader fell too far behind; tail again with after_record_id "
                        "(the last record's id) to resume"
                    )
                if (
                    sent_up_to is not None
                    and entry.stream_id
                    and stream_position(entry.stream_id) <= sent_up_to
                ):
                    continue
                yield system_pb.TailLogsResponse(record=convert.log_entry_to_pb(entry, incarnation))
        finally:
            self.logbook.subscribers.remove(subscriber)

    async def WatchEvents(
        self, request: system_pb.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[system_pb.WatchEventsResponse]:
        engine = self.engine
        types = set(request.event_types)
        for index, value in enumerate(request.event_types):
            if value == 0 or value not in enums_pb.EventType.values():
                raise InvalidArgument(
                    f"event_types[{index}] {value} is not an event type", field=f"event_types[{index}]"
                )
        task_id = convert.parse_name(request.task, "tasks", "task") if request.task else ""

        # Events of other principals' tasks only for holders of task:view-all (as GetTask).
        principal = None if caller_may(VIEW_ALL_TASKS) else current_principal()

        def wanted(event: Event) -> bool:
            return (
                (principal is None or event.owner == principal)
                and (not types or int(event.type) in types)
                and (not task_id or event.task_id == task_id)
            )

        after = convert.parse_event_resume_id(
            request.after_event_id, engine.incarnation, "after_event_id", engine.events_streamed
        )
        async for event in engine.watch_events(wanted, after):
            yield system_pb.WatchEventsResponse(event=convert.event_to_pb(event, engine.incarnation))

    async def GetConfig(
        self, request: system_pb.GetConfigRequest, context: grpc.aio.ServicerContext
    ) -> system_pb.GetConfigResponse:
        options = self.settings.options  # MAOS's own and the plugins' (register_settings)
        keys = list(request.keys) or list(options)
        values = []
        for key in keys:
            if key not in options:
                raise InvalidArgument(f"unknown setting {quote(key)}", field="keys")
            shown = shown_setting(key, self.engine.setting(key))
            values.append(
                system_pb.ConfigValue(
                    key=key,
                    value=shown,
                    description=options[key].description,
                    source="runtime" if self.engine.set_at_runtime(key) else self.settings.source(key),
                )
            )
        return system_pb.GetConfigResponse(values=values)

    async def SetConfig(
        self, request: system_pb.SetConfigRequest, context: grpc.aio.ServicerContext
    ) -> system_pb.SetConfigResponse:
        option = self.settings.options.get(request.key)
        if option is None:
            raise InvalidArgument(f"unknown setting {quote(request.key)}", field="key")
        if not option.runtime:
            raise InvalidArgument(
                f"{request.key} cannot change while running; set it in config.yml or {option.env_var} and restart",
                field="key",
            )
        value = self.engine.set_setting(request.key, parse_value(request.key, request.value))
        return system_pb.SetConfigResponse(
            value=system_pb.ConfigValue(
                key=request.key,
                value=shown_setting(request.key, value),
                description=option.description,
                source="runtime",
            )
        )
