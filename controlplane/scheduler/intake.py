"""Intake: accepting tasks (idempotently, durably) and starting them once their dependencies complete.

A component of :class:`~controlplane.scheduler.engine.Engine`. It owns the
memory of request ids (``request_id`` → the tasks a call created; older ones
are answered from storage) and the calls in flight. A task whose
dependencies completed is planned (:class:`~controlplane.scheduler.planning.Planning`);
one whose dependency failed or was cancelled fails with the reason.

**A commit whose outcome is unknown.** Where the database decides between calls with one request id
(replicas), a call's tasks join memory once their commit succeeded. A key stays *unsettled* here
from the moment its call stops waiting for that commit without knowing its outcome (the caller went
away while it ran, or it failed) until the outcome is known: the commit succeeds or is refused, or,
when it failed (its connection may have dropped after the server committed: the rows may be
stored), a read that waits for any commit still in flight (``settled_idempotency_records``, every
key then unsettled in one probe) says whether its record, naming its tasks, is stored. If so they
join memory and run here (their row names this replica as holder, so no other replica would take
them); otherwise nothing of the call exists and a retry decides again. While a key is unsettled no
call of it submits anything here: a retry waits for the answer at most :attr:`Intake.settle_wait`
seconds, then answers UNAVAILABLE (ERROR_REASON_REQUEST_IN_FLIGHT). So one key has at most one
submission in flight on a replica, and its outcome is checked against the tasks of that submission.
A retry arriving on another replica finds the stored record (or stores its own, which the read then
sees).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from controlplane.domain.context import dependency_results
from controlplane.domain.events import Event, EventType
from controlplane.domain.model import Failure, Task, TaskStatus, now
from controlplane.errors import Aborted, NotFound, Unavailable, request_id_reused
from controlplane.scheduler.book import TaskBook, slim_task
from controlplane.scheduler.committer import Committer
from controlplane.scheduler.known_request_ids import KnownRequestIds
from controlplane.scheduler.request_ids import RequestIdLookups
from controlplane.storage.base import IdempotencyRecord
from controlplane.storage.executor import StorageExecutor

log = logging.getLogger(__name__)

IDEMPOTENCY_MEMORY = 100_000
#: Seconds a call whose commit failed waits to learn whether its tasks were stored all the same
#: (then it answers with them); past this it answers UNAVAILABLE and the answer is found later.
SETTLE_WAIT = 2.0
#: Longest pause between two reads settling an unknown outcome while the database is away.
SETTLE_RETRY_MAX = 2.0


@dataclass
class _Unsettled:
    """A call that stopped waiting for its commit: what it tried to store, and whether it was stored."""

    tasks: list[Task]
    deps: dict[str, Task]
    #: (request_hash, resource): what the call's idempotency record holds.
    outcome: tuple[str, str]
    #: True once its tasks are known stored (and joined memory here), False once known absent.
    settled: asyncio.Future[bool]
    #: Whether its tasks were written leaving (no agent here to take them): stored, they are handed over.
    away: bool = False


@dataclass
class SubmitOutcome:
    """What SubmitTask returns: the task and whether it was created by this call."""

    task: Task
    created: bool = True


def _settled_reader(
    backend: Any,
) -> Callable[[list[tuple[str, str, str]]], dict[tuple[str, str, str], IdempotencyRecord]]:
    """The backend's ``settled_idempotency_records``, or one read per key with ``get_idempotency``."""
    settled = getattr(backend, "settled_idempotency_records", None)
    if settled is not None:
        return settled  # type: ignore[no-any-return]

    def one_by_one(keys: list[tuple[str, str, str]]) -> dict[tuple[str, str, str], IdempotencyRecord]:
        return {key: record for key in keys if (record := backend.get_idempotency(*key)) is not None}

    return one_by_one


