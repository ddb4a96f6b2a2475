"""Recent log records of the control plane and its agents, for ``maos logs``.

A bounded in-memory ring per replica: the control plane's own records (a
``logging.Handler`` on the ``controlplane`` logger) and the records agents
forward over their streams. Older records live in the log files under
``$MAOS_HOME/logs``.

With replicas sharing Redis (:class:`controlplane.replicas.event_stream.LogStream`), a record
kept here is not kept at once: it is relayed to the replicas' shared stream (``relay``) and kept
when it is read back from it, with the stream's id (``stream_id``), like every other replica's
records; every replica's ring then holds the records in the stream's order, under ids valid on
all of them. While the stream cannot be written (Redis away), the relay declines and the record
is kept here at once, under an id of this replica alone (``{incarnation}.{seq}``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from controlplane.domain.model import now
from controlplane.errors import FailedPrecondition, InvalidArgument
from maos_common.redaction import RedactingFilter, redact

#: Python logging levels by ``maos.v1.LogLevel`` number, and back.
LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR, 5: logging.CRITICAL}
PROTO_LEVEL = {v: k for k, v in LEVELS.items()}
#: Names of groups of components (the user guide's): every record of the control plane itself, and
#: every record agents forwarded (whose component is ``agents/{agent}``).
CONTROL_PLANE_GROUPS = frozenset({"orchestrator", "controlplane", "control-plane"})
AGENTS_GROUP = "agents"


def component_matches(wanted: str, component: str) -> bool:
    """Whether ``component`` is ``wanted``, one of its parts (``api.x``, ``agents/ID``) or in its group."""
    if not wanted or component == wanted:
        return True
    if wanted in CONTROL_PLANE_GROUPS:
        return not component.startswith(AGENTS_GROUP + "/")
    return component.startswith((wanted + ".", wanted + "/"))


@dataclass
class LogEntry:
    """One log record."""

    level: int  # a logging level (logging.INFO, ...)
    component: str
    message: str
    time: float = field(default_factory=now)
    task_id: str = ""
    subtask_id: str = ""
    agent_id: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    seq: int = 0
    #: The principals owning the record's task and its agent when it was kept (who may read it).
    task_owner: str = ""
    agent_owner: str = ""
    #: The replica the record came from, when another replica wrote it (events across replicas).
    replica: str = ""
    #: Its id in the replicas' shared stream of log records ("" without one): its id everywhere.
    stream_id: str = ""


@dataclass(frozen=True)
class Visibility:
    """Which records a principal may read (see ``docs/security.md``).

    A record about a task is shown to the task's owner (or to holders of
    ``task:view-all``), whichever agent wrote it; an agent's record about no
    task to the agent's owner (or to holders of ``agent:manage-all``); the
    control plane's own records about no task to every reader.
    """

    principal: str
    all_tasks: bool = False
    all_agents: bool = False

    def allows(self, entry: LogEntry) -> bool:
        """Whether the principal may read ``entry``."""
        if entry.task_id:
            return self.all_tasks or (bool(entry.task_owner) and entry.task_owner == self.principal)
        if entry.agent_id:
            return self.all_agents or (bool(entry.agent_owner) and entry.agent_owner == self.principal)
        return True


@dataclass(frozen=True)
class LogFilter:
    """Which records a reader wants."""

    min_level: int = logging.NOTSET
    component: str = ""
    contains: str = ""
    task_id: str = ""
    agent_id: str = ""
    since: float | None = None
    #: Who reads (None: everything is visible, as with access control off).
    visibility: Visibility | None = None

    def matches(self, entry: LogEntry) -> bool:
        """Whether ``entry`` passes the filter (and the reader may see it)."""
        return (
            (self.visibility is None or self.visibility.allows(entry))
            and entry.level >= self.min_level
            and component_matches(self.component, entry.component)
            and (not self.contains or self.contains.lower() in entry.message.lower())
            and (not self.task_id or entry.task_id == self.task_id)
            and (not self.agent_id or entry.agent_id == self.agent_id)
            and (self.since is None or entry.time >= self.since)
        )


class LogBook:
    """The ring of recent records and the live subscribers to it."""

    def __init__(
        self,
        capacity: int = 20_000,
        task_owner: Callable[[str], str] | None = None,
        agent_owner: Callable[[str], str] | None = None,
    ):
        """``task_owner``/``agent_owner`` name the owner of a task or agent id ("" if unknown)."""
        self._entries: deque[LogEntry] = deque(maxlen=capacity)
        self._seq = 0
        self.subscribers: list[Callable[[LogEntry], None]] = []
        self.task_owner = task_owner
        self.agent_owner = agent_owner
        #: Where records written here go instead of the ring (the replicas' shared stream, which
        #: brings them back with their stream id): it returns False when the record is to be kept
        #: at once after all (the stream cannot be written now). None: kept at once.
        self.relay: Callable[[LogEntry], bool] | None = None
        #: The replicas' shared stream of records (resuming after a stream id), else None.
        self.shared: Any = None

    def enrich(self, entry: LogEntry) -> LogEntry:
        """Note who owns the record's task and agent where it does not say (who may read it)."""
        if entry.task_id and not entry.task_owner and self.task_owner is not None:
            entry.task_owner = self.task_owner(entry.task_id)
        if entry.agent_id and not entry.agent_owner and self.agent_owner is not None:
            entry.agent_owner = self.agent_owner(entry.agent_id)
        return entry

    def add(self, entry: LogEntry) -> None:
        """Keep a record (noting who owns its task and agent) and hand it to subscribers; with a
        ``relay``, a record without a stream id is relayed instead (it comes back with one)
        unless the relay declines it."""
        self.enrich(entry)
        if self.relay is not None and not entry.stream_id and self.relay(entry):
            return
        self._seq += 1
        entry.seq = self._seq
        self._entries.append(entry)
        for subscriber in list(self.subscribers):
            subscriber(entry)

    def query(self, wanted: LogFilter, after_seq: int = 0, limit: int = 100) -> list[LogEntry]:
        """Matching records after ``after_seq``, oldest first, at most ``limit``."""
        found = []
        for entry in self._entries:
            if entry.seq > after_seq and wanted.matches(entry):
                found.append(entry)
                if len(found) == limit:
                    break
        return found

    @property
    def capacity(self) -> int:
        """How many records the ring keeps (the oldest leave as new ones come)."""
        return self._entries.maxlen or 0

    def oldest_seq(self) -> int:
        """The number of the oldest record kept (the next one's when none is)."""
        return self._entries[0].seq if self._entries else self._seq + 1

    def after(self, wanted: LogFilter, seq: int) -> list[LogEntry]:
        """Every kept matching record written after record ``seq``, oldest first (to resume a tail).

        Raises:
            InvalidArgument: No record ``seq`` has been written yet.
            FailedPrecondition: Record ``seq`` was pushed out of the ring (reason
                ERROR_REASON_RESUME_POINT_LOST): records after it may be lost.
        """
        if seq > self._seq or seq < 0:
            raise InvalidArgument(
                f"after_record_id names log record {seq}, which has not been written here "
                f"(the latest is {self._seq})",
                field="after_record_id",
            )
        oldest = self._entries[0].seq if self._entries else self._seq + 1
        if seq < oldest - 1:
            raise FailedPrecondition(
                f"log record {seq} is no longer kept: the log keeps its last {self._entries.maxlen} records "
                f"(the oldest now is {oldest}); tail again without a resume id, or read older records "
                "from the log files",
                reason="ERROR_REASON_RESUME_POINT_LOST",
                metadata={"oldest_kept": str(oldest)},
            )
        return self.query(wanted, seq, len(self._entries))

    def query_newest(
        self, wanted: LogFilter, before_seq: int | None = None, limit: int = 100
    ) -> list[LogEntry]:
        """Matching records before ``before_seq`` (None: the newest), newest first, at most ``limit``."""
        found = []
        for entry in reversed(self._entries):
            if (before_seq is None or entry.seq < before_seq) and wanted.matches(entry):
                found.append(entry)
                if len(found) == limit:
                    break
        return found

    def count_levels(self, wanted: LogFilter) -> dict[str, int]:
        """How many kept records match, by level name (``INFO``, ``WARNING``, ...)."""
        counts: dict[str, int] = {}
        for entry in self._entries:
            if wanted.matches(entry):
                name = logging.getLevelName(entry.level)
                counts[name] = counts.get(name, 0) + 1
        return counts

    def tail(self, wanted: LogFilter, count: int) -> list[LogEntry]:
        """The last ``count`` matching records, oldest first."""
        matching: deque[LogEntry] = deque(maxlen=max(0, count))
        for entry in self._entries:
            if wanted.matches(entry):
                matching.append(entry)
        return list(matching)

    def extend(self, entries: Iterable[LogEntry]) -> None:
        """Keep several records (forwarded by agents: credentials in them are masked first)."""
        for entry in entries:
            entry.message = redact(entry.message)
            self.add(entry)


class LogBookHandler(logging.Handler):
    """Copies the control plane's own log records into a LogBook."""

    def __init__(self, book: LogBook, level: int = logging.INFO):
        super().__init__(level=level)
        self.book = book
        self.addFilter(RedactingFilter())  # what ListLogs/TailLogs show carries no credentials

    def emit(self, record: logging.LogRecord) -> None:
        try:
            name = record.name.removeprefix("controlplane.")
            self.book.add(
                LogEntry(
                    level=record.levelno,
                    component=name.split(".")[0],
                    message=record.getMessage(),
                    time=record.created,
                    task_id=getattr(record, "task_id", ""),
                )
            )
        except Exception:
            self.handleError(record)
