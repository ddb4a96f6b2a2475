"""Proto <-> domain conversion. No business logic; field errors become InvalidArgument.

The server's one set of converters for the shapes it shares with clients and agents: durations,
timestamps, subtask references, the assignment (the SDK's side is ``agent_sdk/wire.py``).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from google.protobuf import duration_pb2, timestamp_pb2

from controlplane.api.pb import enums_pb, errors_pb, gateway_pb, messages_pb, proto_enum, system_pb
from controlplane.domain.events import Event, EventType
from controlplane.domain.limits import clip_bytes, quote, size_of
from controlplane.domain.model import (
    AgentInfo,
    Artifact,
    ConsensusPolicy,
    DependencyResult,
    ExecutionPlan,
    Failure,
    Priority,
    RetryPolicy,
    Source,
    Subtask,
    Task,
    ToolCall,
    Usage,
    now,
    split_subtask_name,
    subtask_name,
)
from controlplane.domain.model_limits import PacingStatus
from controlplane.errors import FailedPrecondition, InvalidArgument
from controlplane.logbook import LEVELS, PROTO_LEVEL, LogEntry
from controlplane.scheduler.commands import Assign, Ref

if TYPE_CHECKING:
    from controlplane.observability.resources import ProcessReading

# Matched with fullmatch: "$" would also accept a trailing newline.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,127}")


def parse_name(name: str, collection: str, field: str = "name") -> str:
    """The id in ``{collection}/{id}``; a bare id is accepted too."""
    if not name:
        raise InvalidArgument(f"{field} is required, as {collection}/ID", field=field)
    prefix = collection + "/"
    ident = name[len(prefix) :] if name.startswith(prefix) else name
    if not _ID.fullmatch(ident):
        raise InvalidArgument(f"{field} {quote(name)} is not a valid {collection}/ID name", field=field)
    return ident


def parse_resume_id(value: str, incarnation: int, field: str) -> int | None:
    """The sequence number of a resume id ``{incarnation}.{sequence}`` (None when empty).

    Raises:
        InvalidArgument: It is not such an id.
        FailedPrecondition: It was issued by another start of the control plane or another
            replica (reason ERROR_REASON_RESUME_POINT_LOST).
    """
    if not value:
        return None
    start, dot, sequence = value.partition(".")
    # ASCII digits only: str.isdigit() also takes "²" and "٣", which int() reads or refuses.
    if not dot or not all(
        part.isascii() and part.isdigit() and len(part) <= 18 for part in (start, sequence)
    ):
        raise InvalidArgument(
            f"{field} {quote(value[:64])} is not an id this API sent "
            "(INCARNATION.SEQUENCE, as in Event.id or LogRecord.id)",
            field=field,
        )
    if int(start) != incarnation:
        raise FailedPrecondition(
            f"{field} {value} was sent before this control plane restarted, or by another replica "
            f"(this one is incarnation {incarnation}); its history is not kept here: open the stream "
            "again without a resume id",
            reason="ERROR_REASON_RESUME_POINT_LOST",
        )
    return int(sequence)


_STREAM_EVENT_ID = re.compile(r"[0-9]{1,15}-[0-9]{1,18}-[0-9]{1,9}")
_STREAM_RECORD_ID = re.compile(r"[0-9]{1,15}-[0-9]{1,18}")


def _parse_stream_resume_id(
    value: str, incarnation: int, field: str, streamed: bool, shape: re.Pattern[str], what: str
) -> int | str | None:
    """A resume id: ``{incarnation}.{sequence}``, or when ``what`` crosses replicas (``streamed``)
    an id of the shared stream, whole as ``shape`` says (None when empty).

    Raises:
        InvalidArgument: It is not such an id.
        FailedPrecondition: It was issued where ``what`` did not cross replicas, by another start
            or another replica (reason ERROR_REASON_RESUME_POINT_LOST).
    """
    if not streamed or not value:
        return parse_resume_id(value, incarnation, field)
    if shape.fullmatch(value):
        return value
    records = what == "log records"
    try:
        parse_resume_id(value, -1, field)  # a well-formed id of a single control plane?
    except FailedPrecondition:
        raise FailedPrecondition(
            f"{field} {value} was sent by a control plane whose {what} did not cross replicas; its "
            f"history is not kept here: {'tail' if records else 'open the stream'} again without a "
            "resume id",
            reason="ERROR_REASON_RESUME_POINT_LOST",
        ) from None
    except InvalidArgument:
        raise InvalidArgument(
            f"{field} {quote(value[:64])} is not an id this API sent "
            f"(MILLISECONDS-SEQUENCE, as in {'LogRecord.id' if records else 'Event.id'})",
            field=field,
        ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def parse_event_resume_id(value: str, incarnation: int, field: str, streamed: bool) -> int | str | None:
    """The event to resume after: ``{incarnation}.{sequence}``, or with events across replicas
    (``streamed``) ``{milliseconds}-{sequence}-{index}``: a stream entry and the event's index in it
    (None when empty). Errors as :func:`_parse_stream_resume_id` says."""
    return _parse_stream_resume_id(value, incarnation, field, streamed, _STREAM_EVENT_ID, "events")


def parse_record_resume_id(value: str, incarnation: int, streamed: bool) -> int | str | None:
    """The log record to resume after (``after_record_id``): ``{incarnation}.{sequence}``, or with
    log records across replicas (``streamed``) a stream id ``{milliseconds}-{sequence}`` (None when
    empty). Errors as :func:`_parse_stream_resume_id` says."""
    return _parse_stream_resume_id(
        value, incarnation, "after_record_id", streamed, _STREAM_RECORD_ID, "log records"
    )


def seconds(value: duration_pb2.Duration) -> float:
    """A Duration as float seconds."""
    return float(value.seconds + value.nanos / 1e9)


#: The range of a valid google.protobuf.Duration (about 10,000 years).
MAX_DURATION_SECONDS = 315_576_000_000


def checked_seconds(value: duration_pb2.Duration, field: str, *, allow_negative: bool = False) -> float:
    """A Duration as float seconds; INVALID_ARGUMENT naming ``field`` if it is not a valid (non-negative) one."""
    s, n = value.seconds, value.nanos
    if abs(s) > MAX_DURATION_SECONDS or abs(n) > 999_999_999 or (s > 0 > n) or (s < 0 < n):
        raise InvalidArgument(f"{field} is not a valid duration", field=field)
    secs = seconds(value)
    if secs < 0 and not allow_negative:
        raise InvalidArgument(f"{field} cannot be negative", field=field)
    return secs


def duration(secs: float | None) -> duration_pb2.Duration | None:
    """Float seconds as a Duration (None stays None)."""
    if secs is None:
        return None
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(secs * 1e9))
    return d


def timestamp(secs: float | None) -> timestamp_pb2.Timestamp | None:
    """Epoch seconds as a Timestamp (None stays None)."""
    if secs is None:
        return None
    t = timestamp_pb2.Timestamp()
    t.FromNanoseconds(int(secs * 1e9))
    return t


def epoch(value: timestamp_pb2.Timestamp) -> float:
    """A Timestamp as epoch seconds."""
    return float(value.seconds + value.nanos / 1e9)


#: The range of a valid google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799


def checked_epoch(value: timestamp_pb2.Timestamp, field: str) -> float:
    """A Timestamp as epoch seconds; INVALID_ARGUMENT naming ``field`` if it is not a valid one."""
    in_range = MIN_TIMESTAMP_SECONDS <= value.seconds <= MAX_TIMESTAMP_SECONDS
    if not (in_range and 0 <= value.nanos <= 999_999_999):
        raise InvalidArgument(
            f"{field} is not a valid timestamp (years 1 to 9999, nanos 0 to 999999999)", field=field
        )
    return epoch(value)


def optional_epoch(message: Any, field: str) -> float | None:
    """The checked Timestamp ``field`` of ``message`` as epoch seconds, None when unset."""
    return checked_epoch(getattr(message, field), field) if message.HasField(field) else None


def priority_from_pb(value: int, field: str = "task.priority") -> Priority:
    """A proto priority; UNSPECIFIED means NORMAL."""
    if value == 0:
        return Priority.NORMAL
    try:
        return Priority(value)
    except ValueError:
        raise InvalidArgument(
            f"{field} {value} is not a priority (LOW, NORMAL, HIGH, CRITICAL)", field=field
        ) from None


def _strategy(value: int, field: str) -> str:
    if value == 0:
        return ""
    if value not in enums_pb.VotingStrategy.values():
        raise InvalidArgument(
            f"{field} {value} is not a voting strategy (MAJORITY, WEIGHTED, UNANIMOUS)", field=field
        )
    name: str = enums_pb.VotingStrategy.Name(value)
    return name.removeprefix("VOTING_STRATEGY_").lower()


def task_from_pb(
    msg: messages_pb.Task, *, default_max_agents: int, retry_defaults: RetryPolicy, prefix: str = "task"
) -> Task:
    """A new task from a request (output-only fields ignored)."""
    depends = [parse_name(d, "tasks", f"{prefix}.depends_on") for d in msg.depends_on]

    def span(value: duration_pb2.Duration, name: str) -> float:
        # Ill-formed Durations are refused here; negative ones by validate_task, with the others.
        return checked_seconds(value, f"{prefix}.{name}", allow_negative=True)

    retry = RetryPolicy(
        max_retries=msg.retry_policy.max_retries
        if msg.retry_policy.HasField("max_retries")
        else retry_defaults.max_retries,
        initial_backoff=(
            span(msg.retry_policy.initial_backoff, "retry_policy.initial_backoff")
            if msg.retry_policy.HasField("initial_backoff")
            else retry_defaults.initial_backoff
        ),
        multiplier=msg.retry_policy.backoff_multiplier
        if msg.retry_policy.HasField("backoff_multiplier")
        else retry_defaults.multiplier,
        max_backoff=(
            span(msg.retry_policy.max_backoff, "retry_policy.max_backoff")
            if msg.retry_policy.HasField("max_backoff")
            else retry_defaults.max_backoff
        ),
    )
    c = msg.consensus
    consensus = ConsensusPolicy(
        required=c.required,
        threshold=c.threshold if c.HasField("threshold") else 0.5,
        strategy=_strategy(c.strategy, f"{prefix}.consensus.strategy"),
        candidates=c.candidates if c.HasField("candidates") else 3,
        max_rounds=c.max_rounds if c.HasField("max_rounds") else 3,
        round_timeout=(
            span(c.round_timeout, "consensus.round_timeout") if c.HasField("round_timeout") else None
        ),
    )
    return Task(
        id="",
        description=msg.description,
        task_type=msg.task_type or "mixed",
        priority=priority_from_pb(msg.priority, f"{prefix}.priority"),
        max_agents=msg.max_agents or default_max_agents,
        depends_on=depends,
        consensus=consensus,
        timeout=span(msg.timeout, "timeout") if msg.HasField("timeout") else None,
        context=msg.context,
        constraints=msg.constraints,
        metadata=dict(msg.metadata),
        retry=retry,
        max_total_tokens=msg.budget.max_total_tokens,
        max_cost_micros=msg.budget.max_cost_micros,
        agent_type=msg.agent_type,
        review_rounds=msg.review_rounds,
        approve_plan=msg.approve_plan,
    )


def usage_into(u: Usage, msg: messages_pb.TokenUsage) -> None:
    """Write usage into a message (set as present, zeros included)."""
    msg.SetInParent()
    msg.input_tokens = u.input_tokens
    msg.output_tokens = u.output_tokens
    msg.cache_read_input_tokens = u.cache_read_input_tokens
    msg.cache_creation_input_tokens = u.cache_creation_input_tokens
    msg.cost_micros = u.cost_micros
    msg.model_calls = u.model_calls
    msg.web_search_requests = u.web_search_requests
    msg.web_fetch_requests = u.web_fetch_requests
    msg.tool_calls = u.tool_calls


def usage_to_pb(u: Usage) -> messages_pb.TokenUsage:
    """Usage as a proto."""
    return messages_pb.TokenUsage(
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        cache_read_input_tokens=u.cache_read_input_tokens,
        cache_creation_input_tokens=u.cache_creation_input_tokens,
        cost_micros=u.cost_micros,
        model_calls=u.model_calls,
        web_search_requests=u.web_search_requests,
        web_fetch_requests=u.web_fetch_requests,
        tool_calls=u.tool_calls,
    )


MAX_USAGE = 1 << 40  # per report: far above any real figure, far below what storage can hold


def model_pacing_to_pb(p: PacingStatus) -> system_pb.ModelPacing:
    """The status message of one paced model."""
    limits = p.limits
    return system_pb.ModelPacing(
        model=p.model,
        breaker=proto_enum(enums_pb.BreakerState, p.state),
        reopens_in=duration(p.reopens_in),
        in_flight=p.in_flight,
        in_flight_cap=p.in_flight_cap,
        held=p.held,
        requests_per_minute=limits.requests_per_minute,
        input_tokens_per_minute=limits.input_tokens_per_minute,
        output_tokens_per_minute=limits.output_tokens_per_minute,
        requests_used=p.usage.get("requests", 0.0),
        input_tokens_used=p.usage.get("input_tokens", 0.0),
        output_tokens_used=p.usage.get("output_tokens", 0.0),
        granted=p.granted,
        overloaded_answers=p.overloaded_answers,
        last_problem=p.last_problem,
    )


def usage_from_pb(u: messages_pb.TokenUsage) -> Usage:
    """Usage an agent reported, each figure clamped to [0, MAX_USAGE] (agents are untrusted input)."""

    def clamp(value: int) -> int:
        return min(max(0, value), MAX_USAGE)

    return Usage(
        input_tokens=clamp(u.input_tokens),
        output_tokens=clamp(u.output_tokens),
        cache_read_input_tokens=clamp(u.cache_read_input_tokens),
        cache_creation_input_tokens=clamp(u.cache_creation_input_tokens),
        cost_micros=clamp(u.cost_micros),
        model_calls=clamp(u.model_calls),
        web_search_requests=clamp(u.web_search_requests),
        web_fetch_requests=clamp(u.web_fetch_requests),
        tool_calls=clamp(u.tool_calls),
    )


#: Bounds of the tool-call records and cited sources an agent reports (agents are untrusted input).
MAX_TOOL_CALLS = 200
MAX_SOURCES = 100
TOOL_SUMMARY_CHARS = 200
TOOL_NAME_CHARS = 128
SOURCE_URL_CHARS = 2048
SOURCE_TITLE_CHARS = 500
SOURCE_CITED_CHARS = 1000


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tool_call_to_pb(c: ToolCall) -> messages_pb.ToolCall:
    """A tool-call record as a proto."""
    return messages_pb.ToolCall(
        name=c.name,
        server=c.server,
        duration=duration(c.duration),
        is_error=c.is_error,
        summary=c.summary,
        turn=c.turn,
    )


def tool_calls_from_pb(calls: Any) -> list[ToolCall]:
    """The first :data:`MAX_TOOL_CALLS` records an agent reported, each field cut to its bound."""
    return [
        ToolCall(
            name=_cut(c.name, TOOL_NAME_CHARS),
            server=c.server,
            duration=max(0.0, min(c.duration.ToTimedelta().total_seconds(), 1e7)),
            is_error=c.is_error,
            summary=_cut(c.summary, TOOL_SUMMARY_CHARS),
            turn=min(c.turn, 1 << 20),
        )
        for c in list(calls)[:MAX_TOOL_CALLS]
    ]


def source_to_pb(s: Source) -> messages_pb.Source:
    """A cited source as a proto."""
    return messages_pb.Source(url=s.url, title=s.title, cited_text=s.cited_text)


def sources_from_pb(sources: Any) -> list[Source]:
    """The first :data:`MAX_SOURCES` sources an agent reported, each field cut to its bound."""
    return [
        Source(
            url=_cut(s.url, SOURCE_URL_CHARS),
            title=_cut(s.title, SOURCE_TITLE_CHARS),
            cited_text=_cut(s.cited_text, SOURCE_CITED_CHARS),
        )
        for s in list(sources)[:MAX_SOURCES]
    ]


def merged_sources(subtasks: Any) -> list[messages_pb.Source]:
    """The sources of ``subtasks`` (domain records) in order, one per URL."""
    seen: set[str] = set()
    merged = []
    for sub in subtasks:
        for source in sub.sources:
            if source.url not in seen:
                seen.add(source.url)
                merged.append(source_to_pb(source))
    return merged


def dependency_result_to_pb(d: DependencyResult) -> messages_pb.DependencyResult:
    """A dependency's result as handed to agents."""
    return messages_pb.DependencyResult(
        task=f"tasks/{d.task_id}", description=d.description, output=d.output, omitted_chars=d.omitted_chars
    )


