"""maos.v1.WebhookService: proto <-> :class:`controlplane.webhooks.service.Webhooks`."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from agent_sdk.proto.maos.v1 import enums_pb2, messages_pb2
from agent_sdk.proto.maos.v1 import webhook_service_pb2 as pb
from agent_sdk.proto.maos.v1 import webhook_service_pb2_grpc as pb_grpc
from controlplane.access.permissions import ADMIN, VIEW_ALL_TASKS, VIEW_ALL_WEBHOOKS
from controlplane.api import convert
from controlplane.api.context import caller_may, current_principal
from controlplane.api.paging import PageTokens, page_size
from controlplane.errors import InvalidArgument
from controlplane.webhooks.events import EVENT_NAMES
from controlplane.webhooks.records import FAILED, PENDING, SUCCEEDED, DeliveryRecord, WebhookRecord
from controlplane.webhooks.service import Actor, Changes, Webhooks

_STATES = {
    PENDING: pb.WEBHOOK_DELIVERY_STATE_PENDING,
    SUCCEEDED: pb.WEBHOOK_DELIVERY_STATE_SUCCEEDED,
    FAILED: pb.WEBHOOK_DELIVERY_STATE_FAILED,
}
#: ``Webhook.event_types`` (the older, coarser field) -> event names.
_EVENT_TYPES = {
    enums_pb2.EVENT_TYPE_TASK_SUBMITTED: ("task.submitted",),
    enums_pb2.EVENT_TYPE_TASK_STATUS_CHANGED: EVENT_NAMES[1:],
}


def actor() -> Actor:
    """The calling principal and its wider permissions."""
    return Actor(
        principal=current_principal(),
        views_all_webhooks=caller_may(VIEW_ALL_WEBHOOKS),
        manages_all_webhooks=caller_may(ADMIN),
        views_all_tasks=caller_may(VIEW_ALL_TASKS),
    )


def webhook_to_pb(r: WebhookRecord) -> messages_pb2.Webhook:
    """The proto of a webhook (never its secret)."""
    return messages_pb2.Webhook(
        name=f"webhooks/{r.id}",
        url=r.url,
        events=r.events,
        disabled=r.disabled,
        create_time=convert.timestamp(r.create_time),
        update_time=convert.timestamp(r.update_time),
        owner=r.owner,
    )


def delivery_to_pb(r: DeliveryRecord) -> pb.WebhookDelivery:
    """The proto of a delivery."""
    return pb.WebhookDelivery(
        id=r.id,
        event_id=r.event_id,
        time=convert.timestamp(r.last_attempt_time),
        http_status=r.http_status,
        error=r.error,
        attempt=r.attempts,
        succeeded=r.status == SUCCEEDED,
        event=r.event,
        state=_STATES[r.status],
        latency=convert.duration(r.latency),
        task=f"tasks/{r.task_id}" if r.task_id else "",
        next_attempt_time=convert.timestamp(r.next_attempt_time) if r.status == PENDING else None,
        create_time=convert.timestamp(r.create_time),
        webhook=f"webhooks/{r.webhook_id}",
    )


def event_names(w: messages_pb2.Webhook, field: str = "webhook.events") -> list[str]:
    """``events``, or the names ``event_types`` stands for."""
    if w.events:
        return list(w.events)
    names: list[str] = []
    for value in w.event_types:
        if value not in _EVENT_TYPES:
            label = enums_pb2.EventType.Name(value) if value in enums_pb2.EventType.values() else str(value)
            raise InvalidArgument(
                f"webhook.event_types: {label} is not delivered by webhooks; use webhook.events "
                f"({', '.join(EVENT_NAMES)})",
                field="webhook.event_types",
            )
        names += _EVENT_TYPES[value]
    return names


class WebhookServicer(pb_grpc.WebhookServiceServicer):
    """Creates, lists, changes, deletes and tests webhooks, and lists their deliveries."""

    def __init__(self, webhooks: Webhooks, page_secret: Callable[[], bytes] | None = None):
        """``page_secret``: the key page tokens are signed with (the engine's, shared by replicas)."""
        self.webhooks = webhooks
        self.tokens = PageTokens("ListWebhooks", page_secret)
        self.delivery_tokens = PageTokens("ListWebhookDeliveries", page_secret)

    async def CreateWebhook(
        self, request: pb.CreateWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateWebhookResponse:
        w = request.webhook
        record, secret = await self.webhooks.create(
            actor(),
            url=w.url,
            event_names=event_names(w),
            secret=w.secret,
            disabled=w.disabled,
            webhook_id=request.webhook_id,
            request_id=request.request_id,
        )
        return pb.CreateWebhookResponse(webhook=webhook_to_pb(record), secret=secret)

    async def GetWebhook(
        self, request: pb.GetWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetWebhookResponse:
        record = await self.webhooks.get(actor(), convert.parse_name(request.name, "webhooks"))
        return pb.GetWebhookResponse(webhook=webhook_to_pb(record))

    async def ListWebhooks(
        self, request: pb.ListWebhooksRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWebhooksResponse:
        size = page_size(request.page_size)
        caller = actor()
        filters = f"webhooks:{caller.principal}:{caller.views_all_webhooks}".encode()
        offset = self.tokens.read(request.page_token, filters) or 0
        records = await self.webhooks.list(caller, offset, size + 1)
        response = pb.ListWebhooksResponse(webhooks=[webhook_to_pb(r) for r in records[:size]])
        if len(records) > size:
            response.next_page_token = self.tokens.issue(offset + size, filters)
        return response

    async def UpdateWebhook(
        self, request: pb.UpdateWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.UpdateWebhookResponse:
        w = request.webhook
        webhook_id = convert.parse_name(w.name, "webhooks", "webhook.name")
        paths = list(request.update_mask.paths)
        changes = Changes(
            paths=paths,
            url=w.url,
            secret=w.secret,
            disabled=w.disabled,
            events=event_names(w) if {"events", "event_types"} & set(paths) else (),
        )
        record, secret = await self.webhooks.update(actor(), webhook_id, changes)
        return pb.UpdateWebhookResponse(webhook=webhook_to_pb(record), secret=secret)

    async def DeleteWebhook(
        self, request: pb.DeleteWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteWebhookResponse:
        await self.webhooks.delete(actor(), convert.parse_name(request.name, "webhooks"))
        return pb.DeleteWebhookResponse()

    async def ListWebhookDeliveries(
        self, request: pb.ListWebhookDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListWebhookDeliveriesResponse:
        webhook_id = convert.parse_name(request.webhook, "webhooks", "webhook")
        size = page_size(request.page_size)
        caller = actor()
        # Bound to the caller as well: a token is no way into another caller's list.
        filters = f"deliveries:{webhook_id}\0{caller.principal}:{caller.views_all_webhooks}".encode()
        offset = self.delivery_tokens.read(request.page_token, filters) or 0
        records = await self.webhooks.deliveries(caller, webhook_id, offset, size + 1)
        response = pb.ListWebhookDeliveriesResponse(deliveries=[delivery_to_pb(r) for r in records[:size]])
        if len(records) > size:
            response.next_page_token = self.delivery_tokens.issue(offset + size, filters)
        return response

    async def TestWebhook(
        self, request: pb.TestWebhookRequest, context: grpc.aio.ServicerContext
    ) -> pb.TestWebhookResponse:
        delivery = await self.webhooks.test(actor(), convert.parse_name(request.name, "webhooks"))
        return pb.TestWebhookResponse(delivery=delivery_to_pb(delivery))
