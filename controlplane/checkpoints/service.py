"""Taking, storing, retaining and recovering checkpoints.

The database work of each operation runs in one call on the storage thread
(``storage.call``), after ``engine.durable()`` so that
everything accepted so far is in the database. Operations are serialised by
one lock, so a checkpoint never races a recovery.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from controlplane.checkpoints import payload as codec
from controlplane.checkpoints.record import (
    COMPONENT_ALIASES,
    COMPONENT_TABLES,
    KNOWN_COMPONENTS,
    CheckpointRecord,
)
from controlplane.domain.limits import quote
from controlplane.domain.model import Subtask, SubtaskStatus
from controlplane.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from controlplane.storage.base import (
    CheckpointStore,
    StoresCheckpoints,
    WriteBatch,
    require,
)

log = logging.getLogger(__name__)
_P = ParamSpec("_P")
_T = TypeVar("_T")

NOT_FOUND = "ERROR_REASON_CHECKPOINT_NOT_FOUND"
ALL_COMPONENTS = list(COMPONENT_TABLES)


@dataclass
class RecoveryReport:
    """What a recovery changed, or would change."""

    record: CheckpointRecord
    applied: bool = False
    changes: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # restored, changed, unchanged
    later_tasks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def new_id() -> str:
    """A sortable checkpoint id: ``c`` + milliseconds (hex) + 6 random hex digits."""
    return f"c{int(time.time() * 1000):x}{secrets.token_hex(3)}"


def not_found(checkpoint_id: str) -> NotFound:
    return NotFound(
        f"checkpoint {quote(checkpoint_id)} not found (see `maos checkpoint list`)",
        reason=NOT_FOUND,
        metadata={"checkpoint": f"checkpoints/{checkpoint_id}"},
    )


def tables_of(components: list[str]) -> list[str]:
    return [t for c in components for t in COMPONENT_TABLES.get(c, ())]


# --- synchronous parts (storage thread, or offline) ------------------------------------------------


def take(
    backend: CheckpointStore,
    *,
    display_name: str = "",
    description: str = "",
    automatic: bool = False,
    skip_unchanged: bool = False,
) -> CheckpointRecord | None:
    """Snapshot every component, store it, and return its metadata (None if skipped as unchanged).

    The tables are read, encoded and stored block by block (:class:`codec.StreamEncoder`): the
    payload's chunks are written first, and the checkpoint row that makes them a checkpoint last.
    """
    create_time = time.time()
    checkpoint_id = new_id()
    encoder = codec.StreamEncoder(ALL_COMPONENTS, create_time)

    def chunks() -> Iterator[bytes]:
        try:
            for table, columns, binary, rows in backend.snapshot_blocks(
                tables_of(ALL_COMPONENTS), codec.BLOCK_ROWS
            ):
                yield from encoder.add(table, columns, binary, rows)
            yield from encoder.finish()
        finally:
            encoder.close()

    backend.put_checkpoint_chunks(checkpoint_id, chunks())
    if skip_unchanged:
        latest = backend.get_checkpoint("latest")
        if latest is not None and latest.content_sha256 == encoder.content_sha256:
            backend.drop_checkpoint_chunks(checkpoint_id)
            return None
    record = CheckpointRecord(
        id=checkpoint_id,
        display_name=display_name,
        description=description,
        create_time=create_time,
        automatic=automatic,
        size=encoder.size,
        compressed_size=encoder.compressed_size,
        sha256=encoder.sha256,
        content_sha256=encoder.content_sha256,
        components=list(ALL_COMPONENTS),
        task_count=encoder.task_count,
        format_version=codec.FORMAT_VERSION,
        payload=None,
    )
    try:
        backend.put_checkpoint(record)
    except BaseException:
        backend.drop_checkpoint_chunks(checkpoint_id)
        raise
    return record


def import_payload(
    backend: CheckpointStore, meta: CheckpointRecord, data: bytes, *, max_inflated: int | None = None
) -> CheckpointRecord:
    """Verify and store an exported checkpoint; an identical one already stored is returned as is.

    ``max_inflated`` bounds the size the payload may decompress to (corrupt beyond it).
    """
    decoded, parts = codec.iter_decode([data], meta.sha256, meta.id, max_inflated)
    for _ in parts:  # verified and checked line by line, to its checksum
        pass
    header = decoded.header
    existing = backend.get_checkpoint(meta.id) if meta.id else None
    if existing is not None:
        if existing.sha256 == meta.sha256:
            return existing
        raise AlreadyExists(f"checkpoints/{meta.id} already exists with other content; delete it first")
    record = CheckpointRecord(
        id=meta.id or new_id(),
        display_name=meta.display_name,
        description=meta.description,
        create_time=float(header.get("create_time") or meta.create_time or time.time()),
        automatic=meta.automatic,
        size=decoded.size,
        compressed_size=len(data),
        sha256=meta.sha256,
        content_sha256=decoded.content_sha256,
        components=list(header.get("components") or []),
        task_count=decoded.task_count,
        format_version=str(header.get("format_version")),
        payload=data,
    )
    backend.put_checkpoint(record)
    record.payload = None
    return record


def apply_retention(
    backend: CheckpointStore, count: int, age_days: float, now: float | None = None
) -> list[str]:
    """Delete checkpoints beyond the newest ``count`` or older than ``age_days``; never the newest."""
    cutoff = (now or time.time()) - age_days * 86400
    records = backend.list_checkpoints(0, 1_000_000)
    doomed = [r.id for i, r in enumerate(records) if i > 0 and (i >= count or r.create_time < cutoff)]
    for checkpoint_id in doomed:
        backend.delete_checkpoint(checkpoint_id)
    return doomed


def plan_recovery(record: CheckpointRecord, components: list[str]) -> tuple[list[str], list[str]]:
    """The components to restore and the warnings about the requested ones (INVALID_ARGUMENT if unknown)."""
    components = [COMPONENT_ALIASES.get(c, c) for c in components]
    unknown = [c for c in components if c not in KNOWN_COMPONENTS]
    if unknown:
        raise InvalidArgument(
            f"unknown component(s) {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(KNOWN_COMPONENTS)} (task_manager and agent_pool name tasks and agents)",
            field="components",
        )
    wanted = list(dict.fromkeys(components)) or list(record.components)
    warnings = [
        f"component {quote(c)} is not in this checkpoint; left as it is"
        for c in wanted
        if c not in record.components
    ]
    return [c for c in wanted if c in record.components], warnings


def recover(
    backend: CheckpointStore,
    record: CheckpointRecord,
    components: list[str],
    *,
    verify_only: bool,
    requeue_later: bool,
) -> RecoveryReport:
    """Verify a checkpoint, compare it with the database and (unless ``verify_only``) restore it.

    The payload is read chunk by chunk and compared with the database
    (``restore_staged``: merged with the stored rows in key order, or staged
    whole for a payload taken before that order was promised), which upserts
    the rows that differ: nothing is applied unless the whole payload decoded
    and matched its checksum.
    """
    selected, warnings = plan_recovery(record, components)
    report = RecoveryReport(record=record, warnings=warnings)
    chunks = [record.payload] if record.payload else backend.checkpoint_chunks(record.id)
    decoded, parts = codec.iter_decode(chunks, record.sha256, record.id, content_digest=False)
    staged = backend.restore_staged(
        parts,
        {c: COMPONENT_TABLES[c] for c in selected},
        apply=not verify_only,
        ordered=decoded.header.get("key_order") == codec.KEY_ORDER,
    )
    report.changes = {c: staged.changes[c] for c in selected}
    report.later_tasks = [f"tasks/{k}" for k in staged.later_tasks]
    if report.later_tasks:
        verb = "re-queued" if requeue_later else "kept"
        report.warnings.append(
            f"{len(report.later_tasks)} task(s) accepted after the checkpoint will be {verb}"
            if verify_only
            else f"{len(report.later_tasks)} task(s) accepted after the checkpoint were {verb}"
        )
    if verify_only:
        return report
    if requeue_later and report.later_tasks:
        requeue(backend, list(staged.later_tasks))
    report.applied = True
    return report


def requeue(backend: CheckpointStore, task_ids: list[str]) -> None:
    """Queue the unfinished work of these tasks again from the start (running subtasks lose their lease)."""
    subtasks: list[Subtask] = []
    for task_id in task_ids:
        for sub in backend.get_subtasks(task_id):
            if sub.status == SubtaskStatus.RUNNING:
                sub.status, sub.agent_id, sub.progress, sub.progress_message = (
                    SubtaskStatus.QUEUED,
                    "",
                    0.0,
                    "",
                )
                sub.checkpoint, sub.start_time = None, None
                sub.status_reason = "re-queued by recovery"
                subtasks.append(sub)
    backend.write(WriteBatch(subtasks=subtasks))


# --- the control plane's side ---------------------------------------------------------------------


class Checkpoints:
    """Checkpoint operations of a running control plane (used by the servicer and the interval job)."""

    def __init__(self, engine: Any, storage: Any, settings: Any):
        self.engine = engine
        self.storage = storage
        self.settings = settings
        self.lock = asyncio.Lock()

    @property
    def backend(self) -> CheckpointStore:
        """The storage backend, which must offer the optional ``StoresCheckpoints`` capability."""
        backend: CheckpointStore = self.storage.backend
        require(backend, StoresCheckpoints, "checkpoints")
        return backend

    async def _call(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        result: _T = await self.storage.call(lambda: fn(*args, **kwargs))
        return result

    async def create(
        self, display_name: str = "", description: str = "", automatic: bool = False
    ) -> CheckpointRecord | None:
        """Take a checkpoint of everything accepted so far (None when automatic and unchanged)."""
        async with self.lock:
            await self.engine.durable()
            record = await self._call(
                take,
                self.backend,
                display_name=display_name,
                description=description,
                automatic=automatic,
                skip_unchanged=automatic,
            )
            if record is not None:
                await self.retain()
                give_back = getattr(self.engine, "give_back", None)
                if give_back is not None:  # the snapshot read every table: return what it used
                    # Its rows are young garbage: no full collection, which would walk every object
                    # (seconds with thousands of agents connected, the loop halted meanwhile).
                    give_back.trim(collect=1)
            return record

    async def retain(self) -> list[str]:
        """Apply the retention settings."""
        return await self._call(
            apply_retention,
            self.backend,
            self.settings["checkpoints.retention.count"],
            self.settings["checkpoints.retention.age_days"],
        )

    async def get(self, checkpoint_id: str, with_payload: bool = False) -> CheckpointRecord:
        record = await self._call(self.backend.get_checkpoint, checkpoint_id or "latest", with_payload)
        if record is None:
            raise not_found(checkpoint_id or "latest")
        return record

    async def list(self, offset: int, limit: int) -> list[CheckpointRecord]:
        return await self._call(self.backend.list_checkpoints, offset, limit)

    async def delete(self, checkpoint_id: str) -> None:
        if not await self._call(self.backend.delete_checkpoint, checkpoint_id):
            raise not_found(checkpoint_id)

    def upload(self) -> codec.Upload:
        """A bounded receiver of an upload (``limits.checkpoint_import_bytes``, ``_inflated_bytes``)."""
        return codec.Upload(
            self.settings["limits.checkpoint_import_bytes"], self.settings["limits.checkpoint_inflated_bytes"]
        )

    async def import_(self, meta: CheckpointRecord, data: bytes) -> CheckpointRecord:
        async with self.lock:
            return await self._call(
                import_payload,
                self.backend,
                meta,
                data,
                max_inflated=self.settings["limits.checkpoint_inflated_bytes"],
            )

    async def recover(
        self, checkpoint_id: str, components: builtins.list[str], *, verify_only: bool, requeue_later: bool
    ) -> RecoveryReport:
        """Verify and report, or restore and reload the engine's in-memory state from the database."""
        record = await self.get(checkpoint_id)  # its payload is read chunk by chunk
        plan_recovery(record, components)  # INVALID_ARGUMENT before any work
        async with self.lock:
            await self.engine.durable()
            if verify_only:
                return await self._call(
                    recover, self.backend, record, components, verify_only=True, requeue_later=requeue_later
                )

            claims = self.engine.claims
            if claims is not None and self.engine.live_replicas is not None:
                others = await self.engine.live_replicas()
                if others:
                    raise FailedPrecondition(
                        "a restore replaces every unfinished task, and replicas "
                        f"{', '.join(sorted(others))} hold some of them and run them: stop the other "
                        "replicas, restore on this one, then start them again",
                        reason="ERROR_REASON_NOT_SUPPORTED",
                    )

            def restore_and_load() -> tuple[RecoveryReport, Any, int]:
                report = recover(
                    self.backend, record, components, verify_only=False, requeue_later=requeue_later
                )
                tasks, subtasks = self.backend.load_unfinished()
                if claims is not None:  # held before any write of them (they are not fenced off)
                    claims.hold_restored([task.id for task in tasks])
                # Queued tasks the restore left in the database beyond the window, counted afresh.
                spilled = spill.store.counts() if spill is not None else None
                return report, (tasks, subtasks, spilled), self.backend.next_task_seq()

            spill = self.engine.spill
            async with (
                self.engine.queue_held(),
                self.engine.commits_held(),
            ):  # nothing written over the restore
                report, (tasks, subtasks, spilled), seq = await self._call(restore_and_load)
                later = {name.split("/", 1)[1] for name in report.later_tasks}
                self.engine.reload(tasks, subtasks, seq, keep=later, spilled=spilled)
            log.info(
                "recovered from checkpoints/%s: %s; %d later task(s) %s",
                record.id,
                report.changes,
                len(report.later_tasks),
                "re-queued" if requeue_later else "kept",
            )
            return report
