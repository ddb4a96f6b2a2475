"""The storage seam: what the control plane needs from a database.

The engine keeps the live state of unfinished work in memory and makes it
durable through :meth:`StorageBackend.write`, which commits one
:class:`WriteBatch` — many coalesced transitions — in a single transaction
(group commit). Everything else is reads. Backends are plugins
(``register_storage_backends``); the SQLAlchemy backend (SQLite and
PostgreSQL) is the built-in one.

:class:`StorageBackend` is the core task store: what the engine and the committer
need to run tasks, and all a backend must offer. Everything else is an optional
capability, a Protocol of its own that a backend offers by having its methods
(checked with ``isinstance``): access records (:class:`StoresAccess`), join tokens
(:class:`StoresJoinTokens`), checkpoints (:class:`StoresCheckpoints`), the audit log
(:class:`StoresAudit`), webhooks, batches, templates, the metrics history, and a few
more. A component that needs one asks for it with :func:`require`, which names the
backend and the capability when it is missing; a backend with the core alone runs
tasks, and the features needing what it lacks answer FAILED_PRECONDITION.

Methods are synchronous and are called from one dedicated storage thread, so
a backend need not be thread-safe beyond that; the one exception is the
optional :meth:`WritesNow.write_now`. Errors from the database are
translated at this boundary into :mod:`controlplane.errors` (``Unavailable``
when the database cannot be reached).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar, cast, runtime_checkable

from controlplane.domain.model import AgentInfo, Subtask, Task, TaskStatus
from controlplane.errors import FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from controlplane.storage.records import (
        BatchRecord,
        BatchSchedule,
        CheckpointRecord,
        DeliveryRecord,
        JoinTokenRecord,
        StagedRestore,
        TemplateRecord,
        WebhookRecord,
    )

_C = TypeVar("_C")

#: Raw rows of tables: ``{table: (column names, rows as tuples)}`` (checkpoints).
TableRows = dict[str, tuple[list[str], list[tuple[Any, ...]]]]


@dataclass
class IdempotencyRecord:
    """The first outcome of a call made with a request_id (kept about 24 h)."""

    principal: str
    method: str
    request_id: str
    request_hash: str
    resource: str  # what the first call returned, e.g. a task id
    create_time: float

    @property
    def key(self) -> tuple[str, str, str]:
        """``(principal, method, request_id)``: what identifies the call."""
        return (self.principal, self.method, self.request_id)


@dataclass(frozen=True)
class StateValue:
    """A value of a task's shared state and its version (1 for the first write)."""

    value: bytes
    version: int


@dataclass
class WriteBatch:
    """Rows to upsert in one transaction; each object appears once, in its latest state."""

    tasks: list[Task] = field(default_factory=list)
    subtasks: list[Subtask] = field(default_factory=list)
    agents: list[AgentInfo] = field(default_factory=list)
    #: Records of calls made with a request_id, each the claim of its key by the tasks it created (the
    #: ids in its ``resource``). The database decides between calls with one key: a record is inserted
    #: if its key is absent, before anything else of the batch; when the key is stored already (a call
    #: on another replica came first), the record and its tasks are not written and its key is added
    #: to :attr:`refused`.
    idempotency: list[IdempotencyRecord] = field(default_factory=list)
    #: Audit records to append, never updated or deleted afterwards (each a JSON-able dict with at least
    #: ``time``, ``principal`` and ``method``, which :meth:`StoresAudit.list_audit` filters on). Only a
    #: backend with the :class:`StoresAudit` capability is ever given any.
    audit: list[dict[str, Any]] = field(default_factory=list)
    #: Webhook deliveries to add to the outbox (inserted once; a repeated id is ignored). Only a
    #: backend with the :class:`StoresWebhooks` capability is ever given any.
    webhook_deliveries: list[DeliveryRecord] = field(default_factory=list)
    #: Ids of tasks this replica gives up (claims between replicas: the backend clears their holder in
    #: the same transaction, after writing them; alone on SQLite: queued tasks beyond the window, which
    #: the backend marks as kept in the database, see storage/sql/spill.py). Empty unless the backend
    #: serves claims or spills.
    released: list[str] = field(default_factory=list)
    #: Filled by the write: the ``(principal, method, request_id)`` keys of :attr:`idempotency` records
    #: that were not written because the key was stored already (their tasks were not written either).
    refused: set[tuple[str, str, str]] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(
            self.released
            or self.tasks
            or self.subtasks
            or self.agents
            or self.idempotency
            or self.audit
            or self.webhook_deliveries
        )

    def rows(self) -> int:
        """How many rows the batch writes."""
        return (
            len(self.tasks)
            + len(self.subtasks)
            + len(self.agents)
            + len(self.idempotency)
            + len(self.audit)
            + len(self.webhook_deliveries)
        )


