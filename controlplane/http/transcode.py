"""Proto3 JSON both ways, and ``google.rpc.Status`` as JSON with the HTTP status AIP-193 gives its code.

Requests are built as Google's HTTP transcoding does: path variables, then the JSON body where
the rule puts it, then query parameters (``?page_size=10&statuses=TASK_STATUS_RUNNING``,
repeated for lists, dotted for nested fields) for whatever neither binds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2  # noqa: F401 - details decode by name
from grpc_status import rpc_status

from controlplane.api.errors import to_status
from controlplane.errors import InvalidArgument, MaosError
from controlplane.http.rules import field_by_name

#: AIP-193 / google/rpc/code.proto: the HTTP status of each gRPC code.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def http_status(code: int) -> int:
    """The HTTP status of a gRPC code number."""
    return HTTP_STATUS.get(_BY_NUMBER.get(code, grpc.StatusCode.UNKNOWN), 500)


def status_of_error(exc: MaosError) -> status_pb2.Status:
    """The ``google.rpc.Status`` the gRPC server would send for a domain error (HTTP-level refusals)."""
    status = to_status(exc)
    for key, value in status.trailing_metadata:
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    return status_pb2.Status(code=status.code.value[0], message=status.details)


def status_of_rpc_error(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The rich status of a failed call (its details from the ``grpc-status-details-bin`` trailer)."""
    status = rpc_status.from_call(error)
    if status is None:
        status = status_pb2.Status(code=error.code().value[0], message=error.details() or "")
    return status


def status_json(status: status_pb2.Status) -> dict[str, Any]:
    """``{"code": 3, "message": ..., "details": [{"@type": ".../google.rpc.ErrorInfo", ...}]}``."""
    body: dict[str, Any] = json_format.MessageToDict(status)
    body.setdefault("code", status.code)
    body.setdefault("message", status.message)
    body.setdefault("details", [])
    return body


def to_json(message: Message, proto_names: bool = False) -> dict[str, Any]:
    """The proto3 JSON form (lowerCamelCase names unless ``proto_names``)."""
    data: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=proto_names)
    return data


def _merge(into: dict[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def _nested(path: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _query_value(field: FieldDescriptor, values: list[str], name: str) -> Any:
    def one(text: str) -> Any:
        if field.type == FieldDescriptor.TYPE_BOOL:
            lowered = text.strip().lower()
            if lowered in ("true", "1", ""):
                return True
            if lowered in ("false", "0"):
                return False
            raise InvalidArgument(f"query parameter {name}: {text!r} is not true or false", field=name)
        return text

    if field.is_repeated:
        return [one(v) for v in values]
    if len(values) > 1:
        raise InvalidArgument(
            f"query parameter {name} is given {len(values)} times; it takes one value", field=name
        )
    return one(values[0])


def query_fields(descriptor: Descriptor, query: list[tuple[str, str]]) -> dict[str, Any]:
    """Query parameters as a JSON-shaped dict for ``descriptor`` (unknown names are INVALID_ARGUMENT)."""
    grouped: dict[str, list[str]] = {}
    for key, value in query:
        grouped.setdefault(key, []).append(value)
    out: dict[str, Any] = {}
    for name, values in grouped.items():
        message, field = descriptor, None
        parts = name.split(".")
        for i, part in enumerate(parts):
            field = field_by_name(message, part) if message is not None else None
            if field is None:
                raise InvalidArgument(f"unknown query parameter {name!r} for {descriptor.name}", field=name)
            if i < len(parts) - 1:
                message = field.message_type
        assert field is not None
        is_plain_message = field.message_type is not None and not field.message_type.full_name.startswith(
            "google.protobuf."
        )
        if is_plain_message or field.message_type is not None and field.message_type.GetOptions().map_entry:
            raise InvalidArgument(
                f"query parameter {name!r} names a message; name one of its fields", field=name
            )
        _merge(out, _nested(name, _query_value(field, values, name)))
    return out


def build_request(
    request_class: type[Message],
    body: str,
    path_values: Mapping[str, str],
    json_body: Any,
    query: list[tuple[str, str]],
) -> Message:
    """The request of a route: path variables, the JSON body where ``body`` puts it, then the query.

    Raises:
        InvalidArgument: A body that is not a JSON object, an unknown field or query parameter,
            a value of the wrong type; the ``field`` names it.
    """
    fields: dict[str, Any] = {}
    if body:
        if json_body is None:
            json_body = {}
        if body == "*":
            if not isinstance(json_body, dict):
                raise InvalidArgument("the request body must be a JSON object", field="body")
            fields = dict(json_body)
        else:
            fields = {body: json_body}
    if body != "*":
        _merge(fields, query_fields(request_class.DESCRIPTOR, query))
    elif query:
        raise InvalidArgument(
            f"this route takes its fields in the body, not the query string "
            f"({', '.join(sorted({k for k, _ in query}))})",
            field=query[0][0],
        )
    for path, value in path_values.items():
        _merge(fields, _nested(path, value))
    return parse_json(request_class, fields)


def parse_json(request_class: type[Message], fields: Any) -> Message:
    """Parse a JSON-shaped value into ``request_class`` (proto or JSON field names)."""
    message = request_class()
    try:
        json_format.ParseDict(fields, message)
    except json_format.ParseError as exc:
        text = str(exc)
        raise InvalidArgument(
            f"the request does not match {request_class.DESCRIPTOR.full_name}: {text}", field=_field_in(text)
        ) from None
    return message


def _field_in(text: str) -> str:
    """The field a json_format error names (``... at SubmitTaskRequest.task.priority``), if any."""
    paths = re.findall(r'\bat "?([A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)', text)
    named = re.findall(r'field named "?([\w]+)', text)
    parts = paths[-1].split(".")[1:] if paths else []
    if not paths:  # "Failed to parse task field: Failed to parse max_agents field: invalid literal ..."
        parts = re.findall(r"Failed to parse (\w+) field", text)
    if named:
        parts.append(named[-1])
    return ".".join(parts) or "body"


def rename_fields(status: status_pb2.Status, rename: Callable[[str], str]) -> status_pb2.Status:
    """``status`` with the field of each ``BadRequest`` violation renamed (as a route's body names it)."""
    out = status_pb2.Status()
    out.CopyFrom(status)
    for detail in out.details:
        bad = error_details_pb2.BadRequest()
        if detail.Is(bad.DESCRIPTOR) and detail.Unpack(bad):
            for violation in bad.field_violations:
                violation.field = rename(violation.field)
            detail.Pack(bad)
    return out