def failure_to_pb(f: Failure | None) -> messages_pb.Failure | None:
    """A failure as a proto."""
    if f is None:
        return None
    return messages_pb.Failure(
        reason=error_reason_number(f.reason), message=f.message, subtask=f.subtask, error_type=f.error_type
    )


_ERROR_REASONS = errors_pb.ErrorReason.DESCRIPTOR.values_by_name


def error_reason_number(name: str) -> errors_pb.ErrorReason:
    """The ``ErrorReason`` number of a reason name; 0 (unspecified) for a name the contract does not have."""
    value = _ERROR_REASONS.get(name)
    return proto_enum(errors_pb.ErrorReason, 0 if value is None else value.number)


def artifact_to_pb(a: Artifact) -> messages_pb.Artifact:
    """An artifact as a proto."""
    return messages_pb.Artifact(
        name=a.name,
        media_type=a.media_type,
        content=a.content,
        uri=a.uri,
        size_bytes=a.size_bytes,
        sha256=a.sha256,
    )


def artifact_from_pb(a: messages_pb.Artifact) -> Artifact:
    """An artifact from a proto."""
    return Artifact(
        name=a.name,
        media_type=a.media_type,
        content=a.content,
        uri=a.uri,
        size_bytes=a.size_bytes or len(a.content),
        sha256=a.sha256,
    )