@dataclass
class TaskQuery:
    """Filters and keyset position of a task listing (newest first)."""

    statuses: Sequence[TaskStatus] = ()
    task_types: Sequence[str] = ()
    priorities: Sequence[int] = ()
    since: float | None = None
    owner: str | None = None
    batch: str | None = None
    before_seq: int | None = None  # keyset: only tasks with seq < before_seq
    limit: int = 50


@runtime_checkable
class StorageBackend(Protocol):
    """The core task store: tasks, subtasks, agents, shared state and idempotency records.

    Every backend offers this; the optional capabilities below add the rest.
    """

    #: "sqlite", "postgresql", or a plugin's name (shown by ``maos status``).
    kind: str

    def migrate(self) -> None:
        """Bring the schema to the latest version (idempotent)."""

    def ping(self) -> None:
        """Raise ``Unavailable`` if the database cannot be reached."""

    def next_incarnation(self) -> int:
        """Atomically increment and return the control-plane incarnation counter.

        Lease epochs embed it, so epochs issued after a restart never equal
        epochs issued (and perhaps not committed) before it.
        """

    def next_task_seq(self) -> int:
        """The highest task seq stored, so new tasks continue after it."""

    def write(self, batch: WriteBatch) -> None:
        """Upsert every row of the batch in one transaction (see :attr:`WriteBatch.idempotency` and
        :attr:`WriteBatch.refused` for the calls with a request_id)."""

    def load_unfinished(self) -> tuple[list[Task], list[Subtask]]:
        """Every task not finished and every subtask of those tasks."""

    def get_task(self, task_id: str) -> Task | None:
        """One task, or None."""

    def get_tasks(self, task_ids: Sequence[str]) -> list[Task]:
        """The tasks that exist among ``task_ids``."""

    def get_subtasks(self, task_id: str) -> list[Subtask]:
        """The subtasks of a task, in plan order."""

    def list_tasks(self, query: TaskQuery) -> list[Task]:
        """Tasks matching the query, newest (highest seq) first, at most ``query.limit``."""

    def get_idempotency(self, principal: str, method: str, request_id: str) -> IdempotencyRecord | None:
        """The record of an earlier call with that request_id, or None."""

    def get_agent(self, agent_id: str) -> AgentInfo | None:
        """One agent, or None."""

    def list_agents(self) -> list[AgentInfo]:
        """Every agent ever registered that is not purged."""

    def count_tasks_by_status(self) -> dict[TaskStatus, int]:
        """How many tasks are in each state.

        GetStatus and the metrics sampler call this often: it should cost the same at any
        number of stored tasks (counts kept as tasks change, not a scan).
        """

    def state_get(self, task_id: str, key: str) -> StateValue | None:
        """A key of a task's shared state, or None."""

    def state_put(self, task_id: str, key: str, value: bytes, expected_version: int | None) -> int:
        """Write a key; with ``expected_version`` (0: must not exist) only if it matches.

        Returns:
            The new version.

        Raises:
            Aborted: ERROR_REASON_VERSION_CONFLICT when the version differs.
        """

    def state_delete(self, task_id: str, key: str, expected_version: int | None) -> bool:
        """Delete a key (compare-and-set like ``state_put``); whether it existed."""

    def close(self) -> None:
        """Release connections."""


class StorageBackendFactory(Protocol):
    """What ``register_storage_backends`` returns: recognises URLs and opens backends."""

    name: str

    def handles(self, url: str) -> bool:
        """Whether this factory serves the URL."""

    def open(self, url: str) -> StorageBackend:
        """Open (without migrating) a backend for the URL."""


