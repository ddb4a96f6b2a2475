"""The HTTP routes of the served RPCs, read from their ``google.api.http`` options.

A rule's path template (``/v1/{name=tasks/*}:cancel``) becomes a regular expression whose
named groups fill the request fields it names; the rule's ``body`` says where the JSON body
goes (``*``: the whole request; a field name: that field; none: the query string carries the
rest). Nothing here knows a particular service: a service gets routes by its annotations.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import dataclass

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

import agent_sdk.proto.maos.v1 as _stubs

_VERBS = ("get", "put", "post", "delete", "patch")
_VARIABLE = re.compile(r"\{([a-zA-Z0-9_.]+)(?:=([^}]*))?\}")


def load_stub_modules() -> None:
    """Import every generated ``*_pb2`` module so its services are in the default pool."""
    for info in pkgutil.iter_modules(_stubs.__path__):
        if info.name.endswith("_pb2"):
            importlib.import_module(f"{_stubs.__name__}.{info.name}")


def _segment_regex(pattern: str) -> str:
    """The regex of a variable's pattern (``tasks/*``, ``**``); ``*`` is one segment without a verb."""
    parts = []
    for segment in pattern.split("/"):
        if segment == "**":
            parts.append(r"[^:]+")
        elif segment == "*":
            parts.append(r"[^/:]+")
        else:
            parts.append(re.escape(segment))
    return "/".join(parts)


def singular(collection: str) -> str:
    """``tasks`` -> ``task``, ``batches`` -> ``batch``, ``policies`` -> ``policy``."""
    if collection.endswith("ies"):
        return collection[:-3] + "y"
    if collection.endswith(("ches", "shes", "sses", "xes")):
        return collection[:-2]
    return collection.removesuffix("s")


@dataclass(frozen=True)
class Route:
    """One HTTP binding of one RPC."""

    verb: str  # GET, POST, ...
    template: str  # /v1/{name=tasks/*}:cancel
    regex: re.Pattern[str]
    variables: tuple[str, ...]  # request field paths bound by the path, in group order
    body: str  # "" (none), "*" or a request field name
    method: MethodDescriptor

    @property
    def full_method(self) -> str:
        """The gRPC path, ``/maos.v1.TaskService/CancelTask``."""
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def rpc(self) -> str:
        """``maos.v1.TaskService.CancelTask``."""
        name: str = self.method.full_name
        return name

    @property
    def server_streaming(self) -> bool:
        """Whether the RPC streams its responses (served as Server-Sent Events)."""
        streaming: bool = self.method.server_streaming
        return streaming

    @property
    def openapi_path(self) -> str:
        """The template with each variable as an OpenAPI parameter: ``/v1/tasks/{task}:cancel``."""
        return _VARIABLE.sub(lambda m: _openapi_variable(m.group(2) or "*", m.group(1)), self.template)

    def match(self, path: str) -> dict[str, str] | None:
        """The bound field values if ``path`` matches, else None."""
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        return dict(zip(self.variables, found.groups(), strict=True))

    def request_class(self) -> type[Message]:
        """The request message class."""
        cls: type[Message] = GetMessageClass(self.method.input_type)
        return cls

    def response_class(self) -> type[Message]:
        """The response message class."""
        cls: type[Message] = GetMessageClass(self.method.output_type)
        return cls


def _openapi_variable(pattern: str, field: str) -> str:
    """``tasks/*`` -> ``tasks/{task}``; a bare ``*`` -> ``{field}``."""
    out = []
    segments = pattern.split("/")
    for i, segment in enumerate(segments):
        if segment in ("*", "**"):
            name = singular(segments[i - 1]) if i > 0 else field.replace(".", "_")
            out.append("{" + name + "}")
        else:
            out.append(segment)
    return "/".join(out)


def _compile(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    variables: list[str] = []
    regex = ""
    position = 0
    for found in _VARIABLE.finditer(template):
        regex += re.escape(template[position : found.start()])
        variables.append(found.group(1))
        regex += f"({_segment_regex(found.group(2) or '*')})"
        position = found.end()
    regex += re.escape(template[position:])
    return re.compile(regex), tuple(variables)


def _bindings(rule: http_pb2.HttpRule) -> list[http_pb2.HttpRule]:
    return [rule, *rule.additional_bindings]


def routes_of(service_names: list[str]) -> list[Route]:
    """The HTTP routes of the annotated RPCs of these services (unannotated RPCs have none)."""
    load_stub_modules()
    pool = descriptor_pool.Default()
    routes: list[Route] = []
    for service_name in service_names:
        service = pool.FindServiceByName(service_name)
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http) or method.client_streaming:
                continue
            for binding in _bindings(options.Extensions[annotations_pb2.http]):
                verb = binding.WhichOneof("pattern")
                if verb not in _VERBS:
                    continue
                template = getattr(binding, verb)
                regex, variables = _compile(template)
                routes.append(Route(verb.upper(), template, regex, variables, binding.body, method))
    return routes


def field_by_name(message: Descriptor, name: str) -> FieldDescriptor | None:
    """A field by its proto name (``page_size``) or JSON name (``pageSize``)."""
    return message.fields_by_name.get(name) or next((f for f in message.fields if f.json_name == name), None)
