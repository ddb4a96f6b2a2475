"""The one table from domain errors to gRPC status codes, and the interceptor that applies it.

Every handler's behaviour is wrapped once: a :class:`~controlplane.errors.MaosError`
becomes its status code with a ``google.rpc.ErrorInfo`` (``domain="maos"``,
``reason`` from ``maos.v1.ErrorReason``) and, for validation errors, a
``google.rpc.BadRequest`` naming each field, or a ``RetryInfo`` for limits.
Anything else becomes INTERNAL with a generic message and a logged
traceback. The same wrapper records the RPC metrics.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from controlplane import errors
from controlplane.api.convert import error_reason_number
from controlplane.api.pb import errors_pb, tasks_pb
from controlplane.domain.limits import clip_bytes
from controlplane.metrics import Metrics

log = logging.getLogger(__name__)

DOMAIN = "maos"

#: Bounds of what a status carries. Status and details travel in the response trailers, whose
#: size grpc limits (8 KiB by default): a message quoting a whole bad input (a 3,000-character
#: name) would break the call as RESOURCE_EXHAUSTED instead of answering it (issue 11).
#: In UTF-8 bytes; at most about 6 KiB on the wire together (percent-encoding and base64 included).
MAX_MESSAGE_BYTES = 1024
MAX_FIELD_BYTES = 128
MAX_DESCRIPTION_BYTES = 200
MAX_VIOLATIONS = 10
MAX_METADATA_BYTES = 128

#: What the request deserializer hands a handler for bytes that are not a valid message.
UNDECODABLE = object()

#: Most specific class first; the first match wins.
STATUS_FOR: list[tuple[type[errors.MaosError], grpc.StatusCode]] = [
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Aborted, grpc.StatusCode.ABORTED),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
]


def status_code_for(exc: errors.MaosError) -> grpc.StatusCode:
    """The status code of a domain error."""
    for cls, code in STATUS_FOR:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def submit_error(exc: BaseException) -> tasks_pb.SubmitError:
    """What a refused request on a submit stream is answered with (SubmitTask's status, as a message)."""
    if not isinstance(exc, errors.MaosError):
        log.error("submitting a task failed", exc_info=exc)
        return tasks_pb.SubmitError(
            code=grpc.StatusCode.INTERNAL.value[0],
            message="internal error",
            reason=errors_pb.ERROR_REASON_INTERNAL,
        )
    error = tasks_pb.SubmitError(
        code=status_code_for(exc).value[0],
        reason=error_reason_number(exc.reason),
        message=clip_bytes(exc.message, MAX_MESSAGE_BYTES),
        field_violations=[
            tasks_pb.FieldViolation(field=field, description=description)
            for field, description in _violations(exc)
        ],
        metadata=_metadata(exc),
    )
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        error.retry_delay.FromNanoseconds(int(retry_after * 1e9))
    return error


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def _violations(exc: errors.MaosError) -> list[tuple[str, str]]:
    """The field violations of an error, each clipped, at most :data:`MAX_VIOLATIONS` of them."""
    return [
        (clip_bytes(v.field, MAX_FIELD_BYTES), clip_bytes(v.description, MAX_DESCRIPTION_BYTES))
        for v in getattr(exc, "violations", ())[:MAX_VIOLATIONS]
    ]


def _metadata(exc: errors.MaosError) -> dict[str, str]:
    return {clip_bytes(k, 64): clip_bytes(v, MAX_METADATA_BYTES) for k, v in list(exc.metadata.items())[:8]}


def to_status(exc: errors.MaosError) -> grpc.Status:
    """The rich status (code, message, details) of a domain error, clipped to fit in the trailers."""
    code = status_code_for(exc)
    details = [_pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN, metadata=_metadata(exc)))]
    violations = _violations(exc)
    if isinstance(exc, errors.InvalidArgument) and violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
                        for field, description in violations
                    ]
                )
            )
        )
    if isinstance(exc, errors.ResourceExhausted) and exc.retry_after is not None:
        info = error_details_pb2.RetryInfo()
        info.retry_delay.FromNanoseconds(int(exc.retry_after * 1e9))
        details.append(_pack(info))
    message = clip_bytes(exc.message, MAX_MESSAGE_BYTES)
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=details))


