"""Domain records. Enum values equal the ``maos.v1`` proto numbers, so conversion is a cast.

Records held for every unfinished task use ``__slots__`` (``slots=True``): no per-object
``__dict__``, which would be most of a queued task's memory.
"""

from __future__ import annotations

import enum
import secrets
import time
from dataclasses import dataclass, field
from typing import Any


class TaskStatus(enum.IntEnum):
    """See ``maos.v1.TaskStatus``."""

    PENDING = 1
    QUEUED = 2
    RUNNING = 3
    COMPLETED = 4
    FAILED = 5
    CANCELLED = 6

    @property
    def finished(self) -> bool:
        """Whether the state is terminal."""
        return self in _FINISHED_TASK


_FINISHED_TASK = {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED}


class SubtaskStatus(enum.IntEnum):
    """See ``maos.v1.SubtaskStatus``."""

    BLOCKED = 1
    QUEUED = 2
    RUNNING = 3
    COMPLETED = 4
    FAILED = 5
    CANCELLED = 6

    @property
    def finished(self) -> bool:
        """Whether the state is terminal."""
        return self in _FINISHED_SUBTASK


_FINISHED_SUBTASK = {SubtaskStatus.COMPLETED, SubtaskStatus.FAILED, SubtaskStatus.CANCELLED}


class Priority(enum.IntEnum):
    """See ``maos.v1.Priority``."""

    LOW = 1
    NORMAL = 2
    HIGH = 3
    CRITICAL = 4


class SubtaskKind(enum.IntEnum):
    """See ``maos.v1.SubtaskKind``."""

    WORK = 1
    SYNTHESIS = 2
    CANDIDATE = 3
    REVIEW = 4
    REVISION = 5


class AgentStatus(enum.IntEnum):
    """See ``maos.v1.AgentStatus``."""

    IDLE = 1
    BUSY = 2
    PAUSED = 3
    DRAINING = 4
    DISCONNECTED = 5
    TERMINATED = 6
    STARTING = 7


def now() -> float:
    """Wall-clock seconds since the epoch (the unit of every stored time)."""
    return time.time()


@dataclass(slots=True, frozen=True)
class RetryPolicy:
    """How a failed subtask is retried (Temporal semantics: exponential, capped)."""

    max_retries: int = 3
    initial_backoff: float = 1.0
    multiplier: float = 2.0
    max_backoff: float = 100.0

    def backoff(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry)."""
        delay = self.initial_backoff * self.multiplier ** max(0, retry_number - 1)
        return min(delay, self.max_backoff)


@dataclass(slots=True, frozen=True)
class ConsensusPolicy:
    """Whether and how the decision step needs agreement."""

    required: bool = False
    threshold: float = 0.5
    strategy: str = ""  # "" means the server's consensus.voting_strategy
    candidates: int = 3
    max_rounds: int = 3
    round_timeout: float | None = None


@dataclass(slots=True, frozen=True)
class Usage:
    """Tokens and cost (cost in millionths of a US dollar)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cost_micros: int = 0
    model_calls: int = 0
    #: Server-side web searches and fetches (their cost is in ``cost_micros``).
    web_search_requests: int = 0
    web_fetch_requests: int = 0
    #: Tool calls of every kind (the agent's own and the API's server tools).
    tool_calls: int = 0

    def plus(self, other: Usage) -> Usage:
        """This usage and ``other`` together (a new record: usage is shared, never changed in place)."""
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cost_micros + other.cost_micros,
            self.model_calls + other.model_calls,
            self.web_search_requests + other.web_search_requests,
            self.web_fetch_requests + other.web_fetch_requests,
            self.tool_calls + other.tool_calls,
        )

    @property
    def total_tokens(self) -> int:
        """Every token counted against a budget."""
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_read_input_tokens
            + self.cache_creation_input_tokens
        )


@dataclass(slots=True)
class Failure:
    """Why a task or subtask failed."""

    reason: str
    message: str
    subtask: str = ""
    error_type: str = ""


@dataclass(slots=True)
class Artifact:
    """A file or blob produced by a subtask."""

    name: str
    media_type: str = "application/octet-stream"
    content: bytes = b""
    uri: str = ""
    size_bytes: int = 0
    sha256: str = ""


@dataclass(slots=True)
class ToolCall:
    """One tool call an agent made for a subtask (for people: name, time, outcome, one line)."""

    name: str
    server: bool = False
    duration: float = 0.0
    is_error: bool = False
    summary: str = ""
    turn: int = 0


@dataclass(slots=True)
class Source:
    """A source the model cited."""

    url: str
    title: str = ""
    cited_text: str = ""


@dataclass(slots=True)
class PlannedSubtask:
    """One step of a plan, before it runs."""

    key: str
    title: str
    instructions: str
    capability: str = ""
    agent_type: str = ""
    kind: SubtaskKind = SubtaskKind.WORK
    depends_on: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ExecutionPlan:
    """A small DAG of subtasks made by a planner."""

    subtasks: list[PlannedSubtask]
    planner: str
    warnings: list[str] = field(default_factory=list)
    complexity: str = "low"
    recommended_agents: int = 1
    estimated_parallel_efficiency: float = 1.0
    critical_path_length: int = 1


@dataclass(slots=True)
class DependencyResult:
    """The final result of a task another depends on, as its agents see it (bounded)."""

    task_id: str
    description: str
    output: str
    #: Characters of the result left out (0: it is whole).
    omitted_chars: int = 0


