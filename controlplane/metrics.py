"""Prometheus metrics of one control plane, in a registry of its own (no global state).

Label sets are bounded: priorities, statuses, outcomes, agent types (pools,
at most :data:`MAX_POOLS` of them, and only while agents of the type are
connected), gRPC services, methods and codes; never task, request or user ids.
Every exported sample also carries ``replica`` (:class:`ReplicaLabelled`), one
value per control plane, so the replicas of one system can be told apart and summed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlplane.domain.model import Priority, Task, TaskStatus
from controlplane.version import __version__

# Task run time and schedule-to-start: seconds to hours (conventions, section 3).
TASK_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 21600)
#: Agents name their own type, so at most this many types get a ``pool`` series of their own at once;
#: agents of any further type are counted under :data:`OTHER_POOL`. A pool's series is removed when its
#: last agent leaves, so throw-away type names leave nothing behind.
MAX_POOLS = 100
OTHER_POOL = "other"


class _QueueCollector(Collector):
    """Queue depth by priority, read from the engine at scrape time."""

    def __init__(self, source: Callable[[], dict[str, int]]):
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "maos_tasks_pending", "Queued subtasks waiting for an agent.", labels=["queue"]
        )
        counts = self._source()
        for priority in Priority:
            family.add_metric([priority.name.lower()], counts.get(priority.name, 0))
        yield family


class _ScalingCollector(Collector):
    """Autoscaling per agent type, read from the autoscaler at scrape time (see controlplane.autoscaler)."""

    def __init__(self, source: Callable[[], list[Any]]):
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queued = GaugeMetricFamily(
            "maos_scaling_queue_depth",
            "Queued subtasks agents of the type could take: those this replica holds plus its share of the "
            "unclaimed backlog (the sum over replicas counts it once; the external metric for an HPA or KEDA).",
            labels=["agent_type"],
        )
        wait = GaugeMetricFamily(
            "maos_scaling_oldest_wait_seconds",
            "Seconds the oldest of that work has been queued.",
            labels=["agent_type"],
        )
        desired = GaugeMetricFamily(
            "maos_scaling_desired_agents", "Agents the autoscaler wants.", labels=["agent_type"]
        )
        current = GaugeMetricFamily(
            "maos_scaling_current_agents", "Supervised agents of the type.", labels=["agent_type"]
        )
        unclaimed = GaugeMetricFamily(
            "maos_scaling_unclaimed_depth",
            "Unclaimed tasks (no replica holds them) agents of the type could take, in the whole system: "
            "the same on every replica (already in the sum of maos_scaling_queue_depth, as shares).",
            labels=["agent_type"],
        )
        rows = self._source()
        for row in rows:
            queued.add_metric([row.agent_type], row.demand)
            wait.add_metric([row.agent_type], row.oldest_wait)
            desired.add_metric([row.agent_type], row.desired)
            current.add_metric([row.agent_type], row.current)
            if row.unclaimed is not None:
                unclaimed.add_metric([row.agent_type], row.unclaimed)
        yield from (queued, wait, desired, current)
        if any(row.unclaimed is not None for row in rows):
            yield unclaimed


class _UnclaimedCollector(Collector):
    """The unclaimed backlog (controlplane.replicas.backlog), as last counted, at scrape time."""

    def __init__(self, backlog: Any):
        self._backlog = backlog

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "maos_unclaimed_tasks",
            "Unfinished tasks no replica holds, in the whole system (every replica reports the same count: "
            "take the max over replicas, not the sum).",
            value=self._backlog.total(),
        )
        yield GaugeMetricFamily(
            "maos_unclaimed_oldest_wait_seconds",
            "Seconds since the oldest unclaimed task was submitted (the same on every replica).",
            value=self._backlog.oldest_wait(),
        )


class ReplicaLabelled:
    """A registry as it is exported: every sample with a ``replica`` label naming this control plane.

    ``/metrics`` and GetMetricsSummary read it; the registry itself keeps its label sets (code
    reading a sample by its labels is unaffected). Without a replica name nothing is added.
    """

    def __init__(self, registry: CollectorRegistry, replica: str = ""):
        self.registry = registry
        self.replica = replica

    def collect(self) -> Iterator[Metric]:
        """The registry's families, each sample labelled ``replica``."""
        for family in self.registry.collect():
            if not self.replica:
                yield family
                continue
            labelled = Metric(family.name, family.documentation, family.type, family.unit)
            labelled.samples = [
                sample._replace(labels={**sample.labels, "replica": self.replica})
                for sample in family.samples
            ]
            yield labelled

    def restricted_registry(self, names: Iterable[str]) -> Any:
        """Only the samples named (``/metrics?name[]=...``), labelled like :meth:`collect`."""
        wanted = set(names)
        outer = self

        class Restricted:
            def collect(self) -> Iterator[Metric]:
                for family in outer.collect():
                    samples = [s for s in family.samples if s.name in wanted]
                    if samples:
                        chosen = Metric(family.name, family.documentation, family.type, family.unit)
                        chosen.samples = samples
                        yield chosen

        return Restricted()