def task_to_pb(
    t: Task,
    status_reason: str = "",
    subtasks: list[Subtask] | None = None,
    into: messages_pb.Task | None = None,
) -> messages_pb.Task:
    """A task as a proto (written into ``into`` when given: no copy of it made).

    Fields left at their defaults are not passed to the message (a repeated or
    map field costs its message a container even when empty); every
    sub-message that the task always has is set, so it reads as present.

    Raises:
        ValueError: ``into`` is not an empty message (fields left at their defaults
            would keep what it held). The check costs about 0.1 us, 1-2 % of the call.
    """
    if into is None:
        msg = messages_pb.Task()
    elif into.ListFields():
        raise ValueError("task_to_pb writes only into an empty Task message")
    else:
        msg = into
    consensus, retry, strategy = t.consensus, t.retry, t.consensus.strategy
    msg.name = t.name
    msg.description = t.description
    msg.task_type = t.task_type
    msg.priority = proto_enum(enums_pb.Priority, t.priority)
    msg.max_agents = t.max_agents
    msg.status = proto_enum(enums_pb.TaskStatus, t.status)
    msg.owner = t.owner
    msg.retries = t.retries
    msg.review_rounds = t.review_rounds
    msg.approve_plan = t.approve_plan
    msg.agent_type = t.agent_type
    msg.context = t.context
    msg.constraints = t.constraints
    msg.status_reason = status_reason or t.status_reason
    if t.depends_on:
        msg.depends_on.extend(f"tasks/{d}" for d in t.depends_on)
    if t.metadata:
        msg.metadata.update(t.metadata)
    if t.warnings:
        msg.warnings.extend(t.warnings)
    if t.batch:
        msg.batch = f"batches/{t.batch}"
    if t.template:
        msg.template = f"templates/{t.template}"
    policy = msg.consensus
    policy.SetInParent()
    policy.required = consensus.required
    policy.threshold = consensus.threshold
    if strategy:
        policy.strategy = enums_pb.VotingStrategy.Value(f"VOTING_STRATEGY_{strategy.upper()}")
    policy.candidates = consensus.candidates
    policy.max_rounds = consensus.max_rounds
    if consensus.round_timeout is not None:
        policy.round_timeout.FromNanoseconds(int(consensus.round_timeout * 1e9))
    if t.timeout is not None:
        msg.timeout.FromNanoseconds(int(t.timeout * 1e9))
    retry_policy = msg.retry_policy
    retry_policy.SetInParent()
    retry_policy.max_retries = retry.max_retries
    retry_policy.backoff_multiplier = retry.multiplier
    retry_policy.initial_backoff.FromNanoseconds(int(retry.initial_backoff * 1e9))
    retry_policy.max_backoff.FromNanoseconds(int(retry.max_backoff * 1e9))
    budget = msg.budget
    budget.SetInParent()
    budget.max_total_tokens = t.max_total_tokens
    budget.max_cost_micros = t.max_cost_micros
    for name in ("create_time", "start_time", "end_time", "update_time"):
        value = getattr(t, name)
        if value is not None:
            getattr(msg, name).FromNanoseconds(int(value * 1e9))
    usage_into(t.usage, msg.usage)
    if t.failure is not None:
        msg.failure.CopyFrom(failure_to_pb(t.failure))
    if t.approval:
        msg.approval.CopyFrom(approval_to_pb(t.approval))
    if subtasks is not None:
        msg.subtasks_total = len(subtasks)
        msg.subtasks_completed = sum(1 for s in subtasks if s.status.name == "COMPLETED")
        msg.subtasks_running = sum(1 for s in subtasks if s.status.name == "RUNNING")
        msg.progress = (
            sum(1.0 if s.status.name == "COMPLETED" else s.progress for s in subtasks) / len(subtasks)
            if subtasks
            else 0.0
        )
    if t.status.name == "COMPLETED":
        msg.progress = 1.0
    return msg


