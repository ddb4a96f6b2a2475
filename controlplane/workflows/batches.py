"""Batches: named groups of tasks, added one by one and submitted together (``maos batch``).

A batch belongs to the principal that created it; its display name is unique
among that owner's batches. It is OPEN while tasks are added (each validated
when added), then submitted once: every task is stored in one transaction (the
engine's atomic submit) or none is, and the batch records the task ids. A
repeated submit stores nothing and returns the same tasks; so does a submit
after a crash between the two steps, found through the tasks' ``batch`` field.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import dataclass

from controlplane.domain.model import Task, TaskStatus, now
from controlplane.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from controlplane.scheduler.engine import Engine
from controlplane.storage.base import BatchStore, StoresBatches, TaskQuery
from controlplane.workflows import rules
from controlplane.workflows.records import BatchRecord, BatchSchedule

NOT_FOUND = "ERROR_REASON_BATCH_NOT_FOUND"
SUBMITTED = "ERROR_REASON_BATCH_SUBMITTED"
#: The engine's idempotency method for batch submits (keyed by owner and batch id).
SUBMIT_METHOD = "SubmitBatch"


@dataclass
class BatchView:
    """A batch with its submitted tasks (current state) and the summary of their states."""

    batch: BatchRecord
    tasks: list[Task]
    progress: rules.BatchProgress
    #: The tasks added but not yet submitted (only when asked for, while OPEN).
    pending: list[Task]


class Batches:
    """Creates, fills, submits, summarizes and deletes batches.

    Args:
        engine: The scheduler engine (submits tasks, reads their current state).
        max_tasks: Most tasks one batch may hold (``batches.max_tasks``).
        max_per_owner: Most batches one principal may have (``batches.max_per_owner``).
    """

    def __init__(self, engine: Engine, max_tasks: int, max_per_owner: int):
        self.engine = engine
        self.storage = engine.storage
        self.max_tasks = max_tasks
        self.max_per_owner = max_per_owner
        # One mutation of batches at a time in this process: a submit never races an add or a delete.
        self._lock = asyncio.Lock()

    def _store(self) -> BatchStore:
        backend = self.storage.backend
        if not isinstance(backend, StoresBatches):
            raise FailedPrecondition(f"the {backend.kind} storage backend does not store batches",
                                     reason="ERROR_REASON_NOT_SUPPORTED")
        return backend.batches

    async def _call(self, fn: Callable[..., object], *args: object) -> object:
        return await self.storage.call(fn, *args)

    # --- lookups ---------------------------------------------------------------------------------

    async def resolve(self, ref: str, principal: str, may_view_all: bool) -> BatchRecord:
        """The batch ``ref`` names: ``batches/{id}``, an id, or the display name of one of the caller's batches.

        Raises:
            NotFound: No such batch visible to the caller (others' batches need ``task:view-all``).
        """
        store = self._store()
        if not ref:
            raise InvalidArgument("name is required: the batch's name or id", field="name")
        rules.check_ref(ref, "name")
        batch = None
        if rules.looks_like("batches", ref):
            batch = await self.storage.call(store.get_batch, ref.removeprefix("batches/"))
        else:
            batch = await self.storage.call(store.find_batch, principal, ref)
            if batch is None:
                batch = await self.storage.call(store.get_batch, ref)
        if batch is None or (batch.owner != principal and not may_view_all):
            raise NotFound(f"batch {ref!r} does not exist (`maos batch list` shows yours)", reason=NOT_FOUND,
                           metadata={"batch": ref})
        return batch

    async def view(self, batch: BatchRecord, *, with_pending: bool = False) -> BatchView:
        """The batch with its tasks' current states, counts and progress."""
        tasks = await self.engine.get_tasks(batch.task_ids) if batch.submitted else []
        progresses = [await self._progress(t) for t in tasks]
        summary = rules.summarize(batch.submitted, (t.status for t in tasks), progresses)
        pending: list[Task] = []
        if with_pending and not batch.submitted:
            pending = await self.storage.call(self._store().batch_tasks, batch.id)
        return BatchView(batch, tasks, summary, pending)

    async def _progress(self, task: Task) -> float:
        if task.status.finished:
            return 1.0
        if task.status != TaskStatus.RUNNING:
            return 0.0
        subtasks = await self.engine.get_subtasks(task.id)
        if not subtasks:
            return 0.0
        return sum(1.0 if s.status.name == "COMPLETED" else s.progress for s in subtasks) / len(subtasks)

    async def list(self, principal: str, may_view_all: bool, offset: int, limit: int) -> list[BatchRecord]:
        """The caller's batches (everyone's with ``may_view_all``), newest first."""
        return await self.storage.call(self._store().list_batches, None if may_view_all else principal,
                                       offset, limit)

    # --- changes ---------------------------------------------------------------------------------

    async def create(self, display_name: str, principal: str, *, batch_id: str = "",
                     request_id: str = "") -> BatchRecord:
        """A new, empty, OPEN batch owned by ``principal``.

        Raises:
            InvalidArgument: A bad name or id.
            AlreadyExists: The caller has a batch of that name (unless created by
                the same ``request_id``, which returns it), or the id is taken.
            ResourceExhausted: The caller has ``batches.max_per_owner`` batches.
        """
        store = self._store()
        rules.validate_display_name(display_name, "display_name", "batch")
        if batch_id:
            rules.validate_client_id(batch_id, "batch_id")
        async with self._lock:
            existing = await self.storage.call(store.find_batch, principal, display_name)
            if existing is not None:
                if request_id and existing.request_id == request_id:
                    return existing
                raise AlreadyExists(f"you already have a batch named {display_name!r} ({existing.name}); "
                                    "pick another name or delete it with `maos batch delete`",
                                    metadata={"batch": existing.name})
            if await self.storage.call(store.count_batches, principal) >= self.max_per_owner:
                raise ResourceExhausted(f"you have {self.max_per_owner} batches, the most allowed "
                                        "(batches.max_per_owner); delete some with `maos batch delete`")
            batch = BatchRecord(id=batch_id or rules.new_id("b"), display_name=display_name, owner=principal,
                                request_id=request_id)
            try:
                await self.storage.call(store.create_batch, batch)
            except AlreadyExists:
                raise AlreadyExists(f"batch id {batch.id!r} is taken; choose another or let the server pick one",
                                    metadata={"batch": batch.name}) from None
            return batch

    async def add(self, batch: BatchRecord, task: Task, *, request_id: str = "") -> BatchRecord:
        """Append a validated task to an OPEN batch; the batch afterwards.

        Raises:
            NotFound: A dependency does not exist or is not the batch owner's.
            FailedPrecondition: ERROR_REASON_BATCH_SUBMITTED once submitted.
            ResourceExhausted: The batch holds ``batches.max_tasks`` tasks.
        """
        store = self._store()
        if task.depends_on:  # checked again when submitted; said now, where the task is added
            visible = {t.id for t in await self.engine.get_tasks(task.depends_on) if t.owner == batch.owner}
            missing = [d for d in task.depends_on if d not in visible]
            if missing:
                raise NotFound(f"dependency tasks/{missing[0]} does not exist",
                               reason="ERROR_REASON_DEPENDENCY_NOT_FOUND", metadata={"field": "task.depends_on"})
        async with self._lock:
            current = await self.storage.call(store.get_batch, batch.id)
            if current is None:
                raise NotFound(f"batch {batch.name} does not exist", reason=NOT_FOUND)
            self._check_open(current)
            if current.entry_count >= self.max_tasks:
                raise ResourceExhausted(f"batch {current.display_name!r} holds {self.max_tasks} tasks, the most "
                                        "allowed (batches.max_tasks); submit it and start another batch")
            count = await self.storage.call(store.add_batch_task, batch.id, task, request_id)
            if count is None:  # submitted or deleted meanwhile (by another replica)
                raise FailedPrecondition(f"batch {current.display_name!r} is no longer open", reason=SUBMITTED)
            current.entry_count = count
            return current

    @staticmethod
    def _check_open(batch: BatchRecord) -> None:
        if batch.submitted:
            raise FailedPrecondition(
                f"batch {batch.display_name!r} was already submitted; tasks can only be added before "
                "`maos batch submit` (create another batch)", reason=SUBMITTED, metadata={"batch": batch.name})

    async def submit(self, batch: BatchRecord, schedule: BatchSchedule | None) -> tuple[BatchRecord, list[Task]]:
        """Submit every task of the batch atomically (all stored, or none); the batch and its tasks.

        Idempotent: a submitted batch returns its tasks without storing anything.

        Raises:
            FailedPrecondition: The batch is empty, or was submitted with another schedule.
            NotFound: A task's dependency does not exist (nothing is stored; the batch stays OPEN).
        """
        store = self._store()
        async with self._lock:
            current = await self.storage.call(store.get_batch, batch.id)
            if current is None:
                raise NotFound(f"batch {batch.name} does not exist", reason=NOT_FOUND)
            if current.submitted:
                return self._check_schedule(current, schedule), await self.engine.get_tasks(current.task_ids)
            chosen = schedule or BatchSchedule.PARALLEL
            stored = await self._stored_tasks(current)  # submitted before a crash, not yet recorded
            if stored:
                tasks = stored
            else:
                drafts = await self.storage.call(store.batch_tasks, current.id)
                if not drafts:
                    raise FailedPrecondition(
                        f"batch {current.display_name!r} has no tasks; add some with "
                        f"`maos batch add-task {current.display_name!r} \"DESCRIPTION\"`",
                        metadata={"batch": current.name})
                tasks = self._prepare(current, drafts, chosen)
                outcomes = await self.engine.submit(tasks, principal=current.owner, request_id=current.id,
                                                    request_hash=current.id, method=SUBMIT_METHOD)
                tasks = [o.task for o in outcomes]
            when = now()
            await self.storage.call(store.mark_batch_submitted, current.id, [t.id for t in tasks], chosen, when)
            current.submitted, current.schedule, current.submit_time = True, chosen, when
            current.task_ids, current.entry_count = [t.id for t in tasks], len(tasks)
            return current, tasks

    def _prepare(self, batch: BatchRecord, drafts: list[Task], schedule: BatchSchedule) -> list[Task]:
        tasks = []
        for draft in drafts:
            task = copy.deepcopy(draft)
            task.id = self.engine.new_task_id()
            task.batch = batch.id
            tasks.append(task)
        rules.chain(tasks, schedule)
        return tasks

    async def _stored_tasks(self, batch: BatchRecord) -> list[Task]:
        """Tasks of this batch already stored (a submit that crashed before it was recorded), in order."""
        query = TaskQuery(batch=batch.id, owner=batch.owner, limit=self.max_tasks + 1)
        found = await self.storage.call(self.storage.backend.list_tasks, query)
        return sorted(found, key=lambda t: t.seq)

    @staticmethod
    def _check_schedule(batch: BatchRecord, schedule: BatchSchedule | None) -> BatchRecord:
        if schedule is not None and batch.schedule is not None and schedule != batch.schedule:
            raise FailedPrecondition(
                f"batch {batch.display_name!r} was already submitted with schedule {batch.schedule.name.lower()}; "
                "its tasks cannot be rescheduled", reason=SUBMITTED, metadata={"batch": batch.name})
        return batch

    async def delete(self, batch: BatchRecord) -> None:
        """Delete an OPEN batch, or forget a finished one (its tasks remain).

        Raises:
            FailedPrecondition: The batch's tasks are still running.
        """
        store = self._store()
        async with self._lock:
            current = await self.storage.call(store.get_batch, batch.id)
            if current is None:
                raise NotFound(f"batch {batch.name} does not exist", reason=NOT_FOUND)
            if current.submitted:
                tasks = await self.engine.get_tasks(current.task_ids)
                running = [t for t in tasks if not t.status.finished]
                if running:
                    raise FailedPrecondition(
                        f"batch {current.display_name!r} has {len(running)} unfinished tasks; wait for them "
                        "(`maos batch status`) or cancel them (`maos task cancel ID`) first",
                        metadata={"batch": current.name})
            await self.storage.call(store.delete_batch, current.id)
