"""``maos webhook ...``: HTTP endpoints that receive signed task events, and their delivery log."""

from __future__ import annotations

from typing import Any

import click

from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import webhook_service_pb2 as webhooks_pb
from maos_cli._errors import EXIT_GENERIC, CliError, handle_errors
from maos_cli._options import output_option, run, split_csv
from maos_cli._output import (
    bare_id,
    duration_text,
    emit,
    enum_label,
    key_values,
    message,
    output_format,
    short,
    table,
    when,
)

EVENTS_HELP = (
    "Comma-separated event names: task.submitted, task.started, task.completed, task.failed, "
    "task.cancelled; '*' for all of them."
)


def _events(w: msgs.Webhook) -> str:
    return ",".join(w.events) or "*"


def _state(d: webhooks_pb.WebhookDelivery) -> str:
    return enum_label(webhooks_pb.WebhookDeliveryState, d.state, "WEBHOOK_DELIVERY_STATE_")


def _details(w: msgs.Webhook) -> str:
    return key_values(
        [
            ("ID", bare_id(w.name)),
            ("URL", w.url),
            ("Events", _events(w)),
            ("State", "disabled" if w.disabled else "enabled"),
            ("Owner", w.owner),
            ("Created", when(w.create_time)),
            ("Updated", when(w.update_time)),
        ]
    )


def _show_secret(secret: str) -> None:
    if secret:
        message(f"Signing secret (shown only now; store it to verify MAOS-Signature): {secret}")


def _outcome(d: webhooks_pb.WebhookDelivery) -> str:
    latency = f" in {duration_text(d.latency)}" if d.HasField("latency") else ""
    if d.succeeded:
        return f"delivered {d.event}: HTTP {d.http_status}{latency} (delivery {d.id})"
    retry = f"; next attempt at {when(d.next_attempt_time)}" if d.HasField("next_attempt_time") else ""
    error = d.error or f"HTTP {d.http_status}"
    return f"{d.event} not delivered: {error}{latency}{retry} (delivery {d.id})"


@click.group()
def webhook() -> None:
    """Webhooks: HTTP endpoints that receive signed events of your tasks (see docs/webhooks.md)."""


@webhook.command()
@click.option("--url", required=True, help="The http(s) URL events are POSTed to.")
@click.option("--events", required=True, help=EVENTS_HELP)
@click.option(
    "--secret",
    default="",
    show_default=False,
    help="The signing secret (16-256 characters); generated and printed once when not given.",
)
@click.option(
    "--id", "webhook_id", default="", help="An id of your choosing (a-z, 0-9, '-'); generated if empty."
)
@click.option("--disabled", is_flag=True, help="Create it disabled (no deliveries until enabled).")
@output_option
@handle_errors
def create(url: str, events: str, secret: str, webhook_id: str, disabled: bool) -> None:
    """Register a webhook (prints its id; a generated secret goes to stderr, once; -o json has both)."""
    hook, generated = run(
        lambda client: client.create_webhook(
            url, events=split_csv(events), secret=secret, disabled=disabled, webhook_id=webhook_id
        )
    )
    emit({"webhook": hook, "secret": generated}, lambda: bare_id(hook.name))
    if generated and output_format() == "table":  # -o json/yaml carry it in the data
        _show_secret(generated)


@webhook.command(name="list")
@click.option("--limit", type=click.IntRange(min=1), default=100, help="At most this many, oldest first.")
@output_option
@handle_errors
def list_(limit: int) -> None:
    """List your webhooks (every owner's with webhook:view-all)."""

    async def fetch(client: Any) -> list[msgs.Webhook]:
        return [webhook async for webhook in client.iter_webhooks(limit=limit)]

    items = run(fetch)
    emit(
        {"webhooks": items},
        lambda: table(
            ["ID", "STATE", "EVENTS", "OWNER", "CREATED", "URL"],
            [
                [
                    bare_id(w.name),
                    "disabled" if w.disabled else "enabled",
                    short(_events(w), 40),
                    w.owner,
                    when(w.create_time),
                    w.url,
                ]
                for w in items
            ],
            empty="No webhooks.",
        ),
    )


