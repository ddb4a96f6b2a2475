"""Wiring webhooks into a built control plane: the gRPC service, the engine tap and the worker's lifecycle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pluggy

from agent_sdk.proto.maos.v1 import webhook_service_pb2_grpc as webhooks_grpc
from controlplane.access.permissions import VIEW_ALL_TASKS
from controlplane.api.servicers.webhooks import WebhookServicer
from controlplane.hookspecs import hookimpl
from controlplane.webhooks.events import ALL, NONE, OWN
from controlplane.webhooks.service import Webhooks


class _Lifecycle:
    """A plugin object starting delivery at startup and stopping it at shutdown."""

    def __init__(self, webhooks: Webhooks):
        self.webhooks = webhooks

    @hookimpl
    def startup(self, app: Any) -> Any:
        return self.webhooks.start()

    @hookimpl
    def shutdown(self, app: Any) -> Any:
        return self.webhooks.stop()


def owner_reach(access: Any) -> Callable[[str], str]:
    """What a principal may see now: ``all`` tasks (``task:view-all``), its ``own``, or ``none``.

    ``none`` for a user that is disabled or deleted (and for anything but a user). Without
    access control (``access`` None) every caller is the local user, who sees every task.
    """
    if access is None:
        return lambda principal: ALL

    def reach(principal: str) -> str:
        user = access.users.get(principal.removeprefix("users/")) if principal.startswith("users/") else None
        if user is None or user.get("disabled"):
            return NONE
        return ALL if access.caller_of(user).may(VIEW_ALL_TASKS) else OWN

    return reach


def install_webhooks(
    pm: pluggy.PluginManager,
    engine: Any,
    storage: Any,
    settings: Any,
    server: grpc.aio.Server,
    access: Any,
) -> Webhooks:
    """Add the WebhookService to ``server``, tap the engine's events and deliver while the app runs.

    ``access`` is the AccessManager when access control is on, else None.
    """
    webhooks = Webhooks(storage, settings, engine.outbox, engine.replica, owner_reach(access), engine.metrics)
    webhooks_grpc.add_WebhookServiceServicer_to_server(
        WebhookServicer(webhooks, lambda: engine.page_secret), server
    )
    if webhooks.backend is not None:
        engine.event_taps.append(webhooks.tap)
    pm.register(_Lifecycle(webhooks), name="maos-webhooks")
    return webhooks
