"""The options of a task definition (``maos task submit``'s), shared by ``batch add-task`` and ``template create``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from agent_sdk.client import build_task
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from maos_cli._options import Duration, KeyValue, normalize_priority, priority_option, split_csv
from maos_common.limits import (
    MAX_BACKOFF,
    MAX_BACKOFF_MULTIPLIER,
    MAX_INITIAL_BACKOFF,
    MAX_RETRIES,
    MAX_REVIEW_ROUNDS,
    MAX_TIMEOUT,
)

#: The keyword names :func:`task_options` adds to a command, and their flags.
FLAGS = {
    "task_type": "--type",
    "priority": "--priority",
    "max_agents": "--max-agents",
    "depends_on": "--depends-on",
    "require_consensus": "--require-consensus",
    "consensus_threshold": "--consensus-threshold",
    "task_timeout": "--timeout",
    "context": "--context",
    "constraints": "--constraints",
    "metadata": "--metadata",
    "max_retries": "--max-retries",
    "initial_backoff": "--retry-backoff",
    "backoff_multiplier": "--retry-multiplier",
    "max_backoff": "--retry-max-backoff",
    "agent_type": "--agent-type",
    "review_rounds": "--review-rounds",
    "approve_plan": "--approve-plan",
}


def task_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options of ``maos task submit`` that define a task (not --wait, --request-id)."""
    decorators = [
        click.option(
            "--type", "task_type", default=None, help="research, coding, analysis, mixed or an agent type."
        ),
        priority_option("LOW, NORMAL (or MEDIUM), HIGH or CRITICAL; default NORMAL."),
        click.option(
            "--max-agents",
            type=click.IntRange(min=1),
            default=None,
            help="Most agents working on the task at once (default: tasks.default_max_agents).",
        ),
        click.option(
            "--depends-on",
            multiple=True,
            metavar="ID[,ID...]",
            help="Tasks that must complete first (repeatable and/or comma-separated).",
        ),
        click.option("--require-consensus", is_flag=True, help="Let several agents decide by vote."),
        click.option(
            "--consensus-threshold",
            type=click.FloatRange(0, 1, min_open=True),
            default=None,
            help="Share of votes the winner needs (default 0.5).",
        ),
        click.option(
            "--timeout",
            "task_timeout",
            type=click.FloatRange(0, int(MAX_TIMEOUT), min_open=True),
            default=None,
            metavar="SECONDS",
            help="Wall-clock limit of the task (no limit when unset).",
        ),
        click.option("--context", default=None, help="Background every agent sees."),
        click.option("--constraints", default=None, help="Rules the result must follow."),
        click.option("--metadata", multiple=True, type=KeyValue(), help="A label KEY=VALUE (repeatable)."),
        click.option(
            "--max-retries",
            type=click.IntRange(0, MAX_RETRIES),
            default=None,
            help="Retries of each failed subtask (default: tasks.default_max_retries).",
        ),
        click.option(
            "--retry-backoff",
            "initial_backoff",
            type=Duration(max_seconds=MAX_INITIAL_BACKOFF),
            default=None,
            help="Delay before the first retry, e.g. 2s (default: tasks.default_initial_backoff).",
        ),
        click.option(
            "--retry-multiplier",
            "backoff_multiplier",
            type=click.FloatRange(1, int(MAX_BACKOFF_MULTIPLIER)),
            default=None,
            help="Each retry waits this many times longer than the previous one (default 2).",
        ),
        click.option(
            "--retry-max-backoff",
            "max_backoff",
            type=Duration(max_seconds=MAX_BACKOFF),
            default=None,
            help="Longest delay between retries, e.g. 1m (default: tasks.default_max_backoff).",
        ),
        click.option("--agent-type", default=None, help="Run every subtask on agents of this type."),
        click.option(
            "--review-rounds",
            type=click.IntRange(0, MAX_REVIEW_ROUNDS),
            default=None,
            metavar="N",
            help=f"Rounds of review and revision of the answer (0-{MAX_REVIEW_ROUNDS}; default 0).",
        ),
        click.option("--approve-plan", is_flag=True, help="Wait for `maos task approve ID` once planned."),
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


def given(options: dict[str, Any]) -> list[str]:
    """The task options set on the command line, as their flags (for "not with --from-task")."""
    return [flag for name, flag in FLAGS.items() if options.get(name) not in (None, (), False)]


def pop_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the :func:`task_options` values out of a command's keyword arguments."""
    return {name: kwargs.pop(name) for name in FLAGS}


def draft(description: str, options: dict[str, Any]) -> msgs.Task:
    """The Task message of ``description`` and the :func:`task_options` values."""
    return build_task(
        description,
        task_type=options["task_type"] or "",
        priority=normalize_priority(options["priority"]),
        max_agents=options["max_agents"] or 0,
        depends_on=split_csv(options["depends_on"]),
        require_consensus=options["require_consensus"],
        consensus_threshold=options["consensus_threshold"],
        timeout=options["task_timeout"],
        context=options["context"] or "",
        constraints=options["constraints"] or "",
        metadata=dict(options["metadata"]),
        max_retries=options["max_retries"],
        agent_type=options["agent_type"] or "",
        initial_backoff=options["initial_backoff"],
        backoff_multiplier=options["backoff_multiplier"],
        max_backoff=options["max_backoff"],
        review_rounds=options["review_rounds"] or 0,
        approve_plan=options["approve_plan"],
    )