def open_storage(pm: Any, url: str) -> StorageBackend:
    """Open the backend of the first factory registered on ``pm`` (``register_storage_backends``) that
    handles ``url``, without migrating it.

    Raises:
        InvalidArgument: No registered factory handles the URL's scheme.
    """
    factories = [f for group in pm.hook.register_storage_backends() for f in group or []]
    for factory in factories:
        if factory.handles(url):
            opened: StorageBackend = factory.open(url)
            return opened
    scheme = url.split(":", 1)[0]
    raise InvalidArgument(
        f"no storage backend handles {scheme!r} URLs; known: {', '.join(f.name for f in factories)}",
        field="database.primary_url",
    )


def require(backend: object, capability: Callable[..., _C], what: str) -> _C:
    """``backend`` as having ``capability``, or a clear refusal naming both.

    Args:
        backend: The storage backend.
        capability: One of the optional capability Protocols of this module (typed as a
            callable because type checkers refuse a Protocol where ``type[...]`` is expected).
        what: What needs it, completing "the ... storage backend does not store ..."
            (for example ``"checkpoints"``).

    Raises:
        FailedPrecondition: ERROR_REASON_NOT_SUPPORTED when the backend lacks the capability.
    """
    if not isinstance(backend, cast(type, capability)):
        kind = getattr(backend, "kind", type(backend).__name__)
        raise FailedPrecondition(
            f"the {kind} storage backend does not store {what} "
            f"(it lacks the optional {getattr(capability, '__name__', capability)} storage capability)",
            reason="ERROR_REASON_NOT_SUPPORTED",
        )
    return cast(_C, backend)


@runtime_checkable
class StoresAccess(Protocol):
    """An optional capability of a backend that stores users, roles and API keys (access control).

    Without it, ``security.auth: required`` is refused at start and the access-management
    RPCs answer FAILED_PRECONDITION; with ``security.auth: none`` tasks run as before.
    """

    def access_put(self, kind: str, row_id: str, data: dict[str, Any], *, create: bool = False) -> None:
        """Store a user, role or API key (``kind``: users, roles, api_keys) as a JSON-able record."""

    def access_list(self, kind: str) -> list[dict[str, Any]]:
        """Every stored record of ``kind``, each with its ``id``."""

    def access_delete(self, kind: str, row_id: str) -> bool:
        """Delete one record; whether it existed."""


@runtime_checkable
class StoresJoinTokens(Protocol):
    """An optional capability of a backend that stores join tokens (``maos agent token``).

    Without it, creating or redeeming a join token answers FAILED_PRECONDITION.
    """

    def put_join_token(self, record: JoinTokenRecord) -> None:
        """Insert a join token (``AlreadyExists`` if its id is taken)."""

    def get_join_token(self, token_id: str) -> JoinTokenRecord | None:
        """One join token, or None."""

    def list_join_tokens(self) -> list[JoinTokenRecord]:
        """Every join token, oldest first."""

    def revoke_join_token(self, token_id: str, when: float) -> JoinTokenRecord | None:
        """Set ``revoke_time`` unless already set; the token afterwards, or None if unknown."""

    def use_join_token(self, token_id: str, now: float) -> JoinTokenRecord | None:
        """Atomically count one use of an unrevoked, unexpired token with uses left (across processes).

        Returns the token with the use counted, or None when it was not counted
        (then nothing changed).
        """