class Metrics:
    """Every metric family the control plane exports.

    Args:
        replica: The replica id every exported sample is labelled with (``replica``); set later
            with :meth:`label_replica` when not known yet.
    """

    def __init__(self, replica: str = "") -> None:
        self._submitted: dict[Priority, Counter] = {}
        self._transitions: dict[tuple[TaskStatus, TaskStatus], Counter] = {}
        #: Connected agents per agent type, the label each type is counted under, and the count per label.
        self._agents_of_type: dict[str, int] = {}
        self._label_of_type: dict[str, str] = {}
        self._agents_of_label: dict[str, int] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        #: What ``/metrics`` and GetMetricsSummary export: the registry with the ``replica`` label.
        self.exported = ReplicaLabelled(self.registry, replica)
        r = self.registry
        self.build_info = Gauge("maos_build_info", "Build information.", ["version"], registry=r)
        self.build_info.labels(__version__).set(1)
        self.tasks_submitted = Counter("maos_tasks_submitted_total", "Tasks accepted.", ["queue"], registry=r)
        self.task_transitions = Counter(
            "maos_task_transitions_total", "Task state changes.", ["from", "to"], registry=r
        )
        self.schedule_to_start_seconds = Histogram(
            "maos_task_schedule_to_start_seconds",
            "Time from a subtask being ready to an agent receiving it.",
            buckets=TASK_BUCKETS,
            registry=r,
        )
        self.run_seconds = Histogram(
            "maos_task_run_seconds",
            "Time from a task's start to its end.",
            ["outcome"],
            buckets=TASK_BUCKETS,
            registry=r,
        )
        for outcome in ("completed", "failed", "cancelled"):
            self.run_seconds.labels(outcome)  # export every series from the start
        self.agents_connected = Gauge("maos_agents_connected", "Connected agents.", ["pool"], registry=r)
        self.lease_expirations = Counter(
            "maos_agent_lease_expirations_total", "Leases that expired without a heartbeat.", registry=r
        )
        self.retries = Counter(
            "maos_subtask_retries_total", "Subtasks queued again for another attempt.", registry=r
        )
        self.commit_seconds = Histogram(
            "maos_storage_commit_seconds", "Duration of one group commit.", registry=r
        )
        self.commit_rows = Counter(
            "maos_storage_committed_rows_total", "Rows written by group commits.", registry=r
        )
        self.webhook_attempts = Counter(
            "maos_webhook_delivery_attempts_total",
            "Webhook delivery attempts by outcome: succeeded, retrying, or failed (given up).",
            ["outcome"],
            registry=r,
        )
        for outcome in ("succeeded", "retrying", "failed"):
            self.webhook_attempts.labels(outcome)
        self.webhook_seconds = Histogram(
            "maos_webhook_delivery_seconds", "Duration of one webhook delivery attempt.", registry=r
        )
        self.rpc_handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server.",
            ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
            registry=r,
        )
        self.rpc_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time to handle an RPC.",
            ["grpc_type", "grpc_service", "grpc_method"],
            registry=r,
        )
        self.scale_events = Counter(
            "maos_scaling_events_total",
            "Agents launched (direction up) or stopped (down) by autoscaling.",
            ["agent_type", "direction"],
            registry=r,
        )
        self.rate_limited_calls = Counter(
            "maos_rate_limited_total",
            "Calls refused with RESOURCE_EXHAUSTED by a rate limit (limit: principal or failed_auth).",
            ["grpc_service", "grpc_method", "limit"],
            registry=r,
        )

        # Model pacing (controlplane.pacing): ``model`` is bounded by controlplane.pacing.MAX_MODELS.
        self.model_permits = Counter(
            "maos_model_permits_total",
            "Permits for model calls by outcome: granted, held (had to wait), "
            "deferred (not granted within the caller's max_wait).",
            ["model", "outcome"],
            registry=r,
        )
        self.model_breaker_state = Gauge(
            "maos_model_breaker_state",
            "Circuit breaker of a model: 1 closed, 2 open, 3 half-open.",
            ["model"],
            registry=r,
        )
        self.model_calls_held = Gauge(
            "maos_model_calls_held",
            "Model calls waiting for a permit now.",
            ["model"],
            registry=r,
        )
        self.model_permit_wait_seconds = Histogram(
            "maos_model_permit_wait_seconds",
            "Time a model call waited for its permit (or until deferred).",
            buckets=(0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
        self.model_overloaded_answers = Counter(
            "maos_model_overloaded_answers_total",
            "429 and 529 answers agents reported, by model and status.",
            ["model", "status"],
            registry=r,
        )

    def watch_scaling(self, source: Callable[[], list[Any]]) -> None:
        """Export the autoscaler's per-type queue depth, wait, desired and current agents at scrape time."""
        self.registry.register(_ScalingCollector(source))

    def scale_event(self, agent_type: str, direction: str, count: int) -> None:
        """The autoscaler launched (``up``) or stopped (``down``) ``count`` agents of the type."""
        self.scale_events.labels(agent_type, direction).inc(count)

    def watch_unclaimed(self, backlog: Any) -> None:
        """Export the unclaimed backlog (:class:`controlplane.replicas.backlog.UnclaimedBacklog`) at scrape time."""
        self.registry.register(_UnclaimedCollector(backlog))

    def watch_queue(self, source: Callable[[], dict[str, int]]) -> None:
        """Export queue depth read from ``source`` at scrape time."""
        self.registry.register(_QueueCollector(source))

    def label_replica(self, replica: str) -> None:
        """Label every exported sample ``replica="<replica>"``."""
        self.exported.replica = replica

    def serve(self, port: int, address: str = "127.0.0.1") -> int:
        """Serve /metrics over HTTP on its own port (a thread); returns the bound port."""
        server, _thread = start_http_server(port, addr=address, registry=self.exported)
        self._http = server
        return server.server_port

    def close(self) -> None:
        """Stop the /metrics server if one runs."""
        http = getattr(self, "_http", None)
        if http is not None:
            http.shutdown()
            http.server_close()

    # Engine hooks -------------------------------------------------------------

    def task_submitted(self, task: Task) -> None:
        """A task was accepted."""
        child = self._submitted.get(task.priority)
        if child is None:  # labels() is slow on a hot path: resolve each series once
            child = self._submitted[task.priority] = self.tasks_submitted.labels(task.priority.name.lower())
        child.inc()

    def task_transition(self, before: TaskStatus, after: TaskStatus) -> None:
        """A task changed state."""
        child = self._transitions.get((before, after))
        if child is None:
            child = self._transitions[(before, after)] = self.task_transitions.labels(
                before.name.lower(), after.name.lower()
            )
        child.inc()

    def schedule_to_start(self, seconds: float) -> None:
        """A subtask reached an agent after waiting ``seconds``."""
        self.schedule_to_start_seconds.observe(max(0.0, seconds))

    def task_run_time(self, seconds: float, outcome: str) -> None:
        """A task that started finished."""
        self.run_seconds.labels(outcome).observe(max(0.0, seconds))

    def agent_connected(self, pool: str, delta: int) -> None:
        """An agent of a pool (its type) connected (+1) or left (-1).

        A type is counted under its own label while fewer than :data:`MAX_POOLS` types have
        one, else under :data:`OTHER_POOL`, until its last agent leaves; a label with no agent
        left loses its series.
        """
        label = self._label_of_type.get(pool)
        if label is None:
            if delta <= 0:
                return  # never counted: nothing to take back
            own = len(self._agents_of_label) - (OTHER_POOL in self._agents_of_label)
            label = pool if own < MAX_POOLS and pool != OTHER_POOL else OTHER_POOL
            self._label_of_type[pool] = label
        agents = self._agents_of_type.get(pool, 0) + delta
        if agents > 0:
            self._agents_of_type[pool] = agents
        else:
            self._agents_of_type.pop(pool, None)
            del self._label_of_type[pool]
        count = self._agents_of_label.get(label, 0) + delta
        if count > 0:
            self._agents_of_label[label] = count
            self.agents_connected.labels(label).set(count)
        elif self._agents_of_label.pop(label, None) is not None:
            self.agents_connected.remove(label)

    def lease_expired(self) -> None:
        """A lease expired."""
        self.lease_expirations.inc()

    def webhook_attempt(self, outcome: str, seconds: float) -> None:
        """A webhook delivery was attempted (``succeeded``, ``retrying`` or ``failed``)."""
        self.webhook_attempts.labels(outcome).inc()
        self.webhook_seconds.observe(max(0.0, seconds))

    def retried(self) -> None:
        """A subtask was queued for another attempt."""
        self.retries.inc()

    def commit(self, rows: int, seconds: float) -> None:
        """A group commit finished."""
        self.commit_rows.inc(rows)
        self.commit_seconds.observe(seconds)

    def call_rate_limited(self, full_method: str, limit: str) -> None:
        """A call to ``/service/method`` was refused by the ``principal`` or ``failed_auth`` limit."""
        service, _, method = full_method.lstrip("/").partition("/")
        self.rate_limited_calls.labels(service, method, limit).inc()
