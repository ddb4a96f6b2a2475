"""Group commit: many transitions become durable in one transaction.

The engine mutates its in-memory records on the event loop and marks them
dirty here. One flusher task takes everything marked so far (a *generation*),
snapshots it, writes it through the storage backend in the storage thread,
and then resolves the futures of everyone who waited for that generation and
runs its after-commit callbacks (events to watchers). While one generation is
being written, the next one gathers, so the cost of a commit is shared by
every transition that arrived meanwhile.

Records must be treated as copy-on-write below the top level (replace nested
objects and lists, never mutate them in place): the snapshot is a shallow
copy taken on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from controlplane.domain.model import AgentInfo, Subtask, Task
from controlplane.errors import Aborted, Unavailable
from controlplane.storage.base import IdempotencyRecord, WriteBatch
from controlplane.storage.executor import StorageExecutor

log = logging.getLogger(__name__)

#: Audit records kept while the database cannot be written; beyond this the oldest
#: are dropped (and the number logged), so an outage plus a flood of refused calls
#: cannot exhaust memory.
MAX_PENDING_AUDIT = 100_000

#: Audit records ride the next commit; with no other change to write they are
#: committed on their own after this many seconds (or sooner, once
#: AUDIT_FLUSH_COUNT of them are waiting), so an audited call does not make a
#: commit of its own that the next transition would queue behind.
AUDIT_FLUSH_DELAY = 0.05
AUDIT_FLUSH_COUNT = 1000

#: How long a commit may wait for work the loop has ready to run (see ``Committer._gather``):
#: at most this many loop turns and this many seconds.
GATHER_TURNS = 32
GATHER_SECONDS = 0.002


_COPIERS: dict[type, Callable[[Any], Any]] = {}


def _copier(cls: type) -> Callable[[Any], Any]:
    """A function copying the fields of a ``cls`` one by one (records with ``__slots__`` have no ``__dict__``)."""
    names = [f.name for f in dataclasses.fields(cls)]
    if not hasattr(cls, "__slots__"):

        def copy_dict(record: Any) -> Any:
            clone: Any = object.__new__(cls)
            clone.__dict__.update(record.__dict__)
            return clone

        return copy_dict
    # Straight-line code: a few times faster than copy.copy's generic path on every commit.
    body = "\n".join(f"    c.{name} = r.{name}" for name in names)
    scope: dict[str, Any] = {"new": object.__new__, "cls": cls}
    exec(f"def copy_slots(r):\n    c = new(cls)\n{body}\n    return c", scope)  # noqa: S102
    copy_slots: Callable[[Any], Any] = scope["copy_slots"]
    return copy_slots


def _shallow_copy(record: Any) -> Any:
    """A shallow copy of a record (what ``copy.copy`` does, at a fraction of its cost)."""
    cls = type(record)
    copier = _COPIERS.get(cls)
    if copier is None:
        copier = _COPIERS[cls] = _copier(cls)
    return copier(record)


class _Generation:
    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.subtasks: dict[tuple[str, str], Subtask] = {}
        self.agents: dict[str, AgentInfo] = {}
        self.idempotency: list[IdempotencyRecord] = []
        #: Calls with a request_id waiting to learn whether their tasks were written (by key).
        self.submissions: dict[tuple[str, str, str], asyncio.Future[bool]] = {}
        #: What to run once a submission's tasks are written (see :meth:`Committer.submission`), by key.
        self.then: dict[tuple[str, str, str], Callable[[], None]] = {}
        self.audit: list[dict[str, Any]] = []
        self.webhook_deliveries: list[Any] = []
        self.released: list[str] = []
        self.after: list[Callable[[], None]] = []
        #: Run after every callback of ``after`` (the events of the commit are delivered by then).
        self.after_last: list[Callable[[], None]] = []
        self.waiters: list[asyncio.Future[None]] = []

    def size(self) -> int:
        """How much waits to be written (grows as changes join; compared between loop turns)."""
        return (
            len(self.tasks)
            + len(self.subtasks)
            + len(self.agents)
            + len(self.waiters)
            + len(self.after)
            + len(self.after_last)
        )

    def empty(self) -> bool:
        return not (
            self.tasks
            or self.subtasks
            or self.agents
            or self.idempotency
            or self.audit
            or self.after
            or self.after_last
            or self.webhook_deliveries
            or self.released
        )

    def snapshot(self) -> WriteBatch:
        return WriteBatch(
            tasks=[_shallow_copy(t) for t in self.tasks.values()],
            subtasks=[_shallow_copy(s) for s in self.subtasks.values()],
            agents=[_shallow_copy(a) for a in self.agents.values()],
            idempotency=list(self.idempotency),
            audit=list(self.audit),
            webhook_deliveries=list(self.webhook_deliveries),
            released=list(self.released),
        )


def _futures(generation: _Generation) -> list[asyncio.Future[Any]]:
    """Everyone waiting for a generation: its waiters and its calls with a request_id."""
    return [*generation.waiters, *generation.submissions.values()]


class Committer:
    """Collects dirty records and commits them in groups."""

    def __init__(
        self,
        storage: StorageExecutor,
        gather_delay: float = 0.0,
        on_commit: Callable[[int, float], None] | None = None,
    ):
        self._storage = storage
        self._gather_delay = gather_delay
        self._on_commit = on_commit
        self._current = _Generation()
        self._wake = asyncio.Event()
        self._audit_flush: asyncio.TimerHandle | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        #: Increases whenever a generation is taken for writing; callers use it to
        #: group work that becomes durable together.
        self.generation_id = 0
        self._open = asyncio.Event()  # cleared while paused: no generation is taken for writing
        self._open.set()
        self._idle = asyncio.Event()  # set while no generation is being written
        self._idle.set()
        self.failed: BaseException | None = None
        #: Why this replica may write nothing more (see :meth:`fence`), or "".
        self.fenced = ""
        #: Asked right before each generation is written: whether this replica is fenced by now
        #: (claims: it may have been considered lost, e.g. after a freeze longer than
        #: ``replicas.lost_after``); None: never asked.
        self.before_write: Callable[[], bool] | None = None
        self._written: _Generation | None = None
        #: When the last commit ended (loop time; see :meth:`_gather`).
        self._last_written = float("-inf")
        #: The keys of submissions whose future is not resolved yet (see :meth:`submission`).
        self._submitting: set[tuple[str, str, str]] = set()

    def start(self) -> None:
        """Start the flusher task on the running loop."""
        self._flusher = asyncio.get_running_loop().create_task(self._run(), name="maos-committer")

    def task(self, task: Task) -> None:
        """Mark a task dirty."""
        self._current.tasks[task.id] = task
        self._wake.set()

    def subtask(self, subtask: Subtask) -> None:
        """Mark a subtask dirty."""
        self._current.subtasks[(subtask.task_id, subtask.id)] = subtask
        self._wake.set()

    def agent(self, agent: AgentInfo) -> None:
        """Mark an agent dirty."""
        self._current.agents[agent.id] = agent
        self._wake.set()

    def idempotency(self, record: IdempotencyRecord) -> None:
        """Record the first outcome of a call made with a request_id (one process decides alone)."""
        self._current.idempotency.append(record)
        self._wake.set()

    def submission(
        self, record: IdempotencyRecord, tasks: list[Task], then: Callable[[], None] | None = None
    ) -> asyncio.Future[bool]:
        """Commit the tasks a call with a request_id created, unless the database holds its key already.

        The database decides between calls with one key (on any replica): the future is True
        when ``tasks`` and ``record`` were committed, False when another call's record was
        stored first and nothing of this one was written. It fails with the commit's error.
        ``then`` runs on the loop right after the commit that writes them, before the after-commit
        callbacks (never when nothing was written).

        One key has at most one submission in flight (the intake keeps a key in flight until the
        outcome of its submission is known): two would write both task sets under one record.

        Raises:
            Aborted: A submission of this key is in flight (ERROR_REASON_REQUEST_IN_FLIGHT); nothing marked.
        """
        if record.key in self._submitting:
            log.error(
                "request_id %r: submitted again while its first submission is in flight", record.request_id
            )
            raise Aborted(
                f"a call with request_id {record.request_id!r} is still in progress; retry it in a moment",
                reason="ERROR_REASON_REQUEST_IN_FLIGHT",
            )
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._submitting.add(record.key)
        future.add_done_callback(lambda _: self._submitting.discard(record.key))
        current = self._current
        for task in tasks:
            current.tasks[task.id] = task
        current.idempotency.append(record)
        current.submissions[record.key] = future
        if then is not None:
            current.then[record.key] = then
        self._wake.set()
        return future

    def audit(self, record: dict[str, Any]) -> None:
        """Append an audit record with the next commit (nobody waits for it).

        It does not start a commit by itself before AUDIT_FLUSH_DELAY has
        passed, unless AUDIT_FLUSH_COUNT records are waiting.
        """
        pending = self._current.audit
        pending.append(record)
        if len(pending) >= AUDIT_FLUSH_COUNT:
            self._wake.set()
        elif self._audit_flush is None:
            self._audit_flush = asyncio.get_running_loop().call_later(AUDIT_FLUSH_DELAY, self._wake.set)

    def webhook_delivery(self, record: Any) -> None:
        """Add a webhook delivery to the outbox in the commit of the changes marked so far."""
        self._current.webhook_deliveries.append(record)
        self._wake.set()

    def release(self, task_id: str) -> None:
        """Give a task up in the commit of the changes marked so far (claims between replicas)."""
        self._current.released.append(task_id)
        self._wake.set()

    def fence(self, why: str) -> None:
        """Write nothing from now on: what is pending and what comes is dropped, its waiters failed.

        A replica that learns that others may hold its work (it was considered lost) calls this,
        so no state of its own overwrites theirs.
        """
        self.fenced = why
        self._wake.set()

    @property
    def generation(self) -> object:
        """What the next commit will write, as a token: equal tokens mean the same commit."""
        return self._current

    def after_commit(self, callback: Callable[[], None], *, last: bool = False) -> None:
        """Run ``callback`` on the loop once everything marked so far is durable (``last``: after every
        other callback of that commit, so the events it delivers are on their way by then)."""
        (self._current.after_last if last else self._current.after).append(callback)
        self._wake.set()

    def durable(self) -> asyncio.Future[None]:
        """A future resolved when everything marked so far is committed (or failed with the commit's error)."""
        future = asyncio.get_running_loop().create_future()
        self._current.waiters.append(future)
        self._wake.set()
        return future

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """Hold every commit while the block runs (after the one being written, if any, ends).

        Changes keep gathering in memory meanwhile and are written afterwards;
        recovery uses this so that nothing written during a restore undoes it.
        """
        self._open.clear()
        try:
            await self._idle.wait()
            yield
        finally:
            self._open.set()
            self._wake.set()

    async def _gather(self) -> None:
        """Let the work the loop has ready run first, so that what it changes joins this generation.

        With ``gather_delay`` set, wait that long. Otherwise yield to the loop until
        it has nothing else ready to run (a dispatch pass right after a submit, the
        next calls and reports already received), or until a turn adds nothing to
        the generation, for at most GATHER_TURNS turns and GATHER_SECONDS: while
        calls arrive one per turn, one commit then serves several of them instead
        of one each, and a lone call (an idle loop) commits at once.

        While commits follow each other (the previous one ended less than
        GATHER_SECONDS ago: a stream of calls, each waiting for its commit), a turn
        that adds nothing does not end the gathering either, only a loop with
        nothing left to run or the bounds do: a call's next steps (its answer, the
        next call received) take several turns that add nothing, and a commit per
        call would cost more than the few turns waited. A lone change on a loop
        busy with other work still commits after one turn, unless a commit ended
        less than GATHER_SECONDS ago; then after at most GATHER_TURNS turns or
        GATHER_SECONDS.
        """
        if self._gather_delay:
            await asyncio.sleep(self._gather_delay)
            return
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)  # asyncio's queue of callbacks to run (none: no look)
        now = loop.time()
        deadline = now + GATHER_SECONDS
        back_to_back = now - self._last_written < GATHER_SECONDS
        size = self._current.size()
        for _ in range(GATHER_TURNS):
            await asyncio.sleep(0)
            joined = self._current.size()
            if not ready or (joined == size and not back_to_back) or loop.time() >= deadline:
                return
            size = joined

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await self._gather()
            # No await between here and taking the generation: a pause that began
            # meanwhile holds it back.
            await self._open.wait()
            self._wake.clear()
            if self._audit_flush is not None:  # this generation takes the waiting audit records
                self._audit_flush.cancel()
                self._audit_flush = None
            generation, self._current = self._current, _Generation()
            self.generation_id += 1
            if self.fenced or (self.before_write is not None and self.before_write()):
                self._drop(generation)
                if self._closed:
                    return
                continue
            if generation.empty():
                for waiter in generation.waiters:
                    if not waiter.done():
                        waiter.set_result(None)
                if self._closed:
                    return
                continue
            batch = generation.snapshot()
            self._written = generation  # what reads must wait for while _idle is clear
            loop = asyncio.get_running_loop()
            started = loop.time()
            self._idle.clear()
            try:
                if batch:
                    await self._storage.write(batch)
            except asyncio.CancelledError:
                self._idle.set()
                self._requeue(generation)
                raise
            except Exception as exc:  # storage down: fail the waiters, keep the records dirty
                self._idle.set()
                log.error("group commit failed: %s", exc)
                self.failed = exc
                for waiter in _futures(generation):
                    if not waiter.done():
                        waiter.set_exception(exc)
                self._requeue(generation)
                await asyncio.sleep(0.5)
                continue
            self._idle.set()
            self._last_written = loop.time()
            self.failed = None
            if self._on_commit:
                self._on_commit(
                    len(batch.tasks) + len(batch.subtasks) + len(batch.agents), loop.time() - started
                )
            written = [then for key, then in generation.then.items() if key not in batch.refused]
            for callback in [*written, *generation.after, *generation.after_last]:
                try:
                    callback()
                except Exception:  # a failing watcher must not stop the commits
                    log.exception("after-commit callback failed")
            for key, submitted in generation.submissions.items():
                if not submitted.done():
                    submitted.set_result(key not in batch.refused)
            for waiter in generation.waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _drop(self, generation: _Generation) -> None:
        """Fail the waiters of a generation not written (this replica is fenced)."""
        error = Unavailable(f"this control plane writes nothing more: {self.fenced}")
        for waiter in _futures(generation):
            if not waiter.done():
                waiter.set_exception(error)

    def _requeue(self, generation: _Generation) -> None:
        """Put records of a failed generation back so the next commit retries them."""
        current = self._current
        # A call with a request_id failed with its commit: it answers with the error, so its
        # tasks are not written later (its retry decides again).
        for submitted in generation.submissions.values():
            if not submitted.done():
                submitted.set_exception(Unavailable("the commit did not complete; retry the call"))
        failed = [r for r in generation.idempotency if r.key in generation.submissions]
        unwritten = {task_id for r in failed for task_id in r.resource.split(",")}
        for task_id, task in generation.tasks.items():
            if task_id not in unwritten:
                current.tasks.setdefault(task_id, task)
        for sub_key, sub in generation.subtasks.items():
            current.subtasks.setdefault(sub_key, sub)
        for key, agent in generation.agents.items():
            current.agents.setdefault(key, agent)
        current.idempotency[:0] = [r for r in generation.idempotency if r.key not in generation.submissions]
        current.audit[:0] = generation.audit
        current.webhook_deliveries[:0] = generation.webhook_deliveries
        current.released[:0] = generation.released
        excess = len(current.audit) - MAX_PENDING_AUDIT
        if excess > 0:
            del current.audit[:excess]
            log.error(
                "dropped the %d oldest audit records: the database has been unavailable too long", excess
            )
        current.after[:0] = generation.after
        current.after_last[:0] = generation.after_last
        self._wake.set()

    async def close(self) -> None:
        """Commit what is pending and stop the flusher."""
        if self._flusher is None:
            return
        self._closed = True
        try:
            await self.durable()
        except Exception:  # storage is down (or this replica is fenced); nothing more can be saved
            if not self.fenced:
                log.exception("final commit failed")
        self._wake.set()
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        self._flusher = None

    def uncommitted(self) -> list[Any]:
        """The generations not committed yet: the one being written (if any) and the one gathering."""
        if self._idle.is_set() or self._written is None:
            return [self._current]
        return [self._written, self._current]

    def pending(self) -> Any:
        """The generation being gathered (for tests and metrics)."""
        return self._current