@runtime_checkable
class StoresCheckpoints(Protocol):
    """An optional capability of a backend that takes and restores checkpoints (``maos checkpoint``).

    Without it, the CheckpointService answers FAILED_PRECONDITION and no automatic
    checkpoint is taken.
    """

    def put_checkpoint(self, record: CheckpointRecord) -> None:
        """Store a checkpoint with its payload (``AlreadyExists`` if the id is taken).

        A record without a payload (None) is one whose chunks :meth:`put_checkpoint_chunks` wrote:
        it is stored only if they are all there, ``compressed_size`` bytes in all, checked in the
        transaction that stores it (``Aborted`` otherwise, nothing stored).
        """

    def get_checkpoint(self, checkpoint_id: str, with_payload: bool = False) -> CheckpointRecord | None:
        """One checkpoint (``"latest"``: the newest), or None."""

    def list_checkpoints(self, offset: int = 0, limit: int = 50) -> list[CheckpointRecord]:
        """Checkpoints newest first, without payloads."""

    def delete_checkpoint(self, checkpoint_id: str) -> bool:
        """Delete a checkpoint; whether it existed."""

    def snapshot_blocks(
        self, tables: Sequence[str], block_rows: int
    ) -> Iterator[tuple[str, list[str], list[str], list[tuple[Any, ...]]]]:
        """``(table, columns, binary columns, rows)`` in blocks of at most ``block_rows``, read in
        one repeatable-read transaction (what a checkpoint streams, in bounded memory), each table's
        rows in code-point order of their key (Python's order of the key's values)."""

    def put_checkpoint_chunks(self, checkpoint_id: str, chunks: Iterable[bytes]) -> None:
        """Store a payload chunk by chunk ahead of its :meth:`put_checkpoint` (which makes it visible).

        Chunks without a checkpoint may be removed once old (a crashed take's), never while a take
        that is writing them elsewhere (another replica, an offline recovery) may still store its record.
        """

    def drop_checkpoint_chunks(self, checkpoint_id: str) -> None:
        """Remove the chunks of a checkpoint that will not be stored."""

    def checkpoint_chunks(self, checkpoint_id: str) -> Iterator[bytes]:
        """A stored payload, chunk by chunk."""

    def restore_staged(
        self,
        parts: Iterator[tuple[str, list[str], list[Any]]],
        components: dict[str, tuple[str, ...]],
        apply: bool,
        ordered: bool = False,
    ) -> StagedRestore:
        """Compare a checkpoint's rows with the stored ones and (``apply``) upsert them, in one transaction.

        ``ordered``: each table's rows come in code-point order of their key, as :meth:`snapshot_blocks`
        reads them (a backend may then merge them with its own instead of staging them all)."""


class CheckpointStore(StorageBackend, StoresCheckpoints, Protocol):
    """A backend with the core task store and :class:`StoresCheckpoints`: what taking, restoring and
    re-queuing from a checkpoint use."""