def approval_to_pb(approval: dict[str, Any] | None) -> messages_pb.PlanApproval | None:
    """A task's plan approval as a proto (None before it is planned, or without approve_plan)."""
    if not approval:
        return None
    return messages_pb.PlanApproval(
        state=enums_pb.PlanApprovalState.Value(f"PLAN_APPROVAL_STATE_{approval['state']}"),
        request_time=timestamp(approval.get("request_time")),
        principal=approval.get("principal") or "",
        decide_time=timestamp(approval.get("decide_time")),
        reason=approval.get("reason") or "",
    )


def review_to_pb(task_id: str, record: dict[str, Any] | None) -> messages_pb.ReviewRecord | None:
    """A task's review loop as a proto (None without review rounds, or before its answer is ready)."""
    if not record:
        return None

    def subtask(sid: str) -> str:
        return subtask_name(task_id, sid)

    rounds = []
    for r in record["rounds"]:
        verdict = r.get("verdict")
        rounds.append(
            messages_pb.ReviewRound(
                round=r["round"],
                review_subtask=subtask(r["review_step"]),
                reviewer=f"agents/{r['reviewer']}" if r.get("reviewer") else "",
                verdict=messages_pb.ReviewVerdict(
                    approved=verdict["approved"], changes=verdict["changes"], summary=verdict["summary"]
                )
                if verdict
                else None,
                revision_subtask=subtask(r.get("revision_step", "")),
                usage=usage_to_pb(Usage(**(r.get("usage") or {}))),
                note=r.get("note", ""),
            )
        )
    return messages_pb.ReviewRecord(
        outcome=enums_pb.ReviewOutcome.Value(f"REVIEW_OUTCOME_{record['outcome']}"),
        max_rounds=record["max_rounds"],
        rounds=rounds,
    )


