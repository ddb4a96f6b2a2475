"""An OpenAPI 3 document generated from the served RPCs' descriptors and HTTP rules."""

from __future__ import annotations

import re
from typing import Any

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from controlplane.http.aliases import ALIASES, Alias
from controlplane.http.rules import Route, field_by_name

_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": "string", "format": "uint64"},
    FieldDescriptor.TYPE_SINT64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    FieldDescriptor.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "example": "30s"},
    "google.protobuf.FieldMask": {"type": "string", "example": "priority,maxAgents"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
}
_PARAMETER = re.compile(r"\{([A-Za-z0-9_]+)\}")


class _Schemas:
    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, message: Descriptor) -> dict[str, Any]:
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        if message.full_name.startswith("google.protobuf.") and message.name.endswith("Value"):
            return self.field(message.fields_by_name["value"])  # wrappers are their value
        if message.full_name not in self.components:
            self.components[message.full_name] = {}  # recursion guard
            self.components[message.full_name] = {
                "type": "object",
                "properties": {f.json_name: self.field(f) for f in message.fields},
            }
        return {"$ref": f"#/components/schemas/{message.full_name}"}

    def single(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.type == FieldDescriptor.TYPE_ENUM:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        if field.message_type is not None:
            return self.ref(field.message_type)
        return dict(_SCALARS[field.type])

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            return {
                "type": "object",
                "additionalProperties": self.single(field.message_type.fields_by_name["value"]),
            }
        if field.is_repeated:
            return {"type": "array", "items": self.single(field)}
        return self.single(field)


def _query_parameters(schemas: _Schemas, message: Descriptor, bound: set[str]) -> list[dict[str, Any]]:
    params = []
    for field in message.fields:
        if field.name in bound:
            continue
        if field.message_type is not None and field.message_type.full_name not in _WELL_KNOWN:
            continue  # nested messages are set by dotted names; not listed one by one
        schema = schemas.field(field)
        param: dict[str, Any] = {"name": field.name, "in": "query", "required": False, "schema": schema}
        if field.is_repeated:
            param["explode"] = True
        params.append(param)
    return params


def _path_parameters(path: str) -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAMETER.findall(path)
    ]


def _error_responses() -> dict[str, Any]:
    error = {
        "description": "A google.rpc.Status (code, message, details: ErrorInfo, BadRequest, ...).",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/google.rpc.Status"}}},
    }
    return {"default": error}


def _operation(schemas: _Schemas, route: Route) -> dict[str, Any]:
    request, response = route.method.input_type, route.method.output_type
    bound = {v.split(".", 1)[0] for v in route.variables}
    parameters = _path_parameters(route.openapi_path)
    operation: dict[str, Any] = {
        "operationId": f"{route.method.containing_service.name}_{route.method.name}",
        "tags": [route.method.containing_service.name],
        "summary": route.rpc,
    }
    if route.body == "*":
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.ref(request)}},
        }
    elif route.body:
        field = field_by_name(request, route.body)
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.field(field)}},
        }
        parameters += _query_parameters(schemas, request, bound | {route.body})
    else:
        parameters += _query_parameters(schemas, request, bound)
    if route.server_streaming:
        operation["parameters"] = parameters + [
            {"name": "Last-Event-ID", "in": "header", "required": False, "schema": {"type": "string"}}
        ]
        operation["responses"] = {
            "200": {
                "description": f"Server-Sent Events, each `data:` a {response.full_name} in JSON.",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
            **_error_responses(),
        }
        schemas.ref(response)
    else:
        operation["parameters"] = parameters
        operation["responses"] = {
            "200": {
                "description": response.full_name,
                "content": {"application/json": {"schema": schemas.ref(response)}},
            },
            **_error_responses(),
        }
    return operation


def _alias_operation(schemas: _Schemas, alias: Alias) -> dict[str, Any]:
    method = descriptor_pool.Default().FindMethodByName(alias.rpc)
    operation: dict[str, Any] = {
        "operationId": "alias_" + alias.verb.lower() + re.sub(r"\W+", "_", alias.path),
        "tags": ["Guide paths"],
        "summary": alias.summary or alias.rpc,
        "description": f"Calls {alias.rpc}; field names as in the protos (snake_case).",
        "parameters": _path_parameters(alias.path),
        "responses": {
            "200": {
                "description": method.output_type.full_name,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            **_error_responses(),
        },
    }
    if alias.verb in ("POST", "PUT", "PATCH"):
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    return operation


def openapi_document(routes: list[Route], title: str = "MAOS", version: str = "v1") -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes`` and the guide's alias paths."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.openapi_path, {})[route.verb.lower()] = _operation(schemas, route)
    for alias in ALIASES:
        paths.setdefault(alias.path, {})[alias.verb.lower()] = _alias_operation(schemas, alias)
    from google.rpc import status_pb2

    schemas.ref(status_pb2.Status.DESCRIPTOR)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "The MAOS HTTP/JSON API, transcoded from the gRPC API (google.api.http).",
        },
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key: Authorization: Bearer maos_key_...",
                }
            },
        },
        "security": [{"apiKey": []}],
        "paths": paths,
    }


def routes_table(routes: list[Route]) -> str:
    """The Markdown table of every HTTP route (docs/http.md holds it; a test keeps it current)."""
    rows = ["| Method | Path | RPC |", "|---|---|---|"]
    for route in routes:
        suffix = " (SSE)" if route.server_streaming else ""
        rows.append(f"| {route.verb} | `{route.openapi_path}` | `{route.rpc}`{suffix} |")
    for alias in ALIASES:
        rows.append(f"| {alias.verb} | `{alias.path}` | `{alias.rpc}` (guide path) |")
    return "\n".join(rows) + "\n"


if (
    __name__ == "__main__"
):  # python -m controlplane.http.openapi [--markdown]: print the document or the table
    import json
    import sys

    from controlplane.api.server import SERVICE_NAMES
    from controlplane.http.rules import routes_of

    served = routes_of(SERVICE_NAMES)
    sys.stdout.write(
        routes_table(served)
        if "--markdown" in sys.argv
        else json.dumps(openapi_document(served), indent=2) + "\n"
    )