class Intake:
    """Submission and dependencies."""

    def __init__(
        self,
        *,
        book: TaskBook,
        storage: StorageExecutor,
        committer: Committer,
        metrics: Any,
        get_tasks: Callable[[list[str]], Awaitable[list[Task]]],
        publish: Callable[..., None],
        publish_written: Callable[[list[tuple[Event, Task]]], None],
        finish_task: Callable[[Task, TaskStatus, Failure | None], None],
        plan_and_queue: Callable[[Task], None],
        background: Callable[[Coroutine[Any, Any, Any]], None],
        kick: Callable[[], None],
        setting: Callable[[str], Any],
    ):
        self.book = book
        #: The task book's records (accepted tasks join them).
        self.tasks = book.tasks
        self.subtasks = book.subtasks
        self._dependants = book.dependants
        self.storage = storage
        self.committer = committer
        self.metrics = metrics
        self.get_tasks = get_tasks
        self._publish = publish
        self._publish_written = publish_written
        self._finish_task = finish_task
        self._plan_and_queue = plan_and_queue
        self._background = background
        self._kick = kick
        self.setting = setting
        self._idempotency: OrderedDict[tuple[str, str, str], tuple[str, str]] = OrderedDict()
        self._in_flight: set[tuple[str, str, str]] = set()
        #: Calls whose commit outcome is not known yet (see the module docstring), by key.
        self._unsettled: dict[tuple[str, str, str], _Unsettled] = {}
        #: Unsettled calls whose commit failed: their keys are read in one probe (see :meth:`_checking_stored`).
        self._to_check: dict[tuple[str, str, str], _Unsettled] = {}
        self._checking = False
        #: Seconds a call waits for an unsettled outcome of its key (see the module docstring).
        self.settle_wait = SETTLE_WAIT
        #: Request ids not in memory are looked up in storage, many per storage call.
        self.lookups = RequestIdLookups(storage)
        #: Whether the database decides between calls with one request_id (replicas sharing it:
        #: two calls may reach two replicas at once). One process alone decides in memory
        #: (``_in_flight``), without waiting for a commit before planning.
        self.database_decides = False
        #: The request ids storage may hold, where this process alone writes them (loaded by
        #: :meth:`load_known_request_ids`); None: every id not in memory is looked up.
        self.known: KnownRequestIds | None = None
        #: The claims between replicas (:mod:`.claims`), set by the engine with them: tasks no agent here
        #: could run are written leaving in the submit's own commit and handed to the other replicas.
        self.claims: Any = None
        self._random = random.Random(secrets.randbits(128))

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
            await self._await_settled(key, request_hash)
            earlier = await self._idempotent(principal, method, request_id, request_hash)
            if earlier is not None:
                found = await self.get_tasks(earlier.split(","))
                return [SubmitOutcome(t, created=False) for t in found]
            if key in self._in_flight or key in self._unsettled:  # (unsettled meanwhile: see the docstring)
                raise Aborted(
                    f"a call with request_id {request_id!r} is still in progress; retry it in a moment",
                    reason="ERROR_REASON_REQUEST_IN_FLIGHT",
                )
            self._in_flight.add(key)
        try:
            return await self._accept(tasks, principal, key, request_hash, method)
        finally:
            self._in_flight.discard(key)  # (an outcome not known yet keeps the key unsettled)

    async def _await_settled(self, key: tuple[str, str, str], request_hash: str) -> None:
        """Wait (at most :attr:`settle_wait`) while an earlier call of ``key`` has an outcome not known yet.

        Raises:
            InvalidArgument: That call had other parameters.
            Unavailable: Its outcome is not known in time (ERROR_REASON_REQUEST_IN_FLIGHT).
        """
        unsettled = self._unsettled.get(key)
        if unsettled is None:
            return
        if unsettled.outcome[0] != request_hash:
            raise request_id_reused(key[2])
        try:  # (stored: remembered, answered by the caller)
            await asyncio.wait_for(asyncio.shield(unsettled.settled), self.settle_wait)
        except TimeoutError:
            raise Unavailable(
                f"whether an earlier call with request_id {key[2]!r} stored its tasks is not known yet "
                "(its commit did not answer: the database may be away); retry the call with the same "
                "request_id in a few seconds",
                reason="ERROR_REASON_REQUEST_IN_FLIGHT",
            ) from None

    async def _accept(
        self, tasks: list[Task], principal: str, key: tuple[str, str, str], request_hash: str, method: str
    ) -> list[SubmitOutcome]:
        request_id = key[2]
        # A task may depend on one submitted before it in the same call (a sequential batch).
        earlier = {t.id: i for i, t in enumerate(tasks)}
        dep_ids = {d for t in tasks for d in t.depends_on if d not in earlier}
        deps = await self.book.lookup(dep_ids)
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
        away = False
        for task in tasks:
            task.seq = self.book.next_seq()
            task.owner = principal
            task.create_time = task.update_time = stamp
            task.status = TaskStatus.PENDING
            slim_task(task)
        decided = bool(request_id) and self.database_decides
        if request_id:
            resource = ",".join(t.id for t in tasks)
            record = IdempotencyRecord(principal, method, request_id, request_hash, resource, stamp)
            if decided:
                # The database decides between calls with this request_id, on any replica, in the
                # commit of their tasks: a call that loses wrote nothing and answers as a repeat does.
                away = self.claims is not None and self.claims.sends_away(tasks)
                # Written leaving, the tasks are handed over as their commit ends (not after the call resumes).
                then = functools.partial(self._send_away, tasks) if away else None
                submitted = self.committer.submission(record, tasks, then)
                if away:  # (in the same commit: a call that loses marks nothing)
                    self.claims.leave_in_commit(tasks)
                try:
                    written = await asyncio.shield(submitted)
                except asyncio.CancelledError:
                    # The caller went away (a client's deadline): the tasks are committed all the
                    # same, so they join memory (and run) once they are; the key is unsettled till then.
                    unsettled = self._unsettle(key, tasks, deps, (request_hash, resource), away)
                    submitted.add_done_callback(lambda done: self._adopt_late(done, key, unsettled))
                    raise
                except Exception:
                    # The commit failed, perhaps after the server committed it (a dropped connection).
                    unsettled = self._unsettle(key, tasks, deps, (request_hash, resource), away)
                    self._check(key, unsettled)
                    with contextlib.suppress(TimeoutError):
                        if await asyncio.wait_for(asyncio.shield(unsettled.settled), self.settle_wait):
                            return [SubmitOutcome(t) for t in tasks]  # stored after all: running here
                    raise
                if not written:
                    return await self._answered_elsewhere(principal, method, request_id, request_hash)
            else:
                self.committer.idempotency(record)
            self._remember(key, (request_hash, resource))
        if not away:  # (sent away: handed over by then)
            self._adopt(tasks, deps, written_with_record=decided)
        await self.committer.durable()
        return [SubmitOutcome(t) for t in tasks]

    def _adopt(self, tasks: list[Task], deps: dict[str, Task], *, written_with_record: bool) -> None:
        """Accepted tasks join memory and start (their dependencies permitting)."""
        for task in tasks:
            self.tasks[task.id] = task
            self.subtasks[task.id] = {}
            for dep in task.depends_on:
                if dep not in deps or not deps[dep].status.finished:
                    self._dependants[dep].add(task.id)
            if not written_with_record:
                self.committer.task(task)
            self._publish(Event(EventType.TASK_SUBMITTED, task_id=task.id, to_status="PENDING"), task)
            self.metrics.task_submitted(task)
        for task in tasks:
            self._evaluate_dependencies(task, deps)
        self._kick()

    def _adopt_late(
        self, submitted: asyncio.Future[bool], key: tuple[str, str, str], unsettled: _Unsettled
    ) -> None:
        """The tasks of a call cancelled while their commit ran, once it completed."""
        if submitted.cancelled():
            self._conclude(key, unsettled, stored=False)
            return
        if submitted.exception() is not None:  # failed, perhaps after the server committed it
            self._check(key, unsettled)
            return
        self._conclude(key, unsettled, stored=submitted.result(), handed_over=True)

    def _send_away(self, tasks: list[Task]) -> None:
        """Tasks written leaving in their submit's commit (no agent here), once it is done: their events,
        then the hand-over."""
        self._publish_written(
            [(Event(EventType.TASK_SUBMITTED, task_id=task.id, to_status="PENDING"), task) for task in tasks]
        )
        for task in tasks:
            self.metrics.task_submitted(task)
        self.claims.sent_away(tasks)

    def _unsettle(
        self,
        key: tuple[str, str, str],
        tasks: list[Task],
        deps: dict[str, Task],
        outcome: tuple[str, str],
        away: bool,
    ) -> _Unsettled:
        """Mark ``key`` unsettled: its call stopped waiting for the commit of ``tasks`` (see the module docstring)."""
        if key in self._unsettled:  # (a call of an unsettled key submits nothing: see submit)
            raise AssertionError(f"request_id {key[2]!r} submitted again while its outcome was unknown")
        settled: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        unsettled = self._unsettled[key] = _Unsettled(tasks, deps, outcome, settled, away)
        return unsettled

    def _conclude(
        self, key: tuple[str, str, str], unsettled: _Unsettled, *, stored: bool, handed_over: bool = False
    ) -> None:
        """The outcome of an unsettled call is known: if its tasks were stored they join memory here (or,
        written leaving, are handed over, unless their commit did: ``handed_over``)."""
        if self._unsettled.get(key) is unsettled:
            del self._unsettled[key]
        if stored and not any(task.id in self.tasks for task in unsettled.tasks):
            self._remember(key, unsettled.outcome)
            if unsettled.away:  # written leaving (no agent here): handed over as in the call's own path
                if not handed_over:
                    self._send_away(unsettled.tasks)
            else:
                self._adopt(unsettled.tasks, unsettled.deps, written_with_record=True)
        if not unsettled.settled.done():
            unsettled.settled.set_result(stored)

    def _check(self, key: tuple[str, str, str], unsettled: _Unsettled) -> None:
        """Find out, in the background, whether the failed commit of an unsettled call stored its tasks."""
        self._to_check[key] = unsettled
        if not self._checking:
            self._checking = True
            self._background(self._checking_stored())

    async def _checking_stored(self) -> None:
        """Read whether the unsettled calls' records are stored, every key waiting in one probe, until none waits.

        The probe runs on a thread of its own (it may wait for a commit in flight: see
        :meth:`~controlplane.storage.executor.StorageExecutor.settling_read`). A backend without
        ``settled_idempotency_records`` is read key by key with ``get_idempotency``, which does not wait
        for a commit in flight. Only replicas settle outcomes (a control plane alone decides request ids
        in memory and never gets here), and their backend, SQL on PostgreSQL, has the waiting read.
        """
        reader = _settled_reader(self.storage.backend)
        pause, told = 0.1, False
        try:
            while self._to_check and not self.committer.fenced:  # (fenced: another replica takes its tasks)
                waiting = dict(self._to_check)
                try:
                    records = await self.storage.settling_read(reader, sorted(waiting))
                except Exception as exc:  # the database is away: ask again
                    if not told:
                        log.warning(
                            "%d request id(s) (%s): their commit failed and the database cannot say yet whether "
                            "their tasks were stored (%s); asking again",
                            len(waiting),
                            ", ".join(repr(key[2]) for key in list(waiting)[:3]),
                            exc,
                        )
                        told = True
                    await asyncio.sleep(pause)
                    pause = min(2 * pause, SETTLE_RETRY_MAX)
                    continue
                for key, unsettled in waiting.items():
                    if self._to_check.get(key) is unsettled:
                        del self._to_check[key]
                    record = records.get(key)
                    stored = record is not None and record.resource == unsettled.outcome[1]
                    if stored and not any(task.id in self.tasks for task in unsettled.tasks):
                        log.info(
                            "request_id %r: its commit failed, but its tasks were stored: they run here (%s)",
                            key[2],
                            unsettled.outcome[1],
                        )
                    self._conclude(key, unsettled, stored=stored)
        finally:
            self._checking = False
            left, self._to_check = self._to_check, {}
            for key, unsettled in left.items():  # fenced (or stopping): nothing of them runs here
                self._conclude(key, unsettled, stored=False)

    async def load_known_request_ids(self) -> None:
        """Read the stored request ids into :attr:`known` (one process alone writing its database)."""
        keys_of = getattr(self.storage.backend, "idempotency_keys", None)
        if keys_of is None:  # a backend with the core store alone: every id is looked up
            return

        def load() -> KnownRequestIds:
            count, keys = keys_of()
            return KnownRequestIds.of(keys, count)

        self.known = await self.storage.call(load)

    async def _answered_elsewhere(
        self, principal: str, method: str, request_id: str, request_hash: str
    ) -> list[SubmitOutcome]:
        """The answer to a call whose request_id another call (on any replica) committed first."""
        earlier = await self._idempotent(principal, method, request_id, request_hash, look=True)
        if earlier is None:  # (the record is committed: only its expiry can remove it meanwhile)
            raise Aborted(
                f"a call with request_id {request_id!r} was answered meanwhile; retry it",
                reason="ERROR_REASON_REQUEST_IN_FLIGHT",
            )
        found = await self.get_tasks(earlier.split(","))
        return [SubmitOutcome(t, created=False) for t in found]

    async def _idempotent(
        self, principal: str, method: str, request_id: str, request_hash: str, *, look: bool = False
    ) -> str | None:
        """The tasks of an earlier call with this request id (checked against its hash), or None.

        An id not in memory is looked up in storage unless it cannot be there: never stored by
        this process alone (:attr:`known`), or, where the database decides (replicas), left to
        the commit of the call's tasks, which refuses a stored id (``look`` forces the lookup).
        """
        key = (principal, method, request_id)
        cached = self._idempotency.get(key)
        if (
            cached is None
            and not look
            and (self.database_decides or (self.known is not None and not self.known.may_hold(key)))
        ):
            return None
        if cached is None:
            record = await self.lookups.get(principal, method, request_id)
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
        if self.known is not None:
            self.known.add(key)
        if len(self._idempotency) > IDEMPOTENCY_MEMORY:
            self._idempotency.popitem(last=False)  # older keys are answered from storage

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
        deps = await self.book.lookup(set(task.depends_on))
        self._evaluate_dependencies(task, deps)
        self._kick()