@dataclass(slots=True)
class Task:
    """A unit of work described in plain language, and its state."""

    id: str
    description: str
    owner: str = ""
    task_type: str = "mixed"
    priority: Priority = Priority.NORMAL
    max_agents: int = 4
    depends_on: list[str] = field(default_factory=list)
    consensus: ConsensusPolicy = field(default_factory=ConsensusPolicy)
    timeout: float | None = None
    context: str = ""
    constraints: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_total_tokens: int = 0
    max_cost_micros: int = 0
    agent_type: str = ""
    status: TaskStatus = TaskStatus.PENDING
    status_reason: str = ""
    failure: Failure | None = None
    create_time: float = field(default_factory=now)
    start_time: float | None = None
    end_time: float | None = None
    update_time: float = field(default_factory=now)
    usage: Usage = field(default_factory=Usage)
    warnings: list[str] = field(default_factory=list)
    retries: int = 0
    batch: str = ""
    template: str = ""
    plan: ExecutionPlan | None = None
    #: The consensus record (candidates, votes, rounds, outcome) when consensus is required.
    consensus_state: dict[str, Any] | None = None
    #: Evaluator-optimizer rounds after the answer is made (0: none); see controlplane.domain.review.
    review_rounds: int = 0
    #: The review loop's record (rounds, verdicts, outcome) once it started.
    review_state: dict[str, Any] | None = None
    #: Wait for a person to approve the plan before any work starts.
    approve_plan: bool = False
    #: The plan's approval (state, request_time, principal, decide_time, reason) once planned.
    approval: dict[str, Any] | None = None
    output: str = ""
    #: The results of the tasks in ``depends_on``, taken when the task started (bounded).
    dependency_results: list[DependencyResult] = field(default_factory=list)
    seq: int = 0  # insertion order, for stable listing and tie-breaking

    @property
    def name(self) -> str:
        """The resource name, ``tasks/{id}``."""
        return f"tasks/{self.id}"


def subtask_name(task_id: str, subtask_id: str) -> str:
    """A subtask's resource name, ``tasks/{task}/subtasks/{subtask}`` ("" without a subtask id).

    The one encoding of a subtask reference: events, logs, reviews, agents' assignments and
    the refs of the agent stream all use it, and :func:`split_subtask_name` reads it back.
    """
    return f"tasks/{task_id}/subtasks/{subtask_id}" if subtask_id else ""


def split_subtask_name(name: str) -> tuple[str, str] | None:
    """``(task_id, subtask_id)`` of a subtask's resource name; None when it is not one."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != "tasks" or parts[2] != "subtasks":
        return None
    return parts[1], parts[3]


@dataclass(slots=True)
class Subtask:
    """One step of a task's plan, and its execution state."""

    task_id: str
    id: str
    title: str
    instructions: str
    capability: str = ""
    agent_type: str = ""
    kind: SubtaskKind = SubtaskKind.WORK
    depends_on: list[str] = field(default_factory=list)
    status: SubtaskStatus = SubtaskStatus.BLOCKED
    attempt: int = 0
    lease_epoch: int = 0
    agent_id: str = ""
    progress: float = 0.0
    progress_message: str = ""
    output: str = ""
    artifacts: list[Artifact] = field(default_factory=list)
    failure: Failure | None = None
    usage: Usage = field(default_factory=Usage)
    checkpoint: bytes | None = None
    queue_time: float | None = None
    start_time: float | None = None
    end_time: float | None = None
    not_before: float = 0.0
    status_reason: str = ""
    retries_used: int = 0
    #: The tool calls and cited sources of the attempt that completed it.
    tool_calls: list[ToolCall] = field(default_factory=list)
    sources: list[Source] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The resource name, ``tasks/{task}/subtasks/{subtask}``."""
        return subtask_name(self.task_id, self.id)


@dataclass
class AgentInfo:
    """What the control plane knows of an agent."""

    id: str
    agent_type: str
    capabilities: list[str] = field(default_factory=list)
    max_concurrency: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    language: str = ""
    sdk_version: str = ""
    status: AgentStatus = AgentStatus.IDLE
    hostname: str = ""
    pid: int = 0
    replica: str = ""
    managed: bool = False
    completed_subtasks: int = 0
    failed_subtasks: int = 0
    usage: Usage = field(default_factory=Usage)
    connect_time: float | None = None
    last_heartbeat_time: float | None = None
    disconnect_time: float | None = None
    session_id: str = ""
    #: The principal owning the agent: whose key or join token registered it, or who spawned it
    #: (``users/local-agents``, the control plane, for its own pool). "" for none: only
    #: holders of ``agent:manage-all`` act on it.
    owner: str = ""
    #: ``maos.v1.AgentBacking``: 0 unspecified (treated as model-backed), 1 model, 2 offline.
    backing: int = 0

    @property
    def name(self) -> str:
        """The resource name, ``agents/{id}``."""
        return f"agents/{self.id}"

    @property
    def reliability(self) -> float:
        """Track record used by weighted voting: Laplace-smoothed success rate."""
        return (self.completed_subtasks + 1) / (self.completed_subtasks + self.failed_subtasks + 2)


def new_agent_id(agent_type: str) -> str:
    """A fresh agent id, ``{type}-{16 hex}`` (64 random bits; the type cut to 24 characters).

    64 bits make a clash of two ids practically impossible (about one in 10^9
    after 200,000 agents), where 32 bits gave even odds of one after about 77,000.
    """
    return f"{agent_type[:24]}-{secrets.token_hex(8)}"


def as_dict(obj: Any) -> Any:
    """Plain data of a dataclass tree (for JSON columns and checkpoints)."""
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) and not isinstance(obj, type) else obj
