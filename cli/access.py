"""``maos user``, ``maos role``, ``maos api-key`` and ``maos audit``: access control from the CLI."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from agent_sdk.client import Client
from agent_sdk.errors import NotFoundError
from maos_cli._errors import handle_errors
from maos_cli._options import Duration, Since, output_option, run, split_csv
from maos_cli._output import bare_id, emit, message, table, when
from maos_common import api_keys as keys


@click.group()
def user() -> None:
    """Create, list, update and delete users."""


@user.command("create")
@click.argument("email")
@click.option("--role", "roles", multiple=True, help="Role name (repeatable or comma-separated).")
@output_option
@handle_errors
def user_create(email: str, roles: tuple[str, ...]) -> None:
    """Create a user with roles (viewer, developer, admin, agent or custom)."""
    u = run(lambda c: c.create_user(email, split_csv(roles)))
    emit(
        u, lambda: f"created {u.name} ({u.email}) with roles {', '.join(bare_id(r) for r in u.roles) or '-'}"
    )


@user.command("list")
@output_option
@handle_errors
def user_list() -> None:
    """List users."""
    users = run(lambda c: c.list_users())
    emit(
        users,
        lambda: table(
            ["NAME", "EMAIL", "ROLES", "DISABLED", "CREATED"],
            [
                (
                    bare_id(u.name),
                    u.email,
                    ",".join(bare_id(r) for r in u.roles),
                    "yes" if u.disabled else "no",
                    when(u.create_time),
                )
                for u in users
            ],
            "no users",
        ),
    )


async def _user_name(client: Client, email_or_id: str) -> str:
    """``users/ID`` of a user given by email, id or name."""
    if "@" not in email_or_id:
        return email_or_id if email_or_id.startswith("users/") else f"users/{email_or_id}"
    for u in await client.list_users():
        if u.email.lower() == email_or_id.lower():
            return u.name
    raise NotFoundError(f"no user has the email {email_or_id}", reason="ERROR_REASON_USER_NOT_FOUND")


def _user_text(u: Any) -> str:
    return (
        f"{u.name} ({u.email}): roles {', '.join(bare_id(r) for r in u.roles) or '-'}"
        f"{', disabled' if u.disabled else ''}"
    )


@user.command("update")
@click.argument("email_or_id", metavar="EMAIL_OR_ID")
@click.option(
    "--role",
    "roles",
    multiple=True,
    help="The user's roles from now on, replacing the current ones (repeatable or comma-separated).",
)
@click.option(
    "--disable/--enable",
    "disabled",
    default=None,
    help="Refuse (or accept again) every API key of the user from the next call on.",
)
@output_option
@handle_errors
def user_update(email_or_id: str, roles: tuple[str, ...], disabled: bool | None) -> None:
    """Change a user's roles, or disable or enable it (admin; not your own user)."""
    if not roles and disabled is None:
        raise click.UsageError("nothing to change: give --role, --disable or --enable")

    async def update(c: Client) -> Any:
        return await c.update_user(
            await _user_name(c, email_or_id), roles=split_csv(roles) if roles else None, disabled=disabled
        )

    u = run(update)
    emit(u, lambda: _user_text(u))


@user.command("delete")
@click.argument("email_or_id", metavar="EMAIL_OR_ID")
@handle_errors
def user_delete(email_or_id: str) -> None:
    """Delete a user and revoke its API keys (admin; not the built-in users, not yourself)."""

    async def delete(c: Client) -> str:
        name = await _user_name(c, email_or_id)
        await c.delete_user(name)
        return name

    message(f"deleted {run(delete)}; its API keys are revoked")


@click.group()
def role() -> None:
    """Create, update, list and delete roles."""


def _role_text(r: Any) -> str:
    return f"{r.name}: {', '.join(r.permissions) or '-'}"


@role.command("create")
@click.argument("name")
@click.option("--permissions", required=True, help='Comma-separated, e.g. "task:submit,task:view" or "*".')
@click.option("--description", default="", help="What the role is for.")
@output_option
@handle_errors
def role_create(name: str, permissions: str, description: str) -> None:
    """Create a custom role."""
    r = run(lambda c: c.create_role(name, split_csv(permissions), description))
    emit(r, lambda: _role_text(r))


@role.command("update")
@click.argument("name")
@click.option("--permissions", default=None, help="The new comma-separated permissions.")
@click.option("--description", default=None, help="The new description.")
@output_option
@handle_errors
def role_update(name: str, permissions: str | None, description: str | None) -> None:
    """Change a custom role."""
    perms = split_csv(permissions) if permissions is not None else None
    r = run(lambda c: c.update_role(name, perms, description))
    emit(r, lambda: _role_text(r))


