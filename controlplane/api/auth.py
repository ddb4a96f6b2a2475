"""Authentication, authorization and audit of every RPC, in one interceptor.

Placed inside :class:`~controlplane.api.errors.ErrorAndMetricsInterceptor`, so
its denials (``Unauthenticated``/``PermissionDenied``/``ResourceExhausted``) become
statuses with an ``ErrorInfo`` like every other domain error. For each call it:

1. looks up the permission the method needs (:mod:`controlplane.access.permissions`;
   health checks need none, unknown methods need admin, server reflection what the
   ``server.reflection`` setting says);
2. authenticates ``authorization: Bearer <key>`` through the
   :class:`~controlplane.access.manager.AccessManager` (a peer address
   failing too often gets RESOURCE_EXHAUSTED instead of UNAUTHENTICATED,
   :mod:`controlplane.access.rate_limit`, unless the key is on record and
   refused for being revoked or expired: its holder must stop, not retry),
   then takes one call of the
   principal's rate (a stream counts once, when it opens); the one exception
   is ``AgentGateway.Connect`` without a bearer, let through as
   :data:`~controlplane.api.admission.JOINING` (no permissions) so the gateway
   can check the join token of its first message
   (:mod:`controlplane.api.admission`);
3. checks the permission;
4. sets ``principal_var`` and ``caller_var`` for the servicer;
5. appends an audit record for every denial (rate limits included) and
   every mutating call (with its final status code). A call the servicer
   itself refuses (PERMISSION_DENIED or UNAUTHENTICATED: another principal's
   agent, a key broader than the caller's) is a denial too: decision DENY,
   for read-only methods as well. Records join the next
   group commit without holding up the response: they are durable within
   50 ms (``AUDIT_FLUSH_DELAY``), and only a crash in that window can lose
   the last few.
   A record's ``resource`` is the request's ``name`` only when that is a
   well-formed resource name (:func:`audit_resource`), else ``<malformed>``:
   a secret pasted where a name belongs (``joinTokens/abc123.SECRET``, a
   whole API key) never reaches the append-only log.

Under mutual TLS the verified client certificate does not replace the API
key: the key still decides what the call may do, and the certificate's
subject is recorded in the audit record's ``peer`` next to the address
(``ipv4:10.0.0.7:50412 (client certificate CN=ci,O=Example)``).
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from controlplane import errors
from controlplane.access import join_tokens, keys
from controlplane.access.manager import AccessManager, Caller, valid_role_id
from controlplane.access.permissions import READ_ONLY, needed
from controlplane.access.rate_limit import RATE_LIMITED, CallLimits
from controlplane.api.admission import CONNECT, JOINING
from controlplane.api.context import bearer_token, caller_peer, caller_var, peer_address, principal_var
from controlplane.api.errors import status_code_for
from controlplane.api.tls import client_certificate_subject
from controlplane.metrics import Metrics

__all__ = ["MALFORMED", "AuthInterceptor", "audit_resource", "peer_address"]

#: Status codes of refusals: every call ending with one is audited as DENY, whoever refused it.
DENIALS = frozenset({"PERMISSION_DENIED", "UNAUTHENTICATED"})
#: Whether the current call's refusal has been audited already (by the gateway's admission, say).
_refusal_audited: contextvars.ContextVar[bool] = contextvars.ContextVar("maos_refusal_audited", default=False)
#: The ``resource`` of an audit record whose request named something that is not a resource name.
MALFORMED = "<malformed>"
#: An id as ``convert.parse_name`` takes it (tasks, agents, checkpoints, ...), matched whole.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,127}")
#: A user id as ``AccessManager.create_user`` makes it (the email's local part), matched whole.
_USER_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")


def _matcher(pattern: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda ident: pattern.fullmatch(ident) is not None


#: Whether an id is well-formed, for each collection; ``apiKeys`` and ``joinTokens`` exactly as issued.
_COLLECTION_IDS: dict[str, Callable[[str], bool]] = {
    **dict.fromkeys(
        ("tasks", "subtasks", "agents", "checkpoints", "batches", "templates", "webhooks"), _matcher(_ID)
    ),
    "users": _matcher(_USER_ID),
    "roles": valid_role_id,
    "apiKeys": keys.valid_id,
    "joinTokens": join_tokens.valid_id,
}
_REQUEST_ID = re.compile(r"[A-Za-z0-9_\-]{1,36}")


def audit_resource(name: str) -> str:
    """``name`` if it is a well-formed resource name, else :data:`MALFORMED` ("" stays "").

    Well-formed: ``collection/id`` pairs (``tasks/T``, ``tasks/T/subtasks/S``)
    of known collections, each id matching its collection's pattern, or a
    bare id (the servers accept those too) of letters, digits, ``_`` and
    ``-``. Nothing holding an API key's prefix passes, whatever its shape.
    """
    if not name:
        return ""
    if len(name) > 300 or keys.PREFIX in name:
        return MALFORMED
    parts = name.split("/")
    if len(parts) == 1:
        return name if _ID.fullmatch(name) else MALFORMED
    if len(parts) % 2:
        return MALFORMED
    for collection, ident in zip(parts[::2], parts[1::2], strict=True):
        valid = _COLLECTION_IDS.get(collection)
        if valid is None or not valid(ident):
            return MALFORMED
    return name


def _peer(context: grpc.aio.ServicerContext, certificates: bool = True) -> str:
    """The caller's address, and the subject of its verified client certificate if it sent one.

    ``certificates`` False (a server without TLS): no call can carry one, and the
    connection's auth context is not looked up.
    """
    peer = caller_peer(context)
    subject = client_certificate_subject(context) if certificates else ""
    return f"{peer} (client certificate {subject})" if subject else peer


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no type hints
    """Authenticates, authorizes (deny by default) and audits every MAOS RPC."""

    def __init__(
        self,
        access: AccessManager,
        record_audit: Callable[[dict[str, Any]], None],
        limits: CallLimits | None = None,
        metrics: Metrics | None = None,
        reflection: str = "authenticated",
        client_certificates: bool = True,
    ):
        """``client_certificates`` False says the server has no TLS port, so no call carries a
        client certificate whose subject the audit would record."""
        self.access = access
        self.client_certificates = client_certificates
        self.reflection = reflection
        self.record_audit = record_audit
        self.limits = limits
        self.metrics = metrics
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or needed(method, self.reflection) is None:
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def wrap_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """``handler`` authorizing and auditing each call (see :class:`~controlplane.api.server.WrappingServer`)."""
        if handler is None or needed(method, self.reflection) is None:
            return handler
        return self._wrap(handler, method)

    def audit(
        self,
        method: str,
        caller: Caller | None,
        context: grpc.aio.ServicerContext,
        request: Any,
        code: str,
        reason: str = "",
        resource: str = "",
    ) -> None:
        """Queue one record for the next commit (``resource`` and ``request_id`` only if well-formed)."""
        request_id = str(getattr(request, "request_id", "") or "")
        record = {
            "id": uuid.uuid4().hex,
            "time": time.time(),
            "principal": caller.principal if caller else "",
            "key_id": caller.key_id if caller else "",
            "peer": _peer(context, self.client_certificates),
            "method": method,
            "resource": audit_resource(resource or str(getattr(request, "name", "") or "")),
            "decision": "DENY" if reason else "ALLOW",
            "status_code": code,
            "request_id": request_id if not request_id or _REQUEST_ID.fullmatch(request_id) else MALFORMED,
            "reason": reason,
        }
        if reason:
            _refusal_audited.set(True)
        self.record_audit(record)

    async def _authorize(self, method: str, context: grpc.aio.ServicerContext, request: Any) -> Caller:
        permission = needed(method, self.reflection)
        assert permission is not None
        _refusal_audited.set(False)
        caller: Caller | None = None
        limits = self.limits
        try:
            secret = bearer_token(context.invocation_metadata())
            if not secret and method == CONNECT:  # the gateway wants a join token instead
                caller_var.set(JOINING)
                principal_var.set(JOINING.principal)
                return JOINING
            if not secret:
                raise errors.Unauthenticated("no credentials: send 'authorization: Bearer <API key>'")
            caller = await self.access.authenticate(secret)
            if limits is not None:
                limits.admit(caller.principal)
            if not caller.may(permission):
                raise errors.PermissionDenied(
                    f"{caller.principal} lacks the permission {permission!r}",
                    metadata={"permission": permission},
                )
        except errors.MaosError as exc:
            refusal: errors.MaosError = exc
            # Only failures guessing could produce are throttled; a revoked or expired key on record
            # stays UNAUTHENTICATED, so its holder stops instead of retrying (as on RESOURCE_EXHAUSTED).
            if (
                limits is not None
                and isinstance(exc, errors.Unauthenticated)
                and not isinstance(exc, errors.CredentialRefused)
            ):
                refusal = limits.failed_authentication(peer_address(caller_peer(context))) or exc
            if refusal.reason == RATE_LIMITED and self.metrics is not None:
                self.metrics.call_rate_limited(method, refusal.metadata.get("limit", ""))
            self.audit(method, caller, context, request, status_code_for(refusal).name, refusal.reason)
            if refusal is not exc:
                raise refusal from None
            raise
        principal_var.set(caller.principal)
        caller_var.set(caller)
        return caller

    def _wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        audited = method not in READ_ONLY
        audit = self.audit

        def outcome(caller: Caller, context: Any, request: Any, exc: BaseException | None) -> None:
            reason = ""
            if exc is None:
                code = context.code()
                code = code.name if isinstance(code, grpc.StatusCode) else "OK"
            elif isinstance(exc, errors.MaosError):
                code, reason = status_code_for(exc).name, exc.reason
            elif isinstance(exc, grpc.aio.AbortError):
                code = context.code().name if isinstance(context.code(), grpc.StatusCode) else "UNKNOWN"
            elif isinstance(exc, asyncio.CancelledError):  # the client went away (or cancelled)
                code = "CANCELLED"
            else:
                code = "INTERNAL"
            # A refusal decided inside the servicer is a denial like the interceptor's own, and is
            # recorded for read-only methods too.
            denied = code in DENIALS
            if denied and _refusal_audited.get():  # recorded where it was decided
                return
            if denied:
                reason = reason or f"ERROR_REASON_{code}"
            if audited or denied:
                audit(method, caller, context, request, code, reason if denied else "")

        if handler.unary_unary or handler.stream_unary:
            inner = handler.unary_unary or handler.stream_unary
            streaming_request = handler.stream_unary is not None

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                caller = await self._authorize(method, context, None if streaming_request else request)
                try:
                    response = await inner(request, context)
                except BaseException as exc:
                    outcome(caller, context, None if streaming_request else request, exc)
                    raise
                outcome(caller, context, None if streaming_request else request, None)
                return response

            make = (
                grpc.stream_unary_rpc_method_handler
                if streaming_request
                else grpc.unary_unary_rpc_method_handler
            )
            return make(unary, handler.request_deserializer, handler.response_serializer)

        inner_s = handler.unary_stream or handler.stream_stream
        streaming_request = handler.stream_stream is not None

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            caller = await self._authorize(method, context, None if streaming_request else request)
            try:
                async for response in inner_s(request, context):
                    yield response
            except BaseException as exc:
                outcome(caller, context, None if streaming_request else request, exc)
                raise
            outcome(caller, context, None if streaming_request else request, None)

        make_s = (
            grpc.stream_stream_rpc_method_handler
            if streaming_request
            else grpc.unary_stream_rpc_method_handler
        )
        return make_s(stream, handler.request_deserializer, handler.response_serializer)