def subtask_to_pb(s: Subtask) -> messages_pb.Subtask:
    """A subtask as a proto."""
    return messages_pb.Subtask(
        name=s.name,
        title=s.title,
        instructions=s.instructions,
        capability=s.capability,
        agent_type=s.agent_type,
        kind=proto_enum(enums_pb.SubtaskKind, s.kind),
        depends_on=s.depends_on,
        status=proto_enum(enums_pb.SubtaskStatus, s.status),
        attempt=s.attempt,
        agent=f"agents/{s.agent_id}" if s.agent_id else "",
        progress=s.progress,
        progress_message=s.progress_message,
        output=s.output,
        artifacts=[artifact_to_pb(a) for a in s.artifacts],
        failure=failure_to_pb(s.failure),
        usage=usage_to_pb(s.usage),
        has_checkpoint=s.checkpoint is not None,
        queue_time=timestamp(s.queue_time),
        start_time=timestamp(s.start_time),
        end_time=timestamp(s.end_time),
        status_reason=s.status_reason,
        tool_calls=[tool_call_to_pb(c) for c in s.tool_calls],
        sources=[source_to_pb(x) for x in s.sources],
    )


def plan_to_pb(p: ExecutionPlan | None) -> messages_pb.ExecutionPlan | None:
    """A plan as a proto."""
    if p is None:
        return None
    return messages_pb.ExecutionPlan(
        subtasks=[
            messages_pb.PlannedSubtask(
                key=s.key,
                title=s.title,
                instructions=s.instructions,
                capability=s.capability,
                agent_type=s.agent_type,
                kind=proto_enum(enums_pb.SubtaskKind, s.kind),
                depends_on=s.depends_on,
            )
            for s in p.subtasks
        ],
        planner=p.planner,
        warnings=p.warnings,
        complexity=p.complexity,
        recommended_agents=p.recommended_agents,
        estimated_parallel_efficiency=p.estimated_parallel_efficiency,
        critical_path_length=p.critical_path_length,
    )


