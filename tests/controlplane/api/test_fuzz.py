"""Property-based fuzz of every user-facing RPC, unary and streaming, and the agent gateway, with random and
invalid messages.

One control plane runs for the whole module on its own event loop in a background
thread; hypothesis drives synchronous tests that call it through that loop. The
properties: no call ends in UNKNOWN or INTERNAL (nor hangs), and a rejected call of
a mutating RPC leaves the observable state (tasks, agents, status counts) unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as _descriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent_sdk.proto.maos.v1 import (
    access_service_pb2,
    access_service_pb2_grpc,
    agent_gateway_pb2_grpc,
    agent_service_pb2,
    agent_service_pb2_grpc,
    audit_service_pb2,
    audit_service_pb2_grpc,
    batch_service_pb2,
    batch_service_pb2_grpc,
    checkpoint_service_pb2,
    checkpoint_service_pb2_grpc,
    messages_pb2,
    system_service_pb2,
    system_service_pb2_grpc,
    task_service_pb2,
    task_service_pb2_grpc,
    template_service_pb2,
    template_service_pb2_grpc,
    webhook_service_pb2,
    webhook_service_pb2_grpc,
)
from agent_sdk.proto.maos.v1 import (
    agent_gateway_pb2 as gateway_pb2,
)
from tests.harness.server import make_settings, start_app

FD = _descriptor.FieldDescriptor
CALL_TIMEOUT = 10.0
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL, grpc.StatusCode.DEADLINE_EXCEEDED}

#: (module, stub class, service name) of the user-facing services.
SERVICES = [
    (task_service_pb2, task_service_pb2_grpc.TaskServiceStub, "TaskService"),
    (agent_service_pb2, agent_service_pb2_grpc.AgentServiceStub, "AgentService"),
    (system_service_pb2, system_service_pb2_grpc.SystemServiceStub, "SystemService"),
    (checkpoint_service_pb2, checkpoint_service_pb2_grpc.CheckpointServiceStub, "CheckpointService"),
    (access_service_pb2, access_service_pb2_grpc.AccessServiceStub, "AccessService"),
    (audit_service_pb2, audit_service_pb2_grpc.AuditServiceStub, "AuditService"),
    (batch_service_pb2, batch_service_pb2_grpc.BatchServiceStub, "BatchService"),
    (template_service_pb2, template_service_pb2_grpc.TemplateServiceStub, "TemplateService"),
    (webhook_service_pb2, webhook_service_pb2_grpc.WebhookServiceStub, "WebhookService"),
]
#: Streaming RPCs, and the ones that replace the whole state, are not fuzzed here.
SKIPPED = {"Recover", "ImportCheckpoint", "WatchTask", "TailLogs", "WatchEvents", "ExportCheckpoint"}
#: Mutating RPCs whose rejection must leave the observable state unchanged.
MUTATING = {
    "SubmitTask",
    "BatchSubmitTasks",
    "CancelTask",
    "RetryTask",
    "UpdateTask",
    "SpawnAgents",
    "TerminateAgent",
    "PauseAgent",
    "ResumeAgent",
    "DrainAgent",
    "SetConfig",
    "CreateCheckpoint",
    "DeleteCheckpoint",
    "CreateUser",
    "UpdateUser",
    "DeleteUser",
    "CreateRole",
    "UpdateRole",
    "DeleteRole",
    "CreateApiKey",
    "RevokeApiKey",
    "RotateApiKey",
    "CreateJoinToken",
    "RevokeJoinToken",
    "CreateBatch",
    "AddBatchTask",
    "SubmitBatch",
    "DeleteBatch",
    "CreateTemplate",
    "DeleteTemplate",
    "SubmitTaskFromTemplate",
    "CreateWebhook",
    "UpdateWebhook",
    "DeleteWebhook",
}

METHODS: list[tuple[str, str, Any]] = []  # (service, method, method descriptor)
for _module, _stub, _service in SERVICES:
    for _method in _module.DESCRIPTOR.services_by_name[_service].methods:
        if _method.name not in SKIPPED and not _method.server_streaming and not _method.client_streaming:
            METHODS.append((_service, _method.name, _method))
STUB_CLASSES = {service: stub for _, stub, service in SERVICES}


# ---------------------------------------------------------------- strategies

#: Names that exist while the fuzz runs (filled in by the fixture).
KNOWN_NAMES: list[str] = []
PREFIXES = [
    "tasks/",
    "agents/",
    "users/",
    "roles/",
    "checkpoints/",
    "apiKeys/",
    "joinTokens/",
    "batches/",
    "",
]

texts = st.one_of(
    st.just(""),
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=40),
    st.sampled_from(["\x00", " ", "*", "..", "/", "-", "a" * 64, "tasks/", "tasks/../x", "%s", "{}", "null"]),
    st.integers(min_value=1, max_value=5000).map(lambda n: "x" * n),
)
names = st.one_of(
    texts,
    st.tuples(st.sampled_from(PREFIXES), texts).map("".join),
    st.deferred(lambda: st.sampled_from(KNOWN_NAMES) if KNOWN_NAMES else st.just("tasks/none")),
)
INT_RANGES = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}


def ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    """Small values, edges, and anything in range."""
    edges = [v for v in (lo, hi, -1, 0, 1, 2, 3, 10, 1000, 1001) if lo <= v <= hi]
    return st.one_of(
        st.sampled_from(edges), st.integers(-5, 100).filter(lambda v: lo <= v <= hi), st.integers(lo, hi)
    )


floats = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 1e308, -1e308, math.inf, -math.inf, math.nan]),
    st.floats(allow_nan=True, allow_infinity=True),
)


def scalar(field: Any) -> st.SearchStrategy[Any]:
    """A random value for a non-message field."""
    t = field.type
    if t == FD.TYPE_STRING:
        lowered = field.name.lower()
        if lowered in (
            "name",
            "user",
            "task",
            "agent",
            "batch",
            "checkpoint",
            "depends_on",
            "owner",
        ) or lowered.endswith(("_name", "_id")):
            return names
        return texts
    if t == FD.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == FD.TYPE_BOOL:
        return st.booleans()
    if t in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return (
            floats
            if t == FD.TYPE_DOUBLE
            else floats.map(lambda v: v if not math.isfinite(v) or abs(v) < 3e38 else 0.0)
        )
    if t == FD.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1), st.sampled_from([-1, 999]))
    return ints(*INT_RANGES[t])


def duration(msg: Any) -> st.SearchStrategy[dict[str, int]]:
    return st.one_of(
        st.fixed_dictionaries({"seconds": st.integers(-10, 100_000), "nanos": st.integers(0, 999_999_999)}),
        st.fixed_dictionaries(
            {
                "seconds": st.integers(-315_576_000_000, 315_576_000_000),
                "nanos": st.integers(-999_999_999, 999_999_999),
            }
        ),
        st.fixed_dictionaries(
            {"seconds": st.integers(-(2**63), 2**63 - 1), "nanos": st.integers(-(2**31), 2**31 - 1)}
        ),
    )


def timestamp(msg: Any) -> st.SearchStrategy[dict[str, int]]:
    return st.one_of(
        st.fixed_dictionaries(
            {"seconds": st.integers(0, 253_402_300_799), "nanos": st.integers(0, 999_999_999)}
        ),
        st.fixed_dictionaries(
            {"seconds": st.integers(-(2**63), 2**63 - 1), "nanos": st.integers(-(2**31), 2**31 - 1)}
        ),
    )


def field_mask(descriptor: Any) -> st.SearchStrategy[dict[str, list[str]]]:
    paths = [f.name for f in descriptor.fields] if descriptor is not None else []
    return st.fixed_dictionaries(
        {"paths": st.lists(st.one_of(st.sampled_from(paths or ["x"]), texts), max_size=4)}
    )


def message(descriptor: Any, depth: int = 0, sibling: Any = None) -> st.SearchStrategy[dict[str, Any]]:
    """A dict of random field values for ``descriptor`` (each field present or not)."""
    full = descriptor.full_name
    if full == "google.protobuf.Duration":
        return duration(descriptor)
    if full == "google.protobuf.Timestamp":
        return timestamp(descriptor)
    if full == "google.protobuf.FieldMask":
        return field_mask(sibling)
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = (
                scalar(field.message_type.fields_by_name["value"])
                if field.message_type.fields_by_name["value"].message_type is None
                else st.just({})
            )
            strategy: st.SearchStrategy[Any] = st.dictionaries(texts, value, max_size=4)
        elif field.message_type is not None:
            if depth >= 2 and not field.message_type.full_name.startswith("google.protobuf"):
                continue
            mask_target = next(
                (
                    f.message_type
                    for f in descriptor.fields
                    if f.message_type is not None and not f.message_type.full_name.startswith("google")
                ),
                None,
            )
            inner = message(field.message_type, depth + 1, mask_target)
            strategy = st.lists(inner, max_size=3) if field.is_repeated else inner
        else:
            strategy = st.lists(scalar(field), max_size=4) if field.is_repeated else scalar(field)
        optional[field.name] = strategy
    return st.fixed_dictionaries({}, optional=optional)


def build(cls: type, values: dict[str, Any]) -> Any:
    """A message of ``cls`` from a nested dict; fields of one oneof: the last wins."""
    msg = cls()
    _fill(msg, values)
    return msg


def _fill(msg: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        field = msg.DESCRIPTOR.fields_by_name[key]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            getattr(msg, key).update(value)
        elif field.message_type is not None and field.is_repeated:
            for item in value:
                _fill(getattr(msg, key).add(), item)
        elif field.message_type is not None:
            sub = getattr(msg, key)
            sub.SetInParent()
            _fill(sub, value)
        elif field.is_repeated:
            getattr(msg, key).extend(value)
        else:
            setattr(msg, key, value)


# ---------------------------------------------------------------- the server


class Remote:
    """A control plane on a background event loop; ``call`` runs one RPC from sync code."""

    def __init__(self, home: Path):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        # No automatic checkpoints (and their retention pruning) in the middle of a comparison.
        self.app = self.run(start_app(make_settings(home, **{"checkpoints.interval": 86400.0})))
        self.channel = self.run(self._channel())
        self.stubs = {service: cls(self.channel) for service, cls in STUB_CLASSES.items()}

    async def _channel(self) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(f"127.0.0.1:{self.app.port}")

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, service: str, method: str, request: Any) -> tuple[grpc.StatusCode, Any]:
        """(code, response or details) of one unary call."""

        async def go() -> tuple[grpc.StatusCode, Any]:
            try:
                return grpc.StatusCode.OK, await getattr(self.stubs[service], method)(
                    request, timeout=CALL_TIMEOUT
                )
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details()

        return self.run(go(), timeout=CALL_TIMEOUT + 10)

    def fingerprint(self) -> tuple[Any, ...]:
        """What a rejected mutation must not change."""
        tasks, token = [], ""
        while True:
            code, resp = self.call(
                "TaskService",
                "ListTasks",
                task_service_pb2.ListTasksRequest(page_size=1000, page_token=token),
            )
            assert code == grpc.StatusCode.OK, resp
            tasks += [(t.name, t.status, t.priority, t.description, t.status_reason) for t in resp.tasks]
            token = resp.next_page_token
            if not token:
                break
        code, agents = self.call(
            "AgentService",
            "ListAgents",
            agent_service_pb2.ListAgentsRequest(page_size=1000, include_terminated=True),
        )
        assert code == grpc.StatusCode.OK, agents
        code, status = self.call("SystemService", "GetStatus", system_service_pb2.GetStatusRequest())
        assert code == grpc.StatusCode.OK, status
        code, users = self.call(
            "AccessService", "ListUsers", access_service_pb2.ListUsersRequest(page_size=1000)
        )
        assert code == grpc.StatusCode.OK, users
        code, roles = self.call(
            "AccessService", "ListRoles", access_service_pb2.ListRolesRequest(page_size=1000)
        )
        assert code == grpc.StatusCode.OK, roles
        code, cps = self.call(
            "CheckpointService",
            "ListCheckpoints",
            checkpoint_service_pb2.ListCheckpointsRequest(page_size=1000),
        )
        assert code == grpc.StatusCode.OK, cps
        code, tokens = self.call(
            "AccessService", "ListJoinTokens", access_service_pb2.ListJoinTokensRequest(page_size=1000)
        )
        assert code == grpc.StatusCode.OK, tokens
        code, batches = self.call(
            "BatchService", "ListBatches", batch_service_pb2.ListBatchesRequest(page_size=1000)
        )
        assert code == grpc.StatusCode.OK, batches
        code, templates = self.call(
            "TemplateService", "ListTemplates", template_service_pb2.ListTemplatesRequest(page_size=1000)
        )
        assert code == grpc.StatusCode.OK, templates
        code, hooks = self.call(
            "WebhookService", "ListWebhooks", webhook_service_pb2.ListWebhooksRequest(page_size=1000)
        )
        assert code == grpc.StatusCode.OK, hooks
        return (
            sorted(b.SerializeToString(deterministic=True) for b in batches.batches),
            sorted(t.SerializeToString(deterministic=True) for t in templates.templates),
            sorted(w.SerializeToString(deterministic=True) for w in hooks.webhooks),
            sorted(tasks),
            sorted((a.name, a.status) for a in agents.agents),
            sorted(c.SerializeToString(deterministic=True) for c in [*status.tasks, *status.agents]),
            sorted(u.SerializeToString(deterministic=True) for u in users.users),
            sorted(r.SerializeToString(deterministic=True) for r in roles.roles),
            sorted(c.name for c in cps.checkpoints if not c.automatic),  # automatic ones come on a timer
            sorted(t.SerializeToString(deterministic=True) for t in tokens.join_tokens),
        )

    def close(self) -> None:
        try:
            self.run(self.channel.close())
            self.run(self.app.stop(grace=1.0))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    server = Remote(tmp_path_factory.mktemp("fuzz-home"))
    try:
        code, resp = server.call(
            "TaskService",
            "SubmitTask",
            task_service_pb2.SubmitTaskRequest(task=messages_pb2.Task(description="a known task")),
        )
        assert code == grpc.StatusCode.OK, resp
        code, token = server.call(
            "AccessService", "CreateJoinToken", access_service_pb2.CreateJoinTokenRequest()
        )
        assert code == grpc.StatusCode.OK, token
        KNOWN_NAMES[:] = [
            resp.task.name if hasattr(resp, "task") else resp.name,
            "users/admin",
            "roles/admin",
            token.join_token.name,
        ]
        yield server
    finally:
        KNOWN_NAMES.clear()
        server.close()


# ---------------------------------------------------------------- the properties

FUZZ = settings(
    max_examples=int(os.environ.get("MAOS_FUZZ_EXAMPLES", "40")),
    deadline=None,
    derandomize=not os.environ.get("MAOS_FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


def check(remote: Remote, service: str, method: str, request: Any) -> None:
    mutating = method in MUTATING
    before = remote.fingerprint() if mutating else None
    code, detail = remote.call(service, method, request)
    assert code not in FORBIDDEN, f"{service}.{method} -> {code.name}: {detail!r}\nrequest: {request!r:.2000}"
    if mutating and code != grpc.StatusCode.OK:
        assert remote.fingerprint() == before, f"{service}.{method} rejected ({code.name}) but changed state"


@pytest.mark.parametrize(
    ("service", "method", "descriptor"), METHODS, ids=[f"{s}.{m}" for s, m, _ in METHODS]
)
def test_rpc_never_fails_internally(remote: Remote, service: str, method: str, descriptor: Any) -> None:
    request_cls = getattr(
        next(module for module, _, name in SERVICES if name == service), descriptor.input_type.name
    )

    @FUZZ
    @given(values=message(descriptor.input_type))
    def fuzz(values: dict[str, Any]) -> None:
        check(remote, service, method, build(request_cls, values))

    fuzz()


def test_garbage_bytes_are_rejected_cleanly(remote: Remote) -> None:
    """Undecodable request bytes get INVALID_ARGUMENT (never UNKNOWN or INTERNAL) and the server still serves."""

    @FUZZ
    @given(st.sampled_from(METHODS), st.binary(min_size=1, max_size=200))
    def fuzz(target: tuple[str, str, Any], raw: bytes) -> None:
        service, method, _ = target
        path = f"/maos.v1.{service}/{method}"

        async def go() -> tuple[grpc.StatusCode, str]:
            call = remote.channel.unary_unary(path, request_serializer=None, response_deserializer=None)
            try:
                await call(raw, timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details() or ""
            return grpc.StatusCode.OK, ""

        code, detail = remote.run(go(), timeout=CALL_TIMEOUT + 10)
        assert code not in FORBIDDEN, f"{path} with {raw!r} -> {code.name}: {detail}"

    fuzz()
    code, detail = remote.call("SystemService", "GetHealth", system_service_pb2.GetHealthRequest())
    assert code == grpc.StatusCode.OK, detail


def test_undecodable_request_is_invalid_argument(remote: Remote) -> None:
    async def go() -> grpc.StatusCode:
        call = remote.channel.unary_unary("/maos.v1.TaskService/SubmitTask")
        try:
            await call(b"\x00", timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    assert remote.run(go()) == grpc.StatusCode.INVALID_ARGUMENT


# ---------------------------------------------------------------- regressions found by the fuzz

IA = grpc.StatusCode.INVALID_ARGUMENT
FP = grpc.StatusCode.FAILED_PRECONDITION
REGRESSIONS = [
    # Once implemented: an empty name is INVALID_ARGUMENT, built-in users and roles stay.
    *[
        ("AccessService", m, getattr(access_service_pb2, f"{m}Request")(), IA)
        for m in ("UpdateUser", "DeleteUser", "DeleteRole")
    ],
    ("AccessService", "DeleteUser", access_service_pb2.DeleteUserRequest(name="users/admin"), FP),
    ("AccessService", "DeleteRole", access_service_pb2.DeleteRoleRequest(name="roles/admin"), FP),
    (
        "AccessService",
        "UpdateUser",
        access_service_pb2.UpdateUserRequest(
            user=messages_pb2.User(name="users/admin"), update_mask={"paths": ["email"]}
        ),
        IA,
    ),
    # Join tokens: durations, agent type names, names and page tokens are checked before anything is stored
    # (a ttl of 0 means the default, 24 h, as for CreateApiKey).
    *[
        ("AccessService", "CreateJoinToken", access_service_pb2.CreateJoinTokenRequest(ttl=ttl), IA)
        for ttl in (
            {"seconds": 2**40},
            {"seconds": -1},
            {"seconds": 1, "nanos": -5},
            {"seconds": 30 * 86400 + 1},
        )
    ],
    (
        "AccessService",
        "CreateJoinToken",
        access_service_pb2.CreateJoinTokenRequest(
            join_token=messages_pb2.JoinToken(agent_types=["ok", "\u00b2"])
        ),
        IA,
    ),
    ("AccessService", "RevokeJoinToken", access_service_pb2.RevokeJoinTokenRequest(name=""), IA),
    ("AccessService", "RevokeJoinToken", access_service_pb2.RevokeJoinTokenRequest(name="joinTokens/x"), IA),
    (
        "AccessService",
        "RevokeJoinToken",
        access_service_pb2.RevokeJoinTokenRequest(name="joinTokens/zzzzzz"),
        grpc.StatusCode.NOT_FOUND,
    ),
    # A whole token or API key where an id belongs: INVALID_ARGUMENT (not NOT_FOUND echoing the secret).
    (
        "AccessService",
        "RevokeJoinToken",
        access_service_pb2.RevokeJoinTokenRequest(name="joinTokens/abc123.0123456789abcdef"),
        IA,
    ),
    (
        "AccessService",
        "RevokeApiKey",
        access_service_pb2.RevokeApiKeyRequest(name="apiKeys/maos_key_" + "a" * 32 + "_abcdef"),
        IA,
    ),
    (
        "AccessService",
        "RotateApiKey",
        access_service_pb2.RotateApiKeyRequest(name="maos_key_" + "a" * 32),
        IA,
    ),
    ("AccessService", "ListJoinTokens", access_service_pb2.ListJoinTokensRequest(page_token="\u00b2"), IA),
    ("AccessService", "ListJoinTokens", access_service_pb2.ListJoinTokensRequest(page_size=-1), IA),
    # An out-of-range Duration overflowed ToTimedelta -> INTERNAL.
    ("AccessService", "CreateApiKey", access_service_pb2.CreateApiKeyRequest(ttl={"seconds": 2**40}), IA),
    ("AccessService", "CreateApiKey", access_service_pb2.CreateApiKeyRequest(ttl={"seconds": -(2**62)}), IA),
    (
        "AccessService",
        "CreateApiKey",
        access_service_pb2.CreateApiKeyRequest(ttl={"seconds": 1, "nanos": -5}),
        IA,
    ),
    # A negative ttl was stored, and its expire_time then broke every ListApiKeys -> INTERNAL.
    ("AccessService", "CreateApiKey", access_service_pb2.CreateApiKeyRequest(ttl={"seconds": -10}), IA),
    (
        "AccessService",
        "RotateApiKey",
        access_service_pb2.RotateApiKeyRequest(name="apiKeys/x", overlap={"seconds": 2**40}),
        IA,
    ),
    (
        "AccessService",
        "RotateApiKey",
        access_service_pb2.RotateApiKeyRequest(name="apiKeys/x", overlap={"seconds": -1}),
        IA,
    ),
    # Audit: negative page_size reached storage, an unknown decision broke Enum.Name -> INTERNAL.
    ("AuditService", "ListAuditRecords", audit_service_pb2.ListAuditRecordsRequest(page_size=-(2**31)), IA),
    ("AuditService", "ListAuditRecords", audit_service_pb2.ListAuditRecordsRequest(decision=-1), IA),
    ("AuditService", "ListAuditRecords", audit_service_pb2.ListAuditRecordsRequest(decision=999), IA),
    # "²".isdigit() is true but int("²") raises -> INTERNAL; huge numbers overflowed SQLite.
    ("AuditService", "ListAuditRecords", audit_service_pb2.ListAuditRecordsRequest(page_token="\u00b2"), IA),
    ("AuditService", "ListAuditRecords", audit_service_pb2.ListAuditRecordsRequest(page_token="9" * 40), IA),
    ("AccessService", "ListUsers", access_service_pb2.ListUsersRequest(page_token="\u00b2"), IA),
    ("AccessService", "ListRoles", access_service_pb2.ListRolesRequest(page_token="1" * 30), IA),
]


@pytest.mark.parametrize(
    ("service", "method", "request_msg", "expected"),
    REGRESSIONS,
    ids=[f"{s}.{m}-{i}" for i, (s, m, _, _) in enumerate(REGRESSIONS)],
)
def test_regression(
    remote: Remote, service: str, method: str, request_msg: Any, expected: grpc.StatusCode
) -> None:
    before = remote.fingerprint()
    code, detail = remote.call(service, method, request_msg)
    assert code == expected, detail
    assert remote.fingerprint() == before
    code, detail = remote.call("AccessService", "ListApiKeys", access_service_pb2.ListApiKeysRequest())
    assert code == grpc.StatusCode.OK, detail


def test_stream_submit_answers_every_request_cleanly(remote: Remote) -> None:
    """StreamSubmitTasks with random requests: one answer each, in order, never UNKNOWN or INTERNAL,
    and exactly the tasks of the accepted requests are stored."""
    descriptor = task_service_pb2.DESCRIPTOR.message_types_by_name["StreamSubmitTasksRequest"]
    forbidden = {code.value[0] for code in FORBIDDEN}

    @FUZZ
    @given(st.lists(message(descriptor), min_size=1, max_size=4))
    def fuzz(values: list[dict[str, Any]]) -> None:
        requests = [build(task_service_pb2.StreamSubmitTasksRequest, v) for v in values]
        before = {name for name, *_ in remote.fingerprint()[0]}

        async def go() -> list[Any]:
            call = remote.stubs["TaskService"].StreamSubmitTasks(iter(requests), timeout=CALL_TIMEOUT)
            return [answer async for answer in call]

        answers = remote.run(go(), timeout=CALL_TIMEOUT + 10)
        assert len(answers) == len(requests)
        errors = [a.error for a in answers if a.WhichOneof("outcome") == "error"]
        assert not [e for e in errors if e.code in forbidden], errors
        stored = {a.task.name for a in answers if a.WhichOneof("outcome") == "task"}
        after = {name for name, *_ in remote.fingerprint()[0]}
        assert after - before == stored - before  # refused requests stored nothing

    fuzz()


# ---------------------------------------------------------------- streaming RPCs and the agent gateway

#: Seconds a streaming call is given to answer or fail before it is taken as open and cancelled.
STREAM_WAIT = 0.3
STREAM_FUZZ = settings(FUZZ, max_examples=max(5, FUZZ.max_examples // 3))
SERVER_STREAMING = [
    (s, m.name, m)
    for module, _, s in SERVICES
    for m in module.DESCRIPTOR.services_by_name[s].methods
    if m.server_streaming and not m.client_streaming
]


async def _first_outcome(call: Any) -> tuple[grpc.StatusCode | None, str]:
    """How a streaming call answered: its status if it failed or ended within STREAM_WAIT, else None."""
    try:
        while True:
            message = await asyncio.wait_for(call.read(), STREAM_WAIT)
            if message is grpc.aio.EOF:
                return grpc.StatusCode.OK, ""
    except TimeoutError:
        return None, ""
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    finally:
        call.cancel()


@pytest.mark.parametrize(
    ("service", "method", "descriptor"), SERVER_STREAMING, ids=[f"{s}.{m}" for s, m, _ in SERVER_STREAMING]
)
def test_server_streams_never_fail_internally(
    remote: Remote, service: str, method: str, descriptor: Any
) -> None:
    """WatchTask, TailLogs, WatchEvents, ExportCheckpoint: a random request fails cleanly or streams."""
    request_cls = getattr(
        next(module for module, _, name in SERVICES if name == service), descriptor.input_type.name
    )

    @STREAM_FUZZ
    @given(values=message(descriptor.input_type))
    def fuzz(values: dict[str, Any]) -> None:
        request = build(request_cls, values)

        async def go() -> tuple[grpc.StatusCode | None, str]:
            return await _first_outcome(getattr(remote.stubs[service], method)(request, timeout=CALL_TIMEOUT))

        code, detail = remote.run(go(), timeout=CALL_TIMEOUT + 10)
        assert code not in FORBIDDEN, f"{service}.{method} -> {code}: {detail}\nrequest: {request!r:.2000}"

    fuzz()


def test_import_checkpoint_never_fails_internally(remote: Remote) -> None:
    """Random metadata and chunks: refused cleanly, and a refused import stores nothing."""
    meta = messages_pb2.Checkpoint.DESCRIPTOR
    chunks = st.lists(
        st.one_of(st.binary(max_size=64), st.just(b"x\x9c"), st.just(b"\x78\x9c\x03\x00")), max_size=4
    )

    @STREAM_FUZZ
    @given(st.one_of(st.none(), message(meta)), chunks)
    def fuzz(values: dict[str, Any] | None, parts: list[bytes]) -> None:
        requests = (
            []
            if values is None
            else [
                checkpoint_service_pb2.ImportCheckpointRequest(
                    checkpoint=build(messages_pb2.Checkpoint, values)
                )
            ]
        )
        requests += [checkpoint_service_pb2.ImportCheckpointRequest(chunk=p) for p in parts]
        before = remote.fingerprint()

        async def go() -> tuple[grpc.StatusCode, str]:
            try:
                await remote.stubs["CheckpointService"].ImportCheckpoint(iter(requests), timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                return exc.code(), exc.details() or ""
            return grpc.StatusCode.OK, ""

        code, detail = remote.run(go(), timeout=CALL_TIMEOUT + 10)
        assert code not in FORBIDDEN, f"ImportCheckpoint -> {code.name}: {detail}"
        if code != grpc.StatusCode.OK:
            assert remote.fingerprint() == before

    fuzz()


def test_recover_verify_only_never_fails_internally(remote: Remote) -> None:
    """Recover with random fields but verify_only (a real restore would replace the state under the fuzz)."""
    descriptor = checkpoint_service_pb2.DESCRIPTOR.message_types_by_name["RecoverRequest"]

    @STREAM_FUZZ
    @given(message(descriptor))
    def fuzz(values: dict[str, Any]) -> None:
        request = build(checkpoint_service_pb2.RecoverRequest, values)
        request.verify_only = True
        before = remote.fingerprint()
        code, detail = remote.call("CheckpointService", "Recover", request)
        assert code not in FORBIDDEN, f"Recover -> {code.name}: {detail}"
        assert remote.fingerprint() == before

    fuzz()


#: What a grpc aio client reports, instead of the server's status, when it keeps writing to a stream
#: the server has refused (grpc/grpc#36066): not an error of the server's, whose own are never worded so.
GRPC_CORE_RACE = "Internal error from Core"


class _Errors(logging.Handler):
    """Collects ERROR records of the control plane's gateway (a report that broke its handling)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_agent_gateway_connect_never_fails_internally(remote: Remote) -> None:
    """AgentGateway.Connect with a Register (random, or a valid one) and then random reports: the stream
    ends cleanly or with a clean status, and no report breaks its handling (no error logged)."""
    register = gateway_pb2.Register.DESCRIPTOR
    report = gateway_pb2.ConnectRequest.DESCRIPTOR
    valid = st.fixed_dictionaries(
        {"agent_type": st.just("fuzz"), "max_concurrency": st.integers(1, 4)},
        optional={
            "labels": st.dictionaries(texts, texts, max_size=3),
            "hostname": texts,
            "capabilities": st.lists(texts, max_size=3),
        },
    )
    errors = _Errors()
    logger = logging.getLogger("controlplane")

    @STREAM_FUZZ
    @given(st.one_of(valid, message(register)), st.lists(message(report), max_size=4))
    def fuzz(first: dict[str, Any], rest: list[dict[str, Any]]) -> None:
        requests = [
            gateway_pb2.ConnectRequest(register=build(gateway_pb2.Register, first)),
            *(build(gateway_pb2.ConnectRequest, r) for r in rest),
        ]

        async def go() -> tuple[grpc.StatusCode | None, str]:
            stub = agent_gateway_pb2_grpc.AgentGatewayStub(remote.channel)
            return await _first_outcome(stub.Connect(iter(requests), timeout=CALL_TIMEOUT))

        code, detail = remote.run(go(), timeout=CALL_TIMEOUT + 10)
        if code == grpc.StatusCode.INTERNAL and detail == GRPC_CORE_RACE:
            return  # the client wrote on while the server refused the stream: its status is lost (grpc#36066)
        assert code not in FORBIDDEN, f"Connect -> {code}: {detail}\nrequests: {requests!r:.2000}"
        assert not errors.records, [r.getMessage() for r in errors.records]

    logger.addHandler(errors)
    try:
        fuzz()
    finally:
        logger.removeHandler(errors)
