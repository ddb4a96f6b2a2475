"""``maos task``: submit, inspect, wait for and steer tasks."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from agent_sdk.client import Client, build_task
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import errors_pb2
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from maos_cli._errors import EXIT_TASK_FAILED, CliError, handle_errors
from maos_cli._options import (
    PRIORITIES,
    TASK_STATUSES,
    Duration,
    Metadata,
    Since,
    UpperChoice,
    merge_metadata,
    normalize_priority,
    output_option,
    priority_option,
    run,
    split_csv,
    task_id_argument,
)
from maos_cli._output import (
    bare_id,
    duration_text,
    emit,
    enum_label,
    key_values,
    message,
    seconds_text,
    short,
    status_text,
    table,
    to_data,
    when,
)
from maos_cli._pool import offline_notice, offline_pool
from maos_cli._review import approval_text, review_summary, review_text
from maos_cli.artifacts import write_artifacts
from maos_cli.progress import with_progress
from maos_common.limits import (
    MAX_BACKOFF,
    MAX_BACKOFF_MULTIPLIER,
    MAX_INITIAL_BACKOFF,
    MAX_RETRIES,
    MAX_REVIEW_ROUNDS,
    MAX_TIMEOUT,
)

_TASK_ID = re.compile(r"^(tasks/)?t[0-9a-f]{12,}$")

#: max_agents: 0 is never valid (the server refuses it), so the CLI does too; the server alone
#: checks the upper bound (MAX_TASK_AGENTS), answering INVALID_ARGUMENT (exit 4) naming task.max_agents.
MAX_AGENTS = click.IntRange(min=1)
#: --review-rounds: the server refuses more (INVALID_ARGUMENT); the CLI says so before asking.
REVIEW_ROUNDS = click.IntRange(0, MAX_REVIEW_ROUNDS)


def _status(task: msgs.Task) -> str:
    return enum_label(enums.TaskStatus, task.status, "TASK_STATUS_")


def _priority(value: int) -> str:
    return enum_label(enums.Priority, value, "PRIORITY_")


def _progress(task: msgs.Task) -> str:
    text = f"{task.progress * 100:.0f}%"
    if task.subtasks_total:
        text += f" ({task.subtasks_completed}/{task.subtasks_total} subtasks"
        text += f", {task.subtasks_running} running)" if task.subtasks_running else ")"
    return text


def _failure(f: msgs.Failure) -> str:
    if not f.message and not f.reason:
        return ""
    reason = enums_reason(f.reason)
    return f"{f.message} ({reason})" if reason else f.message


def enums_reason(value: int) -> str:
    """The ErrorReason name of a failure, without its prefix."""
    return enum_label(errors_pb2.ErrorReason, value, "ERROR_REASON_") if value else ""


def _task_pairs(task: msgs.Task) -> list[tuple[str, Any]]:
    return [
        ("ID", bare_id(task.name)),
        ("Status", status_text(_status(task))),
        ("Reason", task.status_reason),
        ("Progress", _progress(task)),
        ("Description", short(task.description, 100)),
        ("Type", task.task_type),
        ("Priority", _priority(task.priority)),
        ("Max agents", task.max_agents or ""),
        ("Agent type", task.agent_type),
        ("Depends on", ", ".join(bare_id(d) for d in task.depends_on)),
        ("Created", when(task.create_time)),
        ("Started", when(task.start_time)),
        ("Ended", when(task.end_time)),
        ("Failure", _failure(task.failure)),
        ("Retries", task.retries or ""),
        ("Retry policy", _retry_policy(task.retry_policy)),
        ("Budget", _budget(task)),
        ("Review rounds", task.review_rounds or ""),
        ("Plan approval", approval_text(task)),
        ("Warnings", "; ".join(task.warnings)),
    ]


def _budget(task: msgs.Task) -> str:
    """The budget and what was spent of it ("" without one)."""
    b, u = task.budget, task.usage
    spent = u.input_tokens + u.output_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens
    parts = []
    if b.max_total_tokens:
        parts.append(f"{spent:,} of {b.max_total_tokens:,} tokens")
    if b.max_cost_micros:
        parts.append(f"${u.cost_micros / 1e6:.4f} of ${b.max_cost_micros / 1e6:.4f}")
    return ", ".join(parts)


def _retry_policy(policy: msgs.RetryPolicy) -> str:
    """``3 retries, after 1.0s, x2, at most 1m 40s`` (empty when the task carries no policy)."""
    if not (policy.HasField("max_retries") or policy.HasField("initial_backoff")):
        return ""
    return (
        f"{policy.max_retries} retries, after {duration_text(policy.initial_backoff)}, "
        f"x{policy.backoff_multiplier:g}, at most {duration_text(policy.max_backoff)}"
    )


def _subtask_table(subtasks: list[msgs.Subtask]) -> str:
    return table(
        ["SUBTASK", "STATUS", "KIND", "AGENT", "ATTEMPT", "PROGRESS", "TITLE"],
        [
            [
                bare_id(s.name),
                status_text(enum_label(enums.SubtaskStatus, s.status, "SUBTASK_STATUS_")),
                enum_label(enums.SubtaskKind, s.kind, "SUBTASK_KIND_"),
                bare_id(s.agent) if s.agent else "",
                s.attempt,
                f"{s.progress * 100:.0f}%",
                short(s.title or s.instructions, 50),
            ]
            for s in subtasks
        ],
    )


def _plan_text(plan: msgs.ExecutionPlan) -> str:
    head = key_values(
        [
            ("Planner", plan.planner),
            ("Complexity", plan.complexity),
            ("Recommended agents", plan.recommended_agents),
            ("Parallel efficiency", f"{plan.estimated_parallel_efficiency:.2f}"),
            ("Critical path", plan.critical_path_length),
            ("Warnings", "; ".join(plan.warnings)),
        ]
    )
    steps = table(
        ["KEY", "KIND", "CAPABILITY", "AGENT TYPE", "DEPENDS ON", "TITLE"],
        [
            [
                p.key,
                enum_label(enums.SubtaskKind, p.kind, "SUBTASK_KIND_"),
                p.capability,
                p.agent_type,
                ",".join(p.depends_on),
                short(p.title or p.instructions, 50),
            ]
            for p in plan.subtasks
        ],
    )
    return f"{head}\n\n{steps}"


def _results_text(result: msgs.TaskResult, warnings: list[str] | None = None) -> str:
    u = result.usage
    parts = [
        key_values(
            [
                ("Warnings", "; ".join(warnings or [])),
                ("Task", bare_id(result.task)),
                ("Status", status_text(enum_label(enums.TaskStatus, result.status, "TASK_STATUS_"))),
                ("Failure", _failure(result.failure)),
                (
                    "Usage",
                    f"{u.input_tokens} input / {u.output_tokens} output tokens, {u.model_calls} model calls, "
                    f"${u.cost_micros / 1e6:.4f}" + _tool_usage(u),
                ),
                ("Artifacts", ", ".join(dict.fromkeys(a.name for a in result.artifacts))),
                ("Review", review_summary(result.review) if result.HasField("review") else ""),
            ]
        )
    ]
    parts.append("\n" + (result.output or "(no output)"))
    if result.sources:
        parts.append("\nSources:")
        for i, source in enumerate(result.sources, 1):
            parts.append(
                f"[{i}] {source.title or source.url}\n    {source.url}"
                + (f'\n    "{short(source.cited_text, 200)}"' if source.cited_text else "")
            )
    done = [s for s in result.subtasks if s.status == enums.SUBTASK_STATUS_COMPLETED and s.output]
    if result.status != enums.TASK_STATUS_COMPLETED and done:
        parts.append("\nCompleted parts (kept):")
        parts.extend(f"\n## {s.title or bare_id(s.name)}\n{s.output}" for s in done)
    return "\n".join(parts)


def _tool_usage(u: msgs.TokenUsage) -> str:
    """``, 3 tool calls (2 web searches, 1 fetch)`` when the work used tools."""
    if not u.tool_calls and not u.web_search_requests and not u.web_fetch_requests:
        return ""
    server = [
        f"{n} {what}"
        for n, what in ((u.web_search_requests, "web searches"), (u.web_fetch_requests, "web fetches"))
        if n
    ]
    return f", {u.tool_calls} tool calls" + (f" ({', '.join(server)})" if server else "")


def _tool_call_table(subtasks: list[msgs.Subtask]) -> str:
    return table(
        ["SUBTASK", "TURN", "TOOL", "RAN ON", "TIME", "OUTCOME", "SUMMARY"],
        [
            [
                bare_id(s.name),
                c.turn,
                c.name,
                "api" if c.server else "agent",
                duration_text(c.duration),
                "error" if c.is_error else "ok",
                short(c.summary, 60),
            ]
            for s in subtasks
            for c in s.tool_calls
        ],
    )


def _ran(task: msgs.Task) -> str:
    """How long a task ran (or has been running), empty before it started."""
    if not task.start_time.seconds:
        return ""
    start = task.start_time.seconds + task.start_time.nanos / 1e9
    end = task.end_time.seconds + task.end_time.nanos / 1e9 if task.end_time.seconds else time.time()
    return seconds_text(max(0.0, end - start))


def _exit_for(task: msgs.Task) -> None:
    if task.status != enums.TASK_STATUS_COMPLETED:
        reason = _failure(task.failure) or task.status_reason
        raise CliError(
            f"task {bare_id(task.name)} {_status(task)}" + (f": {reason}" if reason else ""), EXIT_TASK_FAILED
        )


@click.group()
def task() -> None:
    """Submit, inspect and steer tasks."""


@task.command()
@click.argument("description")
@click.option("--type", "task_type", default=None, help="research, coding, analysis, mixed or an agent type.")
@priority_option("LOW, NORMAL (or MEDIUM), HIGH or CRITICAL; default NORMAL.")
@click.option(
    "--max-agents",
    type=MAX_AGENTS,
    default=None,
    help="Most agents working on the task at once (default: tasks.default_max_agents).",
)
@click.option(
    "--depends-on",
    multiple=True,
    metavar="ID[,ID...]",
    help="Tasks that must complete first (repeatable and/or comma-separated).",
)
@click.option("--require-consensus", is_flag=True, help="Let several agents decide by vote.")
@click.option(
    "--consensus-threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Share of votes the winner needs (default 0.5).",
)
@click.option(
    "--timeout",
    "task_timeout",
    type=click.FloatRange(0, int(MAX_TIMEOUT), min_open=True),
    default=None,
    metavar="SECONDS",
    help="Wall-clock limit of the task (no limit when unset).",
)
@click.option("--context", default=None, help="Background every agent sees.")
@click.option("--constraints", default=None, help="Rules the result must follow.")
@click.option(
    "--metadata",
    multiple=True,
    type=Metadata(),
    help="A label KEY=VALUE, or a JSON object of several (repeatable).",
)
@click.option(
    "--max-retries",
    type=click.IntRange(0, MAX_RETRIES),
    default=None,
    help="Retries of each failed subtask (default: tasks.default_max_retries).",
)
@click.option(
    "--retry-backoff",
    "initial_backoff",
    type=Duration(max_seconds=MAX_INITIAL_BACKOFF),
    default=None,
    help="Delay before the first retry, e.g. 2s, 500ms (default: tasks.default_initial_backoff; "
    f"at most {MAX_INITIAL_BACKOFF / 3600:g}h).",
)
@click.option(
    "--retry-multiplier",
    "backoff_multiplier",
    type=click.FloatRange(1, int(MAX_BACKOFF_MULTIPLIER)),
    default=None,
    help="Each retry waits this many times longer than the previous one (default 2).",
)
@click.option(
    "--retry-max-backoff",
    "max_backoff",
    type=Duration(max_seconds=MAX_BACKOFF),
    default=None,
    help="Longest delay between retries, at least --retry-backoff, e.g. 1m "
    f"(default: tasks.default_max_backoff; at most {MAX_BACKOFF / 86400:g}d).",
)
@click.option("--agent-type", default=None, help="Run every subtask on agents of this type.")
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Token budget over all the task's model calls (default: tasks.default_max_tokens).",
)
@click.option(
    "--max-cost",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="USD",
    help="Cost budget in US dollars (default: tasks.default_max_cost).",
)
@click.option(
    "--review-rounds",
    type=REVIEW_ROUNDS,
    default=0,
    metavar="N",
    show_default=False,
    help=f"Have a reviewer grade the answer and a revision apply its changes, until it approves or "
    f"N rounds pass (0-{MAX_REVIEW_ROUNDS}; default 0: no review).",
)
@click.option(
    "--approve-plan",
    is_flag=True,
    help="Once planned, wait for `maos task approve ID` (or `maos task reject ID`) before any work.",
)
@click.option("--request-id", default=None, help="Idempotency key (a UUID; generated when unset).")
@click.option(
    "--wait",
    is_flag=True,
    help="Wait until the task finishes (showing its progress on stderr) and print its result.",
)
@click.option("--follow", is_flag=True, help="With --wait: print the model's text as it streams.")
@click.option(
    "--wait-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="With --wait: give up after this long (exit 9).",
)
@output_option
@handle_errors
def submit(
    description: str,
    task_type: str | None,
    priority: str | None,
    max_agents: int | None,
    depends_on: tuple[str, ...],
    require_consensus: bool,
    consensus_threshold: float | None,
    task_timeout: float | None,
    context: str | None,
    constraints: str | None,
    metadata: tuple[dict[str, str], ...],
    max_retries: int | None,
    initial_backoff: float | None,
    backoff_multiplier: float | None,
    max_backoff: float | None,
    agent_type: str | None,
    max_tokens: int | None,
    max_cost: float | None,
    review_rounds: int,
    approve_plan: bool,
    request_id: str | None,
    wait: bool,
    follow: bool,
    wait_timeout: float | None,
) -> None:
    """Submit a task described in plain language; prints its id.

    The id is printed alone on stdout, so `ID=$(maos task submit "...")`
    works (with -o/--format json: {"task_id": "..."}). With --wait, the
    command waits and prints the result instead; it exits 10 if the task fails.

    A failed subtask is retried up to --max-retries times, waiting
    --retry-backoff, then each time --retry-multiplier times longer, at most
    --retry-max-backoff; unset ones take the server's tasks.default_* settings.

    --max-tokens and --max-cost bound what the task spends on models; a task
    stopped by its budget fails (BUDGET_EXCEEDED) and keeps its completed parts.

    --review-rounds N: a reviewer (a tester, else a coordinator) grades the
    answer against the description and constraints; each round that asks for
    changes revises the answer. `maos task show` lists each round's verdict.

    --approve-plan: the task waits, planned, until it is approved (`maos task
    show ID --execution-plan` shows the plan); its --timeout counts from when
    its work starts.
    """
    draft = build_task(
        description,
        task_type=task_type or "",
        priority=normalize_priority(priority),
        max_agents=max_agents or 0,
        depends_on=split_csv(depends_on),
        require_consensus=require_consensus,
        consensus_threshold=consensus_threshold,
        timeout=task_timeout,
        context=context or "",
        constraints=constraints or "",
        metadata=merge_metadata(metadata),
        max_retries=max_retries,
        agent_type=agent_type or "",
        initial_backoff=initial_backoff,
        backoff_multiplier=backoff_multiplier,
        max_backoff=max_backoff,
        max_tokens=max_tokens,
        max_cost=max_cost,
        review_rounds=review_rounds,
        approve_plan=approve_plan,
    )

    async def action(client: Client) -> tuple[msgs.Task, msgs.Task | None, msgs.TaskResult | None]:
        created = await client.submit_task(draft, request_id=request_id)
        if not wait:
            return created, None, None
        message(f"submitted {bare_id(created.name)}; waiting for it to finish")
        offline = await offline_pool(client)
        if offline:
            offline_notice(offline)
        final = await with_progress(
            client, created.name, lambda: client.wait_task(created.name, timeout=wait_timeout), follow=follow
        )
        return created, final, await client.get_results(final.name)

    created, final, result = run(action)
    task_id = bare_id(created.name)
    if final is None or result is None:  # not waited for (a finished task has a result)
        emit({"task_id": task_id}, lambda: task_id)
        return
    emit(
        {
            "task_id": task_id,
            "status": _status(final),
            "warnings": list(final.warnings),
            "result": to_data(result),
        },
        lambda: _results_text(result, list(final.warnings)),
    )
    _exit_for(final)


@task.command("list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=UpperChoice(TASK_STATUSES),
    help="Only tasks in this state (repeatable).",
)
@click.option("--type", "task_types", multiple=True, help="Only tasks of this type (repeatable).")
@click.option(
    "--priority",
    "priorities",
    multiple=True,
    type=UpperChoice(PRIORITIES),
    help="Only tasks of this priority (repeatable).",
)
@click.option(
    "--since", type=Since(), default=None, help="Only tasks created since 1h, 30m, 7d... or an ISO time."
)
@click.option("--limit", type=click.IntRange(min=1), default=50, help="Most tasks shown.")
@click.option("--all", "all_", is_flag=True, help="Every matching task (ignores --limit).")
@click.option("--detailed", is_flag=True, help="More columns: agents, timing, retries and why a task waits.")
@output_option
@handle_errors
def list_(
    statuses: tuple[str, ...],
    task_types: tuple[str, ...],
    priorities: tuple[str, ...],
    since: datetime | None,
    limit: int,
    all_: bool,
    detailed: bool,
) -> None:
    """List tasks, newest first."""
    filters: dict[str, Any] = {
        "statuses": [enums.TaskStatus.Value("TASK_STATUS_" + s.upper()) for s in statuses],
        "task_types": list(task_types),
        "priorities": [normalize_priority(p) for p in priorities],
        "since": since,
    }

    async def action(client: Client) -> list[msgs.Task]:
        return [t async for t in client.iter_tasks(limit=None if all_ else limit, **filters)]

    found = run(action)
    if detailed:
        emit(
            {"tasks": found},
            lambda: table(
                [
                    "ID",
                    "STATUS",
                    "PRIORITY",
                    "TYPE",
                    "PROGRESS",
                    "AGENTS",
                    "CREATED",
                    "RAN",
                    "RETRIES",
                    "REASON",
                    "DESCRIPTION",
                ],
                [
                    [
                        bare_id(t.name),
                        status_text(_status(t)),
                        _priority(t.priority),
                        t.task_type or t.agent_type,
                        _progress(t),
                        f"{t.subtasks_running}/{t.max_agents}",
                        when(t.create_time),
                        _ran(t),
                        t.retries or "",
                        short(_failure(t.failure) or t.status_reason, 40),
                        short(t.description, 40),
                    ]
                    for t in found
                ],
                empty="No tasks.",
            ),
        )
        return
    emit(
        {"tasks": found},
        lambda: table(
            ["ID", "STATUS", "PRIORITY", "TYPE", "PROGRESS", "CREATED", "DESCRIPTION"],
            [
                [
                    bare_id(t.name),
                    status_text(_status(t)),
                    _priority(t.priority),
                    t.task_type,
                    f"{t.progress * 100:.0f}%",
                    when(t.create_time),
                    short(t.description, 50),
                ]
                for t in found
            ],
            empty="No tasks.",
        ),
    )


@task.command()
@task_id_argument
@click.option(
    "--execution-plan", is_flag=True, help="Also show the plan (subtasks, dependencies, efficiency)."
)
@output_option
@handle_errors
def show(task_id: str, execution_plan: bool) -> None:
    """Show a task: status, reason, progress and subtasks."""
    response = run(lambda client: client.get_task(task_id, full=True))
    data = to_data(response)
    if not execution_plan:
        data.pop("plan", None)

    def text() -> str:
        parts = [key_values(_task_pairs(response.task))]
        if response.subtasks:
            parts.append("Subtasks:\n" + _subtask_table(list(response.subtasks)))
            if any(s.tool_calls for s in response.subtasks):
                parts.append("Tool calls:\n" + _tool_call_table(list(response.subtasks)))
        if execution_plan:
            parts.append(
                "Execution plan:\n"
                + (_plan_text(response.plan) if response.HasField("plan") else "(not planned yet)")
            )
            if response.task.review_rounds:
                parts.append(
                    f"Then up to {response.task.review_rounds} review round(s): a REVIEW step grades the "
                    "answer, and a REVISION step applies the changes it asks for."
                )
        if response.HasField("consensus"):
            parts.append("Consensus:\n" + _consensus_text(response.consensus))
        if response.HasField("review"):
            parts.append("Review:\n" + review_text(response.review))
        return "\n\n".join(parts)

    emit(data, text)


def _consensus_text(record: msgs.ConsensusRecord) -> str:
    """Outcome, candidates and votes of a consensus record."""
    outcome = enums.ConsensusOutcome.Name(record.outcome).removeprefix("CONSENSUS_OUTCOME_")
    strategy = enums.VotingStrategy.Name(record.strategy).removeprefix("VOTING_STRATEGY_").lower()
    lines = [
        key_values(
            [
                ("Outcome", outcome),
                ("Strategy", f"{strategy}, threshold {record.threshold:g}"),
                ("Rounds", str(record.rounds)),
                ("Agreement", f"{record.agreement:.0%}"),
                ("Winner", record.winning_candidate_id or "-"),
            ]
        )
    ]
    lines.append(
        table(
            ["CANDIDATE", "AGENT", "ANSWER"],
            [[c.id, bare_id(c.agent), short(c.content, 60)] for c in record.candidates],
            empty="No candidates yet.",
        )
    )
    lines.append(
        table(
            ["ROUND", "VOTER", "FOR", "CONFIDENCE", "WEIGHT", "RATIONALE"],
            [
                [
                    str(v.round),
                    bare_id(v.voter),
                    v.candidate_id,
                    f"{v.confidence:.2f}",
                    f"{v.weight:.2f}",
                    short(v.rationale, 40),
                ]
                for v in record.votes
            ],
            empty="No votes yet.",
        )
    )
    return "\n\n".join(lines)


@task.command()
@task_id_argument
@click.option("--reason", default="", show_default=False, help="Why, recorded with the task.")
@output_option
@handle_errors
def cancel(task_id: str, reason: str) -> None:
    """Cancel a task that is not finished (exit 5 if it is)."""
    cancelled = run(lambda client: client.cancel_task(task_id, reason))
    emit(cancelled, lambda: f"{bare_id(cancelled.name)} {status_text(_status(cancelled))}")


@task.command()
@task_id_argument
@click.option(
    "--artifacts",
    "artifacts_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    metavar="DIR",
    help="Also write the task's artifacts (files its steps produced) into DIR.",
)
@output_option
@handle_errors
def results(task_id: str, artifacts_dir: Path | None) -> None:
    """Show the result of a finished task (exit 5 while it runs): its output, the sources it cites, its usage.

    With --artifacts DIR, the files the task produced are written under DIR (names are checked: a
    name that is absolute or climbs out with .. is skipped, with a note on stderr).
    """
    result = run(lambda client: client.get_results(task_id))
    if artifacts_dir is not None:
        written = write_artifacts(result.artifacts, artifacts_dir)
        for name, why in written.skipped:
            click.echo(f"artifact {name!r} not written: {why}", err=True)
        click.echo(f"{len(written.files)} artifact(s) written to {artifacts_dir}", err=True)
    emit(result, lambda: _results_text(result))


@task.command("wait")
@task_id_argument
@click.option(
    "--timeout",
    "wait_timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Give up after this long (exit 9); no limit when unset.",
)
@click.option("--follow", is_flag=True, help="Print the model's text as it streams.")
@output_option
@handle_errors
def wait_(task_id: str, wait_timeout: float | None, follow: bool) -> None:
    """Wait until a task finishes, showing its progress on stderr.

    Progress is the steps done, the step running, and the tokens and cost so
    far (nothing with -o json or yaml). Exits 0 when it COMPLETED, 10 when it
    FAILED or was CANCELLED, and 9 when --timeout runs out first.
    """
    final = run(
        lambda client: with_progress(
            client, task_id, lambda: client.wait_task(task_id, timeout=wait_timeout), follow=follow
        )
    )
    emit(final, lambda: f"{bare_id(final.name)} {status_text(_status(final))}")
    _exit_for(final)


@task.command()
@task_id_argument
@click.option("--max-agents", type=MAX_AGENTS, default=None, help="Most agents at once for the new run.")
@click.option(
    "--timeout",
    "task_timeout",
    type=click.FloatRange(0, int(MAX_TIMEOUT), min_open=True),
    default=None,
    metavar="SECONDS",
    help="Wall-clock limit of the new run (default: the task's own).",
)
@output_option
@handle_errors
def retry(task_id: str, max_agents: int | None, task_timeout: float | None) -> None:
    """Run a FAILED or CANCELLED task again (completed subtasks are kept)."""
    retried = run(lambda client: client.retry_task(task_id, max_agents=max_agents, timeout=task_timeout))
    emit(retried, lambda: f"{bare_id(retried.name)} {status_text(_status(retried))}")


@task.command()
@task_id_argument
@priority_option("New priority: LOW, NORMAL (or MEDIUM), HIGH or CRITICAL.")
@click.option("--max-agents", type=MAX_AGENTS, default=None, help="New most agents at once.")
@output_option
@handle_errors
def update(task_id: str, priority: str | None, max_agents: int | None) -> None:
    """Change the priority or max agents of a task that is not finished."""
    if priority is None and max_agents is None:
        raise click.UsageError("give --priority and/or --max-agents")
    updated = run(
        lambda client: client.update_task(
            task_id, priority=normalize_priority(priority), max_agents=max_agents
        )
    )
    emit(updated, lambda: key_values(_task_pairs(updated)))


def recommended_types(plan: msgs.ExecutionPlan, types: list[Any]) -> list[Any]:
    """The agent types to run ``plan`` with: for each step, the types that can take it, model-backed ones
    that can run here first (offline types only when no model-backed type can take the step)."""

    def takes(t: Any, step: Any) -> bool:
        if step.agent_type:
            return bool(t.name == step.agent_type)
        caps = {*t.capabilities, t.name}
        return not step.capability or step.capability in caps or "*" in caps

    chosen: dict[str, Any] = {}
    for step in plan.subtasks:
        able = [t for t in types if takes(t, step) and not t.unavailable_reason]
        model = [t for t in able if t.backing != enums.AGENT_BACKING_OFFLINE]
        explicit = [t for t in model if step.agent_type or step.capability in {*t.capabilities, t.name}]
        for t in explicit or model or able:
            chosen.setdefault(t.name, t)
    return list(chosen.values())


@task.command()
@click.argument("target", metavar="DESCRIPTION_OR_ID")
@click.option("--recommend-agents", is_flag=True, help="Also list the agent types able to run the plan.")
@click.option("--type", "task_type", default=None, help="Task type of a draft description.")
@click.option("--max-agents", type=MAX_AGENTS, default=None, help="max_agents of a draft description.")
@click.option(
    "--metadata",
    multiple=True,
    type=Metadata(),
    help="A label KEY=VALUE, or a JSON object of several, of a draft description (repeatable).",
)
@click.option("--context", default=None, help="Background of a draft description.")
@click.option("--constraints", default=None, help="Rules of a draft description.")
@click.option("--agent-type", default=None, help="Agent type of a draft description.")
@output_option
@handle_errors
def analyze(
    target: str,
    recommend_agents: bool,
    task_type: str | None,
    max_agents: int | None,
    metadata: tuple[dict[str, str], ...],
    context: str | None,
    constraints: str | None,
    agent_type: str | None,
) -> None:
    """Plan a task without running it: complexity, agents, parallel efficiency.

    DESCRIPTION_OR_ID is either the id of an existing task (t..., tasks/t...)
    or the description of a draft task. A draft is planned as `maos task
    submit` with the same options would plan it: a planner plugin may choose
    tasks by their type, metadata, context or agent type.
    """
    is_id = bool(_TASK_ID.match(target.strip()))
    draft_options = (
        metadata or context is not None or constraints is not None or agent_type or task_type or max_agents
    )
    if is_id and draft_options:
        raise click.UsageError(
            "--type, --max-agents, --metadata, --context, --constraints and --agent-type "
            "describe a draft; an existing task is planned as it was submitted"
        )

    async def action(client: Client) -> tuple[msgs.ExecutionPlan, list[Any]]:
        if is_id:
            plan = await client.analyze_task(name=target)
        else:
            plan = await client.analyze_task(
                description=target,
                task_type=task_type or "",
                max_agents=max_agents or 0,
                metadata=merge_metadata(metadata),
                context=context or "",
                constraints=constraints or "",
                agent_type=agent_type or "",
            )
        types = await client.list_agent_types() if recommend_agents else []
        return plan, types

    plan, types = run(action)
    needed = sorted({p.capability for p in plan.subtasks if p.capability and p.capability != "*"})
    fits = recommended_types(plan, types)
    data = to_data(plan)
    if recommend_agents:
        data["recommended_agent_types"] = [t.name for t in fits]

    def text() -> str:
        out = _plan_text(plan)
        if recommend_agents:
            out += "\n\n" + key_values(
                [
                    ("Recommended agents", plan.recommended_agents),
                    ("Capabilities needed", ", ".join(needed) or "any"),
                    ("Agent types able to run it", ", ".join(t.name for t in fits) or "none known"),
                ]
            )
        return out

    emit(data, text)