def agent_to_pb(a: AgentInfo, assignments: list[str] | None = None, free_slots: int = 0) -> messages_pb.Agent:
    """An agent as a proto."""
    return messages_pb.Agent(
        name=a.name,
        agent_type=a.agent_type,
        capabilities=a.capabilities,
        max_concurrency=a.max_concurrency,
        labels=a.labels,
        language=a.language,
        sdk_version=a.sdk_version,
        status=proto_enum(enums_pb.AgentStatus, a.status),
        assignments=assignments or [],
        free_slots=free_slots,
        hostname=a.hostname,
        pid=a.pid,
        replica=a.replica,
        managed=a.managed,
        completed_subtasks=a.completed_subtasks,
        failed_subtasks=a.failed_subtasks,
        reliability=a.reliability,
        usage=usage_to_pb(a.usage),
        connect_time=timestamp(a.connect_time),
        last_heartbeat_time=timestamp(a.last_heartbeat_time),
        disconnect_time=timestamp(a.disconnect_time),
        owner=a.owner,
        backing=proto_enum(enums_pb.AgentBacking, a.backing),
    )


def _status_enum_name(event_type: int, status: str) -> str:
    """A domain status name as the proto enum value's name (``COMPLETED`` -> ``TASK_STATUS_COMPLETED``)."""
    if not status:
        return ""
    kind = EventType(event_type).name.split("_", 1)[0]  # TASK, SUBTASK or AGENT
    return f"{kind}_STATUS_{status}"