@role.command("list")
@output_option
@handle_errors
def role_list() -> None:
    """List roles, built-in ones included."""
    roles = run(lambda c: c.list_roles())
    emit(
        roles,
        lambda: table(
            ["NAME", "BUILTIN", "PERMISSIONS"],
            [(bare_id(r.name), "yes" if r.builtin else "no", ",".join(r.permissions)) for r in roles],
        ),
    )


@role.command("delete")
@click.argument("name")
@handle_errors
def role_delete(name: str) -> None:
    """Delete a custom role; refused while users hold it (`maos user update` takes it away)."""
    run(lambda c: c.delete_role(name))
    message(f"deleted roles/{bare_id(name)}")


@click.group("api-key")
def api_key() -> None:
    """Create, list, revoke and rotate API keys."""


@api_key.command("create")
@click.option("--name", default="", help="A label for the key.")
@click.option(
    "--permissions",
    default="",
    help="Comma-separated subset of your key's permissions (default: all; a limited key must list them).",
)
@click.option(
    "--expires", type=Duration(), default=None, help="Lifetime, e.g. 30d (default 90d, at most 365d)."
)
@click.option("--user", default="", help="Create it for another user (admin).")
@output_option
@handle_errors
def api_key_create(name: str, permissions: str, expires: float | None, user: str) -> None:
    """Create an API key; its secret is printed once."""
    response = run(lambda c: c.create_api_key(name, split_csv(permissions), expires, user))
    emit(
        {"api_key": response.api_key, "secret": response.secret},
        lambda: (
            f"{response.api_key.name} (expires {when(response.api_key.expire_time)})\n{response.secret}\n"
            "Store the secret now: it is not shown again."
        ),
    )


@api_key.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked keys.")
@click.option("--user", default="", help="Only this user's keys (admin for others), e.g. joined-agents.")
@output_option
@handle_errors
def api_key_list(include_revoked: bool, user: str) -> None:
    """List API keys (never secrets)."""
    found = run(lambda c: c.list_api_keys(user=user, include_revoked=include_revoked))
    emit(
        found,
        lambda: table(
            ["ID", "NAME", "USER", "EXPIRES", "LAST USED", "REVOKED"],
            [
                (
                    bare_id(k.name),
                    k.display_name,
                    bare_id(k.user),
                    when(k.expire_time),
                    when(k.last_used_time) if k.HasField("last_used_time") else "-",
                    when(k.revoke_time) if k.HasField("revoke_time") else "-",
                )
                for k in found
            ],
            "no API keys",
        ),
    )


def _key_id(key_id: str) -> str:
    """The key id of ID, or of a whole key pasted instead (derived locally: the secret is never sent).

    A malformed whole key is a usage error whose message does not repeat it.
    """
    if not key_id.removeprefix("apiKeys/").startswith(keys.PREFIX):
        return key_id
    derived = keys.parse(key_id.removeprefix("apiKeys/"))
    if derived is None:
        raise click.UsageError(
            "that looks like an API key's secret, not its id, and it is malformed; give the "
            "key's ID (`maos api-key list` shows them)"
        )
    click.echo(f"note: using the key's id {derived}; the secret you gave is not sent", err=True)
    return derived


@api_key.command("revoke")
@click.argument("key_id", metavar="ID")
@output_option
@handle_errors
def api_key_revoke(key_id: str) -> None:
    """Revoke a key; the next call made with it is refused.

    ID is the key's id (`maos api-key list`); given the whole key, its id is used and the key is not sent.
    """
    key_id = _key_id(key_id)
    k = run(lambda c: c.revoke_api_key(key_id))
    emit(k, lambda: f"revoked {k.name}")


@api_key.command("rotate")
@click.argument("key_id", metavar="ID")
@click.option(
    "--overlap", type=Duration(), default=None, help="How long the old secret keeps working (default 24h)."
)
@output_option
@handle_errors
def api_key_rotate(key_id: str, overlap: float | None) -> None:
    """Issue a new secret for a key; printed once.

    ID is the key's id (`maos api-key list`); given the whole key, its id is used and the key is not sent.
    """
    key_id = _key_id(key_id)
    response = run(lambda c: c.rotate_api_key(key_id, overlap))
    emit(
        {"api_key": response.api_key, "secret": response.secret},
        lambda: (
            f"{response.api_key.name}: old secret works until {when(response.old_secret_expire_time)}\n"
            f"{response.secret}"
        ),
    )


