"""Webhook methods of :class:`agent_sdk.Client` (WebhookService), kept apart from the task methods.

Usage::

    async with Client("127.0.0.1:7100", token=key) as client:
        hook, secret = await client.create_webhook("https://example.com/maos",
                                                   events=["task.completed", "task.failed"])
        delivery = await client.test_webhook(hook.name)

Ids may be given bare (``wh1a2b...``) or as names (``webhooks/wh1a2b...``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any, cast

from google.protobuf import field_mask_pb2

from agent_sdk._common import paged
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from agent_sdk.proto.maos.v1 import webhook_service_pb2 as webhooks_pb
from agent_sdk.proto.maos.v1 import webhook_service_pb2_grpc as webhooks_grpc

if TYPE_CHECKING:
    from agent_sdk.client import Client

#: Items asked for per page when iterating (the server's largest page).
PAGE = 1000

__all__ = ["WebhookMethods", "webhook_name"]


def webhook_name(id_or_name: str) -> str:
    """``webhooks/{id}`` from a bare id or a name."""
    text = str(id_or_name).strip()
    return text if text.startswith("webhooks/") else f"webhooks/{text}"


class WebhookMethods:
    """The WebhookService calls of :class:`~agent_sdk.client.Client` (a mixin using the client's channel)."""

    channel: Any

    @property
    def webhook_service(self) -> Any:
        """The WebhookService stub (same defaults as the other services)."""
        if "_webhook_service" not in self.__dict__:
            from agent_sdk.client import _Service

            self.__dict__["_webhook_service"] = _Service(
                webhooks_grpc.WebhookServiceStub(self.channel),
                cast("Client", self),  # only Client mixes this in
            )
        return self.__dict__["_webhook_service"]

    async def create_webhook(
        self,
        url: str,
        *,
        events: Iterable[str] = (),
        secret: str = "",
        disabled: bool = False,
        webhook_id: str = "",
        request_id: str | None = None,
    ) -> tuple[msgs.Webhook, str]:
        """Register a webhook; returns it and its generated secret ("" when ``secret`` was given).

        ``events`` are names such as ``task.completed``; empty means every event.
        """
        response = await self.webhook_service.CreateWebhook(
            webhooks_pb.CreateWebhookRequest(
                webhook=msgs.Webhook(url=url, events=list(events), secret=secret, disabled=disabled),
                webhook_id=webhook_id,
                request_id=request_id or str(uuid.uuid4()),
            )
        )
        return response.webhook, response.secret

    async def get_webhook(self, id_or_name: str) -> msgs.Webhook:
        """One webhook (never its secret)."""
        response: webhooks_pb.GetWebhookResponse = await self.webhook_service.GetWebhook(
            webhooks_pb.GetWebhookRequest(name=webhook_name(id_or_name))
        )
        return response.webhook

    async def list_webhooks(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> webhooks_pb.ListWebhooksResponse:
        """One page of webhooks, oldest first."""
        response: webhooks_pb.ListWebhooksResponse = await self.webhook_service.ListWebhooks(
            webhooks_pb.ListWebhooksRequest(page_size=page_size, page_token=page_token)
        )
        return response

    def iter_webhooks(self, *, limit: int | None = None) -> AsyncIterator[msgs.Webhook]:
        """Every webhook you may see, oldest first, across pages (at most ``limit``)."""
        size = min(limit or PAGE, PAGE)
        return paged(lambda token: self.list_webhooks(page_size=size, page_token=token), "webhooks", limit)

    async def update_webhook(
        self,
        id_or_name: str,
        *,
        url: str | None = None,
        events: Iterable[str] | None = None,
        disabled: bool | None = None,
        secret: str | None = None,
        rotate_secret: bool = False,
    ) -> tuple[msgs.Webhook, str]:
        """Change what is given; ``rotate_secret`` generates a new secret (returned, with the webhook).

        Returns:
            The webhook and the generated secret ("" unless ``rotate_secret``).
        """
        webhook, paths = msgs.Webhook(name=webhook_name(id_or_name)), []
        if url is not None:
            webhook.url = url
            paths.append("url")
        if events is not None:
            webhook.events.extend(events)
            paths.append("events")
        if disabled is not None:
            webhook.disabled = disabled
            paths.append("disabled")
        if secret is not None or rotate_secret:
            webhook.secret = "" if rotate_secret else (secret or "")
            paths.append("secret")
        response = await self.webhook_service.UpdateWebhook(
            webhooks_pb.UpdateWebhookRequest(
                webhook=webhook, update_mask=field_mask_pb2.FieldMask(paths=paths)
            )
        )
        return response.webhook, response.secret

    async def delete_webhook(self, id_or_name: str) -> None:
        """Delete a webhook and its delivery log."""
        await self.webhook_service.DeleteWebhook(
            webhooks_pb.DeleteWebhookRequest(name=webhook_name(id_or_name))
        )

    async def test_webhook(
        self, id_or_name: str, *, timeout: float | None = None
    ) -> webhooks_pb.WebhookDelivery:
        """Send a test event now; the delivery after its first attempt."""
        response: webhooks_pb.TestWebhookResponse = await self.webhook_service.TestWebhook(
            webhooks_pb.TestWebhookRequest(name=webhook_name(id_or_name)), timeout=timeout
        )
        return response.delivery

    async def list_webhook_deliveries(
        self, id_or_name: str, *, page_size: int = 0, page_token: str = ""
    ) -> webhooks_pb.ListWebhookDeliveriesResponse:
        """One page of a webhook's deliveries, newest first."""
        response: webhooks_pb.ListWebhookDeliveriesResponse = (
            await self.webhook_service.ListWebhookDeliveries(
                webhooks_pb.ListWebhookDeliveriesRequest(
                    webhook=webhook_name(id_or_name), page_size=page_size, page_token=page_token
                )
            )
        )
        return response

    def iter_webhook_deliveries(
        self, id_or_name: str, *, limit: int | None = None
    ) -> AsyncIterator[webhooks_pb.WebhookDelivery]:
        """Every delivery of a webhook, newest first, across pages (at most ``limit``)."""
        size = min(limit or PAGE, PAGE)
        return paged(
            lambda token: self.list_webhook_deliveries(id_or_name, page_size=size, page_token=token),
            "deliveries",
            limit,
        )