def event_to_pb(event: Event, incarnation: int) -> messages_pb.Event:
    """An event as a proto; its id is its stream id across replicas, else ``{incarnation}.{sequence}``
    (resumable within one start)."""
    msg = messages_pb.Event(
        id=event.stream_id or f"{incarnation}.{event.id}",
        type=proto_enum(enums_pb.EventType, event.type),
        time=timestamp(event.time),
        task=f"tasks/{event.task_id}" if event.task_id else "",
        subtask=subtask_name(event.task_id, event.subtask_id),
        agent=f"agents/{event.agent_id}" if event.agent_id else "",
        from_status=_status_enum_name(event.type, event.from_status),
        to_status=_status_enum_name(event.type, event.to_status),
        message=event.message,
    )
    if event.data:
        msg.data.update(event.data)
    return msg


def log_entry_from_pb(
    record: messages_pb.LogRecord, agent_id: str, max_message_bytes: int = 8192
) -> LogEntry:
    """An agent's forwarded log record (its agent id is the sender's, whatever it claims; its text cut
    to ``max_message_bytes``, its fields to 32 of at most 256 bytes each)."""
    task = record.task.split("/")[1] if record.task.startswith("tasks/") else ""
    return LogEntry(
        level=LEVELS.get(record.level, logging.INFO),
        component=f"agents/{agent_id}",
        message=clip_bytes(record.message, max_message_bytes),
        time=epoch(record.time) if record.HasField("time") else now(),
        task_id=task if _ID.fullmatch(task) else "",
        subtask_id=subtask if _ID.fullmatch(subtask := record.subtask.rsplit("/", 1)[-1]) else "",
        agent_id=agent_id,
        fields={clip_bytes(k, 256): clip_bytes(v, 256) for k, v in list(record.fields.items())[:32]},
    )


def log_entry_to_pb(entry: LogEntry, incarnation: int = 0) -> messages_pb.LogRecord:
    """A log record as a proto; its id is its stream id when log records cross replicas (valid on
    every replica), else ``{incarnation}.{seq}`` (resumable within one start)."""
    return messages_pb.LogRecord(
        id=entry.stream_id or f"{incarnation}.{entry.seq}",
        time=timestamp(entry.time),
        level=proto_enum(enums_pb.LogLevel, PROTO_LEVEL.get(entry.level, 2)),
        component=entry.component,
        message=entry.message,
        task=f"tasks/{entry.task_id}" if entry.task_id else "",
        subtask=subtask_name(entry.task_id, entry.subtask_id),
        agent=f"agents/{entry.agent_id}" if entry.agent_id else "",
        fields=entry.fields,
    )