@webhook.command()
@click.argument("webhook_id", metavar="ID")
@output_option
@handle_errors
def show(webhook_id: str) -> None:
    """Show a webhook (never its secret)."""
    hook = run(lambda client: client.get_webhook(webhook_id))
    emit(hook, lambda: _details(hook))


@webhook.command()
@click.argument("webhook_id", metavar="ID")
@click.option("--url", default=None, help="A new URL.")
@click.option("--events", default=None, help=EVENTS_HELP)
@click.option("--enable/--disable", "enabled", default=None, help="Resume or stop deliveries.")
@click.option("--secret", default=None, help="A new signing secret of your choosing.")
@click.option("--rotate-secret", is_flag=True, help="Generate a new signing secret (printed once).")
@output_option
@handle_errors
def update(
    webhook_id: str,
    url: str | None,
    events: str | None,
    enabled: bool | None,
    secret: str | None,
    rotate_secret: bool,
) -> None:
    """Change a webhook's URL, events, state or secret (retries are signed with the new secret)."""
    if secret is not None and rotate_secret:
        raise click.UsageError("give --secret or --rotate-secret, not both")
    if url is None and events is None and enabled is None and secret is None and not rotate_secret:
        raise click.UsageError(
            "nothing to change: give --url, --events, --enable/--disable, --secret or --rotate-secret"
        )
    hook, generated = run(
        lambda client: client.update_webhook(
            webhook_id,
            url=url,
            events=None if events is None else split_csv(events),
            disabled=None if enabled is None else not enabled,
            secret=secret,
            rotate_secret=rotate_secret,
        )
    )
    emit({"webhook": hook, "secret": generated}, lambda: _details(hook))
    if generated and output_format() == "table":  # -o json/yaml carry it in the data
        _show_secret(generated)


@webhook.command()
@click.argument("webhook_id", metavar="ID")
@handle_errors
def delete(webhook_id: str) -> None:
    """Delete a webhook and its delivery log."""
    run(lambda client: client.delete_webhook(webhook_id))
    message(f"deleted webhooks/{bare_id(webhook_id)}")


@webhook.command()
@click.argument("webhook_id", metavar="ID")
@output_option
@handle_errors
def test(webhook_id: str) -> None:
    """Send a webhook.test event now and show the outcome (exit 1 if it was not delivered; it is retried)."""
    delivery = run(lambda client: client.test_webhook(webhook_id, timeout=max(client.timeout, 70.0)))
    emit(delivery, lambda: _outcome(delivery))
    if not delivery.succeeded:
        raise CliError(_outcome(delivery), EXIT_GENERIC)


@webhook.command()
@click.argument("webhook_id", metavar="ID")
@click.option("--limit", type=click.IntRange(min=1), default=50, help="At most this many, newest first.")
@output_option
@handle_errors
def deliveries(webhook_id: str, limit: int) -> None:
    """The delivery log: event, status, attempts, HTTP status, latency and next retry, newest first."""

    async def fetch(client: Any) -> list[webhooks_pb.WebhookDelivery]:
        return [delivery async for delivery in client.iter_webhook_deliveries(webhook_id, limit=limit)]

    items = run(fetch)
    emit(
        {"deliveries": items},
        lambda: table(
            [
                "DELIVERY",
                "EVENT",
                "STATUS",
                "ATTEMPTS",
                "HTTP",
                "LATENCY",
                "LAST ATTEMPT",
                "NEXT RETRY",
                "TASK",
                "ERROR",
            ],
            [
                [
                    d.id,
                    d.event,
                    _state(d),
                    d.attempt,
                    d.http_status or "",
                    duration_text(d.latency) if d.HasField("latency") else "",
                    when(d.time),
                    when(d.next_attempt_time) if d.HasField("next_attempt_time") else "",
                    bare_id(d.task) if d.task else "",
                    short(d.error, 50),
                ]
                for d in items
            ],
            empty="No deliveries.",
        ),
    )
