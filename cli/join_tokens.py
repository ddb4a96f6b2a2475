"""``maos join-token``: tokens that let new agents join (create, list, revoke)."""

from __future__ import annotations

import time
from typing import Any

import click

from maos_cli._errors import handle_errors
from maos_cli._options import Duration, output_option, run, split_csv
from maos_cli._output import bare_id, emit, table, when
from maos_common.limits import MAX_JOIN_TOKEN_USES as MAX_USES


@click.group("join-token")
def join_token() -> None:
    """Create, list and revoke agent join tokens.

    An agent started with `maos-agent run --join-token ID.SECRET` (or
    MAOS_JOIN_TOKEN) exchanges the token for a credential of its own at its
    first registration and reconnects with that credential.
    """


def _state(t: Any) -> str:
    if t.HasField("revoke_time"):
        return "revoked"
    if t.expire_time.seconds <= time.time():
        return "expired"
    if t.max_uses and t.uses >= t.max_uses:
        return "used up"
    return "valid"


def _uses(t: Any) -> str:
    return f"{t.uses}/{t.max_uses}" if t.max_uses else f"{t.uses}/unlimited"


@join_token.command("create")
@click.option(
    "--agent-types", default="", metavar="TYPE,...", help="Agent types it may join as (default: any)."
)
@click.option(
    "--uses",
    "max_uses",
    type=click.IntRange(0, MAX_USES),
    default=0,
    help="How many agents may join with it (0: unlimited).",
)
@click.option("--ttl", type=Duration(), default="24h", help="Lifetime, e.g. 1h or 7d (at most 30d).")
@output_option
@handle_errors
def join_token_create(agent_types: str, max_uses: int, ttl: float) -> None:
    """Create a join token; it is printed once."""
    response = run(lambda c: c.create_join_token(split_csv(agent_types), max_uses, ttl))
    t = response.join_token
    emit(
        {"join_token": t, "token": response.token},
        lambda: (
            f"{t.name}: agent types {', '.join(t.agent_types) or 'any'}, uses {_uses(t)}, "
            f"expires {when(t.expire_time)}\n{response.token}\n"
            "Store the token now: it is not shown again."
        ),
    )


@join_token.command("list")
@output_option
@handle_errors
def join_token_list() -> None:
    """List join tokens (never secrets), revoked and expired ones included."""
    found = run(lambda c: c.list_join_tokens())
    emit(
        found,
        lambda: table(
            ["ID", "AGENT TYPES", "USES", "EXPIRES", "STATE", "CREATED"],
            [
                (
                    bare_id(t.name),
                    ",".join(t.agent_types) or "any",
                    _uses(t),
                    when(t.expire_time),
                    _state(t),
                    when(t.create_time),
                )
                for t in found
            ],
            "no join tokens",
        ),
    )


@join_token.command("revoke")
@click.argument("token_id", metavar="ID")
@output_option
@handle_errors
def join_token_revoke(token_id: str) -> None:
    """Revoke a join token: no agent can join with it any more (agents that joined keep running).

    ID is the part before the '.'; given the whole token, only that part is sent.
    """
    if "." in token_id:
        token_id = token_id.split(".", 1)[0]
        click.echo(
            f"note: using the token's id {bare_id(token_id)}; its secret (after the '.') is not sent",
            err=True,
        )
    t = run(lambda c: c.revoke_join_token(token_id))
    emit(t, lambda: f"revoked {t.name}")


__all__ = ["join_token"]