@runtime_checkable
class StoresAudit(Protocol):
    """An optional capability of a backend that keeps the audit log (``maos audit``).

    Records are appended through :attr:`WriteBatch.audit`, in the commit of the change
    they record; a backend without this capability is never given any, and the audit
    RPC answers FAILED_PRECONDITION. Retention is a further capability, :class:`PrunesAudit`.
    """

    def list_audit(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        principal: str = "",
        action: str = "",
        before_seq: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Audit records (appended through :attr:`WriteBatch.audit`) newest first, each with its ``seq``.

        ``since`` inclusive, ``until`` exclusive, ``principal`` exact, ``action`` a substring
        of ``method``, ``before_seq`` exclusive (keyset paging).
        """


@runtime_checkable
class WritesNow(Protocol):
    """An optional capability of a backend whose small commits cost less than a hand-off to a thread.

    An embedded database on local disk (SQLite) commits a few rows in tens of
    microseconds, while passing the work to the storage thread and back costs
    more than that. Such a backend may offer :meth:`write_now`, which the
    control plane calls on its event loop thread for small batches, while the
    storage thread may be busy with something else. The control plane never
    runs two writes (``write`` or ``write_now``) at once. Only a ``write_now``
    defined by the backend's class is used, so a wrapper that delegates to
    another backend by ``__getattr__`` sees every batch in its own ``write``
    (:func:`controlplane.storage.executor.fast_write`).
    """

    def can_write_now(self) -> bool:
        """Whether :meth:`write_now` can commit at all (asked once, when the backend opens)."""

    def write_now(self, batch: WriteBatch) -> bool:
        """Commit ``batch`` on the calling thread, like ``write``, unless that would mean waiting.

        Returns:
            True when the batch is committed; False when nothing was written
            because the database is locked by another writer (or this backend
            cannot write now at all), and the caller should use ``write``.

        Raises:
            The errors ``write`` raises.
        """


class SchemaStatus(NamedTuple):
    """Where a database's schema stands against the revisions this version of MAOS ships."""

    #: The database's revision, or None: no MAOS schema at all.
    current: str | None
    #: The newest revision this version ships, which it needs.
    head: str
    #: Whether ``current`` is one of the shipped revisions (False: a newer MAOS migrated it).
    known: bool

    @property
    def up_to_date(self) -> bool:
        """Whether the schema is at the head revision."""
        return self.current == self.head


@runtime_checkable
class PrunesAudit(Protocol):
    """An optional capability of a backend that can delete old audit records (``audit.retention_days``).

    The audit log is append-only for callers; only retention removes records, the oldest
    first. A backend without this capability keeps every record.
    """

    def delete_audit_before(self, time: float) -> int:
        """Delete the audit records older than ``time`` (seconds since the epoch); how many were deleted."""


@runtime_checkable
class ReportsSchema(Protocol):
    """An optional capability of a backend that can tell its schema revision without changing anything.

    A control plane started without migrating (``database.migrate_on_start: false``)
    refuses a database whose :meth:`schema_status` is not up to date; a backend
    without this capability is not checked.
    """

    def schema_status(self) -> SchemaStatus:
        """The database's schema revision against the one this version needs (read only)."""


@runtime_checkable
class MetricsHistory(Protocol):
    """A small table of the control plane's summary figures over time (see :class:`KeepsMetricsHistory`)."""

    def put_metrics_sample(self, time: float, replica: str, values: dict[str, float]) -> None:
        """Store one sample: the figures (``{"maos_tasks_running": 3.0, ...}``) of ``replica`` at ``time``."""

    def list_metrics_samples(
        self, since: float, until: float, limit: int
    ) -> list[tuple[float, dict[str, float]]]:
        """Samples with ``since <= time < until``, oldest first, at most ``limit`` (the newest ones kept)."""

    def prune_metrics_samples(self, before: float) -> int:
        """Delete the samples older than ``before``; how many were deleted."""


@runtime_checkable
class KeepsMetricsHistory(Protocol):
    """An optional capability of a backend that keeps a history of the summary figures (``maos metrics
    --timeframe``). Without it, ``GetMetricsHistory`` answers FAILED_PRECONDITION and nothing is sampled.
    """

    def metrics_history(self) -> MetricsHistory:
        """The history store (called on the storage thread, like every other method)."""


@runtime_checkable
class ReportsSize(Protocol):
    """An optional capability of a backend that can tell how large its database is (``maos resources``)."""

    def database_size_bytes(self) -> int:
        """The database's size in bytes (files on disk, or what the server reports)."""


@runtime_checkable
class StoresWebhooks(Protocol):
    """An optional capability of a backend that stores webhooks and their delivery outbox.

    Deliveries enter the outbox through :attr:`WriteBatch.webhook_deliveries`,
    in the same transaction as the change they report, and leave it through
    :meth:`claim_deliveries`, which any number of control-plane processes may
    call at once: each due row goes to one claimant, for a lease, and comes
    back if its claimant dies. Without this capability WebhookService answers
    FAILED_PRECONDITION.
    """

    def put_webhook(self, record: WebhookRecord, *, create: bool = False) -> None:
        """Store a webhook (``create``: ``AlreadyExists`` if its id is taken)."""

    def get_webhook(self, webhook_id: str) -> WebhookRecord | None:
        """One webhook, or None."""

    def list_webhooks(
        self, owner: str | None = None, offset: int = 0, limit: int = 1000
    ) -> list[WebhookRecord]:
        """Webhooks oldest first (of ``owner`` only, unless None)."""

    def count_webhooks(self, owner: str) -> int:
        """How many webhooks ``owner`` has."""

    def find_webhook(self, owner: str, request_id: str) -> WebhookRecord | None:
        """The webhook ``owner`` created with ``request_id``, or None."""

    def delete_webhook(self, webhook_id: str) -> bool:
        """Delete a webhook and its deliveries; whether it existed."""

    def add_deliveries(self, records: Sequence[DeliveryRecord]) -> None:
        """Insert deliveries outside a :class:`WriteBatch` (test events)."""

    def claim_deliveries(self, claim: str, now: float, lease: float, limit: int) -> list[DeliveryRecord]:
        """Claim up to ``limit`` pending deliveries due at ``now``, oldest due first.

        Each claimed row gets ``claim`` and ``next_attempt_time = now + lease``
        (when it comes back if never finished), atomically: two claimants never
        get the same row (``FOR UPDATE SKIP LOCKED`` on PostgreSQL).
        """

    def finish_attempt(self, record: DeliveryRecord, claim: str) -> bool:
        """Record an attempt's outcome (status, attempts, HTTP status, error, latency, times) and release
        the claim; False (nothing written) if the row is no longer claimed by ``claim``."""

    def list_deliveries(self, webhook_id: str, offset: int = 0, limit: int = 50) -> list[DeliveryRecord]:
        """Deliveries of a webhook, newest first (without payloads)."""

    def next_delivery_due(self) -> float | None:
        """The earliest ``next_attempt_time`` of a pending delivery, or None."""

    def prune_deliveries(self, before: float) -> int:
        """Delete finished deliveries created before ``before``; how many."""


class BatchStore(Protocol):
    """Batches and the tasks added to them (see :class:`StoresBatches`).

    Names are unique per owner: a second batch of the same ``(owner, display_name)``
    raises ``AlreadyExists``. Records read back carry ``entry_count``.
    """

    def create_batch(self, batch: BatchRecord) -> None:
        """Insert an OPEN batch (``AlreadyExists`` if its id, or its owner's name, is taken)."""

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        """One batch, or None."""

    def find_batch(self, owner: str, display_name: str) -> BatchRecord | None:
        """The owner's batch of that name, or None."""

    def list_batches(self, owner: str | None, offset: int, limit: int) -> list[BatchRecord]:
        """Batches newest first (``owner`` None: everyone's), at most ``limit`` after ``offset``."""

    def count_batches(self, owner: str) -> int:
        """How many batches the owner has."""

    def add_batch_task(self, batch_id: str, task: Task, request_id: str = "") -> int | None:
        """Append a task to an OPEN batch, in one transaction; the batch's task count afterwards.

        A ``request_id`` already used for this batch adds nothing (the count is returned).

        Returns:
            The count, or None when the batch does not exist or is not OPEN (nothing added).
        """

    def batch_tasks(self, batch_id: str) -> list[Task]:
        """The tasks added to a batch, in the order they were added."""

    def claim_batch_submit(
        self,
        batch_id: str,
        task_ids: Sequence[str],
        schedule: BatchSchedule,
        when: float,
        stale_before: float,
    ) -> BatchRecord | None:
        """Claim the submission of a batch, in one transaction (so one submitter at a time, across replicas).

        An OPEN batch becomes SUBMITTING with ``task_ids``, ``schedule`` and
        ``claim_time = when``. A SUBMITTING batch claimed before ``stale_before``
        (its submitter died) is claimed again at ``when``, keeping its task ids and
        schedule. Any other batch is left as it is.

        Returns:
            The batch afterwards (the caller holds the claim when its ``claim_time``
            is ``when``), or None if it does not exist.
        """

    def release_batch_claim(self, batch_id: str, when: float) -> None:
        """Make a batch claimed at ``when`` OPEN again (its submit stored nothing)."""

    def mark_batch_submitted(self, batch_id: str, schedule: BatchSchedule, when: float) -> bool:
        """Record the submission of a batch claimed at ``when`` (its added tasks are deleted: they are tasks now).

        Returns:
            False (nothing changed) if the batch is not claimed at ``when``.
        """

    def delete_batch(self, batch_id: str) -> bool:
        """Delete a batch and its added tasks (not the submitted tasks); whether it existed."""


@runtime_checkable
class StoresBatches(Protocol):
    """An optional capability of a backend that stores batches (``maos batch``).

    Without it, the BatchService answers FAILED_PRECONDITION naming the backend.
    """

    #: The backend's batch store.
    batches: BatchStore


class TemplateStore(Protocol):
    """Task templates (see :class:`StoresTemplates`); names are unique per owner."""

    def put_template(self, template: TemplateRecord, *, replace: bool = False) -> TemplateRecord:
        """Insert a template; with ``replace``, overwrite the owner's template of the same name, keeping its id.

        Returns:
            The stored template (with the kept id when replaced).

        Raises:
            AlreadyExists: The id, or (without ``replace``) the owner's name, is taken.
        """

    def get_template(self, template_id: str) -> TemplateRecord | None:
        """One template, or None."""

    def find_template(self, owner: str, display_name: str) -> TemplateRecord | None:
        """The owner's template of that name, or None."""

    def list_templates(self, owner: str | None, offset: int, limit: int) -> list[TemplateRecord]:
        """Templates by name (``owner`` None: everyone's), at most ``limit`` after ``offset``."""

    def count_templates(self, owner: str) -> int:
        """How many templates the owner has."""

    def delete_template(self, template_id: str) -> bool:
        """Delete a template; whether it existed."""


@runtime_checkable
class StoresTemplates(Protocol):
    """An optional capability of a backend that stores task templates (``maos template``).

    Without it, the TemplateService answers FAILED_PRECONDITION naming the backend.
    """

    #: The backend's template store.
    templates: TemplateStore
