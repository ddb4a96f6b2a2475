"""Batches: named groups of tasks, added one by one and submitted together (``maos batch``).

A batch belongs to the principal that created it; its display name is unique
among that owner's batches. It is OPEN while tasks are added (each validated
when added), then submitted once. A submit first claims the batch in storage
with the ids its tasks will have (one submitter at a time, across replicas),
then stores every task in one transaction (the engine's atomic submit) or none
(the claim is released), then records the batch as submitted. A repeated
submit stores nothing and returns the same tasks; a submit that finds a claim
left by a submitter that died takes it over, and stores the tasks only if that
submitter had not.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
from dataclasses import dataclass

from controlplane.domain.model import Subtask, Task, TaskStatus, now
from controlplane.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    MaosError,
    NotFound,
    ResourceExhausted,
)
from controlplane.scheduler.engine import Engine
from controlplane.storage.base import BatchStore, StoresBatches
from controlplane.storage.executor import StorageExecutor
from controlplane.workflows import rules
from controlplane.workflows.records import BatchRecord, BatchSchedule

NOT_FOUND = "ERROR_REASON_BATCH_NOT_FOUND"
SUBMITTED = "ERROR_REASON_BATCH_SUBMITTED"
#: The method the engine's submit is told (metrics, logs).
SUBMIT_METHOD = "SubmitBatch"
#: Seconds after which a submit's claim on a batch is taken over (its submitter died; a submit takes < 1 s).
CLAIM_STALE = 60.0


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
        storage: The StorageExecutor the batches are stored through.
        max_tasks: Most tasks one batch may hold (``batches.max_tasks``).
        max_per_owner: Most batches one principal may have (``batches.max_per_owner``).
    """

    def __init__(self, engine: Engine, storage: StorageExecutor, max_tasks: int, max_per_owner: int):
        self.engine = engine
        self.storage = storage
        self.max_tasks = max_tasks
        self.max_per_owner = max_per_owner
        # One change of batches at a time in this process (a submit never races an add or a delete here);
        # across replicas, the storage claim of a submit and the conditional writes keep them apart.
        self._lock = asyncio.Lock()

    def _store(self) -> BatchStore:
        backend = self.storage.backend
        if not isinstance(backend, StoresBatches):
            raise FailedPrecondition(
                f"the {backend.kind} storage backend does not store batches",
                reason="ERROR_REASON_NOT_SUPPORTED",
            )
        return backend.batches

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
        if rules.looks_like("batches", ref):
            batch = await self.storage.call(store.get_batch, ref.removeprefix("batches/"))
        else:
            batch = await self.storage.call(store.find_batch, principal, ref)
            if batch is None:
                batch = await self.storage.call(store.get_batch, ref)
        if batch is None or (batch.owner != principal and not may_view_all):
            raise NotFound(
                f"batch {ref!r} does not exist (`maos batch list` shows yours)",
                reason=NOT_FOUND,
                metadata={"batch": ref},
            )
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

    async def finished(self, view: BatchView) -> list[tuple[Task, list[Subtask]]]:
        """The batch's finished tasks, in the order they were added, each with its subtasks (for results)."""
        return [(t, await self.engine.get_subtasks(t.id)) for t in view.tasks if t.status.finished]

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
        return await self.storage.call(
            self._store().list_batches, None if may_view_all else principal, offset, limit
        )

    # --- changes ---------------------------------------------------------------------------------

    async def create(
        self, display_name: str, principal: str, *, batch_id: str = "", request_id: str = ""
    ) -> BatchRecord:
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
                raise AlreadyExists(
                    f"you already have a batch named {display_name!r} ({existing.name}); "
                    "pick another name or delete it with `maos batch delete`",
                    metadata={"batch": existing.name},
                )
            if await self.storage.call(store.count_batches, principal) >= self.max_per_owner:
                raise ResourceExhausted(
                    f"you have {self.max_per_owner} batches, the most allowed "
                    "(batches.max_per_owner); delete some with `maos batch delete`"
                )
            batch = BatchRecord(
                id=batch_id or rules.new_id("b"),
                display_name=display_name,
                owner=principal,
                request_id=request_id,
            )
            try:
                await self.storage.call(store.create_batch, batch)
            except AlreadyExists:
                raise AlreadyExists(
                    f"batch id {batch.id!r} is taken; choose another or let the server pick one",
                    metadata={"batch": batch.name},
                ) from None
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
                raise NotFound(
                    f"dependency tasks/{missing[0]} does not exist",
                    reason="ERROR_REASON_DEPENDENCY_NOT_FOUND",
                    metadata={"field": "task.depends_on"},
                )
        async with self._lock:
            current = await self.storage.call(store.get_batch, batch.id)
            if current is None:
                raise NotFound(f"batch {batch.name} does not exist", reason=NOT_FOUND)
            self._check_open(current)
            if current.entry_count >= self.max_tasks:
                raise ResourceExhausted(
                    f"batch {current.display_name!r} holds {self.max_tasks} tasks, the most "
                    "allowed (batches.max_tasks); submit it and start another batch"
                )
            count = await self.storage.call(store.add_batch_task, batch.id, task, request_id)
            if count is None:  # submitted or deleted meanwhile (by another replica)
                raise FailedPrecondition(
                    f"batch {current.display_name!r} is no longer open", reason=SUBMITTED
                )
            current.entry_count = count
            return current

    @staticmethod
    def _check_open(batch: BatchRecord) -> None:
        if batch.submitted or batch.claim_time is not None:
            raise FailedPrecondition(
                f"batch {batch.display_name!r} was already submitted; tasks can only be added before "
                "`maos batch submit` (create another batch)",
                reason=SUBMITTED,
                metadata={"batch": batch.name},
            )

    async def submit(
        self, batch: BatchRecord, schedule: BatchSchedule | None
    ) -> tuple[BatchRecord, builtins.list[Task]]:
        """Submit every task of the batch atomically (all stored, or none); the batch and its tasks.

        The batch is first claimed in storage with the ids its tasks will have, so
        one submitter at a time (across replicas) stores them; a repeated submit
        returns the same tasks without storing anything.

        Raises:
            FailedPrecondition: The batch is empty, or was submitted with another schedule.
            NotFound: A task's dependency does not exist (nothing is stored; the batch stays OPEN).
            Aborted: Another replica is submitting it right now.
        """
        store = self._store()
        async with self._lock:
            current = await self.storage.call(store.get_batch, batch.id)
            if current is None:
                raise NotFound(f"batch {batch.name} does not exist", reason=NOT_FOUND)
            if current.submitted:
                return self._check_schedule(current, schedule), await self.engine.get_tasks(current.task_ids)
            if current.claim_time is None and current.entry_count == 0:
                raise FailedPrecondition(
                    f"batch {current.display_name!r} has no tasks; add some with "
                    f'`maos batch add-task {current.display_name!r} "DESCRIPTION"`',
                    metadata={"batch": current.name},
                )
            when = now()
            ids = [self.engine.new_task_id() for _ in range(current.entry_count)]
            claimed = await self.storage.call(
                store.claim_batch_submit,
                current.id,
                ids,
                schedule or BatchSchedule.PARALLEL,
                when,
                when - CLAIM_STALE,
            )
            if claimed is None:
                raise NotFound(f"batch {batch.name} does not exist", reason=NOT_FOUND)
            if claimed.submitted:
                return self._check_schedule(claimed, schedule), await self.engine.get_tasks(claimed.task_ids)
            if claimed.claim_time != when:
                raise Aborted(
                    f"batch {claimed.display_name!r} is being submitted by another control-plane "
                    "replica; retry in a minute",
                    reason="ERROR_REASON_REQUEST_IN_FLIGHT",
                )
            # A cancelled call must not stop halfway: the claim would hold the batch until it goes stale.
            return await asyncio.shield(self._store_tasks(store, claimed, schedule, when))

    async def _store_tasks(
        self, store: BatchStore, claimed: BatchRecord, schedule: BatchSchedule | None, when: float
    ) -> tuple[BatchRecord, builtins.list[Task]]:
        """Store the claimed batch's tasks under the claimed ids (unless a submitter that died did), then record it."""
        chosen = schedule or claimed.schedule or BatchSchedule.PARALLEL
        tasks = await self.engine.get_tasks(claimed.task_ids)
        if len(tasks) == len(claimed.task_ids):  # stored by a submitter that stopped before recording it
            chosen = claimed.schedule or chosen
        else:
            drafts = await self.storage.call(store.batch_tasks, claimed.id)
            tasks = self._prepare(claimed, drafts, claimed.task_ids, chosen)
            try:
                outcomes = await self.engine.submit(tasks, principal=claimed.owner, method=SUBMIT_METHOD)
            except MaosError:  # refused before anything was stored
                await self.storage.call(store.release_batch_claim, claimed.id, when)
                raise
            tasks = [o.task for o in outcomes]
        await self.storage.call(store.mark_batch_submitted, claimed.id, chosen, when)
        claimed.submitted, claimed.schedule, claimed.submit_time, claimed.claim_time = (
            True,
            chosen,
            when,
            None,
        )
        claimed.entry_count = len(tasks)
        return claimed, tasks

    def _prepare(
        self,
        batch: BatchRecord,
        drafts: builtins.list[Task],
        ids: builtins.list[str],
        schedule: BatchSchedule,
    ) -> builtins.list[Task]:
        tasks = []
        for draft, task_id in zip(drafts, ids, strict=True):
            task = copy.deepcopy(draft)
            task.id = task_id
            task.batch = batch.id
            tasks.append(task)
        rules.chain(tasks, schedule)
        return tasks

    @staticmethod
    def _check_schedule(batch: BatchRecord, schedule: BatchSchedule | None) -> BatchRecord:
        if schedule is not None and batch.schedule is not None and schedule != batch.schedule:
            raise FailedPrecondition(
                f"batch {batch.display_name!r} was already submitted with schedule {batch.schedule.name.lower()}; "
                "its tasks cannot be rescheduled",
                reason=SUBMITTED,
                metadata={"batch": batch.name},
            )
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
            if current.claim_time is not None:
                raise FailedPrecondition(
                    f"batch {current.display_name!r} is being submitted; try again in a moment",
                    metadata={"batch": current.name},
                )
            if current.submitted:
                tasks = await self.engine.get_tasks(current.task_ids)
                running = [t for t in tasks if not t.status.finished]
                if running:
                    raise FailedPrecondition(
                        f"batch {current.display_name!r} has {len(running)} unfinished tasks; wait for them "
                        "(`maos batch status`) or cancel them (`maos task cancel ID`) first",
                        metadata={"batch": current.name},
                    )
            await self.storage.call(store.delete_batch, current.id)