@click.group()
def audit() -> None:
    """Read the audit log."""


@audit.command("logs")
@click.option("--since", type=Since(), default=None, help="Only records after this time (1h, 7d, ISO).")
@click.option("--user", "principal", default="", help="Only this principal (users/NAME or NAME).")
@click.option("--action", default="", help='Only methods containing this text ("SubmitTask", "Cancel").')
@click.option("--limit", type=click.IntRange(1, 1000), default=100, help="Most records.")
@output_option
@handle_errors
def audit_logs(since: datetime | None, principal: str, action: str, limit: int) -> None:
    """Audit records, newest first."""
    if principal and "/" not in principal:
        principal = f"users/{principal}"
    records = run(
        lambda c: c.list_audit_records(since=since, principal=principal, action=action, page_size=limit)
    )
    emit(
        records,
        lambda: table(
            ["TIME", "PRINCIPAL", "METHOD", "RESOURCE", "DECISION", "CODE"],
            [
                (
                    when(r.time),
                    r.principal or "-",
                    r.method.rsplit("/", 1)[-1],
                    r.resource or "-",
                    "DENY" if r.decision == 2 else "ALLOW",
                    r.status_code,
                )
                for r in records
            ],
            "no audit records",
        ),
    )


@audit.command("report")
@click.option(
    "--output",
    "output_file",
    type=click.Path(dir_okay=False, writable=True),
    required=True,
    help="File to write; .json, .csv or .md chooses the format unless --format is given.",
)
@click.option(
    "--timeframe",
    type=Since(),
    default="24h",
    show_default=True,
    help="How far back (1h, 7d, 30d, or an ISO time).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv", "markdown"]),
    default=None,
    help="Report format (default: from the file name).",
)
@handle_errors
def audit_report(output_file: str, timeframe: datetime, fmt: str | None) -> None:
    """Write an audit report (summary and every record) for a timeframe to a file."""
    fmt = fmt or {".json": "json", ".csv": "csv", ".md": "markdown"}.get(Path(output_file).suffix.lower())
    if fmt is None:
        raise click.UsageError("give --format, or a file name ending in .json, .csv or .md")
    records = run(lambda c: c.all_audit_records(since=timeframe))
    rows = [
        {
            "time": when(r.time),
            "principal": r.principal,
            "key_id": r.key_id,
            "peer": r.peer,
            "method": r.method,
            "resource": r.resource,
            "decision": "DENY" if r.decision == 2 else "ALLOW",
            "status_code": r.status_code,
            "request_id": r.request_id,
            "reason": r.reason,
        }
        for r in records
    ]
    Path(output_file).write_text(render_report(rows, timeframe, fmt))
    click.echo(f"wrote {len(rows)} audit records to {output_file} ({fmt})", err=True)


def render_report(rows: list[dict[str, str]], since: datetime, fmt: str) -> str:
    """The report text: JSON (summary and records), CSV (records) or Markdown (summary and denials)."""
    summary: dict[str, Any] = {
        "since": since.isoformat(),
        "records": len(rows),
        "denied": sum(1 for r in rows if r["decision"] == "DENY"),
        "by_principal": dict(Counter(r["principal"] or "(unauthenticated)" for r in rows).most_common()),
        "by_method": dict(Counter(r["method"].rsplit("/", 1)[-1] for r in rows).most_common()),
    }
    if fmt == "json":
        return json.dumps({"summary": summary, "records": rows}, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]) if rows else ["time"])
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    lines = [
        f"# Audit report since {summary['since']}",
        "",
        f"{summary['records']} records, {summary['denied']} denied.",
        "",
        "| principal | calls |",
        "|---|---|",
    ]
    lines += [f"| {who} | {n} |" for who, n in summary["by_principal"].items()]
    lines += ["", "| method | calls |", "|---|---|"]
    lines += [f"| {method} | {n} |" for method, n in summary["by_method"].items()]
    lines += ["", "## Denied calls", "", "| time | principal | method | code |", "|---|---|---|---|"]
    lines += [
        f"| {r['time']} | {r['principal'] or '-'} | {r['method']} | {r['status_code']} |"
        for r in rows
        if r["decision"] == "DENY"
    ]
    return "\n".join(lines) + "\n"


__all__ = ["api_key", "audit", "message", "role", "user"]