def consensus_to_pb(state: dict[str, Any] | None) -> messages_pb.ConsensusRecord | None:
    """A task's consensus record as a proto (None without consensus)."""
    if not state:
        return None
    return messages_pb.ConsensusRecord(
        outcome=enums_pb.ConsensusOutcome.Value(f"CONSENSUS_OUTCOME_{state['outcome']}"),
        strategy=enums_pb.VotingStrategy.Value(f"VOTING_STRATEGY_{state['strategy'].upper()}"),
        threshold=state["threshold"],
        rounds=state["round"],
        candidates=[
            messages_pb.Candidate(
                id=c["id"], agent=f"agents/{c['agent']}" if c["agent"] else "", content=c["content"]
            )
            for c in state["candidates"]
        ],
        votes=[
            messages_pb.Vote(
                voter=f"agents/{v['voter']}",
                candidate_id=v["candidate_id"],
                confidence=v["confidence"],
                rationale=v["rationale"],
                round=v["round"],
                weight=v["weight"],
                usage=usage_to_pb(Usage(**v.get("usage") or {})),
                abstained=not v["candidate_id"],
            )
            for v in state["votes"]
        ],
        winning_candidate_id=state["winner"],
        agreement=state["agreement"],
    )


def process_to_pb(
    reading: ProcessReading, agent_id: str = "", agent_type: str = ""
) -> messages_pb.ProcessResources:
    """A process reading (:class:`controlplane.observability.resources.ProcessReading`) as a proto."""
    return messages_pb.ProcessResources(
        pid=reading.pid,
        agent=f"agents/{agent_id}" if agent_id else "",
        agent_type=agent_type,
        cpu_percent=reading.cpu_percent,
        cpu_seconds=reading.cpu_seconds,
        memory_bytes=reading.memory_bytes,
        memory_percent=reading.memory_percent,
        threads=reading.threads,
        open_files=reading.open_files,
        connections=reading.connections,
        measured=reading.measured,
    )


# --- the agent stream: refs and assignments -----------------------------------

#: Most bytes of one assignment, well under the agents' 16 MiB receive limit: beyond it the inputs
#: (outputs of the steps it depends on, each up to ``limits.result_bytes``) are cut to fit.
MAX_ASSIGNMENT_BYTES = 12 * 1024 * 1024


def ref_from_pb(ref: gateway_pb.AssignmentRef) -> Ref | None:
    """A domain ref from the wire; None when the subtask name is malformed."""
    ids = split_subtask_name(ref.subtask)
    return None if ids is None else Ref(*ids, ref.attempt, ref.lease_epoch)


def ref_to_pb(ref: Ref) -> gateway_pb.AssignmentRef:
    """A wire ref from the domain."""
    return gateway_pb.AssignmentRef(
        subtask=ref.subtask_name, attempt=ref.attempt, lease_epoch=ref.lease_epoch
    )


def assignment_to_pb(command: Assign) -> gateway_pb.Assignment:
    """The wire message of an assignment."""
    msg = gateway_pb.Assignment(
        ref=ref_to_pb(command.ref),
        task=f"tasks/{command.ref.task_id}",
        title=command.title,
        instructions=command.instructions,
        capability=command.capability,
        kind=proto_enum(enums_pb.SubtaskKind, command.kind),
        task_description=command.task_description,
        context=command.context,
        constraints=command.constraints,
        metadata=command.metadata,
        inputs=command.inputs,
        deadline=timestamp(command.deadline),
        lease_ttl=duration(command.lease_ttl),
        priority=proto_enum(enums_pb.Priority, command.priority),
        remaining_budget=messages_pb.Budget(
            max_total_tokens=command.max_total_tokens, max_cost_micros=command.max_cost_micros
        ),
        dependency_results=[dependency_result_to_pb(d) for d in command.dependency_results],
        plan=command.plan,
    )
    if command.resume_checkpoint is not None:
        msg.resume_checkpoint = command.resume_checkpoint
    if msg.ByteSize() > MAX_ASSIGNMENT_BYTES and msg.inputs:
        _fit_inputs(msg)
    return msg


def _fit_inputs(msg: gateway_pb.Assignment) -> None:
    """Cut the inputs of an assignment over :data:`MAX_ASSIGNMENT_BYTES`, each to an equal share of the room."""
    inputs = dict(msg.inputs)
    room = MAX_ASSIGNMENT_BYTES - (
        msg.ByteSize() - sum(size_of(k) + size_of(v) + 16 for k, v in inputs.items())
    )
    share = max(1024, room // len(inputs) - 64)  # less the framing of each map entry
    for key, value in inputs.items():
        size = size_of(value)
        if size > share:
            note = f"\n[cut: the whole input is {size} bytes]"
            msg.inputs[key] = clip_bytes(value, max(0, share - size_of(note))) + note
