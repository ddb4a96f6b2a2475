"""The ASGI application: routes, guide aliases, Server-Sent Events, gRPC-Web, OpenAPI, CORS.

It holds no business logic: each request becomes one call to the control plane's gRPC
server over a private loopback channel, with the caller's ``Authorization`` header as the
call's metadata, and the call's answer (or its ``google.rpc.Status``) becomes the HTTP answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import grpc
import orjson
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2  # noqa: F401 - the Health service's descriptors for /health
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Mount
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp

from controlplane.access.permissions import ADMIN
from controlplane.api.context import HTTP_PEER_METADATA
from controlplane.errors import InvalidArgument, MaosError, ResourceExhausted
from controlplane.http import grpcweb
from controlplane.http.aliases import ALIASES, Alias
from controlplane.http.openapi import openapi_document
from controlplane.http.rules import Route
from controlplane.http.transcode import (
    build_request,
    http_status,
    parse_json,
    query_fields,
    rename_fields,
    status_json,
    status_of_error,
    status_of_rpc_error,
    to_json,
)

log = logging.getLogger(__name__)

#: Request fields a stream resumes from, set from the ``Last-Event-ID`` header (WatchTask and
#: WatchEvents resume after an ``Event.id``, TailLogs after a ``LogRecord.id``).
RESUME_FIELDS = ("after_event_id", "after_record_id")
#: Seconds an SSE request waits for its stream's first message (or refusal) before answering 200.
FIRST_MESSAGE_WAIT = 1.0
#: Seconds between SSE keepalive comments (they also notice a client that went away).
KEEPALIVE = 15.0
#: The metadata key that carries the HTTP client's address to the gRPC server (trusted on the Unix socket only).
PEER_METADATA = HTTP_PEER_METADATA
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]


class TooLarge(ResourceExhausted):
    """A request body over ``server.http_max_body_bytes`` (HTTP 413)."""


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def error_response(status: status_pb2.Status, http: int | None = None) -> Response:
    """A ``google.rpc.Status`` as JSON with the HTTP status of its code (and ``Retry-After`` from a RetryInfo)."""
    response = _json(status_json(status), http or http_status(status.code))
    for detail in status.details:
        info = error_details_pb2.RetryInfo()
        if detail.Is(info.DESCRIPTOR) and detail.Unpack(info):
            response.headers["Retry-After"] = str(
                max(1, math.ceil(info.retry_delay.ToTimedelta().total_seconds()))
            )
    return response


def peer_metadata(request: Request) -> list[tuple[str, str]]:
    """The metadata that tells the gRPC server (on the private socket) the HTTP client's address."""
    if request.client is None:
        return []
    host = request.client.host
    family = "ipv6" if ":" in host else "ipv4"
    return [(PEER_METADATA, f"{family}:{host}:{request.client.port}")]


def _alias_regex(path: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path)))


def _event_id(message: Message) -> str:
    """The id a streamed message can be resumed after (``event.id``, ``record.id``), if it has one."""
    fields = message.DESCRIPTOR.fields_by_name
    for name in ("event", "record"):
        if name in fields and message.HasField(name):
            return getattr(getattr(message, name), "id", "")
    if "id" in fields:
        return str(message.id)
    return ""


