"""The engine: the live state of unfinished work, and every decision about it.

The engine is thin: it composes components that each declare their state and
take only what they need, and its public methods are the only way servicers,
checkpoints and the other doors reach that state (docs/architecture.md):

* ``book`` (:mod:`.book`): tasks, subtasks, dependants, counters;
  ``intake`` (:mod:`.intake`): submission, request ids, dependencies;
  ``planning`` (:mod:`.planning`): planners, plans made into subtasks;
* ``dispatch`` (:mod:`.dispatch`): the ready queue and dispatch passes;
  ``claims`` (:mod:`.claims`, PostgreSQL only): which tasks this replica
  holds among several, claimed from shared storage, with wake-ups;
  ``spill`` (:mod:`.spill`, SQLite): queued tasks beyond a window kept in
  the database, taken back in order;
* ``leasing`` (:mod:`.leases`): leases, epochs, the sweeper; ``agent_side``
  (:mod:`.agent_side`): sessions, reports, agent commands, ``route``;
  ``charges`` (:mod:`.charges`): usage charged to tasks and agents;
* ``pool`` (:mod:`.pool_side`), ``consensus``, ``review``, ``watchers``
  (:mod:`.watching`), ``reads`` (:mod:`.reads`) and the ``committer``.

The engine keeps the transitions every component shares (task and subtask
status, release, re-queue, finish, eviction, task timeouts) and the user
operations. All state changes happen on the event loop, in memory first; the
committer makes them durable in groups, and nothing is acknowledged (a submit
answered, a result acked, an event published) before the generation holding
it is committed. **Reads answer committed state** (:mod:`.reads`): GetTask,
ListTasks and GetTaskResults never show a change a crash could still undo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from controlplane.config import Settings
from controlplane.domain.events import Event, EventType
from controlplane.domain.model import (
    AgentInfo,
    AgentStatus,
    Failure,
    Priority,
    Subtask,
    SubtaskStatus,
    Task,
    TaskStatus,
    now,
)
from controlplane.domain.planning import Planner
from controlplane.errors import FailedPrecondition, Unavailable
from controlplane.scheduler.agent_side import AgentSide
from controlplane.scheduler.book import TaskBook
from controlplane.scheduler.budgets import Grants, Reservations
from controlplane.scheduler.charges import Charges
from controlplane.scheduler.claims import Claims
from controlplane.scheduler.commands import CancelWork, Ref
from controlplane.scheduler.committer import Committer
from controlplane.scheduler.consensus import Consensus
from controlplane.scheduler.dispatch import Dispatcher
from controlplane.scheduler.giveback import GiveBack
from controlplane.scheduler.intake import Intake, SubmitOutcome
from controlplane.scheduler.leases import Lease, Leases
from controlplane.scheduler.planning import Planning
from controlplane.scheduler.pool_side import PoolSide
from controlplane.scheduler.reads import CommittedReads
from controlplane.scheduler.review import Review
from controlplane.scheduler.sessions import AgentSession
from controlplane.scheduler.spill import QueueWindow
from controlplane.scheduler.watching import Watchers
from controlplane.storage.executor import StorageExecutor

__all__ = ["Engine", "SubmitOutcome"]

log = logging.getLogger(__name__)

SubKey = tuple[str, str]
IDEMPOTENCY_MEMORY = 100_000


class Engine:
    """Tasks, subtasks, leases and agent sessions of one control plane (see the module docstring)."""

    def __init__(
        self,
        *,
        settings: Settings,
        storage: StorageExecutor,
        planners: Sequence[Planner],
        metrics: Any,
        replica: str,
    ):
        self.settings = settings
        self.storage = storage
        self.metrics = metrics
        self.replica = replica
        self.lease_ttl: float = settings["scheduler.lease_ttl"]
        self.heartbeat_interval: float = settings["scheduler.heartbeat_interval"]
        self.committer = Committer(
            storage, settings["scheduler.commit_interval"], on_commit=self._observe_commit
        )
        self.book = TaskBook(storage)
        # The book's records under the names the transitions below have always used.
        self.tasks = self.book.tasks
        self.subtasks = self.book.subtasks
        self._dependants = self.book.dependants
        self._count = self.book.count
        #: Budget shares of running subtasks, and who held which lease (for usage reported late).
        self.reservations = Reservations()
        self.grants = Grants()
        self.watchers = Watchers(
            committer=self.committer, tasks=self.tasks, get_task=self.book.get_task, evict=self._evict
        )
        self._publish = self.watchers.publish
        self.charges = Charges(
            tasks=self.tasks,
            storage=storage,
            committer=self.committer,
            grants=self.grants,
            finish_task=self._finish_task,
            background=self._background,
        )
        self.leasing = Leases(
            tasks=self.tasks,
            subtasks=self.subtasks,
            session_of=lambda agent_id: self.sessions.get(agent_id),
            metrics=metrics,
            lease_ttl=self.lease_ttl,
            grants=self.grants,
            reservations=self.reservations,
            setting=self.setting,
            started=lambda task_id: self.dispatch.started(task_id),
            set_task_status=self._set_task_status,
            set_subtask_status=self._set_subtask_status,
            arm_timeout=self._arm_timeout,
            finish_task=self._finish_task,
            release=self._release,
            requeue=self._requeue,
            publish=self._publish,
            sweep=self._swept,
            housekeeping=lambda at: self.agent_side._housekeeping(at),
        )
        self.agent_side = AgentSide(
            storage=storage,
            committer=self.committer,
            metrics=metrics,
            replica=replica,
            lease_ttl=self.lease_ttl,
            heartbeat_interval=self.heartbeat_interval,
            idle_heartbeat_interval=settings["scheduler.idle_heartbeat_interval"],
            tasks=self.tasks,
            subtasks=self.subtasks,
            grants=self.grants,
            charges=self.charges,
            leasing=self.leasing,
            release=self._release,
            requeue=self._requeue,
            set_subtask_status=self._set_subtask_status,
            finish_task=self._finish_task,
            subtask_done=self._subtask_done,
            publish=self._publish,
            kick=lambda: self._kick(),
            pool_changed=lambda: self.pool._pool_changed(),
            registered_for_launches=lambda session: self.pool._registered_for_launches(session),
            background=self._background,
        )
        self.sessions = self.agent_side.sessions
        self.agents = self.agent_side.agents
        self.leases = self.leasing.leases
        self.pool = PoolSide(
            sessions=self.sessions,
            subtasks=self.subtasks,
            setting=self.setting,
            finish_task=self._finish_task,
            background=self._background,
        )
        self.review = Review(
            tasks=self.tasks,
            subtasks=self.subtasks,
            committer=self.committer,
            pool=self.pool,
            get_task=self.book.get_task,
            publish=self._publish,
            finish_task=self._finish_task,
            enqueue=lambda task, sub: self._enqueue(task, sub),
            count=lambda task, sub, status, delta: self._count(task, sub, status, delta),
            start_plan=lambda task, plan: self.planning._start_plan(task, plan),
            kick=lambda: self._kick(),
        )
        self.consensus = Consensus(
            tasks=self.tasks,
            subtasks=self.subtasks,
            sessions=self.sessions,
            agents=self.agents,
            committer=self.committer,
            reservations=self.reservations,
            setting=self.setting,
            heartbeat_interval=self.heartbeat_interval,
            finish_task=self._finish_task,
            answer_ready=self.review._answer_ready,
            charge_agent=self.charges.charge_agent,
            charge_task=self.charges.charge_task,
            kick=lambda: self._kick(),
        )
        self.dispatch = Dispatcher(
            aging_interval=settings["scheduler.aging_interval"],
            max_running_tasks=settings["system.max_concurrent_tasks"],
            tasks=self.tasks,
            subtasks=self.subtasks,
            sessions=self.sessions.values,
            reservations=self.reservations,
            candidate_allowed=self.consensus._candidate_allowed,
            generic_ok=self.pool._generic_ok,
            assign=self.leasing.assign,
        )
        self._enqueue = self.dispatch.enqueue
        self._kick = self.dispatch.kick
        self.planning = Planning(
            settings=settings,
            planners=planners,
            tasks=self.tasks,
            pool=self.pool,
            kick=self._kick,
            subtasks=self.subtasks,
            count=self._count,
            committer=self.committer,
            enqueue=self._enqueue,
            set_task_status=self._set_task_status,
            finish_task=self._finish_task,
            consensus_plan=self.consensus._consensus_plan,
            await_approval=self.review._await_approval,
        )
        self.reads = CommittedReads(book=self.book, committer=self.committer, storage=storage)
        self.intake = Intake(
            book=self.book,
            storage=storage,
            committer=self.committer,
            metrics=metrics,
            get_tasks=self.reads.get_tasks,
            publish=self._publish,
            finish_task=self._finish_task,
            plan_and_queue=self.planning._plan_and_queue,
            background=self._background,
            kick=self._kick,
            setting=self.setting,
        )
        self._evaluate_dependencies = self.intake._evaluate_dependencies
        self._start_if_ready = self.intake._start_if_ready
        self._timeouts: dict[str, asyncio.TimerHandle] = {}
        self.give_back = GiveBack(
            lambda: len(self.tasks),
            lambda: self.dispatch.compact(self.book.subtask_counts[SubtaskStatus.QUEUED]),
        )
        self._incarnation = 0
        #: The key page tokens are signed with (``controlplane.api.paging``): this process's own
        #: until :meth:`start` reads the one every replica on the database shares.
        self.page_secret = secrets.token_bytes(32)
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Settings changed at run time (SystemService.SetConfig), over ``settings``.
        self._runtime: dict[str, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started_at = now()
        #: Grows with every committed row: a cheap "did anything change" for periodic jobs.
        self.state_version = 0
        #: Queued subtasks by priority, refreshed on the loop for readers on other threads (/metrics).
        self.queued_snapshot: dict[str, int] = {}
        #: The ids of the other live replicas (set by build_app where several share the database):
        #: their connected agents are not marked DISCONNECTED at start.
        self.live_replicas: Callable[[], Awaitable[set[str]]] | None = None
        #: Claims between replicas on a shared database (:meth:`enable_claims`), else None: this
        #: process holds every task (SQLite, the single-process default).
        self.claims: Claims | None = None
        #: The queue window (:meth:`enable_queue_window`), or None: every queued task in memory.
        self.spill: QueueWindow | None = None
        self._delegate()

    def enable_claims(self, store: Any, bus: Any, registry: Any, **options: Any) -> Claims:
        """Run as one replica of several on a shared database (before :meth:`start`): tasks are
        claimed from storage instead of all loaded (see :mod:`.claims`)."""
        self.claims = Claims(self, store=store, bus=bus, registry=registry, **options)
        self.committer.before_write = self.claims.check_fence
        self.leasing.send_after_commit = self.committer.after_commit  # an assignment is sent once durable
        self.intake.database_decides = True  # two calls with one request_id may reach two replicas at once
        self.dispatch.after_pass = self.claims.dispatched
        self.agent_side.claim = self.claims.claim_task
        # A report on work a replica not yet known lost holds waits for it to be (then it is applied).
        self.agent_side.claim_patience = self.claims.lost_after + 2 * self.claims.poll_interval
        # A submit's tasks are dispatched (and given up when no agent here takes them) before its commit,
        # so the commit that makes them durable also makes them claimable elsewhere.
        self.intake._kick = self.dispatch.dispatch_now
        self.intake.claims = self.claims  # a submit on a replica without agents goes to the others at once
        return self.claims

    def enable_queue_window(self, store: Any, window: int) -> QueueWindow:
        """Keep at most ``window`` queued tasks in memory, the rest in the database (before :meth:`start`;
        one process holding every task: see :mod:`.spill`)."""
        self.spill = QueueWindow(self, store=store, window=window)
        self.dispatch.after_pass = self.spill.dispatched
        return self.spill

    # --- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Load unfinished work from storage and start the background jobs."""
        self._loop = asyncio.get_running_loop()
        backend = self.storage.backend
        self._incarnation = await self.storage.call(backend.next_incarnation)
        if hasattr(backend, "page_token_key"):  # page tokens valid on every replica of this database
            self.page_secret = await self.storage.call(backend.page_token_key)
        self.leasing.incarnation = self._incarnation
        self.book.task_seq = await self.storage.call(backend.next_task_seq)
        if self.claims is None:
            await self.intake.load_known_request_ids()  # this process alone stores request ids
            tasks, subtasks = await self.storage.call(backend.load_unfinished)
            # What waits in the database, counted before anything in memory can be spilled to it.
            spilled = await self.storage.call(self.spill.store.counts) if self.spill is not None else None
        else:  # the tasks this replica runs are claimed once it is registered (Claims.start)
            tasks, subtasks, spilled = [], [], None
            self.book.seq_source = self._incarnation
        elsewhere = await self.live_replicas() if self.live_replicas is not None else set()
        for agent in await self.storage.call(backend.list_agents):
            if agent.replica in elsewhere:  # connected to a live replica: its state is that replica's
                continue
            if agent.status not in (AgentStatus.TERMINATED, AgentStatus.DISCONNECTED):
                agent.status = AgentStatus.DISCONNECTED
                self.committer.agent(agent)
            self.agents[agent.id] = agent
        self.committer.start()
        for component in (self.dispatch, self.consensus, self.planning):
            component.start(self._loop)
        self.agent_side.start(self._loop)
        self._restore(tasks, subtasks)
        if self.spill is not None:
            self.spill.started(tasks, spilled)
        self.leasing.start(self._loop)
        log.info(
            "engine started: incarnation %d, %d unfinished tasks restored", self._incarnation, len(tasks)
        )

    async def stop(self) -> None:
        """Stop background jobs and commit what is pending."""
        if self.claims is not None:  # (stopped already by the replica's shutdown, unless that failed)
            await self.claims.stop()
        await self.leasing.stop()
        self.dispatch.stop()
        if self.spill is not None:
            await self.spill.stop()
        self.give_back.cancel()
        for handle in self._timeouts.values():
            handle.cancel()
        self.planning.cancel()
        self.consensus.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.committer.close()
        await self.watchers.close()  # the final commit's events reach the other replicas

    def reload(
        self,
        tasks: list[Task],
        subtasks: list[Subtask],
        task_seq: int,
        keep: set[str],
        spilled: Any = None,
    ) -> None:
        """Forget unfinished work in memory and restore it as loaded from storage (after a recovery).

        Records the committer has pending for tasks in ``keep`` (work accepted
        after the checkpoint) win over what was loaded; pending records of other
        tasks are dropped, since the restored rows replace them. Connected
        agents keep their sessions but lose their leases: reports on the old
        work are stale from now on. ``spilled``: what the queue window keeps in the database now
        (:meth:`~controlplane.storage.sql.spill.SqlSpillStore.counts`), with a queue window.
        """
        pending = self.committer.pending()
        newer_tasks = {k: t for k, t in pending.tasks.items() if k in keep}
        newer_subs = {k: sub for k, sub in pending.subtasks.items() if k[0] in keep}
        for key in [k for k in pending.tasks if k not in keep]:
            del pending.tasks[key]
        for key in [k for k in pending.subtasks if k[0] not in keep]:
            del pending.subtasks[key]
        pending.released[:] = [task_id for task_id in pending.released if task_id in keep]
        tasks = [newer_tasks.get(t.id, t) for t in tasks]
        subtasks = [newer_subs.get((sub.task_id, sub.id), sub) for sub in subtasks]
        for handle in self._timeouts.values():
            handle.cancel()
        self._timeouts.clear()
        self.dispatch.clear()
        self.consensus.cancel()
        self.planning.cancel()
        self.review.waiting.clear()
        self.book.clear()
        self.leases.clear()
        self.reservations.clear()
        for session in self.sessions.values():
            session.running.clear()
            session.reported_free = session.info.max_concurrency
        self.book.task_seq = max(self.book.task_seq, task_seq)
        self._restore(tasks, subtasks)
        if self.claims is not None:
            self.claims.reloaded(tasks)
        if self.spill is not None and spilled is not None:
            self.spill.reloaded(tasks, spilled)

    def _restore(self, tasks: list[Task], subtasks: list[Subtask]) -> None:
        grace = self.settings["scheduler.restart_grace"]
        for task in tasks:
            self.tasks[task.id] = task
            self.subtasks[task.id] = {}
            if task.status == TaskStatus.RUNNING:
                self.dispatch.running_changed(task.id, TaskStatus.QUEUED, TaskStatus.RUNNING)
        for sub in subtasks:
            self.subtasks.setdefault(sub.task_id, {})[sub.id] = sub
        for task in tasks:
            for sub in self.subtasks[task.id].values():
                self._count(task, sub, sub.status, 1)
        for task in tasks:
            for dep in task.depends_on:
                self._dependants[dep].add(task.id)
            if task.status == TaskStatus.PENDING:
                self._background(self._start_if_ready(task.id))
                if self.review.awaiting_approval(task):
                    self.review.waiting.add(task.id)
            if task.timeout and task.start_time:
                self._arm_timeout(task)
            if task.consensus_state is not None:
                self.consensus._resume_consensus(task)
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
                    self.dispatch.started(task.id)
                    if task.max_total_tokens or task.max_cost_micros:
                        self.reservations.take(task, (task.id, sub.id), sharing)
                        sharing -= 1
                elif sub.status == SubtaskStatus.QUEUED:
                    self._enqueue(task, sub)
        self._kick()

    def _background(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task the engine keeps (and cancels at stop)."""
        task = self._loop.create_task(coro)  # type: ignore[union-attr]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _swept(self, at: float, housekeeping: bool) -> None:
        """After each lease sweep: refresh the counts /metrics reads; now and then drop stale entries."""
        self.queued_snapshot = self.queued_by_priority()  # read by the /metrics thread
        if self.spill is not None:
            self.spill.swept(at)
        if housekeeping:
            self.dispatch.compact(self.book.subtask_counts[SubtaskStatus.QUEUED])

    def setting(self, key: str) -> Any:
        """A setting, as changed at run time if it was."""
        return self._runtime.get(key, self.settings[key])

    @property
    def incarnation(self) -> int:
        """This start's incarnation number (increases at every start)."""
        return self._incarnation

    # --- state transitions --------------------------------------------------

    def _set_task_status(self, task: Task, status: TaskStatus) -> None:
        if task.status == status:
            return
        before = task.status
        task.status = status
        task.update_time = now()
        self.dispatch.running_changed(task.id, before, status)
        if self.claims is not None:
            self.claims.status_changed(task, before, status)
        elif self.spill is not None:
            self.spill.status_changed(task, before, status)
        self.committer.task(task)
        self.metrics.task_transition(before, status)
        self._publish(
            Event(
                EventType.TASK_STATUS_CHANGED, task_id=task.id, from_status=before.name, to_status=status.name
            ),
            task,
        )

    def _set_subtask_status(self, task: Task, sub: Subtask, status: SubtaskStatus) -> None:
        before = sub.status
        if self.subtasks.get(task.id, {}).get(sub.id) is sub:  # counted while it is in memory
            self._count(task, sub, before, -1)
            self._count(task, sub, status, 1)
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
        self.dispatch.stopped(task.id)  # its parked work may run; a dispatch pass follows

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
        self.metrics.retried()
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
                    self.consensus._open_round(task)
            else:
                self.review._answer_ready(task)
        else:
            task.update_time = now()
            self.committer.task(task)
        self._kick()

    def _finish_task(
        self,
        task: Task,
        status: TaskStatus,
        failure: Failure | None,
        told: Mapping[tuple[str, str], tuple[int, int]] | None = None,
    ) -> None:
        """Move a task to a terminal state, stop its work and settle its dependants.

        Running work gets Cancel on its agent's stream, but not the attempts in ``told`` (by subtask
        key: attempt and lease epoch): those were sent theirs already (:meth:`_send_cancels`).
        """
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
                if session is not None and (told is None or told.get(key) != (sub.attempt, sub.lease_epoch)):
                    ref = Ref(task.id, sub.id, sub.attempt, sub.lease_epoch)
                    session.send(CancelWork(ref, failure.message if failure else "task finished"))
                self._release(task, sub)
            self.dispatch.cancel(key)
            self._set_subtask_status(task, sub, SubtaskStatus.CANCELLED)
        if status == TaskStatus.COMPLETED and task.start_time:
            self.metrics.task_run_time(stamp - task.start_time, "completed")
        elif task.start_time:
            self.metrics.task_run_time(stamp - task.start_time, status.name.lower())
        self._set_task_status(task, status)
        timer = self._timeouts.pop(task.id, None)
        if timer:
            timer.cancel()
        self.planning.cancel(task.id)
        self.consensus.cancel(task.id)
        self.dispatch.forget_task(task.id)
        for dependant_id in self._dependants.pop(task.id, set()):
            dependant = self.tasks.get(dependant_id)
            if dependant is not None:
                self._evaluate_dependencies(dependant, {task.id: task})
        self.committer.after_commit(lambda: self._evict(task.id))

    def _evict(self, task_id: str) -> None:
        """Drop a finished, committed task from memory (storage serves it from now on)."""
        task = self.tasks.get(task_id)
        if task is not None and task.status.finished and not self.watchers.watched(task_id):
            self.dispatch.forget_tokens(task_id, self.book.forget(task_id))
            self.give_back.observe(self._loop)

    async def _held(self, task: Task) -> Task:
        """``task`` as this replica holds it before a user operation changes it (claimed first when
        nobody live holds it; a finished one, to retry it, whoever held it).

        Raises:
            Unavailable: Another live replica holds the unfinished task: the operation must go there.
        """
        if task.id in self.tasks:
            return self.tasks[task.id]
        if self.claims is None:  # one process: an unfinished task not in memory waits in the database
            if self.spill is not None and not task.status.finished and await self.spill.take_back(task.id):
                return self.tasks[task.id]
            return task
        if await self.claims.claim_task(task.id, finished_too=task.status.finished):
            return self.tasks[task.id]
        holder = await self.storage.call(self.claims.store.holder, task.id)
        if not holder or self.claims.fenced:
            raise Unavailable(
                f"task tasks/{task.id} could not be claimed by this replica; try again (on another replica)",
                reason="ERROR_REASON_NOT_LEASE_HOLDER",
            )
        raise Unavailable(
            f"task tasks/{task.id} is held by replica {holder}, which runs it; send the call to that "
            "replica (or try again once it is lost)",
            reason="ERROR_REASON_NOT_LEASE_HOLDER",
            metadata={"replica": holder},
        )

    def _give_up(self, task: Task) -> None:
        """Drop a QUEUED task nothing of which runs from memory: another replica may claim it (see
        :mod:`.claims`), or alone it waits in the database (:mod:`.spill`); the caller marks the release
        on the committer."""
        task_id = task.id
        for sub_id in self.subtasks.get(task_id, {}):
            self.dispatch.cancel((task_id, sub_id))
        self.dispatch.forget_task(task_id)
        timer = self._timeouts.pop(task_id, None)
        if timer:
            timer.cancel()
        self.planning.cancel(task_id)
        self.consensus.cancel(task_id)
        self.review.waiting.discard(task_id)
        for dep in task.depends_on:
            waiting = self._dependants.get(dep)
            if waiting is not None:
                waiting.discard(task_id)
                if not waiting:
                    del self._dependants[dep]
        self.committer.task(task)
        self.dispatch.forget_tokens(task_id, self.book.forget(task_id))
        if self.claims is not None:
            self.claims.forgotten(task_id)
        elif self.spill is not None:
            self.spill.forgotten(task_id)

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

    async def cancel(self, task_id: str, reason: str, principal: str) -> Task:
        """Cancel an unfinished task; running agents get Cancel at once."""
        task = await self.book.get_task(task_id)
        if task.status.finished:
            raise FailedPrecondition(
                f"task tasks/{task_id} is already {task.status.name}; only unfinished tasks can be cancelled",
                reason="ERROR_REASON_TASK_FINISHED",
            )
        task = await self._held(task)
        message = f"cancelled by {principal or 'a user'}" + (f": {reason}" if reason else "")
        told = self._send_cancels(task, message)
        if told:
            # Let the agents' streams write their Cancels now, before the pass over every subtask
            # below (a task on thousands of agents): the last agent hears of it sooner.
            await asyncio.sleep(0)
            if task.status.finished:  # it ended meanwhile (its last result, or another cancel)
                raise FailedPrecondition(
                    f"task tasks/{task_id} is already {task.status.name}; only unfinished tasks can be "
                    "cancelled",
                    reason="ERROR_REASON_TASK_FINISHED",
                )
        self._finish_task(task, TaskStatus.CANCELLED, Failure("ERROR_REASON_CANCELLED", message), told)
        await self.committer.durable()
        return task

    def _send_cancels(self, task: Task, reason: str) -> dict[tuple[str, str], tuple[int, int]]:
        """Send Cancel to the agent of each running subtask of ``task``; the attempts told (attempt and
        lease epoch by subtask key).

        The transition itself (:meth:`_finish_task`) follows; as before, a Cancel may reach its
        agent before the cancelled task is committed.
        """
        told = {}
        leases, sessions, running = self.leases, self.sessions, SubtaskStatus.RUNNING
        for sub in self.subtasks.get(task.id, {}).values():
            if sub.status != running:
                continue
            key = (task.id, sub.id)
            lease = leases.get(key)
            session = sessions.get(lease.agent_id) if lease else None
            if session is not None:
                session.send(CancelWork(Ref(task.id, sub.id, sub.attempt, sub.lease_epoch), reason))
                told[key] = (sub.attempt, sub.lease_epoch)
        return told

    async def retry(
        self, task_id: str, *, max_agents: int | None = None, timeout: float | None = None
    ) -> Task:
        """Run a FAILED or CANCELLED task again, keeping its completed subtasks (with new limits if given)."""
        task = await self.book.get_task(task_id)
        if task.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):
            raise FailedPrecondition(
                f"task tasks/{task_id} is {task.status.name}; only FAILED or CANCELLED tasks can be retried",
                reason="ERROR_REASON_TASK_NOT_RETRYABLE",
            )
        task = await self._held(task)
        subs = await self.book.get_subtasks(task_id)
        current = self.tasks.get(task_id, task)
        if current.status not in (TaskStatus.FAILED, TaskStatus.CANCELLED):  # another retry got here first
            raise FailedPrecondition(
                f"task tasks/{task_id} is {current.status.name}; only FAILED or CANCELLED tasks can be retried",
                reason="ERROR_REASON_TASK_NOT_RETRYABLE",
            )
        task = current
        self.tasks[task.id] = task
        for sub in self.subtasks.get(task.id, {}).values():
            self._count(task, sub, sub.status, -1)
        self.subtasks[task.id] = {s.id: s for s in subs}
        for sub in subs:
            self._count(task, sub, sub.status, 1)
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
            deps = await self.book.lookup(set(task.depends_on))
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
                if self.consensus._candidates_done(task):
                    self.consensus._open_round(task)
        self._kick()
        await self.committer.durable()
        return task

    async def update(self, task_id: str, *, priority: object = None, max_agents: int | None = None) -> Task:
        """Change priority and/or max_agents of an unfinished task."""
        task = await self.book.get_task(task_id)
        if task.status.finished:
            raise FailedPrecondition(
                f"task tasks/{task_id} is already {task.status.name}; finished tasks cannot be updated",
                reason="ERROR_REASON_TASK_FINISHED",
            )
        task = await self._held(task)
        if priority is not None and priority != task.priority:
            queued = sum(
                1 for sub in self.subtasks.get(task.id, {}).values() if sub.status == SubtaskStatus.QUEUED
            )
            self.book.queued_counts[task.priority] -= queued
            task.priority = Priority(priority)  # type: ignore[arg-type]  # checked by the caller
            self.book.queued_counts[task.priority] += queued
            if self.spill is not None:
                self.spill.ranked_anew(task)
            for sub in self.subtasks.get(task.id, {}).values():
                if sub.status == SubtaskStatus.QUEUED and not self.dispatch.delayed((task.id, sub.id)):
                    self._enqueue(task, sub)  # a new token invalidates the old entry
        if max_agents is not None:
            task.max_agents = max_agents
            self.dispatch.unpark(task.id)
        task.update_time = now()
        self.committer.task(task)
        self._publish(Event(EventType.TASK_UPDATED, task_id=task.id), task)
        self._kick()
        await self.committer.durable()
        return task

    # --- the public API: everything servicers, checkpoints and the other doors use ------

    async def durable(self) -> None:
        """Wait until every change made so far is committed (raises the commit's error)."""
        await self.committer.durable()

    def commits_held(self) -> Any:
        """An async context in which no commit is written (recovery restores under it)."""
        return self.committer.paused()

    def queue_held(self) -> Any:
        """An async context in which no queued task is taken back from the database (a recovery
        restores under it, so that no row read before the restore is taken into memory after it)."""
        return self.spill.held_still() if self.spill is not None else contextlib.nullcontext()

    @property
    def outbox(self) -> Committer:
        """The committer, for components whose records ride the engine's commits (audit, webhooks)."""
        return self.committer

    @property
    def commit_failure(self) -> BaseException | None:
        """The error of the last commit if it failed (None once one succeeds)."""
        return self.committer.failed

    def set_setting(self, key: str, value: Any) -> Any:
        """Change a setting at run time (SetConfig; validated by the caller); the value now in force."""
        self._runtime[key] = value
        if key == "scheduler.aging_interval" and self.spill is not None:
            self.spill.reranked()
        return value

    def set_at_runtime(self, key: str) -> bool:
        """Whether the setting was changed at run time."""
        return key in self._runtime

    @property
    def supply(self) -> Any:
        """What the supervisor can launch (set by build_app), or None."""
        return self.pool.supply

    @supply.setter
    def supply(self, supply: Any) -> None:
        self.pool.supply = supply

    @property
    def pacer(self) -> Any:
        """Paces model calls across agents (set by build_app), or None."""
        return self.planning.pacer

    @pacer.setter
    def pacer(self, pacer: Any) -> None:
        self.planning.pacer = pacer

    def holds(self, task_id: str) -> bool:
        """Whether this replica holds the task: runs it and decides about it (with claims between
        replicas, the tasks it claimed; else every task)."""
        return self.claims is None or self.claims.holds(task_id)

    async def claim_task(self, task_id: str) -> bool:
        """Claim one task into this replica if nobody live holds it; whether this replica holds it now.

        Without claims (SQLite) this process holds every task: True.
        """
        if self.claims is None:
            return True
        return await self.claims.claim_task(task_id)

    async def take_back(self, task_id: str) -> bool:
        """Whether this replica holds the task once a give-up of it here is released, taking it back
        while it is still marked leaving from here (see ``Claims.take_back``); without claims, whether
        it is in memory."""
        if self.claims is None:
            return self.holds(task_id)
        return await self.claims.take_back(task_id)

    async def prepare_resume(self, agent_id: str, refs: Sequence[Ref]) -> None:
        """Before an agent resumes here: learn its session if another replica made it, and claim the
        tasks of the work it resumes that nobody live holds, so it keeps that work. Called with no
        ``refs`` too: an agent whose work is done but whose results were not acknowledged sends them
        again under the identity it resumes (each result claims its task before it is judged)."""
        if self.claims is None or not agent_id:
            return
        if agent_id not in self.agents:
            info = await self.storage.call(self.storage.backend.get_agent, agent_id)
            if info is not None and agent_id not in self.agents:
                self.agents[agent_id] = info
        for task_id in dict.fromkeys(ref.task_id for ref in refs):
            try:
                await self.claims.claim_task(task_id)
            except Exception as exc:  # resumed or not, the agent is told which work it keeps
                log.warning("could not claim tasks/%s for a resuming agent: %s", task_id, exc)

    def tasks_in_memory(self) -> int:
        """How many tasks are in memory (unfinished, or finished and not evicted yet)."""
        return len(self.tasks)

    def task_owner(self, task_id: str) -> str | None:
        """The owner of a task in memory (None if it is not in memory)."""
        task = self.tasks.get(task_id)
        return task.owner if task is not None else None

    def agent(self, agent_id: str) -> AgentInfo | None:
        """An agent known here (connected or not), or None."""
        return self.agents.get(agent_id)

    def known_agents(self) -> list[AgentInfo]:
        """Every agent known here."""
        return list(self.agents.values())

    def label_agent(self, agent_id: str, labels: dict[str, str]) -> None:
        """Add labels to a known agent (durable with the next commit)."""
        info = self.agents.get(agent_id)
        if info is not None and labels:
            info.labels = {**info.labels, **labels}
            self.committer.agent(info)

    def leases_held(self) -> int:
        """How many subtasks this control plane has leased to agents right now."""
        return len(self.leasing.leases)

    def connected(self) -> list[AgentSession]:
        """The sessions of the agents connected here (read them; change them through the engine)."""
        return list(self.sessions.values())

    def connected_session(self, agent_id: str) -> AgentSession | None:
        """The session of an agent connected here, or None."""
        return self.sessions.get(agent_id)

    def route(self, agent_id: str, command: Any) -> bool:
        """Send a command to an agent's session; False when it is not connected here."""
        return self.agent_side.route(agent_id, command)

    async def count_tasks_by_status(self) -> dict[TaskStatus, int]:
        """Stored tasks by status (committed state; a read that does not wait behind a checkpoint)."""
        return await self.storage.quick_read(self.storage.backend.count_tasks_by_status)

    @property
    def storage_kind(self) -> str:
        """The storage backend's kind ("sqlite", "postgresql", …)."""
        return str(self.storage.backend.kind)

    async def ping_storage(self) -> None:
        """Reach the database (raises what the backend raised)."""
        await self.storage.call(self.storage.backend.ping)

    def explain(self, task: Task) -> str:
        """Why an unfinished task is where it is, for people."""
        if self.spill is not None and task.status == TaskStatus.QUEUED and task.id not in self.tasks:
            return self.spill.explain()
        return self.dispatch.explain(task, self.pool)

    # --- delegated to the components (one line each; their docstrings are there) -----

    def _delegate(self) -> None:
        side, watchers, reads = self.agent_side, self.watchers, self.reads
        self.submit = self.intake.submit
        self.new_task_id = self.intake.new_task_id
        self.get_task = reads.get_task
        self.get_tasks = reads.get_tasks
        self.get_subtasks = reads.get_subtasks
        self.read_task = reads.read_task
        self.live_subtasks = reads.live_subtasks
        self.list_tasks = reads.list_tasks
        self.register = side.register
        self.disconnect = side.disconnect
        self.seen = side.seen
        self.heartbeat = side.heartbeat
        self.report_result = side.report_result
        self.report_failure = side.report_failure
        self.report_progress = side.report_progress
        self.report_output = side.report_output
        self.shared_state = side.shared_state
        self.charge_task = self.charges.charge_task
        self.session_for = side.session_for
        self.pause_agent = side.pause_agent
        self.resume_agent = side.resume_agent
        self.drain_agent = side.drain_agent
        self.terminate_agent = side.terminate_agent
        self.find_agent = side.find_agent
        self.all_agents = side.all_agents
        self.expire_leases = self.leasing.expire_leases
        self.cast_vote = self.consensus.cast_vote
        self.approve = self.review.approve
        self.reject = self.review.reject
        self.awaiting_approval = self.review.awaiting_approval
        self.awaiting_approval_count = self.review.awaiting_approval_count
        self.analyze = self.planning.analyze
        self.agent_pool = self.pool.agent_pool
        self.watch = watchers.watch
        self.events_after = watchers.events_after
        self.watch_events = watchers.follow
        self.event_listeners = watchers.event_listeners
        self.event_taps = watchers.event_taps
        self.worked_on = self.book.worked_on

    def queued_by_priority(self) -> dict[str, int]:
        """Queued subtasks by priority name, those kept in the database included (maintained counts)."""
        counts = self.book.queued_by_priority()
        return counts if self.spill is None else self.spill.queued_by_priority(counts)

    def queued_demand(self) -> dict[tuple[str, str], tuple[int, float | None]]:
        """Queued subtasks by (agent type, capability): how many and the earliest queue time, those kept
        in the database included (maintained counts)."""
        demand = self.book.queued_demand()
        return demand if self.spill is None else self.spill.queued_demand(demand)

    def subtasks_by_status(self) -> dict[str, int]:
        """Subtasks of unfinished tasks (and of finished ones until evicted) by status name, the queued
        ones kept in the database included."""
        counts = self.book.subtasks_by_status()
        extra = 0 if self.spill is None else self.spill.queued_subtasks()
        if extra:
            counts[SubtaskStatus.QUEUED.name] = counts.get(SubtaskStatus.QUEUED.name, 0) + extra
        return counts

    @property
    def events_streamed(self) -> bool:
        """Whether events cross replicas (their ids are the shared stream's)."""
        return self.watchers.streamed

    @property
    def recent_events(self) -> Any:
        """The latest events delivered (for WatchEvents resuming after an event id)."""
        return self.watchers.recent_events

    # --- metrics ------------------------------------------------------------

    def _observe_commit(self, rows: int, seconds: float) -> None:
        self.state_version += rows
        self.metrics.commit(rows, seconds)
