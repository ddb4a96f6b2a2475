"""Authentication, authorization and audit of every RPC, in one interceptor.

Placed inside :class:`~controlplane.api.errors.ErrorAndMetricsInterceptor`, so
its denials (``Unauthenticated``/``PermissionDenied``) become statuses with an
``ErrorInfo`` like every other domain error. For each call it:

1. looks up the permission the method needs (:mod:`controlplane.access.permissions`;
   health and reflection need none, unknown methods need admin);
2. authenticates ``authorization: Bearer <key>`` through the
   :class:`~controlplane.access.manager.AccessManager`; the one exception is
   ``AgentGateway.Connect`` without a bearer, let through as
   :data:`~controlplane.api.admission.JOINING` (no permissions) so the gateway
   can check the join token of its first message
   (:mod:`controlplane.api.admission`);
3. sets ``principal_var`` and ``caller_var`` for the servicer;
4. appends an audit record for every denial and every mutating call (with
   its final status code) before the response is sent.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from controlplane import errors
from controlplane.access.manager import AccessManager, Caller
from controlplane.access.permissions import READ_ONLY, needed
from controlplane.api.admission import CONNECT, JOINING
from controlplane.api.context import caller_var, principal_var
from controlplane.api.errors import status_code_for

log = logging.getLogger(__name__)


def _bearer(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer "):].strip()
    return None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates, authorizes (deny by default) and audits every MAOS RPC."""

    def __init__(self, access: AccessManager, storage: Any):
        self.access = access
        self.storage = storage
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or needed(method) is None:
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    async def audit(self, method: str, caller: Caller | None, context: grpc.aio.ServicerContext,
                    request: Any, code: str, reason: str = "", resource: str = "") -> None:
        """Append one record (errors are logged: the audit must not hide the call's own outcome)."""
        record = {
            "id": uuid.uuid4().hex, "time": time.time(), "principal": caller.principal if caller else "",
            "key_id": caller.key_id if caller else "", "peer": context.peer() or "", "method": method,
            "resource": resource or str(getattr(request, "name", "") or ""),
            "decision": "DENY" if reason else "ALLOW", "status_code": code,
            "request_id": str(getattr(request, "request_id", "") or ""), "reason": reason,
        }
        try:
            await self.storage.call(self.storage.backend.append_audit, [record])
        except Exception:
            log.exception("could not write the audit record of %s", method)

    async def _authorize(self, method: str, context: grpc.aio.ServicerContext, request: Any) -> Caller:
        permission = needed(method)
        assert permission is not None
        caller: Caller | None = None
        try:
            secret = _bearer(context)
            if not secret and method == CONNECT:  # the gateway wants a join token instead
                caller_var.set(JOINING)
                principal_var.set(JOINING.principal)
                return JOINING
            if not secret:
                raise errors.Unauthenticated("no credentials: send 'authorization: Bearer <API key>'")
            caller = await self.access.authenticate(secret)
            if not caller.may(permission):
                raise errors.PermissionDenied(f"{caller.principal} lacks the permission {permission!r}",
                                              metadata={"permission": permission})
        except errors.MaosError as exc:
            await self.audit(method, caller, context, request, status_code_for(exc).name, exc.reason)
            raise
        principal_var.set(caller.principal)
        caller_var.set(caller)
        return caller

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        audited = method not in READ_ONLY
        audit = self.audit

        async def outcome(caller: Caller, context: Any, request: Any, exc: BaseException | None) -> None:
            if not audited:
                return
            if exc is None:
                code = context.code()
                code = code.name if isinstance(code, grpc.StatusCode) else "OK"
            elif isinstance(exc, errors.MaosError):
                code = status_code_for(exc).name
            elif isinstance(exc, grpc.aio.AbortError):
                code = context.code().name if isinstance(context.code(), grpc.StatusCode) else "UNKNOWN"
            else:
                code = "INTERNAL"
            await audit(method, caller, context, request, code)

        if handler.unary_unary or handler.stream_unary:
            inner = handler.unary_unary or handler.stream_unary
            streaming_request = handler.stream_unary is not None

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                caller = await self._authorize(method, context, None if streaming_request else request)
                try:
                    response = await inner(request, context)
                except BaseException as exc:
                    await outcome(caller, context, None if streaming_request else request, exc)
                    raise
                await outcome(caller, context, None if streaming_request else request, None)
                return response

            make = grpc.stream_unary_rpc_method_handler if streaming_request else grpc.unary_unary_rpc_method_handler
            return make(unary, handler.request_deserializer, handler.response_serializer)

        inner_s = handler.unary_stream or handler.stream_stream
        streaming_request = handler.stream_stream is not None

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            caller = await self._authorize(method, context, None if streaming_request else request)
            try:
                async for response in inner_s(request, context):
                    yield response
            except BaseException as exc:
                await outcome(caller, context, None if streaming_request else request, exc)
                raise
            await outcome(caller, context, None if streaming_request else request, None)

        make_s = grpc.stream_stream_rpc_method_handler if streaming_request else grpc.unary_stream_rpc_method_handler
        return make_s(stream, handler.request_deserializer, handler.response_serializer)