class Gateway:
    """Transcodes HTTP requests into calls on a gRPC channel to the control plane."""

    def __init__(
        self,
        routes: list[Route],
        service_names: list[str],
        *,
        max_body: int,
        timeout: float,
        cors_origins: list[str],
        mounts: Mapping[str, ASGIApp] | None = None,
        reflection: str = "authenticated",
    ):
        self.routes = routes
        self.reflection = reflection
        self.service_names = set(service_names)
        self.max_body = max_body
        self.timeout = timeout or None
        self.channel: grpc.aio.Channel | None = None
        self._aliases = [(alias, _alias_regex(alias.path)) for alias in ALIASES]
        self._openapi: dict[str, Any] | None = None
        starlette_routes: list[Any] = []
        for path, app in (mounts or {}).items():  # the path itself (``/mcp``) and what is under it
            starlette_routes += [StarletteRoute(path, app), Mount(path, app=app)]
        starlette_routes += [
            StarletteRoute("/openapi.json", self.openapi, methods=["GET"]),
            StarletteRoute("/{path:path}", self.dispatch, methods=_ALL_METHODS),
        ]
        middleware = (
            [
                Middleware(
                    CORSMiddleware,
                    allow_origins=list(cors_origins),
                    allow_methods=_ALL_METHODS,
                    allow_headers=[
                        "authorization",
                        "content-type",
                        "last-event-id",
                        "x-grpc-web",
                        "x-user-agent",
                        "grpc-timeout",
                    ],
                    expose_headers=["grpc-status", "grpc-message", "grpc-status-details-bin"],
                    max_age=600,
                )
            ]
            if cors_origins
            else []
        )
        self.asgi = Starlette(routes=starlette_routes, middleware=middleware)

    # -- plumbing ---------------------------------------------------------------------------------

    def _metadata(self, request: Request) -> list[tuple[str, str]]:
        metadata = []
        authorization = request.headers.get("authorization")
        if authorization:
            metadata.append(("authorization", authorization))
        return metadata + peer_metadata(request)

    async def _body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            raise TooLarge(
                f"the request body ({declared} bytes) is over the limit of {self.max_body} bytes "
                "(server.http_max_body_bytes)",
                reason="ERROR_REASON_LIMIT_EXCEEDED",
                metadata={"limit": "server.http_max_body_bytes"},
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise TooLarge(
                    f"the request body is over the limit of {self.max_body} bytes "
                    "(server.http_max_body_bytes)",
                    reason="ERROR_REASON_LIMIT_EXCEEDED",
                    metadata={"limit": "server.http_max_body_bytes"},
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def _json_body(self, request: Request) -> Any:
        raw = await self._body(request)
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"the request body is not JSON: {exc}", field="body") from None

    def _unary(self, method: MethodDescriptor) -> Any:
        assert self.channel is not None, "the gateway is not started"
        path = f"/{method.containing_service.full_name}/{method.name}"
        return self.channel.unary_unary(
            path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=GetMessageClass(method.output_type).FromString,
        )

    def _stream(self, method: MethodDescriptor) -> Any:
        assert self.channel is not None, "the gateway is not started"
        path = f"/{method.containing_service.full_name}/{method.name}"
        return self.channel.unary_stream(
            path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=GetMessageClass(method.output_type).FromString,
        )

    # -- endpoints --------------------------------------------------------------------------------

    async def openapi(self, request: Request) -> Response:
        """``GET /openapi.json``, to whom ``server.reflection`` shows the schema (as gRPC reflection)."""
        if self.reflection == "off":
            return error_response(
                status_pb2.Status(
                    code=grpc.StatusCode.NOT_FOUND.value[0],
                    message="the API description is off (server.reflection: off)",
                )
            )
        if self.reflection != "public":
            method = descriptor_pool.Default().FindMethodByName("maos.v1.AccessService.GetCaller")
            try:
                caller = await self._unary(method)(
                    GetMessageClass(method.input_type)(),
                    metadata=self._metadata(request),
                    timeout=self.timeout,
                )
            except grpc.aio.AioRpcError as exc:
                return error_response(status_of_rpc_error(exc))
            if (
                self.reflection == "admin"
                and not {"*", ADMIN} & set(caller.permissions)
                and "roles/admin" not in caller.roles
            ):
                return error_response(
                    status_pb2.Status(
                        code=grpc.StatusCode.PERMISSION_DENIED.value[0],
                        message=f"{caller.principal} may not read the API description (server.reflection: admin)",
                    )
                )
        if self._openapi is None:
            self._openapi = openapi_document(self.routes)
        return _json(self._openapi)

    def resolve(self, verb: str, path: str) -> tuple[Route | Alias | str | None, dict[str, str]]:
        """What serves ``verb path``: a guide alias, a route (with its path values), ``"method"``
        when the path exists for other verbs only, or None."""
        known_path = False
        for alias, regex in self._aliases:
            found = regex.fullmatch(path)
            if found:
                known_path = True
                if alias.verb == verb:
                    return alias, found.groupdict()
        for route in self.routes:
            values = route.match(path)
            if values is not None:
                known_path = True
                if route.verb == verb:
                    return route, values
        return ("method" if known_path else None), {}

    async def dispatch(self, request: Request) -> Response:
        """Every other path: gRPC-Web, a guide alias, or a transcoded route."""
        try:
            if request.method == "POST" and grpcweb.is_grpc_web(request.headers.get("content-type", "")):
                return await self.grpc_web(request)
            path = request.url.path
            target, values = self.resolve(request.method, path)
            if isinstance(target, Alias):
                return await self._call_alias(request, target, values)
            if isinstance(target, Route):
                return await self._call_route(request, target, values)
            if target == "method":
                return error_response(
                    status_pb2.Status(
                        code=grpc.StatusCode.UNIMPLEMENTED.value[0],
                        message=f"{request.method} is not allowed on {path}; see /openapi.json",
                    ),
                    405,
                )
            return error_response(
                status_pb2.Status(
                    code=grpc.StatusCode.NOT_FOUND.value[0], message=f"no route {path}; see /openapi.json"
                )
            )
        except TooLarge as exc:
            return error_response(status_of_error(exc), 413)
        except MaosError as exc:
            return error_response(status_of_error(exc))
        except Exception:  # a bug here: answered like the gRPC server answers its own (INTERNAL, logged)
            log.exception("HTTP %s %s failed", request.method, request.url.path)
            return error_response(
                status_pb2.Status(
                    code=grpc.StatusCode.INTERNAL.value[0],
                    message="internal error; see the control plane's log",
                )
            )

    async def _call_route(self, request: Request, route: Route, values: dict[str, str]) -> Response:
        json_body = await self._json_body(request) if route.body else None
        message = build_request(
            route.request_class(), route.body, values, json_body, list(request.query_params.multi_items())
        )
        if route.server_streaming:
            return await self._sse(request, route.method, message)
        try:
            reply = await self._unary(route.method)(
                message, metadata=self._metadata(request), timeout=self.timeout
            )
        except grpc.aio.AioRpcError as exc:
            return error_response(status_of_rpc_error(exc))
        return _json(to_json(reply))

    async def _call_alias(self, request: Request, alias: Alias, params: dict[str, str]) -> Response:
        method = descriptor_pool.Default().FindMethodByName(alias.rpc)
        body = await self._json_body(request) if alias.verb in ("POST", "PUT", "PATCH") else None
        try:
            fields = alias.request(params, body if body is not None else {})
            if alias.query:
                fields.update(query_fields(method.input_type, list(request.query_params.multi_items())))
            message = parse_json(GetMessageClass(method.input_type), fields)
            reply = await self._unary(method)(message, metadata=self._metadata(request), timeout=self.timeout)
        except MaosError as exc:
            return error_response(rename_fields(status_of_error(exc), alias.field))
        except grpc.aio.AioRpcError as exc:
            return error_response(rename_fields(status_of_rpc_error(exc), alias.field))
        result = alias.response(params, to_json(reply, proto_names=True))
        if alias.rpc == "grpc.health.v1.Health.Check" and result.get("status") != "SERVING":
            return _json(result, 503)
        return _json(result)

    # -- Server-Sent Events -----------------------------------------------------------------------

    async def _sse(self, request: Request, method: MethodDescriptor, message: Message) -> Response:
        resume = request.headers.get("last-event-id", "").strip()
        if resume:
            for name in RESUME_FIELDS:
                if name in message.DESCRIPTOR.fields_by_name and not getattr(message, name):
                    setattr(message, name, resume)
        call = self._stream(method)(message, metadata=self._metadata(request))
        # A refusal (no key, not found) comes at once and is answered with its HTTP status; a stream
        # whose first message takes longer starts anyway, and a later error is an `event: error`.
        first = asyncio.ensure_future(call.read())
        await asyncio.wait({first}, timeout=FIRST_MESSAGE_WAIT)
        if first.done() and not first.cancelled() and isinstance(first.exception(), grpc.aio.AioRpcError):
            return error_response(status_of_rpc_error(first.exception()))
        return StreamingResponse(
            self._events(call, first),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _events(self, call: Any, first: asyncio.Future[Any]) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=64)

        async def pump() -> None:
            try:
                item = await first
                while item is not grpc.aio.EOF:
                    await queue.put(item)
                    item = await call.read()
                await queue.put(grpc.aio.EOF)
            except grpc.aio.AioRpcError as exc:
                await queue.put(exc)

        reader = asyncio.create_task(pump())
        try:
            yield b": stream open\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if item is grpc.aio.EOF:
                    return
                if isinstance(item, grpc.aio.AioRpcError):
                    if item.code() != grpc.StatusCode.CANCELLED:
                        yield (
                            b"event: error\ndata: "
                            + orjson.dumps(status_json(status_of_rpc_error(item)))
                            + b"\n\n"
                        )
                    return
                event_id = _event_id(item)
                head = f"id: {event_id}\n".encode() if event_id else b""
                yield head + b"data: " + orjson.dumps(to_json(item)) + b"\n\n"
        finally:
            call.cancel()
            reader.cancel()
            first.cancel()

    # -- gRPC-Web ---------------------------------------------------------------------------------

    def _grpc_web_method(self, path: str) -> MethodDescriptor | None:
        service_name, _, method_name = path.strip("/").partition("/")
        if service_name not in self.service_names:
            return None
        try:
            service = descriptor_pool.Default().FindServiceByName(service_name)
        except KeyError:
            return None
        return service.methods_by_name.get(method_name)

    async def grpc_web(self, request: Request) -> Response:
        """A gRPC-Web call (unary or server-streaming), passed through to the gRPC server."""
        content_type = request.headers.get("content-type", "")
        text = grpcweb.is_text(content_type)
        reply_type = "application/grpc-web-text+proto" if text else "application/grpc-web+proto"
        headers = {"grpc-accept-encoding": "identity"}

        def finish(code: int, message: str, details: bytes | None = None) -> Response:
            body = grpcweb.encode(grpcweb.trailers(code, message, details), text)
            return Response(body, media_type=reply_type, headers=headers)

        method = self._grpc_web_method(request.url.path)
        if method is None:
            return finish(grpc.StatusCode.UNIMPLEMENTED.value[0], f"unknown method {request.url.path}")
        if method.client_streaming:
            return finish(
                grpc.StatusCode.UNIMPLEMENTED.value[0],
                "gRPC-Web carries unary and server-streaming calls only; use native gRPC",
            )
        try:
            payload = grpcweb.request_message(await self._body(request), text)
        except grpcweb.FramingError as exc:
            return finish(grpc.StatusCode.INVALID_ARGUMENT.value[0], str(exc))
        except TooLarge as exc:
            return finish(grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], exc.message)
        assert self.channel is not None
        metadata = self._metadata(request)
        # The client's grpc-timeout if it sends one; else unary calls get server.http_timeout and
        # streams run until the client leaves (as Server-Sent Events do).
        timeout = _grpc_timeout(request.headers.get("grpc-timeout", ""))
        if not method.server_streaming:
            timeout = timeout or self.timeout
            try:
                reply = await self.channel.unary_unary(request.url.path)(
                    payload, metadata=metadata, timeout=timeout
                )
            except grpc.aio.AioRpcError as exc:
                return finish(exc.code().value[0], exc.details() or "", _details(exc))
            body = grpcweb.encode(grpcweb.frame(grpcweb.MESSAGE, reply) + grpcweb.trailers(0, ""), text)
            return Response(body, media_type=reply_type, headers=headers)
        call = self.channel.unary_stream(request.url.path)(payload, metadata=metadata, timeout=timeout)

        async def frames() -> AsyncIterator[bytes]:
            try:
                async for reply in call:
                    yield grpcweb.encode(grpcweb.frame(grpcweb.MESSAGE, reply), text)
                yield grpcweb.encode(grpcweb.trailers(0, ""), text)
            except grpc.aio.AioRpcError as exc:
                yield grpcweb.encode(
                    grpcweb.trailers(exc.code().value[0], exc.details() or "", _details(exc)), text
                )
            finally:
                call.cancel()

        return StreamingResponse(frames(), media_type=reply_type, headers=headers)


def _details(error: grpc.aio.AioRpcError) -> bytes | None:
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            return value if isinstance(value, bytes) else value.encode()
    return None


_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def _grpc_timeout(value: str) -> float | None:
    """A ``grpc-timeout`` header (``10S``, ``500m``) in seconds."""
    if len(value) >= 2 and value[:-1].isdigit() and value[-1] in _TIMEOUT_UNITS:
        return int(value[:-1]) * _TIMEOUT_UNITS[value[-1]]
    return None


__all__ = ["Gateway", "error_response", "peer_metadata"]
