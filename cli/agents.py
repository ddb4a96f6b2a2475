"""``maos agent``: list, spawn and steer agents."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from agent_sdk.client import Client
from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from maos_cli._errors import handle_errors
from maos_cli._options import (
    AGENT_STATUSES,
    KeyValue,
    UpperChoice,
    agent_id_argument,
    output_option,
    run,
    split_csv,
)
from maos_cli._output import bare_id, emit, enum_label, key_values, short, status_text, table, when


def _status(agent: msgs.Agent) -> str:
    return enum_label(enums.AgentStatus, agent.status, "AGENT_STATUS_")


def _pairs(a: msgs.Agent) -> list[tuple[str, Any]]:
    u = a.usage
    return [
        ("ID", bare_id(a.name)),
        ("Type", a.agent_type),
        ("Status", status_text(_status(a))),
        ("Backing", _backing(a.backing)),
        ("Capabilities", ", ".join(a.capabilities)),
        ("Slots", f"{a.free_slots} free of {a.max_concurrency}" if a.max_concurrency else ""),
        ("Assignments", ", ".join(a.assignments)),
        ("Completed", a.completed_subtasks),
        ("Failed", a.failed_subtasks),
        ("Reliability", f"{a.reliability:.2f}"),
        ("Managed", "yes" if a.managed else "no"),
        ("Owner", a.owner),
        ("Host", f"{a.hostname} (pid {a.pid})" if a.hostname else ""),
        ("SDK", f"{a.language} {a.sdk_version}".strip()),
        ("Replica", a.replica),
        ("Labels", ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()))),
        ("Connected", when(a.connect_time)),
        ("Last heartbeat", when(a.last_heartbeat_time)),
        ("Disconnected", when(a.disconnect_time)),
        ("Usage", f"{u.input_tokens} input / {u.output_tokens} output tokens" if u.model_calls else ""),
    ]


#: Seconds ``kill --force`` waits for the agent to be gone before reporting what it is.
FORCE_WAIT = 10.0
_GONE = (enums.AGENT_STATUS_TERMINATED, enums.AGENT_STATUS_DISCONNECTED)


def _one(agent: msgs.Agent) -> None:
    emit(agent, lambda: f"{bare_id(agent.name)} {status_text(_status(agent))}")


@click.group()
def agent() -> None:
    """List, spawn and steer agents."""


@agent.command("list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=UpperChoice(AGENT_STATUSES),
    help="Only agents in this state (repeatable).",
)
@click.option("--type", "agent_types", multiple=True, help="Only agents of this type (repeatable).")
@click.option("--details", is_flag=True, help="Also show capabilities, host, assignments and heartbeats.")
@click.option("--include-terminated", is_flag=True, help="Also list TERMINATED agents.")
@output_option
@handle_errors
def list_(
    statuses: tuple[str, ...], agent_types: tuple[str, ...], details: bool, include_terminated: bool
) -> None:
    """List agents, connected ones first."""
    filters = {
        "statuses": [enums.AgentStatus.Value("AGENT_STATUS_" + s.upper()) for s in statuses],
        "agent_types": list(agent_types),
        "include_terminated": include_terminated,
    }

    async def action(client: Client) -> list[msgs.Agent]:
        return [a async for a in client.iter_agents(**filters)]

    found = run(action)

    def text() -> str:
        if not found:
            return "No agents."
        if details:
            return "\n\n".join(key_values(_pairs(a)) for a in found)
        return table(
            ["ID", "TYPE", "STATUS", "SLOTS", "RUNNING", "DONE", "FAILED", "MANAGED", "HEARTBEAT"],
            [
                [
                    bare_id(a.name),
                    a.agent_type,
                    status_text(_status(a)),
                    f"{a.free_slots}/{a.max_concurrency}",
                    len(a.assignments),
                    a.completed_subtasks,
                    a.failed_subtasks,
                    "yes" if a.managed else "no",
                    when(a.last_heartbeat_time),
                ]
                for a in found
            ],
        )

    emit({"agents": found}, text)


@agent.command()
@click.argument("agent_type", metavar="TYPE")
@click.option("--count", type=click.IntRange(min=1), default=1, help="How many processes to launch.")
@click.option("--capabilities", default=None, metavar="A,B", help="Override the type's capabilities.")
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=0),
    default=0,
    help="Assignments each runs at once (0: the type's default).",
)
@click.option("--label", "labels", multiple=True, type=KeyValue(), help="A label KEY=VALUE (repeatable).")
@output_option
@handle_errors
def spawn(
    agent_type: str,
    count: int,
    capabilities: str | None,
    max_concurrency: int,
    labels: tuple[tuple[str, str], ...],
) -> None:
    """Launch supervised agents of TYPE on the control plane's machine.

    They appear as STARTING until they connect; see `maos agent types`.
    """
    launched = run(
        lambda client: client.spawn_agents(
            agent_type,
            count,
            capabilities=split_csv(capabilities),
            max_concurrency=max_concurrency,
            labels=dict(labels),
        )
    )
    emit(
        {"agents": launched},
        lambda: table(
            ["ID", "TYPE", "STATUS", "PID"],
            [[bare_id(a.name), a.agent_type, status_text(_status(a)), a.pid or ""] for a in launched],
        ),
    )


@click.command()
@agent_id_argument
@click.option("--force", is_flag=True, help="End it at once and re-queue its work.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Time to finish running work (server default 30 s).",
)
@output_option
@handle_errors
def kill(agent_id: str, force: bool, grace: float | None) -> None:
    """Terminate an agent (`kill` and `terminate` are the same command).

    Drains it within --grace, then ends a supervised process; --force ends it
    at once and its work goes back to the queue.
    """

    async def action(client: Client) -> msgs.Agent:
        agent = await client.terminate_agent(agent_id, force=force, grace=grace)
        if not force:
            return agent  # DRAINING: it finishes its work within --grace first
        # --force: the agent was told to leave at once; report it once it is gone.
        deadline = asyncio.get_running_loop().time() + FORCE_WAIT
        while agent.status not in _GONE and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
            agent = await client.get_agent(agent_id)
        return agent

    _one(run(action))


agent.add_command(kill, "kill")
agent.add_command(kill, "terminate")


@agent.command()
@agent_id_argument
@click.option("--force", is_flag=True, help="End the old process at once and re-queue its work.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Time the old process has to finish its work (server default 30 s).",
)
@output_option
@handle_errors
def restart(agent_id: str, force: bool, grace: float | None) -> None:
    """Restart a supervised agent: end its process and start a new one of the same type.

    The old agent drains within --grace (its work is re-queued with --force)
    and the new process registers as a new agent, whose id is printed. Only
    agents this control plane launched (`maos start --agents`, `maos agent
    spawn`) can be restarted; others exit 5 saying why.
    """
    got = run(lambda client: client.restart_agent(agent_id, force=force, grace=grace))
    new = got.agent
    emit(
        got,
        lambda: (
            f"restarted {bare_id(got.previous.name)} as "
            f"{bare_id(new.name) if new.name else 'a new process'} "
            f"{status_text(_status(new))} (pid {new.pid})"
        ),
    )


@agent.command()
@agent_id_argument
@output_option
@handle_errors
def status(agent_id: str) -> None:
    """Show an agent: state, slots, assignments and track record."""
    found = run(lambda client: client.get_agent(agent_id))
    emit(found, lambda: key_values(_pairs(found)))


@agent.command()
@agent_id_argument
@output_option
@handle_errors
def pause(agent_id: str) -> None:
    """Stop sending new work to an agent (running work continues)."""
    _one(run(lambda client: client.pause_agent(agent_id)))


@agent.command()
@agent_id_argument
@output_option
@handle_errors
def resume(agent_id: str) -> None:
    """Let a paused agent take work again."""
    _one(run(lambda client: client.resume_agent(agent_id)))


@agent.command()
@agent_id_argument
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Time to finish running work (server default 30 s).",
)
@output_option
@handle_errors
def drain(agent_id: str, grace: float | None) -> None:
    """Let an agent finish its work, take no more, then leave."""
    _one(run(lambda client: client.drain_agent(agent_id, grace)))


@agent.command()
@output_option
@handle_errors
def types() -> None:
    """List the agent types the control plane knows."""
    report = run(lambda client: client.agent_types_report())
    known = list(report.agent_types)
    for problem in report.problems:
        click.echo(f"warning: skipped {problem}", err=True)
    blocked: dict[str, list[str]] = {}
    for t in known:
        if t.unavailable_reason:
            blocked.setdefault(t.unavailable_reason, []).append(t.name)
    for why, names in blocked.items():
        click.echo(f"note: {', '.join(names)} cannot run here: {why}", err=True)
    for t in known:
        for warning in t.warnings:
            click.echo(f"warning: {t.name}: {warning}", err=True)
    emit(
        {"agent_types": known, "problems": list(report.problems)},
        lambda: table(
            ["NAME", "BASE", "SOURCE", "BACKING", "SPAWNABLE", "CAPABILITIES", "DESCRIPTION"],
            [
                [
                    t.name,
                    t.base_type,
                    t.source,
                    _backing(t.backing),
                    "yes" if t.spawnable else "no",
                    short(", ".join(t.capabilities), 30),
                    short(t.description, 50),
                ]
                for t in known
            ],
            empty="No agent types.",
        ),
    )


def _backing(value: int) -> str:
    names: dict[int, str] = {enums.AGENT_BACKING_MODEL: "model", enums.AGENT_BACKING_OFFLINE: "offline"}
    return names.get(value, "")
