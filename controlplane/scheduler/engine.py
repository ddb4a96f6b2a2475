"""The engine: the live state of unfinished work, and every decision about it.

All state changes happen on the event loop, in memory first; the
:class:`~controlplane.scheduler.committer.Committer` makes them durable in
groups, and nothing is acknowledged (a submit answered, a result acked, an
event published) before the generation holding it is committed.

Lease epochs are ``incarnation << 32 | counter``: the incarnation is a
counter stored in the database and incremented at every start, so an epoch
handed out (and perhaps never committed) before a crash is never reused
after it. Every agent report carries (attempt, lease epoch); reports that do
not match the current lease are rejected and change nothing.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import secrets
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from controlplane.config import Settings
from controlplane.domain.budget import over_budget
from controlplane.domain.context import dependency_results, plan_outline, step_inputs
from controlplane.domain.events import Event, EventType
from controlplane.domain.model import (
    AgentInfo,
    AgentStatus,
    ExecutionPlan,
    Failure,
    Priority,
    Subtask,
    SubtaskKind,
    SubtaskStatus,
    Task,
    TaskStatus,
    now,
)
from controlplane.domain.planning import (
    DeterministicPlanner,
    Planner,
    PlansAtOnce,
    ReportsPlanningUsage,
    validate_plan,
)
from controlplane.domain.pool import fit_plan
from controlplane.domain.review import LOOP_KINDS, answer_inputs
from controlplane.errors import Aborted, FailedPrecondition, NotFound, request_id_reused
from controlplane.scheduler.commands import (
    CancelWork,
    Ref,
    assign,
)
from controlplane.scheduler.committer import Committer
from controlplane.scheduler.queue import Entry, ReadyQueue
from controlplane.scheduler.agent_side import AgentSide
from controlplane.scheduler.budgets import Grants, Reservations
from controlplane.scheduler.consensus import Consensus, with_candidates
from controlplane.scheduler.pool_side import PoolSide
from controlplane.scheduler.review import WAITING_REASON, Review
from controlplane.scheduler.sessions import AgentSession
from controlplane.scheduler.watching import Watch, Watching
from controlplane.storage.base import IdempotencyRecord
from controlplane.storage.executor import StorageExecutor

log = logging.getLogger(__name__)

SubKey = tuple[str, str]
IDEMPOTENCY_MEMORY = 100_000
RECENT_EVENTS = 10_000


@dataclass
class Lease:
    """Who holds a running subtask, and until when."""

    agent_id: str
    epoch: int
    expires: float


@dataclass
class SubmitOutcome:
    """What SubmitTask returns: the task and whether it was created by this call."""

    task: Task
    created: bool = True


class Engine(AgentSide, Consensus, Review, Watching, PoolSide):
    """Tasks, subtasks, leases and agent sessions of one control plane."""

    def __init__(
        self,
        *,
        settings: Settings,
        storage: StorageExecutor,
        planners: Sequence[Planner],
        metrics: object,
        replica: str,
    ):
        self.settings = settings
        self.storage = storage
        self.planners = list(planners)
        self.metrics = metrics
        self.replica = replica
        self.lease_ttl: float = settings["scheduler.lease_ttl"]
        self.heartbeat_interval: float = settings["scheduler.heartbeat_interval"]
        self.committer = Committer(
            storage, settings["scheduler.commit_interval"], on_commit=self._observe_commit
        )
        self.queue = ReadyQueue(settings["scheduler.aging_interval"])
        self.tasks: dict[str, Task] = {}
        self.subtasks: dict[str, dict[str, Subtask]] = {}
        self.leases: dict[SubKey, Lease] = {}
        self.sessions: dict[str, AgentSession] = {}
        self.agents: dict[str, AgentInfo] = {}
        self._tokens: dict[SubKey, int] = {}
        #: Budget shares of running subtasks, and who held which lease (for usage reported late).
        self.reservations = Reservations()
        self.grants = Grants()
        #: Paces model calls across agents (controlplane.pacing.Pacer; set by build_app), or None.
        self.pacer: Any = None
        self._late_charges = asyncio.Lock()
        self._running_per_task: dict[str, int] = defaultdict(int)
        self._parked: dict[str, list[tuple[tuple[str, str], Entry]]] = defaultdict(list)
        #: ``system.max_concurrent_tasks`` (0: no cap): tasks RUNNING at once.
        self.max_running_tasks: int = settings["system.max_concurrent_tasks"]
        self._running_tasks: set[str] = set()
        #: Work of tasks that cannot start until a running task ends (the cap above is reached).
        self._awaiting_task_slot: list[tuple[tuple[str, str], Entry]] = []
        self._delayed: dict[SubKey, asyncio.TimerHandle] = {}
        self._timeouts: dict[str, asyncio.TimerHandle] = {}
        self._dependants: dict[str, set[str]] = defaultdict(set)
        self._watchers: dict[str, set[Watch]] = defaultdict(set)
        self._idempotency: OrderedDict[tuple[str, str, str], tuple[str, str]] = OrderedDict()
        self._in_flight: set[tuple[str, str, str]] = set()
        # (task, subtask) -> lease epoch of the applied result, for acknowledging
        # duplicates after the task left memory (bounded; oldest forgotten first).
        self._applied: OrderedDict[SubKey, int] = OrderedDict()
        #: Reports on forgotten subtasks being answered from storage now (bounded: MAX_STORED_ANSWERS).
        self._stored_answers = 0
        self._incarnation = 0
        self._planning: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._round_timers: dict[str, asyncio.TimerHandle] = {}
        #: Settings changed at run time (SystemService.SetConfig), over ``settings``.
        self.runtime: dict[str, Any] = {}
        self.fallback_planner = DeterministicPlanner(max_fanout=settings["tasks.max_fanout"])
        self._epoch_counter = 0
        self._task_seq = 0
        self._event_seq = 0
        self._schedule_pending = False
        self.event_listeners: list[Callable[[Event], None]] = []
        #: Called with every state-change event and its task as the change is made (before it is
        #: committed), so that what they mark on the committer joins the same commit (webhooks' outbox).
        self.event_taps: list[Callable[[Event, Task], None]] = []
        #: The latest events, for WatchEvents resuming after an event id.
        self.recent_events: deque[Event] = deque(maxlen=RECENT_EVENTS)
        self._events_generation = -1
        self._pending_events: list[tuple[Event, tuple[Task, Subtask | None] | None]] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started_at = now()
        #: Grows with every committed row: a cheap "did anything change" for periodic jobs.
        self.state_version = 0
        #: Queued subtasks by priority, refreshed on the loop for readers on other threads (/metrics).
        self.queued_snapshot: dict[str, int] = {}
        #: Subtasks in memory by status, and QUEUED ones by their task's priority: counted as work
        #: moves (see :meth:`_count`), so reading them costs nothing at any queue depth.
        self.subtask_counts: Counter[SubtaskStatus] = Counter()
        self.queued_counts: Counter[Priority] = Counter()
        self._random = random.Random(secrets.randbits(128))
        #: What the supervisor can launch (set by build_app; None: plans fit the connected agents only).
        self.supply: Any = None
        self._match_cache: dict[tuple[str, str], tuple[bool, bool]] = {}
        self._launching: dict[tuple[str, str], float] = {}
        self._pool_cache: Any = None
        self._launch_cache: dict[tuple[str, str, bool], tuple[float, str]] = {}

    # --- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Load unfinished work from storage and start the background jobs."""
        self._loop = asyncio.get_running_loop()
        backend = self.storage.backend
        self._incarnation = await self.storage.call(backend.next_incarnation)
        self._task_seq = await self.storage.call(backend.next_task_seq)
        tasks, subtasks = await self.storage.call(backend.load_unfinished)
        for agent in await self.storage.call(backend.list_agents):
            if agent.status not in (AgentStatus.TERMINATED, AgentStatus.DISCONNECTED):
                agent.status = AgentStatus.DISCONNECTED
                self.committer.agent(agent)
            self.agents[agent.id] = agent
        self.committer.start()
        self._restore(tasks, subtasks)
        self._sweeper = self._loop.create_task(self._sweep_leases(), name="maos-lease-sweeper")
        log.info(
            "engine started: incarnation %d, %d unfinished tasks restored", self._incarnation, len(tasks)
        )

    async def stop(self) -> None:
        """Stop background jobs and commit what is pending."""
        if self._sweeper:
            self._sweeper.cancel()
            try:
                await self._sweeper
            except BaseException:  # cancelled, or it had failed: the final commit must still run
                pass
        for handle in [*self._delayed.values(), *self._timeouts.values()]:
            handle.cancel()
        for planning in list(self._planning.values()):
            planning.cancel()
        for timer in self._round_timers.values():
            timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.committer.close()

    def reload(self, tasks: list[Task], subtasks: list[Subtask], task_seq: int, keep: set[str]) -> None:
        """Forget unfinished work in memory and restore it as loaded from storage (after a recovery).

        Records the committer has pending for tasks in ``keep`` (work accepted
        after the checkpoint) win over what was loaded; pending records of other
        tasks are dropped, since the restored rows replace them. Connected
        agents keep their sessions but lose their leases: reports on the old
        work are stale from now on.
        """
        pending = self.committer.pending()
        newer_tasks = {k: t for k, t in pending.tasks.items() if k in keep}
        newer_subs = {k: sub for k, sub in pending.subtasks.items() if k[0] in keep}
        for key in [k for k in pending.tasks if k not in keep]:
            del pending.tasks[key]
        for key in [k for k in pending.subtasks if k[0] not in keep]:
            del pending.subtasks[key]
        tasks = [newer_tasks.get(t.id, t) for t in tasks]
        subtasks = [newer_subs.get((sub.task_id, sub.id), sub) for sub in subtasks]
        for handle in [*self._delayed.values(), *self._timeouts.values(), *self._round_timers.values()]:
            handle.cancel()
        for planning in self._planning.values():
            planning.cancel()
        for mapping in (
            self._delayed,
            self._timeouts,
            self._round_timers,
            self._planning,
            self.tasks,
            self.subtasks,
            self.leases,
            self._tokens,
            self._running_per_task,
            self._parked,
            self._dependants,
            self._running_tasks,
            self._awaiting_task_slot,
        ):
            mapping.clear()
        self.reservations.clear()
        self.subtask_counts.clear()
        self.queued_counts.clear()
        for session in self.sessions.values():
            session.running.clear()
            session.reported_free = session.info.max_concurrency
        self.queue = ReadyQueue(self.queue.aging_interval)
        self._task_seq = max(self._task_seq, task_seq)
        self._restore(tasks, subtasks)

    def _restore(self, tasks: list[Task], subtasks: list[Subtask]) -> None:
        grace = self.settings["scheduler.restart_grace"]
        for task in tasks:
            self.tasks[task.id] = task
            self.subtasks[task.id] = {}
            if task.status == TaskStatus.RUNNING:
                self._running_tasks.add(task.id)
        for sub in subtasks:
            self.subtasks.setdefault(sub.task_id, {})[sub.id] = sub
        for task in tasks:
            for sub in self.subtasks[task.id].values():
                self._count(task, sub.status, 1)
        for task in tasks:
            for dep in task.depends_on:
                self._dependants[dep].add(task.id)
            if task.status == TaskStatus.PENDING:
                self._background(self._start_if_ready(task.id))
            if task.timeout and task.start_time:
                self._arm_timeout(task)
            if task.consensus_state is not None:
                self._resume_consensus(task)
            subs = self.subtasks[task.id].values()
            # The shares running steps were given are not stored: each holds what it would get now.
            sharing = sum(
                1
                for sub in subs
                if sub.status in (SubtaskStatus.BLOCKED, SubtaskStatus.QUEUED, SubtaskStatus.RUNNING)
            )
            for sub in subs:
                if sub.status == SubtaskStatus.RUNNING:
                    # Its agent may still be working: give it time to reconnect and resume.
                    self.leases[(task.id, sub.id)] = Lease(sub.agent_id, sub.lease_epoch, now() + grace)
                    self.grants.granted(task.id, sub.id, sub.lease_epoch, sub.agent_id)
                    self._running_per_task[task.id] += 1
                    if task.max_total_tokens or task.max_cost_micros:
                        self.reservations.take(task, (task.id, sub.id), sharing)
                        sharing -= 1
                elif sub.status == SubtaskStatus.QUEUED:
                    self._enqueue(task, sub)
        self._kick()

    def _background(self, coro: Any) -> None:
        """Run ``coro`` as a task the engine keeps (and cancels at stop)."""
        task = self._loop.create_task(coro)  # type: ignore[union-attr]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def setting(self, key: str) -> Any:
        """A setting, as changed at run time if it was."""
        return self.runtime.get(key, self.settings[key])

    @property
    def incarnation(self) -> int:
        """This start's incarnation number (increases at every start)."""
        return self._incarnation

    # --- submission ---------------------------------------------------------

    def new_task_id(self) -> str:
        """A fresh task id: time-ordered, unique across replicas and restarts.

        Ids are not secrets (access control decides who sees a task), so a
        fast non-cryptographic random suffix is enough to keep them unique.
        """
        return f"t{int(now() * 1000):x}{self._random.getrandbits(48):012x}"

    async def submit(
        self,
        tasks: list[Task],
        *,
        principal: str,
        request_id: str = "",
        request_hash: str = "",
        method: str = "SubmitTask",
    ) -> list[SubmitOutcome]:
        """Accept tasks (already validated field by field) atomically and durably.

        Raises:
            InvalidArgument: request_id reused with other parameters.
            NotFound: a dependency does not exist (or is not visible).
        """
        key = (principal, method, request_id)
        if request_id:
            earlier = await self._idempotent(principal, method, request_id, request_hash)
            if earlier is not None:
                found = await self.get_tasks(earlier.split(","))
                return [SubmitOutcome(t, created=False) for t in found]
            if key in self._in_flight:
                raise Aborted(
                    f"a call with request_id {request_id!r} is still in progress; retry it in a moment",
                    reason="ERROR_REASON_REQUEST_IN_FLIGHT",
                )
            self._in_flight.add(key)
        try:
            return await self._accept(tasks, principal, key, request_hash, method)
        finally:
            self._in_flight.discard(key)

    async def _accept(
        self, tasks: list[Task], principal: str, key: tuple[str, str, str], request_hash: str, method: str
    ) -> list[SubmitOutcome]:
        request_id = key[2]
        # A task may depend on one submitted before it in the same call (a sequential batch).
        earlier = {t.id: i for i, t in enumerate(tasks)}
        dep_ids = {d for t in tasks for d in t.depends_on if d not in earlier}
        deps = await self._lookup(dep_ids)
        for index, task in enumerate(tasks):
            for dep in task.depends_on:
                if earlier.get(dep, index) < index:
                    continue
                dep_task = deps.get(dep)
                if dep_task is None or (dep_task.owner != principal and principal):
                    where = f"requests[{index}].task.depends_on" if len(tasks) > 1 else "task.depends_on"
                    raise NotFound(
                        f"dependency tasks/{dep} does not exist",
                        reason="ERROR_REASON_DEPENDENCY_NOT_FOUND",
                        metadata={"field": where},
                    )
        stamp = now()
        for task in tasks:
            self._task_seq += 1
            task.seq = self._task_seq
            task.owner = principal
            task.create_time = task.update_time = stamp
            task.status = TaskStatus.PENDING
            self.tasks[task.id] = task
            self.subtasks[task.id] = {}
            for dep in task.depends_on:
                if dep not in deps or not deps[dep].status.finished:
                    self._dependants[dep].add(task.id)
            self.committer.task(task)
            self._publish(Event(EventType.TASK_SUBMITTED, task_id=task.id, to_status="PENDING"), task)
            self.metrics.task_submitted(task)  # type: ignore[attr-defined]
        if request_id:
            resource = ",".join(t.id for t in tasks)
            self._remember(key, (request_hash, resource))
            self.committer.idempotency(
                IdempotencyRecord(principal, method, request_id, request_hash, resource, stamp)
            )
        for task in tasks:
            self._evaluate_dependencies(task, deps)
        self._kick()
        await self.committer.durable()
        return [SubmitOutcome(t) for t in tasks]

    async def _idempotent(
        self, principal: str, method: str, request_id: str, request_hash: str
    ) -> str | None:
        key = (principal, method, request_id)
        cached = self._idempotency.get(key)
        if cached is None:
            record = await self.storage.call(
                self.storage.backend.get_idempotency, principal, method, request_id
            )
            cached = self._idempotency.get(key)  # a concurrent call may have finished meanwhile
            if cached is None:
                if record is None:
                    return None
                cached = (record.request_hash, record.resource)
                self._remember(key, cached)
        stored_hash, resource = cached
        if stored_hash != request_hash:
            raise request_id_reused(request_id)
        await self.committer.durable()  # the first call may not be committed yet
        return resource

    def _remember(self, key: tuple[str, str, str], outcome: tuple[str, str]) -> None:
        self._idempotency[key] = outcome
        if len(self._idempotency) > IDEMPOTENCY_MEMORY:
            self._idempotency.popitem(last=False)  # older keys are answered from storage

    async def _lookup(self, task_ids: set[str]) -> dict[str, Task]:
        found = {tid: self.tasks[tid] for tid in task_ids if tid in self.tasks}
        missing = [tid for tid in task_ids if tid not in found]
        if missing:
            for task in await self.storage.call(self.storage.backend.get_tasks, missing):
                found[task.id] = task
        return found

    def _evaluate_dependencies(self, task: Task, known: dict[str, Task] | None = None) -> None:
        """Start a PENDING task whose dependencies completed; fail it if one failed."""
        if task.status != TaskStatus.PENDING:
            return
        for dep in task.depends_on:
            dep_task = self.tasks.get(dep) or (known or {}).get(dep)
            if dep_task is None:
                continue  # finished and evicted: resolved asynchronously by _start_if_ready
            if dep_task.status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
                verb = "failed" if dep_task.status == TaskStatus.FAILED else "was cancelled"
                why = f": {dep_task.failure.message}" if dep_task.failure else ""
                self._finish_task(
                    task,
                    TaskStatus.FAILED,
                    Failure("ERROR_REASON_DEPENDENCY_FAILED", f"dependency tasks/{dep} {verb}{why}"),
                )
                return
            if dep_task.status != TaskStatus.COMPLETED:
                return
        if any(dep not in self.tasks and dep not in (known or {}) for dep in task.depends_on):
            self._background(self._start_if_ready(task.id))
            return
        if task.depends_on:  # every step sees what the task builds on (bounded; durable with the task)
            found = {d: self.tasks.get(d) or (known or {})[d] for d in task.depends_on}
            task.dependency_results = dependency_results(task, found, self.setting("tasks.context_max_chars"))
        self._plan_and_queue(task)

    async def _start_if_ready(self, task_id: str) -> None:
        task = self.tasks.get(task_id)
        if task is None or task.status != TaskStatus.PENDING:
            return
        deps = await self._lookup(set(task.depends_on))
        self._evaluate_dependencies(task, deps)
        self._kick()

    async def analyze(self, task: Task, with_model: bool = True) -> ExecutionPlan:
        """The plan a task would run with (same planner choice, fallback and consensus steps); no state.

        Without ``with_model`` only planners that plan at once (``plan_now``) are asked: a planner
        that would call a model, and spend its tokens, is passed over for the built-in plan.
        """
        try:
            planner = next(p for p in self.planners if p.accepts(task))
            plan_now = planner.plan_now if isinstance(planner, PlansAtOnce) else None
            if plan_now is None and not with_model:
                plan = self.fallback_planner.plan_now(task)
                plan.warnings.append(
                    f"planning with a model needs the permission task:submit; showing the {plan.planner} plan"
                )
            elif plan_now is not None:
                plan = plan_now(task)
            else:
                plan = await asyncio.wait_for(
                    self._ask_planner(planner.plan, task), self.settings["tasks.planning_timeout"]
                )
        except Exception as exc:  # as for a real task: the built-in plan, with why
            plan = self.fallback_planner.plan_now(task)
            plan.warnings.append(
                f"the planner failed ({type(exc).__name__}: {exc}); used the {plan.planner} plan"
            )
        known = self.supply.specs() if self.supply is not None else {}
        fitted = fit_plan(plan, task, self.agent_pool(), known)
        plan = fitted.plan
        if fitted.refused:
            plan.warnings = [*plan.warnings, f"this task would fail: {fitted.refused}"]
        if task.consensus.required:
            plan, _ = with_candidates(plan, task.consensus.candidates)
        return plan

    def _ask_planner(self, method: Callable[..., Any], task: Task) -> Any:
        """Call a planner's ``plan``/``plan_with_usage``, telling it the pool when it takes ``pool`` and
        giving it the pacer of model calls when it takes ``pacer``."""
        parameters = inspect.signature(method).parameters
        kwargs: dict[str, Any] = {}
        if "pool" in parameters:
            kwargs["pool"] = self.agent_pool()
        if "pacer" in parameters:
            kwargs["pacer"] = self.pacer
        return method(task, **kwargs)

    def _plan_and_queue(self, task: Task) -> None:
        """Plan the task now (planners with ``plan_now``) or in the background (model planners)."""
        if self.awaiting_approval(task):  # planned before a restart: it waits with the plan it showed
            return
        try:
            planner = next(p for p in self.planners if p.accepts(task))
            plan_now = planner.plan_now if isinstance(planner, PlansAtOnce) else None
            if plan_now is not None:
                plan = plan_now(task)
        except Exception as exc:  # a planner plugin must not be able to lose a task
            log.warning("planner failed for %s: %s", task.name, exc)
            plan = self.fallback_planner.plan_now(task)
            plan.warnings.append(
                f"the planner failed ({type(exc).__name__}: {exc}); used the {plan.planner} plan"
            )
            self._apply_plan(task, plan)
            return
        if plan_now is not None:
            self._apply_plan(task, plan)
            return
        if task.id in self._planning:
            return
        self._planning[task.id] = self._loop.create_task(self._plan_later(task, planner))  # type: ignore[union-attr]

    async def _plan_later(self, task: Task, planner: Planner) -> None:
        """Run a slow planner; fall back to the built-in plan if it fails or takes too long."""
        spent = None
        try:
            with_usage = planner.plan_with_usage if isinstance(planner, ReportsPlanningUsage) else None
            if with_usage is not None:
                plan, spent = await asyncio.wait_for(
                    self._ask_planner(with_usage, task), self.settings["tasks.planning_timeout"]
                )
            else:
                plan = await asyncio.wait_for(
                    self._ask_planner(planner.plan, task), self.settings["tasks.planning_timeout"]
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a planner plugin must not be able to lose a task
            log.warning("planner %s failed for %s: %s", planner.name, task.name, exc)
            plan = self.fallback_planner.plan_now(task)
            why = (
                "took too long" if isinstance(exc, TimeoutError) else f"failed ({type(exc).__name__}: {exc})"
            )
            plan.warnings.append(f"planner {planner.name} {why}; used the {plan.planner} plan")
        finally:
            self._planning.pop(task.id, None)
        if task.status == TaskStatus.PENDING and self.tasks.get(task.id) is task:
            if spent is not None:
                total = replace(task.usage)
                total.add(replace(spent))
                task.usage = total
            self._apply_plan(task, plan)
            self._kick()

    def _apply_plan(self, task: Task, plan: ExecutionPlan) -> None:
        fitted = self._fit(task, plan)
        if fitted is None:  # nobody here can run it: the task failed with the reason
            return
        plan = fitted
        if task.consensus.required:
            plan = self._consensus_plan(task, plan)
        problems = validate_plan(plan, self.settings["tasks.max_fanout"])
        if problems:
            self._finish_task(
                task,
                TaskStatus.FAILED,
                Failure("ERROR_REASON_INTERNAL", "unusable plan: " + "; ".join(problems)),
            )
            return
        task.plan = plan
        if plan.warnings:
            task.warnings = [*task.warnings, *plan.warnings]
        if self._await_approval(task):
            return
        self._start_plan(task, plan)

    def _start_plan(self, task: Task, plan: ExecutionPlan) -> None:
        """Make the subtasks of the task's (fitted, validated, perhaps approved) plan and queue the ready ones."""
        subs = self.subtasks.setdefault(task.id, {})
        stamp = now()
        for step in plan.subtasks:
            sub = Subtask(
                task_id=task.id,
                id=step.key,
                title=step.title,
                instructions=step.instructions,
                capability=step.capability,
                agent_type=step.agent_type or task.agent_type,
                kind=step.kind,
                depends_on=list(step.depends_on),
                status=SubtaskStatus.BLOCKED if step.depends_on else SubtaskStatus.QUEUED,
                queue_time=stamp,
            )
            replaced = subs.get(sub.id)
            if replaced is not None:
                self._count(task, replaced.status, -1)
            subs[sub.id] = sub
            self._count(task, sub.status, 1)
            self.committer.subtask(sub)
            if sub.status == SubtaskStatus.QUEUED:
                self._enqueue(task, sub)
        self._set_task_status(task, TaskStatus.QUEUED)
        if task.consensus.required and not self._consensus_capacity(task):
            return
        self._demand_for_plan(task)

    # --- the ready queue ----------------------------------------------------

    def _enqueue(self, task: Task, sub: Subtask) -> None:
        key = (task.id, sub.id)
        token = self._tokens.get(key, 0) + 1
        self._tokens[key] = token
        delay = sub.not_before - now()
        if delay > 0:
            self._delayed[key] = self._loop.call_later(delay, self._release_delayed, key, token)  # type: ignore[union-attr]
            return
        heap_key = (sub.agent_type, sub.capability)
        self.queue.push(heap_key, self.queue.key(now(), task.priority, task.id), task.id, sub.id, token)

    def _release_delayed(self, key: SubKey, token: int) -> None:
        self._delayed.pop(key, None)
        task = self.tasks.get(key[0])
        sub = self.subtasks.get(key[0], {}).get(key[1])
        if task and sub and sub.status == SubtaskStatus.QUEUED and self._tokens.get(key) == token:
            sub.not_before = 0.0
            self._enqueue(task, sub)
            self._kick()

    def _valid(self, entry: Entry) -> bool:
        sub = self.subtasks.get(entry.task_id, {}).get(entry.subtask_id)
        return (
            sub is not None
            and sub.status == SubtaskStatus.QUEUED
            and self._tokens.get((entry.task_id, entry.subtask_id)) == entry.token
        )

    def _runnable(self, entry: Entry, session: AgentSession) -> bool:
        task = self.tasks[entry.task_id]
        running = self._running_per_task[entry.task_id]
        if running and not self.reservations.free(task):
            return False  # its running steps hold the rest of the budget: wait for what they leave
        return (
            running < task.max_agents
            and self._task_may_run(task)
            and self._candidate_allowed(task, entry.subtask_id, session)
        )

    def _task_may_run(self, task: Task) -> bool:
        """Whether ``task`` runs already or may start under ``system.max_concurrent_tasks``."""
        return (
            not self.max_running_tasks
            or task.id in self._running_tasks
            or len(self._running_tasks) < self.max_running_tasks
        )

    def _park(self, entry: Entry, skipped: list[tuple[tuple[str, str], Entry]]) -> None:
        task = self.tasks[entry.task_id]
        sub = self.subtasks[entry.task_id][entry.subtask_id]
        heap_key = (sub.agent_type, sub.capability)
        if not self._task_may_run(task):
            self._awaiting_task_slot.append((heap_key, entry))  # back when a running task ends
        elif self._running_per_task[entry.task_id] < task.max_agents:
            skipped.append((heap_key, entry))  # another agent may take it now
        else:
            self._parked[entry.task_id].append((heap_key, entry))  # back when the task runs less

    def _unpark(self, task_id: str) -> None:
        for heap_key, entry in self._parked.pop(task_id, []):
            self.queue.push_entry(heap_key, entry)

    def _kick(self) -> None:
        """Schedule a dispatch pass soon (coalesced)."""
        if not self._schedule_pending and self._loop is not None:
            self._schedule_pending = True
            self._loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._schedule_pending = False
        if not self.queue.has_entries():
            return  # nothing ready: do not scan every connected agent
        hungry = [s for s in self.sessions.values() if s.free > 0]
        while hungry:
            still = []
            for session in hungry:
                skipped: list[tuple[tuple[str, str], Entry]] = []
                entry = self.queue.pop_for(
                    session.info.agent_type,
                    session.capabilities,
                    self._valid,
                    lambda e, s=session: self._runnable(e, s),
                    lambda e, s=skipped: self._park(e, s),
                    offline=session.offline,
                    generic_ok=self._generic_ok,
                )
                for heap_key, kept in skipped:  # runnable elsewhere, just not on this agent
                    self.queue.push_entry(heap_key, kept)
                if entry is None:
                    continue
                self._assign(
                    session, self.tasks[entry.task_id], self.subtasks[entry.task_id][entry.subtask_id]
                )
                if session.free > 0:
                    still.append(session)
            hungry = still

    def _next_epoch(self) -> int:
        self._epoch_counter += 1
        return (self._incarnation << 32) | self._epoch_counter

    @staticmethod
    def _over_budget(task: Task, *, or_at: bool = False) -> str:
        """ "token" or "cost" when the task spent more than (``or_at``: at least) its budget, else ""."""
        return over_budget(task, or_at=or_at)

    def _assign(self, session: AgentSession, task: Task, sub: Subtask) -> None:
        key = (task.id, sub.id)
        siblings = self.subtasks[task.id]
        share: tuple[int, int] | None = (0, 0)
        if task.max_total_tokens or task.max_cost_micros:  # a step reserves its share of what is left
            unstarted = sum(
                1 for s in siblings.values() if s.status in (SubtaskStatus.BLOCKED, SubtaskStatus.QUEUED)
            )
            share = (
                None if self._over_budget(task, or_at=True) else self.reservations.take(task, key, unstarted)
            )
        if share is None:  # nothing left to spend (and nothing running to give any back): no more work starts
            self._finish_task(
                task,
                TaskStatus.FAILED,
                Failure(
                    "ERROR_REASON_BUDGET_EXCEEDED",
                    "the task used up its budget before all its work could run",
                ),
            )
            return
        stamp = now()
        self.metrics.schedule_to_start(stamp - (sub.queue_time or stamp))  # type: ignore[attr-defined]
        sub.lease_epoch = self._next_epoch()
        sub.agent_id = session.id
        sub.start_time = stamp
        sub.status_reason = ""
        self._set_subtask_status(task, sub, SubtaskStatus.RUNNING)
        self.leases[key] = Lease(session.id, sub.lease_epoch, stamp + self.lease_ttl)
        self.grants.granted(task.id, sub.id, sub.lease_epoch, session.id)
        session.running.add(key)
        session.assigned()
        self._running_per_task[task.id] += 1
        if task.status in (TaskStatus.QUEUED, TaskStatus.PENDING):
            if task.start_time is None:
                task.start_time = stamp
                if task.timeout:
                    self._arm_timeout(task)
            self._set_task_status(task, TaskStatus.RUNNING)
        context_limit = self.setting("tasks.context_max_chars")
        combining = sub.kind in (SubtaskKind.SYNTHESIS, SubtaskKind.CANDIDATE)
        # A review or revision step sees the answer alone; any other step, what it depends on.
        inputs = (
            answer_inputs(task, siblings, context_limit)
            if sub.kind in LOOP_KINDS
            else step_inputs(task.id, siblings, sub.id, context_limit)
        )
        session.send(
            assign(
                task,
                sub,
                inputs=inputs,
                lease_ttl=self.lease_ttl,
                budget=share,
                plan=plan_outline(task.plan, siblings) if combining else "",
            )
        )

    # --- state transitions --------------------------------------------------

    def _set_task_status(self, task: Task, status: TaskStatus) -> None:
        if task.status == status:
            return
        before = task.status
        task.status = status
        task.update_time = now()
        if status == TaskStatus.RUNNING:
            self._running_tasks.add(task.id)
        elif before == TaskStatus.RUNNING:
            self._running_tasks.discard(task.id)
            for heap_key, entry in self._awaiting_task_slot:  # a slot is free: their turn again
                self.queue.push_entry(heap_key, entry)
            self._awaiting_task_slot.clear()
            self._kick()
        self.committer.task(task)
        self.metrics.task_transition(before, status)  # type: ignore[attr-defined]
        self._publish(
            Event(
                EventType.TASK_STATUS_CHANGED, task_id=task.id, from_status=before.name, to_status=status.name
            ),
            task,
        )

    def _set_subtask_status(self, task: Task, sub: Subtask, status: SubtaskStatus) -> None:
        before = sub.status
        if self.subtasks.get(task.id, {}).get(sub.id) is sub:  # counted while it is in memory
            self._count(task, before, -1)
            self._count(task, status, 1)
        sub.status = status
        self.committer.subtask(sub)
        if status.finished:
            sub.end_time = now()
        self._publish(
            Event(
                EventType.SUBTASK_STATUS_CHANGED,
                task_id=task.id,
                subtask_id=sub.id,
                agent_id=sub.agent_id,
                from_status=before.name,
                to_status=status.name,
            ),
            task,
            sub,
        )

    def _release(self, task: Task, sub: Subtask) -> None:
        """Forget the lease of a subtask leaving RUNNING."""
        key = (task.id, sub.id)
        self.reservations.release(key)
        lease = self.leases.pop(key, None)
        if lease is None:
            return
        session = self.sessions.get(lease.agent_id)
        if session is not None and key in session.running:
            session.running.discard(key)
            session.released()
        self._running_per_task[task.id] -= 1
        if self._parked.get(task.id):
            self._unpark(task.id)
        self._kick()

    def _requeue(
        self, task: Task, sub: Subtask, *, delay: float, why: str, spends_retry: bool = True
    ) -> None:
        """Queue a subtask for its next attempt; ``spends_retry=False`` when the attempt was cut short through
        no fault of the work (its agent was terminated by an operator), so the retry budget is untouched."""
        sub.attempt += 1
        if spends_retry:
            sub.retries_used += 1
        sub.agent_id = ""
        sub.not_before = now() + delay
        sub.queue_time = now()
        sub.status_reason = why
        self.metrics.retried()  # type: ignore[attr-defined]
        self._set_subtask_status(task, sub, SubtaskStatus.QUEUED)
        self._enqueue(task, sub)

    def _subtask_done(self, task: Task) -> None:
        """After a subtask completed: unblock its dependants, or finish the task."""
        subs = self.subtasks[task.id]
        done = {sid for sid, s in subs.items() if s.status == SubtaskStatus.COMPLETED}
        for sub in subs.values():
            if sub.status == SubtaskStatus.BLOCKED and all(d in done for d in sub.depends_on):
                sub.queue_time = now()
                self._set_subtask_status(task, sub, SubtaskStatus.QUEUED)
                self._enqueue(task, sub)
        if len(done) == len(subs):
            consensus = task.consensus_state
            if consensus is not None and consensus["outcome"] == "PENDING":
                if consensus["round"] == 0:
                    self._open_round(task)
            else:
                self._answer_ready(task)
        else:
            task.update_time = now()
            self.committer.task(task)
        self._kick()

    def _finish_task(self, task: Task, status: TaskStatus, failure: Failure | None) -> None:
        """Move a task to a terminal state, stop its work and settle its dependants."""
        if task.status.finished:
            return
        stamp = now()
        task.failure = failure
        task.end_time = stamp
        for sub in self.subtasks.get(task.id, {}).values():
            if sub.status.finished:
                continue
            key = (task.id, sub.id)
            if sub.status == SubtaskStatus.RUNNING:
                lease = self.leases.get(key)
                session = self.sessions.get(lease.agent_id) if lease else None
                if session is not None:
                    session.send(
                        CancelWork(
                            Ref(task.id, sub.id, sub.attempt, sub.lease_epoch),
                            failure.message if failure else "task finished",
                        )
                    )
                self._release(task, sub)
            handle = self._delayed.pop(key, None)
            if handle:
                handle.cancel()
            self._tokens.pop(key, None)
            self._set_subtask_status(task, sub, SubtaskStatus.CANCELLED)
        if status == TaskStatus.COMPLETED and task.start_time:
            self.metrics.task_run_time(stamp - task.start_time, "completed")  # type: ignore[attr-defined]
        elif task.start_time:
            self.metrics.task_run_time(stamp - task.start_time, status.name.lower())  # type: ignore[attr-defined]
        self._set_task_status(task, status)
        timer = self._timeouts.pop(task.id, None)
        if timer:
            timer.cancel()
        planning = self._planning.pop(task.id, None)
        if planning:
            planning.cancel()
        round_timer = self._round_timers.pop(task.id, None)
        if round_timer:
            round_timer.cancel()
        self._parked.pop(task.id, None)
        self._running_per_task.pop(task.id, None)
        self.queue.forget_task(task.id)
        for dependant_id in self._dependants.pop(task.id, set()):
            dependant = self.tasks.get(dependant_id)
            if dependant is not None:
                self._evaluate_dependencies(dependant, {task.id: task})
        self.committer.after_commit(lambda: self._evict(task.id))

    def _evict(self, task_id: str) -> None:
        """Drop a finished, committed task from memory (storage serves it from now on)."""
        task = self.tasks.get(task_id)
        if task is not None and task.status.finished and not self._watchers.get(task_id):
            del self.tasks[task_id]
            for sid, sub in self.subtasks.pop(task_id, {}).items():
                self._count(task, sub.status, -1)
                self._tokens.pop((task_id, sid), None)

    def _arm_timeout(self, task: Task) -> None:
        earlier = self._timeouts.pop(task.id, None)
        if earlier:
            earlier.cancel()
        deadline = (task.start_time or now()) + (task.timeout or 0)
        delay = max(0.0, deadline - now())
        self._timeouts[task.id] = self._loop.call_later(delay, self._timed_out, task.id)  # type: ignore[union-attr]

    def _timed_out(self, task_id: str) -> None:
        self._timeouts.pop(task_id, None)
        task = self.tasks.get(task_id)
        if task is not None and not task.status.finished:
            self._finish_task(
                task,
                TaskStatus.FAILED,
                Failure(
                    "ERROR_REASON_TIMED_OUT", f"the task ran longer than its timeout of {task.timeout:g} s"
                ),
            )

    # --- user operations ----------------------------------------------------

    async def get_task(self, task_id: str) -> Task:
        """A task by id (memory first, then storage); NotFound if unknown."""
        task = self.tasks.get(task_id)
        if task is None:
            task = await self.storage.call(self.storage.backend.get_task, task_id)
        if task is None:
            raise NotFound(f"task tasks/{task_id} does not exist", reason="ERROR_REASON_TASK_NOT_FOUND")
        return task

    async def get_tasks(self, task_ids: list[str]) -> list[Task]:
        """Several tasks, in the order asked; missing ones are skipped."""
        found = await self._lookup(set(task_ids))
        return [found[t] for t in task_ids if t in found]

    async def get_subtasks(self, task_id: str) -> list[Subtask]:
        """A task's subtasks in plan order."""
        if task_id in self.subtasks and task_id in self.tasks:
            return list(self.subtasks[task_id].values())
        return await self.storage.call(self.storage.backend.get_subtasks, task_id)

    async def cancel(self, task_id: str, reason: str, principal: str) -> Task:
        """Cancel an unfinished task; running agents get Cancel at once."""
        task = await self.get_task(task_id)
        if task.status.finished:
            raise FailedPrecondition(
                f"task tasks/{task_id} is already {task.status.name}; only unfinished tasks can be cancelled",
                reason="ERROR_REASON_TASK_FINISHED",
            )
        message = f"cancelled by {principal or 'a user'}" + (f": {reason}" if reason else "")
        self._finish_task(task, TaskStatus.CANCELLED, Failure("ERROR_REASON_CANCELLED", message))
        await self.committer.durable()
        return task

    async def retry(
        self, task_id: str, *, max_agents: int | None = None, timeout: float | None = None
    ) -> Task:
        """Run a FAILED or CANCELLED task again, keeping its completed subtasks (with new limits if given)."""
        task = await self.get_task(task_id)
        if task.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            raise FailedPrecondition(
                f"task tasks/{task_id} is {task.status.name}; only FAILED or CANCELLED tasks can be retried",
                reason="ERROR_REASON_TASK_NOT_RETRYABLE",
            )
        subs = await self.get_subtasks(task_id)
        current = self.tasks.get(task_id, task)
        if current.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):  # another retry got here first
            raise FailedPrecondition(
                f"task tasks/{task_id} is {current.status.name}; only FAILED or CANCELLED tasks can be retried",
                reason="ERROR_REASON_TASK_NOT_RETRYABLE",
            )
        task = current
        self.tasks[task.id] = task
        for sub in self.subtasks.get(task.id, {}).values():
            self._count(task, sub.status, -1)
        self.subtasks[task.id] = {s.id: s for s in subs}
        for sub in subs:
            self._count(task, sub.status, 1)
        task.retries += 1
        if max_agents is not None:
            task.max_agents = max_agents
        if timeout is not None:
            task.timeout = timeout
        task.failure = None
        task.end_time = None
        task.status_reason = ""
        for dep in task.depends_on:
            self._dependants[dep].add(task.id)
        if not subs:
            self._set_task_status(task, TaskStatus.PENDING)
            deps = await self._lookup(set(task.depends_on))
            self._evaluate_dependencies(task, deps)
        else:
            done = {s.id for s in subs if s.status == SubtaskStatus.COMPLETED}
            self._set_task_status(task, TaskStatus.QUEUED)  # RUNNING again once a subtask starts
            for sub in subs:
                if sub.status == SubtaskStatus.COMPLETED:
                    continue
                sub.attempt += 1
                sub.retries_used = 0
                sub.failure = None
                sub.agent_id = ""
                sub.not_before = 0.0
                sub.end_time = None
                sub.queue_time = now()
                ready = all(d in done for d in sub.depends_on)
                self._set_subtask_status(task, sub, SubtaskStatus.QUEUED if ready else SubtaskStatus.BLOCKED)
                if ready:
                    self._enqueue(task, sub)
            if task.timeout:
                task.start_time = now()
                self._arm_timeout(task)
            if task.consensus_state is not None:  # decide afresh
                task.consensus_state = {
                    **task.consensus_state,
                    "outcome": "PENDING",
                    "round": 0,
                    "votes": [],
                    "voters": [],
                    "winner": "",
                    "agreement": 0.0,
                }
                if self._candidates_done(task):
                    self._open_round(task)
        self._kick()
        await self.committer.durable()
        return task

    async def update(self, task_id: str, *, priority: object = None, max_agents: int | None = None) -> Task:
        """Change priority and/or max_agents of an unfinished task."""
        task = await self.get_task(task_id)
        if task.status.finished:
            raise FailedPrecondition(
                f"task tasks/{task_id} is already {task.status.name}; finished tasks cannot be updated",
                reason="ERROR_REASON_TASK_FINISHED",
            )
        if priority is not None and priority != task.priority:
            queued = sum(
                1 for sub in self.subtasks.get(task.id, {}).values() if sub.status == SubtaskStatus.QUEUED
            )
            self.queued_counts[task.priority] -= queued
            task.priority = Priority(priority)  # type: ignore[call-overload]
            self.queued_counts[task.priority] += queued
            for sub in self.subtasks.get(task.id, {}).values():
                if sub.status == SubtaskStatus.QUEUED and (task.id, sub.id) not in self._delayed:
                    self._enqueue(task, sub)  # a new token invalidates the old entry
        if max_agents is not None:
            task.max_agents = max_agents
            self._unpark(task.id)
        task.update_time = now()
        self.committer.task(task)
        self._publish(Event(EventType.TASK_UPDATED, task_id=task.id), task)
        self._kick()
        await self.committer.durable()
        return task

    def explain(self, task: Task) -> str:
        """Why an unfinished task is where it is, for people."""
        if task.status.finished:
            return task.failure.message if task.failure else ""
        if task.status == TaskStatus.PENDING:
            waiting = [d for d in task.depends_on if d in self.tasks and not self.tasks[d].status.finished]
            if waiting:
                return "waiting for " + ", ".join(f"tasks/{d}" for d in waiting)
            return WAITING_REASON if self.awaiting_approval(task) else "planning"
        reasons = []
        for sub in self.subtasks.get(task.id, {}).values():
            if sub.status != SubtaskStatus.QUEUED:
                continue
            if sub.not_before > now():
                reasons.append(
                    f"subtask {sub.id} retries in {sub.not_before - now():.1f} s (attempt {sub.attempt + 1})"
                    + (f" after: {sub.status_reason}" if sub.status_reason else "")
                )
                continue
            candidates = [
                s for s in self.sessions.values() if self.may_take(s, sub.agent_type, sub.capability)
            ]
            if not candidates:
                launching = self._launching.get((sub.agent_type, sub.capability), 0.0) > now()
                if sub.agent_type:
                    reasons.append(
                        f"no connected agent of type {sub.agent_type}"
                        + ("; launching one" if launching else "")
                    )
                elif sub.capability:
                    reasons.append(
                        f"no connected agent has capability {sub.capability}"
                        + ("; launching one" if launching else "")
                    )
                else:
                    reasons.append("no connected agent" + ("; launching one" if launching else ""))
            elif sub.kind == SubtaskKind.CANDIDATE and not any(
                self._candidate_allowed(task, sub.id, s) for s in candidates
            ):
                reasons.append(
                    f"waiting for a distinct agent: the other candidates hold all "
                    f"{len(candidates)} able to take it"
                )
            elif self._running_per_task.get(task.id, 0) >= task.max_agents:
                reasons.append(f"at its max_agents ({task.max_agents})")
            elif not self._task_may_run(task):
                reasons.append(
                    f"waiting for one of the {len(self._running_tasks)} running tasks to end "
                    f"(system.max_concurrent_tasks: {self.max_running_tasks})"
                )
            elif all(s.paused or s.draining for s in candidates):
                reasons.append("every agent that could take it is paused or draining")
            else:
                reasons.append("waiting for a free agent slot")
        return "; ".join(dict.fromkeys(reasons))

    # --- metrics ------------------------------------------------------------

    def _observe_commit(self, rows: int, seconds: float) -> None:
        self.state_version += rows
        self.metrics.commit(rows, seconds)  # type: ignore[attr-defined]

    def _count(self, task: Task, status: SubtaskStatus, delta: int) -> None:
        """Count a subtask of ``task`` in (``delta`` 1) or out of (-1) ``status``."""
        self.subtask_counts[status] += delta
        if status == SubtaskStatus.QUEUED:
            self.queued_counts[task.priority] += delta

    def queued_by_priority(self) -> dict[str, int]:
        """Queued subtasks by priority name (maintained counts: no walk over the queue)."""
        return {priority.name: n for priority, n in self.queued_counts.items() if n}

    def subtasks_by_status(self) -> dict[str, int]:
        """Subtasks in memory (those of unfinished tasks, and of finished ones until evicted) by status name."""
        return {status.name: n for status, n in self.subtask_counts.items() if n}
