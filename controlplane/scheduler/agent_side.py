"""The agent side of the engine: sessions, reports and agent commands.

A component of :class:`~controlplane.scheduler.engine.Engine`. It owns the
connected agents' sessions and the agents known (connected or not); it renews
the leases (:mod:`~controlplane.scheduler.leases`) of the work they report on,
reads the task book's records and calls the engine's transitions. Every report is fenced by (attempt, lease
epoch): a report that does not match the current lease is rejected and
changes nothing.

:meth:`AgentSide.route` is the one way to reach an agent's stream; with
several replicas it is where a message for an agent connected elsewhere is
sent on.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from controlplane.domain.events import Event, EventType
from controlplane.domain.model import (
    AgentInfo,
    AgentStatus,
    Artifact,
    Failure,
    Source,
    Subtask,
    SubtaskStatus,
    Task,
    TaskStatus,
    ToolCall,
    Usage,
    new_agent_id,
    now,
)
from controlplane.domain.model_limits import DEFERRED_ERROR_TYPE
from controlplane.errors import FailedPrecondition, NotFound
from controlplane.scheduler.budgets import Grants
from controlplane.scheduler.charges import Charges
from controlplane.scheduler.commands import (
    Ack,
    CancelWork,
    Committed,
    DrainAgent,
    PauseAgent,
    Ref,
    Registration,
    ResumeAgent,
    StateReply,
)
from controlplane.scheduler.committer import Committer
from controlplane.scheduler.leases import Leases
from controlplane.scheduler.relayed_reports import CarriedReports, Carry, FailureReport, ResultReport
from controlplane.scheduler.sessions import AgentSession
from controlplane.scheduler.shared_state import serve_shared_state
from controlplane.storage.executor import StorageExecutor

log = logging.getLogger(__name__)

APPLIED_MEMORY = 100_000  # results remembered (task, subtask -> epoch) to acknowledge late duplicates
#: Reports on forgotten subtasks answered from storage at once; beyond, they are told TASK_FINISHED
#: without a read (a flood of made-up references costs no more than this many queries in flight).
MAX_STORED_ANSWERS = 64
FORGET_AGENTS_AFTER = 86400.0  # seconds after an agent left
#: Durable reports acknowledged within this many seconds share one Committed message ...
ACK_GATHER = 0.02
#: ... of at most this many refs.
MAX_ACK_REFS = 512


#: Seconds between claims of a patient report (see :meth:`AgentSide._claim_patiently`).
PATIENT_CLAIM_INTERVAL = 0.5
#: Reports on one task waiting for its claim (more are answered from storage at once).
MAX_WAITING_REPORTS = 1_000


def stored_report_ack(ref: Ref, sub: Subtask | None, agent_id: str, output: str | None) -> Ack:
    """The answer to a result (``output``) or failure (None) report, judged by the stored subtask ``sub``.

    An agent that never held the subtask learns no more than of an unknown one.
    """
    if sub is None:
        return Ack(ref, False, "ERROR_REASON_TASK_FINISHED", "the task is finished or unknown")
    if sub.lease_epoch != ref.lease_epoch or sub.attempt != ref.attempt:
        return Ack(ref, False, "ERROR_REASON_STALE_ATTEMPT", f"attempt {ref.attempt} is stale")
    if sub.agent_id != agent_id:
        return Ack(ref, False, "ERROR_REASON_TASK_FINISHED", "the task is finished or unknown")
    if output is not None and sub.status == SubtaskStatus.COMPLETED and sub.output == output:
        return Ack(ref, True, message="duplicate result ignored")
    if output is None and sub.status == SubtaskStatus.FAILED:
        return Ack(ref, True, message="already settled")
    return Ack(ref, False, "ERROR_REASON_TASK_FINISHED", f"the subtask is {sub.status.name}")


def _acknowledged(running: Sequence[Ref], held: set[tuple[str, str]]) -> int:
    """How many of the assignments ``held`` for an agent its heartbeat names (each counted once)."""
    if not running:
        return 0
    if len(running) == 1:
        ref = running[0]
        return 1 if (ref.task_id, ref.subtask_id) in held else 0
    return len({(r.task_id, r.subtask_id) for r in running} & held)


class AgentSide:
    """Agent sessions, their reports and the leases of their work."""

    def __init__(
        self,
        *,
        storage: StorageExecutor,
        committer: Committer,
        metrics: Any,
        replica: str,
        lease_ttl: float,
        heartbeat_interval: float,
        idle_heartbeat_interval: float = 0.0,
        tasks: dict[str, Task],
        subtasks: dict[str, dict[str, Subtask]],
        grants: Grants,
        charges: Charges,
        release: Callable[[Task, Subtask], None],
        requeue: Callable[..., None],
        set_subtask_status: Callable[[Task, Subtask, SubtaskStatus], None],
        finish_task: Callable[[Task, TaskStatus, Failure | None], None],
        subtask_done: Callable[[Task], None],
        publish: Callable[..., None],
        kick: Callable[[], None],
        pool_changed: Callable[[], None],
        registered_for_launches: Callable[[AgentSession], None],
        background: Callable[[Coroutine[Any, Any, Any]], None],
        leasing: Leases,
    ):
        self.storage = storage
        self.committer = committer
        self.metrics = metrics
        self.replica = replica
        self.lease_ttl = lease_ttl
        self.heartbeat_interval = heartbeat_interval
        #: How far apart idle agents may heartbeat (never closer than ``heartbeat_interval``).
        self.idle_heartbeat_interval = max(idle_heartbeat_interval, heartbeat_interval)
        #: The task book's records (reports change them through the engine's transitions).
        self.tasks = tasks
        self.subtasks = subtasks
        self.grants = grants
        self._charge = charges.charge
        self.charge_task = charges.charge_task
        self._charge_late = charges.charge_late
        self._release = release
        self._requeue = requeue
        self._set_subtask_status = set_subtask_status
        self._finish_task = finish_task
        self._subtask_done = subtask_done
        self._publish = publish
        self._kick = kick
        self._pool_changed = pool_changed
        self._registered_for_launches = registered_for_launches
        self._background = background
        self.sessions: dict[str, AgentSession] = {}
        self.agents: dict[str, AgentInfo] = {}
        #: The leases of running work (the lease component's).
        self.leases = leasing.leases
        # (task, subtask) -> lease epoch of the applied result, for acknowledging
        # duplicates after the task left memory (bounded; oldest forgotten first).
        self._applied: OrderedDict[tuple[str, str], int] = OrderedDict()
        #: Reports on forgotten subtasks being answered from storage now (bounded: MAX_STORED_ANSWERS).
        self._stored_answers = 0
        #: Claims a task nobody live holds into this replica (claims between replicas), else None.
        self.claim: Callable[[str], Awaitable[bool]] | None = None
        #: Seconds a report on work this agent still holds in storage waits for the replica holding its
        #: task to be lost (it may be frozen, or dead and not yet known so): ``replicas.lost_after``
        #: and a little more on replicas, else 0 (answered at once).
        self.claim_patience = 0.0
        #: Reports carried to the live replica holding their task, and those carried here (replicas).
        self.carried = CarriedReports(self, charges.charge_agent)
        #: Tasks being claimed for reports on them: the reports waiting to be handled again after it,
        #: each with what carries it to the replica holding its task (None: it cannot be carried).
        self._claiming: dict[str, list[tuple[Callable[[], None], Carry | None]]] = {}
        #: Tasks whose waiting reports are being handled again (answered as they stand: no new claim).
        self._replaying: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Gather acknowledgements on ``loop`` from now on."""
        self._loop = loop

    def route(self, agent_id: str, command: Any) -> bool:
        """Send a command to the agent's stream; False if it is not connected here."""
        session = self.sessions.get(agent_id)
        if session is None:
            return False
        session.send(command)
        return True

    # --- agent sessions -----------------------------------------------------

    def register(
        self,
        info: AgentInfo,
        resume_agent_id: str = "",
        resume_refs: Sequence[Ref] = (),
        resume_session_id: str = "",
    ) -> tuple[AgentSession, Registration]:
        """Open a session for a newly connected agent (or a reconnecting one).

        ``info.id`` may be set already: the identity the agent's credential
        proves (see ``controlplane.api.admission``); otherwise a new id is made.
        """
        resumed: list[Ref] = []
        revoked: list[Ref] = []
        earlier_info = self.agents.get(resume_agent_id) if resume_agent_id else None
        if (
            earlier_info is not None
            and earlier_info.session_id == resume_session_id
            and earlier_info.agent_type == info.agent_type
            and info.id in ("", resume_agent_id)
            and earlier_info.owner in ("", info.owner)
        ):  # nor may it pass to another owner
            # Only the holder of the session (it knows the session id) may take its identity back.
            info.id = resume_agent_id
        else:  # an unknown or unproven session resumes nothing: what it names is not its work
            revoked.extend(resume_refs)
            resume_refs = ()
        if info.id:
            old = self.sessions.pop(info.id, None)
            if old is not None:
                old.close()  # superseded by the new stream
                self._pool_changed()
                self.metrics.agent_connected(old.info.agent_type, -1)
        else:
            info.id = new_agent_id(info.agent_type)
        earlier = self.agents.get(info.id)
        if earlier is not None:
            info.completed_subtasks = earlier.completed_subtasks
            info.failed_subtasks = earlier.failed_subtasks
            info.usage = earlier.usage
        info.session_id = secrets.token_hex(8)
        info.replica = self.replica
        info.connect_time = info.last_heartbeat_time = now()
        info.disconnect_time = None
        session = AgentSession(info)
        for ref in resume_refs:
            key = (ref.task_id, ref.subtask_id)
            lease = self.leases.get(key)
            if lease and lease.agent_id == info.id and lease.epoch == ref.lease_epoch:
                lease.expires = now() + self.lease_ttl
                session.running.add(key)
                resumed.append(ref)
            else:
                revoked.append(ref)
        # Leases this agent held that it did not claim are left to expire.
        info.status = session.status()
        self.sessions[info.id] = session
        self.agents[info.id] = info
        self.committer.agent(info)
        self.metrics.agent_connected(info.agent_type, +1)
        self._pool_changed()
        self._registered_for_launches(session)
        self._kick()
        return session, Registration(
            agent_id=info.id,
            session_id=info.session_id,
            heartbeat_interval=self.heartbeat_interval,
            lease_ttl=self.lease_ttl,
            replica=self.replica,
            idle_heartbeat_interval=self.idle_heartbeat_interval,
            resumed=resumed,
            revoked=revoked,
        )

    def disconnect(self, session: AgentSession) -> None:
        """The stream ended; leases run on until they expire or the agent resumes."""
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
            session.info.status = AgentStatus.TERMINATED if session.draining else AgentStatus.DISCONNECTED
            session.info.disconnect_time = now()
            self.committer.agent(session.info)
            self.metrics.agent_connected(session.info.agent_type, -1)
            self._pool_changed()
        session.close()

    def moved_away(self, agent_id: str) -> None:
        """The agent resumed its session on another replica, which takes its work (see
        :mod:`.session_moves`): its stream here is over (one this replica still believes open included),
        and its record is the other replica's to write, so it is forgotten here (read from storage when
        asked for)."""
        session = self.sessions.pop(agent_id, None)
        if session is not None:
            session.moved = True
            session.close()
            self.metrics.agent_connected(session.info.agent_type, -1)
            self._pool_changed()
        self.agents.pop(agent_id, None)

    def unproven(self, agent_id: str) -> None:
        """The live replica holding the agent's work refused the session it resumes with (stale or forged:
        :mod:`.session_moves`): unless its stream is here, what this replica knew of it is forgotten, so
        that the resume registers a new agent rather than take the identity over."""
        if agent_id not in self.sessions:
            self.agents.pop(agent_id, None)

    def seen(self, session: AgentSession) -> None:
        """The agent sent something: it is alive (work may go to it again)."""
        if session.suspect:
            session.suspect = False
            self._kick()

    def heartbeat(
        self,
        session: AgentSession,
        running: Sequence[Ref],
        draining: bool = False,
        free_slots: int | None = None,
    ) -> None:
        """Renew the leases the agent still holds; a draining agent gets no new work."""
        if draining and not session.draining:
            session.draining = True
            self._agent_changed(session)
        if free_slots is not None:
            # An idle agent's heartbeat (the common case at scale) and one naming a single assignment
            # build no set, and one that changes nothing touches nothing but the lease times below.
            acknowledged = _acknowledged(running, session.running)
            if session.reports_change(free_slots, acknowledged):
                before = session.free
                session.report_free(free_slots, acknowledged)
                if session.free > before:
                    # Credit came back without a release here (work whose lease had expired ended on
                    # the agent): queued work may go to it now, not only at the next unrelated change.
                    self._kick()
        stamp = now()
        session.info.last_heartbeat_time = stamp
        if running:  # renewal is in memory only: the expiry the sweep compares with
            leases, agent_id, expires = self.leases, session.id, stamp + self.lease_ttl
            for ref in running:
                lease = leases.get((ref.task_id, ref.subtask_id))
                if lease and lease.agent_id == agent_id and lease.epoch == ref.lease_epoch:
                    lease.expires = expires

    def _check_ref(
        self, session: AgentSession, ref: Ref, *, running: bool = False
    ) -> tuple[Task, Subtask] | Ack:
        """The task and subtask of a report if ``session`` holds that attempt (and, with ``running``,
        the subtask still runs); otherwise the Ack rejecting it."""
        task = self.tasks.get(ref.task_id)
        sub = self.subtasks.get(ref.task_id, {}).get(ref.subtask_id)
        if task is None or sub is None:
            if self._applied.get((ref.task_id, ref.subtask_id)) == ref.lease_epoch:
                return Ack(ref, True, message="duplicate result ignored")
            return Ack(ref, False, "ERROR_REASON_TASK_FINISHED", "the task is finished or unknown")
        if sub.lease_epoch != ref.lease_epoch or sub.attempt != ref.attempt:
            return Ack(
                ref,
                False,
                "ERROR_REASON_STALE_ATTEMPT",
                f"attempt {ref.attempt} is stale; the current attempt is {sub.attempt}",
            )
        if sub.agent_id != session.id:
            return Ack(
                ref, False, "ERROR_REASON_NOT_LEASE_HOLDER", "this agent does not hold that assignment"
            )
        if running and sub.status != SubtaskStatus.RUNNING:
            return Ack(ref, False, "ERROR_REASON_TASK_FINISHED", f"the subtask is {sub.status.name}")
        return task, sub

    def _forgotten(self, ref: Ref) -> bool:
        """Whether a report is on a subtask neither in memory nor remembered as applied.

        Its task finished, before a restart of the control plane or long enough ago to have
        left :data:`APPLIED_MEMORY`: only the stored subtask can say what the report is.
        """
        in_memory = ref.task_id in self.tasks and ref.subtask_id in self.subtasks.get(ref.task_id, {})
        return not in_memory and self._applied.get((ref.task_id, ref.subtask_id)) != ref.lease_epoch

    def _claimable(self, ref: Ref) -> bool:
        """Whether to try claiming the task of a report first (replicas: another may have held it),
        or wait for the claim in progress for it."""
        return (
            self.claim is not None
            and ref.task_id not in self._replaying
            and len(self._claiming.get(ref.task_id, ())) < MAX_WAITING_REPORTS
        )

    def _claim_then(
        self, ref: Ref, again: Callable[[], None], agent_id: str = "", carry: Carry | None = None
    ) -> None:
        """Claim the task of a report on work this replica does not hold (its holder died and the agent
        came here), then handle the report again: applied if the claim brought the task here.

        When another live replica holds the task, the report is carried to it (``carry``) and its
        answer is the agent's. When it cannot be carried (no replica answered: its holder stalled,
        or died and is not known lost yet) and storage says ``agent_id`` holds that very attempt,
        claiming and carrying are tried again until :attr:`claim_patience` runs out, so the agent's
        finished work is applied, not run again.
        """
        claim = self.claim
        assert claim is not None
        waiting = self._claiming.get(ref.task_id)
        if waiting is not None:  # one claim of a task at a time: its other reports wait for it
            waiting.append((again, carry))
            return
        self._claiming[ref.task_id] = [(again, carry)]

        async def claim_and_handle() -> None:
            try:
                if not await claim(ref.task_id):
                    await self._carry_waiting(ref.task_id)
                    if self._claiming.get(ref.task_id) and agent_id and self.claim_patience > 0:
                        await self._claim_patiently(claim, ref, agent_id)
            except Exception as exc:  # answered as reports on work not held here
                log.warning("could not claim tasks/%s for a report: %s", ref.task_id, exc)
            # Not claimed again meanwhile: a task no replica took is answered from storage.
            self._replaying.add(ref.task_id)
            try:
                for handle, _ in self._claiming.pop(ref.task_id, []):
                    try:
                        handle()
                    except Exception:  # one report's failure must not lose the others
                        log.exception("a report on tasks/%s failed after its claim", ref.task_id)
            finally:
                self._replaying.discard(ref.task_id)

        self._background(claim_and_handle())

    async def _carry_waiting(self, task_id: str) -> None:
        """Carry the reports waiting on a task held elsewhere to its holder; those not answered stay waiting."""
        waiting = self._claiming.get(task_id)
        if waiting is None or task_id in self.tasks:
            return
        kept = []
        index = 0
        while index < len(waiting):  # (reports joining meanwhile are carried too)
            handle, carry = waiting[index]
            index += 1
            if carry is None or task_id in self.tasks or not await carry():
                kept.append((handle, carry))  # (claimed here meanwhile: handled here)
        waiting[:] = kept

    async def _claim_patiently(
        self, claim: Callable[[str], Awaitable[bool]], ref: Ref, agent_id: str
    ) -> None:
        """Claim (or carry the waiting reports to the holder) again every :data:`PATIENT_CLAIM_INTERVAL`
        while storage says ``agent_id`` holds the attempt of ``ref`` and another replica the task, for at
        most :attr:`claim_patience` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.claim_patience
        while loop.time() < deadline:
            stored = await self.storage.call(self.storage.backend.get_subtasks, ref.task_id)
            sub = next((s for s in stored if s.id == ref.subtask_id), None)
            if (
                sub is None
                or sub.status != SubtaskStatus.RUNNING
                or (sub.attempt, sub.lease_epoch, sub.agent_id) != (ref.attempt, ref.lease_epoch, agent_id)
            ):
                return  # not this agent's running work (any more): answered as it is
            await asyncio.sleep(PATIENT_CLAIM_INTERVAL)
            if await claim(ref.task_id):
                return
            await self._carry_waiting(ref.task_id)
            if not self._claiming.get(ref.task_id):
                return  # every waiting report was answered by the holder

    def _answer_forgotten(self, session: AgentSession, ref: Ref, output: str | None) -> None:
        if self._stored_answers >= MAX_STORED_ANSWERS:
            session.send(Ack(ref, False, "ERROR_REASON_TASK_FINISHED", "the task is finished or unknown"))
            return
        self._stored_answers += 1
        self._background(self._answer_from_storage(session, ref, output))

    async def _answer_from_storage(self, session: AgentSession, ref: Ref, output: str | None) -> None:
        """Answer a report on a forgotten subtask (see :meth:`_forgotten`) from what is stored.

        A result re-sent because the control plane died after storing it but before its
        acknowledgement reached the agent is an accepted duplicate, as the protocol promises
        (same agent, attempt, lease epoch and output); an earlier attempt is still stale.
        """
        try:
            await self.committer.durable()  # a task that just finished here: read its final state
            stored = await self.storage.call(self.storage.backend.get_subtasks, ref.task_id)
        except Exception:  # the storage's failure is not the agent's: it may send again
            log.exception("reading subtask %s/%s to answer a late report failed", ref.task_id, ref.subtask_id)
            stored = []
        finally:
            self._stored_answers -= 1
        sub = next((s for s in stored if s.id == ref.subtask_id), None)
        session.send(stored_report_ack(ref, sub, session.id, output))

    def report_result(
        self,
        session: AgentSession,
        ref: Ref,
        output: str,
        artifacts: list[Artifact],
        usage: Usage,
        *,
        tool_calls: list[ToolCall] | None = None,
        sources: list[Source] | None = None,
    ) -> None:
        """Apply a result (once) and ack it after commit (with the work's tool calls and cited sources)."""
        if self._forgotten(ref) and self._claimable(ref):  # held by another replica, or none: see _claim_then
            self._claim_then(
                ref,
                lambda: self.report_result(
                    session, ref, output, artifacts, usage, tool_calls=tool_calls, sources=sources
                ),
                session.id,
                self.carried.carrier(
                    session,
                    ref,
                    ResultReport(output, artifacts, usage, list(tool_calls or ()), list(sources or ())),
                ),
            )
            return
        if self._forgotten(ref):  # charged only if this agent's lease was never reported on (no duplicate)
            self._charge_late(session, ref, usage)
            self._answer_forgotten(session, ref, output)
            return
        checked = self._check_ref(session, ref)
        if isinstance(checked, Ack):
            if not checked.accepted:  # too late for the work, not for the bill
                self._charge_late(session, ref, usage)
            self._answer(session, checked)
            return
        task, sub = checked
        if sub.status == SubtaskStatus.COMPLETED:
            self._answer(session, Ack(ref, True, message="duplicate result ignored"))
            return
        if sub.status != SubtaskStatus.RUNNING:
            self._charge_late(session, ref, usage)
            session.send(Ack(ref, False, "ERROR_REASON_TASK_FINISHED", f"the subtask is {sub.status.name}"))
            return
        self.grants.claim(ref.task_id, ref.subtask_id, ref.lease_epoch, session.id)
        sub.output = output
        sub.artifacts = artifacts
        sub.usage = usage
        sub.tool_calls = list(tool_calls or ())
        sub.sources = list(sources or ())
        sub.progress = 1.0
        self._applied[(task.id, sub.id)] = sub.lease_epoch
        if len(self._applied) > APPLIED_MEMORY:
            self._applied.popitem(last=False)
        self._release(task, sub)
        self._set_subtask_status(task, sub, SubtaskStatus.COMPLETED)
        if not self._charge(task, session, usage, success=True):
            self._subtask_done(task)
        self._ack_when_durable(session, ref)

    def report_failure(
        self,
        session: AgentSession,
        ref: Ref,
        message: str,
        retryable: bool,
        retry_after: float,
        error_type: str,
        usage: Usage,
        *,
        budget_exceeded: bool = False,
    ) -> None:
        """Retry or fail a subtask after an agent's failure report.

        A report on an attempt that already ended (its task finished, its lease
        moved on: a call that ended late, a stream the agent cancelled) changes
        nothing but the usage charged. ``budget_exceeded``: the agent's share of
        the budget could not cover the work, so the task fails with
        ERROR_REASON_BUDGET_EXCEEDED, keeping its completed parts.
        """
        if self._forgotten(ref) and self._claimable(ref):  # held by another replica, or none: see _claim_then
            self._claim_then(
                ref,
                lambda: self.report_failure(
                    session,
                    ref,
                    message,
                    retryable,
                    retry_after,
                    error_type,
                    usage,
                    budget_exceeded=budget_exceeded,
                ),
                session.id,
                self.carried.carrier(
                    session,
                    ref,
                    FailureReport(message, retryable, retry_after, error_type, usage, budget_exceeded),
                ),
            )
            return
        if self._forgotten(ref):  # its task has left memory: charge what was spent, answer from storage
            self._charge_late(session, ref, usage)
            self._answer_forgotten(session, ref, None)
            return
        checked = self._check_ref(session, ref)
        if isinstance(checked, Ack):
            if not checked.accepted:
                self._charge_late(session, ref, usage)
            self._answer(session, checked)
            return
        task, sub = checked
        if sub.status != SubtaskStatus.RUNNING:
            self._charge_late(session, ref, usage)
            self._answer(session, Ack(ref, True, message="already settled"))
            return
        self.grants.claim(ref.task_id, ref.subtask_id, ref.lease_epoch, session.id)
        self._release(task, sub)
        if self._charge(task, session, usage, success=False):  # the budget is spent: the task is over
            self._ack_when_durable(session, ref)
            return
        if budget_exceeded:
            sub.failure = Failure("ERROR_REASON_BUDGET_EXCEEDED", message, sub.name, error_type)
            self._set_subtask_status(task, sub, SubtaskStatus.FAILED)
            self._finish_task(
                task,
                TaskStatus.FAILED,
                Failure(
                    "ERROR_REASON_BUDGET_EXCEEDED",
                    f"the task's budget could not cover subtask {sub.id}: {message}",
                    sub.name,
                    error_type,
                ),
            )
            self._ack_when_durable(session, ref)
            return
        failure = Failure("ERROR_REASON_AGENT_FAILED", message, sub.name, error_type)
        if retryable and error_type == DEFERRED_ERROR_TYPE:  # the pacer held its model call: nothing failed
            self._requeue(task, sub, delay=retry_after, why=message, spends_retry=False)
        elif retryable and sub.retries_used < task.retry.max_retries:
            delay = max(task.retry.backoff(sub.retries_used + 1), retry_after)
            self._requeue(task, sub, delay=delay, why=message)
        else:
            sub.failure = failure
            self._set_subtask_status(task, sub, SubtaskStatus.FAILED)
            if retryable:
                failure = Failure(
                    failure.reason,
                    f"{message} (retries exhausted after {sub.retries_used})",
                    sub.name,
                    error_type,
                )
            self._finish_task(task, TaskStatus.FAILED, failure)
        self._ack_when_durable(session, ref)

    def _answer(self, session: AgentSession, ack: Ack) -> None:
        """Send an ack; an accepted duplicate only once what it confirms is durable."""
        if ack.accepted:
            self.committer.after_commit(lambda: session.send(ack))
        else:
            session.send(ack)

    def _ack_when_durable(self, session: AgentSession, ref: Ref) -> None:
        """Tell the agent which of its reports are durable, once they are.

        Acknowledgements only let an agent forget reports it would otherwise
        send again after a reconnect; nothing waits on them. So those made
        durable within :data:`ACK_GATHER` seconds share one Committed message
        (up to :data:`MAX_ACK_REFS` refs), saving a message per report under load.
        """
        generation = self.committer.generation_id
        if session.ack_generation != generation:
            refs: list[Ref] = []
            session.ack_generation, session.ack_refs = generation, refs
            self.committer.after_commit(lambda: self._durable(session, refs))
        session.ack_refs.append(ref)

    def _durable(self, session: AgentSession, refs: list[Ref]) -> None:
        session.durable_refs.extend(refs)
        if len(session.durable_refs) >= MAX_ACK_REFS:
            self._send_acks(session)
        elif session.ack_timer is None and not session.closed:
            session.ack_timer = self._loop.call_later(ACK_GATHER, self._send_acks, session)  # type: ignore[union-attr]

    @staticmethod
    def _send_acks(session: AgentSession) -> None:
        if session.ack_timer is not None:
            session.ack_timer.cancel()
            session.ack_timer = None
        refs, session.durable_refs = session.durable_refs, []
        for start in range(0, len(refs), MAX_ACK_REFS):
            session.send(Committed(refs[start : start + MAX_ACK_REFS]))

    async def shared_state(
        self,
        session: AgentSession,
        request_id: int,
        ref: Ref,
        op: str,
        key: str,
        value: bytes = b"",
        expected_version: int | None = None,
    ) -> None:
        """Serve a shared-state operation for the task of an assignment the agent holds."""
        checked = self._check_ref(session, ref, running=True)
        if isinstance(checked, Ack):
            session.send(
                StateReply(
                    request_id,
                    error=checked.reason or "ERROR_REASON_NOT_LEASE_HOLDER",
                    message="shared state is only for tasks of assignments the agent holds",
                )
            )
            return
        task, _ = checked
        await serve_shared_state(self.storage, session, request_id, task.id, op, key, value, expected_version)

    def report_progress(
        self, session: AgentSession, ref: Ref, fraction: float, message: str, checkpoint: bytes | None
    ) -> None:
        """Record progress (and a work checkpoint); renews the lease."""
        checked = self._check_ref(session, ref, running=True)
        if isinstance(checked, Ack):
            return
        task, sub = checked
        lease = self.leases.get((task.id, sub.id))
        if lease:
            lease.expires = now() + self.lease_ttl
        sub.progress = min(1.0, max(0.0, fraction))
        sub.progress_message = message
        if checkpoint is not None:
            sub.checkpoint = checkpoint
            self.committer.subtask(sub)
        self._publish(
            Event(
                EventType.SUBTASK_PROGRESS,
                task_id=task.id,
                subtask_id=sub.id,
                agent_id=session.id,
                message=message,
                data={"fraction": sub.progress},
            ),
            task,
            sub,
            committed=checkpoint is None,
        )

    def report_output(self, session: AgentSession, ref: Ref, text: str, sequence: int) -> None:
        """Forward a chunk of partial output to watchers."""
        checked = self._check_ref(session, ref, running=True)
        if isinstance(checked, Ack):
            return
        task, sub = checked
        self._publish(
            Event(
                EventType.SUBTASK_OUTPUT,
                task_id=task.id,
                subtask_id=sub.id,
                agent_id=session.id,
                message=text,
                data={"sequence": sequence},
            ),
            task,
            sub,
            committed=True,
        )

    # --- agents of every replica ---------------------------------------------

    async def find_agent(self, agent_id: str) -> AgentInfo | None:
        """An agent: live if connected here, else as committed (another replica may hold it).

        A stored agent not connected here replaces this replica's copy, so that a command
        answered here (no replica has it connected) acts on what its holder last committed.
        """
        session = self.sessions.get(agent_id)
        if session is not None:
            return session.info
        await self.committer.durable()
        stored = await self.storage.call(self.storage.backend.get_agent, agent_id)
        if stored is None:
            return self.agents.get(agent_id)
        if agent_id not in self.sessions:  # it may have connected here meanwhile
            self.agents[agent_id] = stored
        return self.agents[agent_id]

    async def all_agents(self) -> list[AgentInfo]:
        """Every agent of every replica: those connected here live, the others as committed."""
        await self.committer.durable()
        stored = await self.storage.call(self.storage.backend.list_agents)
        found = {info.id: info for info in stored}
        for agent_id, info in self.agents.items():
            if agent_id in self.sessions or agent_id not in found:
                found[agent_id] = info
        return list(found.values())

    # --- agent commands -----------------------------------------------------

    def session_for(self, agent_id: str) -> AgentSession:
        """The live session of an agent; FailedPrecondition if it is not connected."""
        session = self.sessions.get(agent_id)
        if session is None:
            if agent_id not in self.agents:
                raise NotFound(
                    f"agent agents/{agent_id} does not exist", reason="ERROR_REASON_AGENT_NOT_FOUND"
                )
            raise FailedPrecondition(
                f"agent agents/{agent_id} is not connected", reason="ERROR_REASON_AGENT_STATE"
            )
        return session

    def pause_agent(self, agent_id: str) -> AgentInfo:
        """No new work for the agent."""
        session = self.session_for(agent_id)
        session.paused = True
        session.send(PauseAgent())
        return self._agent_changed(session)

    def resume_agent(self, agent_id: str) -> AgentInfo:
        """The agent takes work again."""
        session = self.session_for(agent_id)
        session.paused = False
        session.send(ResumeAgent())
        self._kick()
        return self._agent_changed(session)

    def drain_agent(self, agent_id: str, grace: float, exit: bool = False) -> AgentInfo:
        """The agent finishes its work, takes no more, and leaves."""
        session = self.session_for(agent_id)
        session.draining = True
        session.send(DrainAgent(grace, "requested", exit))
        return self._agent_changed(session)

    def terminate_agent(self, agent_id: str, grace: float, force: bool) -> AgentInfo:
        """Drain the agent and make it exit; with force, re-queue its work at once.

        A disconnected agent is marked TERMINATED; with force its leases are
        given up at once rather than left to expire.
        """
        session = self.sessions.get(agent_id)
        if session is None:
            info = self.agents.get(agent_id)
            if info is None:
                raise NotFound(
                    f"agent agents/{agent_id} does not exist", reason="ERROR_REASON_AGENT_NOT_FOUND"
                )
            if force:
                self._requeue_leases_of(agent_id)
            info.status = AgentStatus.TERMINATED
            self.committer.agent(info)
            return info
        if force:
            self._requeue_leases_of(agent_id)
        return self.drain_agent(agent_id, 0.0 if force else grace, exit=True)

    def _requeue_leases_of(self, agent_id: str) -> None:
        held = [key for key, lease in self.leases.items() if lease.agent_id == agent_id]
        session = self.sessions.get(agent_id)
        for task_id, sub_id in held:
            task, sub = self.tasks[task_id], self.subtasks[task_id][sub_id]
            if session is not None:  # it may still be working: tell it to stop
                session.send(
                    CancelWork(Ref(task_id, sub_id, sub.attempt, sub.lease_epoch), "agent terminated")
                )
            self._release(task, sub)
            self._requeue(
                task, sub, delay=0.0, why=f"agent agents/{agent_id} was terminated", spends_retry=False
            )

    def _agent_changed(self, session: AgentSession) -> AgentInfo:
        session.info.status = session.status()
        if not session.moved:  # (a session that moved to another replica: its record is written there)
            self.committer.agent(session.info)
        return session.info

    def _housekeeping(self, at: float) -> None:
        """Bound memory: agents gone for a day (storage keeps them)."""
        gone = [
            a.id
            for a in self.agents.values()
            if a.id not in self.sessions
            and a.disconnect_time
            and at - a.disconnect_time > FORGET_AGENTS_AFTER
        ]
        for agent_id in gone:
            del self.agents[agent_id]