def internal_status() -> grpc.Status:
    """The status of an unexpected error: no internals leak to the caller."""
    info = error_details_pb2.ErrorInfo(reason="ERROR_REASON_INTERNAL", domain=DOMAIN)
    return rpc_status.to_status(
        status_pb2.Status(
            code=code_pb2.INTERNAL,
            message="internal error; the server logged the details",
            details=[_pack(info)],
        )
    )


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    if isinstance(exc, errors.MaosError):
        await context.abort_with_status(to_status(exc))
    log.exception("unhandled error in %s", getattr(context, "_method", "an RPC"), exc_info=exc)
    await context.abort_with_status(internal_status())


class ErrorAndMetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc ships no type hints
    """Maps domain errors to statuses and records grpc_server_* metrics for every RPC."""

    def __init__(self, metrics: Metrics):
        self._metrics = metrics
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        cached = self._wrapped.get(handler_call_details.method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, handler_call_details.method)
        self._wrapped[handler_call_details.method] = (handler, wrapped)
        return wrapped

    def wrap_handler(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        """``handler`` mapping errors and recording metrics (see :class:`~controlplane.api.server.WrappingServer`)."""
        return self._wrap(handler, method)

    def _wrap(self, handler: grpc.RpcMethodHandler, full_method: str) -> grpc.RpcMethodHandler:
        service, _, method = full_method.lstrip("/").partition("/")
        if service.startswith("grpc.health."):
            return handler  # health checks are not ours to map (reflection is: it can be refused)
        metrics = self._metrics
        handled = metrics.rpc_handled
        seconds = metrics.rpc_seconds
        children: dict[tuple[str, str], tuple[Any, Any]] = {}
        decode = handler.request_deserializer

        def deserializer(data: bytes) -> Any:
            # grpcio answers UNKNOWN when this raises; hand the handler a marker instead,
            # so that bad bytes get INVALID_ARGUMENT like any other bad input.
            try:
                return decode(data) if decode else data
            except Exception:
                return UNDECODABLE

        def undecodable() -> errors.InvalidArgument:
            return errors.InvalidArgument(
                f"the request is not a valid {method} request message", field="request"
            )

        async def checked(requests: Any) -> Any:
            async for request in requests:
                if request is UNDECODABLE:
                    raise undecodable()
                yield request

        def done(kind: str, started: float, code: str) -> None:
            child = children.get((kind, code))
            if child is None:  # label lookups are slow: resolve once per method, kind and code
                child = children[(kind, code)] = (
                    handled.labels(kind, service, method, code),
                    seconds.labels(kind, service, method),
                )
            child[0].inc()
            child[1].observe(time.perf_counter() - started)

        def code_of(context: grpc.aio.ServicerContext) -> str:
            code = context.code()
            return code.name if isinstance(code, grpc.StatusCode) else "OK"

        async def failed(
            kind: str, started: float, context: grpc.aio.ServicerContext, exc: Exception
        ) -> None:
            if isinstance(exc, grpc.aio.AbortError):  # the handler set its own status
                done(kind, started, code_of(context))
                return
            code = status_code_for(exc).name if isinstance(exc, errors.MaosError) else "INTERNAL"
            done(kind, started, code)
            await _abort(context, exc)

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                try:
                    if request is UNDECODABLE:
                        raise undecodable()
                    response = await inner(request, context)
                except Exception as exc:
                    await failed("unary", started, context, exc)
                    raise
                done("unary", started, code_of(context))
                return response

            return grpc.unary_unary_rpc_method_handler(unary_unary, deserializer, handler.response_serializer)
        if handler.unary_stream:
            inner_us = handler.unary_stream

            async def unary_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                try:
                    if request is UNDECODABLE:
                        raise undecodable()
                    async for response in inner_us(request, context):
                        yield response
                except Exception as exc:
                    await failed("server_stream", started, context, exc)
                    raise
                done("server_stream", started, code_of(context))

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, deserializer, handler.response_serializer
            )
        if handler.stream_unary:
            inner_su = handler.stream_unary

            async def stream_unary(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                try:
                    response = await inner_su(checked(requests), context)
                except Exception as exc:
                    await failed("client_stream", started, context, exc)
                    raise
                done("client_stream", started, code_of(context))
                return response

            return grpc.stream_unary_rpc_method_handler(
                stream_unary, deserializer, handler.response_serializer
            )
        inner_ss = handler.stream_stream

        async def stream_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                async for response in inner_ss(checked(requests), context):
                    yield response
            except Exception as exc:
                await failed("bidi_stream", started, context, exc)
                raise
            done("bidi_stream", started, code_of(context))

        return grpc.stream_stream_rpc_method_handler(stream_stream, deserializer, handler.response_serializer)
