"""The one permission each RPC needs, and the built-in roles.

Permissions are ``resource:verb`` strings; ``*`` grants everything and
``resource:*`` every verb of a resource. Deny by default: a method missing
from :data:`METHOD_PERMISSIONS` needs ``admin``. Roles and keys may hold only
:data:`KNOWN_PERMISSIONS` (and those wildcards). What a caller sees of other
principals' objects is decided in the servicers, by :data:`VIEW_ALL_TASKS` and
:data:`MANAGE_ALL_AGENTS`; ``docs/security.md`` is the whole matrix, checked
against this table by a test.
"""

from __future__ import annotations

from collections.abc import Iterable

#: Anyone authenticated.
AUTHENTICATED = "authenticated"
#: Permission that only ``*`` grants.
ADMIN = "admin"
#: Lets a principal see and act on other principals' tasks (and their events and log lines).
VIEW_ALL_TASKS = "task:view-all"
#: Lets a principal pause, resume, drain and terminate agents it does not own (and read their log lines).
MANAGE_ALL_AGENTS = "agent:manage-all"
#: Reading a checkpoint's contents: every principal's tasks, outputs and shared state.
EXPORT_CHECKPOINTS = "checkpoint:export"
#: Importing a checkpoint (what a later ``Recover`` may restore).
IMPORT_CHECKPOINTS = "checkpoint:import"
#: Planning with a model (``AnalyzeTask`` spends tokens only for holders of it).
PLAN_WITH_MODEL = "task:submit"
#: Lets a principal see every owner's webhooks and their deliveries.
VIEW_ALL_WEBHOOKS = "webhook:view-all"

_T, _A, _S, _C = (
    "/maos.v1.TaskService/",
    "/maos.v1.AgentService/",
    "/maos.v1.SystemService/",
    "/maos.v1.CheckpointService/",
)
_X, _U = "/maos.v1.AccessService/", "/maos.v1.AuditService/"
_W = "/maos.v1.WebhookService/"
_B, _TP = "/maos.v1.BatchService/", "/maos.v1.TemplateService/"

METHOD_PERMISSIONS: dict[str, str] = {
    **{_T + m: "task:submit" for m in ("SubmitTask", "BatchSubmitTasks", "StreamSubmitTasks")},
    **{_T + m: "task:view" for m in ("GetTask", "ListTasks", "GetTaskResults", "AnalyzeTask", "WatchTask")},
    _T + "CancelTask": "task:cancel",
    _T + "RetryTask": "task:update",
    _T + "UpdateTask": "task:update",
    _T + "ApproveTask": "task:approve",
    _T + "RejectTask": "task:approve",
    **{_A + m: "agent:view" for m in ("ListAgents", "GetAgent", "ListAgentTypes", "GetAgentMetrics")},
    _A + "SpawnAgents": "agent:spawn",
    **{
        _A + m: "agent:manage"
        for m in ("TerminateAgent", "PauseAgent", "ResumeAgent", "DrainAgent", "RestartAgent")
    },
    **{
        _S + m: "system:view"
        for m in (
            "GetStatus",
            "GetHealth",
            "GetMetricsSummary",
            "ListLogs",
            "TailLogs",
            "WatchEvents",
            "GetConfig",
            "GetMetricsHistory",
            "GetResources",
        )
    },
    _S + "SetConfig": ADMIN,
    **{_C + m: "checkpoint:view" for m in ("ListCheckpoints", "GetCheckpoint")},
    _C + "ExportCheckpoint": EXPORT_CHECKPOINTS,
    _C + "CreateCheckpoint": "checkpoint:create",
    _C + "ImportCheckpoint": IMPORT_CHECKPOINTS,
    _C + "DeleteCheckpoint": "checkpoint:delete",
    _C + "Recover": ADMIN,
    _X + "GetCaller": AUTHENTICATED,
    **{_X + m: "apikey:manage" for m in ("CreateApiKey", "ListApiKeys", "RevokeApiKey", "RotateApiKey")},
    **{_X + m: "agent:join-token" for m in ("CreateJoinToken", "ListJoinTokens", "RevokeJoinToken")},
    _U + "ListAuditRecords": "audit:view",
    **{
        _W + m: "webhook:manage"
        for m in (
            "CreateWebhook",
            "GetWebhook",
            "ListWebhooks",
            "UpdateWebhook",
            "DeleteWebhook",
            "ListWebhookDeliveries",
            "TestWebhook",
        )
    },
    # Batches and templates are the caller's own task definitions: the task permissions apply.
    **{_B + m: "task:submit" for m in ("CreateBatch", "AddBatchTask", "SubmitBatch", "DeleteBatch")},
    **{_B + m: "task:view" for m in ("GetBatch", "ListBatches", "GetBatchResults")},
    **{_TP + m: "task:submit" for m in ("CreateTemplate", "DeleteTemplate", "SubmitTaskFromTemplate")},
    **{_TP + m: "task:view" for m in ("GetTemplate", "ListTemplates")},
    "/maos.v1.AgentGateway/Connect": "agent:connect",
}

#: The prefix of the server reflection services' methods (v1alpha and v1).
REFLECTION = "/grpc.reflection."
#: Read-only methods: every other method is mutating and audited.
READ_ONLY = frozenset(
    m
    for m, p in METHOD_PERMISSIONS.items()
    if p.endswith(":view")
    or m.endswith(
        (
            "/GetCaller",
            "/ListApiKeys",
            "/GetUser",
            "/ListUsers",
            "/GetRole",
            "/ListRoles",
            "/ListJoinTokens",
            "/GetConfig",
            "/GetWebhook",
            "/ListWebhooks",
            "/ListWebhookDeliveries",
        )
    )
) | frozenset(
    {
        "/maos.v1.AgentGateway/Connect",
        *(f"{REFLECTION}{version}.ServerReflection/ServerReflectionInfo" for version in ("v1alpha", "v1")),
    }
)

_VIEWER = ["task:view", "agent:view", "system:view", "checkpoint:view"]
BUILTIN_ROLES: dict[str, tuple[str, list[str]]] = {
    "viewer": ("Reads tasks, agents, system state and checkpoints.", _VIEWER),
    "developer": (
        "Viewer plus submitting and managing its own tasks, agents and API keys.",
        [
            *_VIEWER,
            "task:submit",
            "task:cancel",
            "task:update",
            "task:approve",
            "agent:spawn",
            "agent:manage",
            "apikey:manage",
            "webhook:manage",
        ],
    ),
    "admin": ("Everything.", ["*"]),
    "agent": ("Connects agents to the gateway.", ["agent:connect"]),
}

#: Permissions no method needs but servicers check (what a caller sees or may do to others' objects).
EXTRA_PERMISSIONS = frozenset({VIEW_ALL_TASKS, MANAGE_ALL_AGENTS})
#: Every permission a role or key may hold (besides ``*`` and ``resource:*`` of these resources).
KNOWN_PERMISSIONS = (
    frozenset(p for p in METHOD_PERMISSIONS.values() if p not in (ADMIN, AUTHENTICATED)) | EXTRA_PERMISSIONS
)
#: The resources of :data:`KNOWN_PERMISSIONS`.
KNOWN_RESOURCES = frozenset(p.split(":", 1)[0] for p in KNOWN_PERMISSIONS)


def needed(method: str, reflection: str = "authenticated") -> str | None:
    """The permission ``method`` needs; None for health checks (no authentication, for probes).

    Server reflection describes the API whose schema is public in ``protos/``: by default any
    valid key may use it (grpcurl, grpcui, Postman and Evans with a user's own key);
    ``reflection`` (the ``server.reflection`` setting) narrows it to admins or opens it to
    callers with no key at all (clients that cannot send a header for reflection).
    """
    if method.startswith(REFLECTION):
        return {"admin": ADMIN, "public": None}.get(reflection, AUTHENTICATED)
    if method.startswith("/grpc."):
        return None
    return METHOD_PERMISSIONS.get(method, ADMIN)


def valid_permission(permission: str) -> bool:
    """Whether ``permission`` is ``*``, a known ``resource:verb`` or ``resource:*`` of a known resource.

    Matched whole: a trailing newline or a space makes a permission invalid.
    """
    if permission == "*" or permission in KNOWN_PERMISSIONS:
        return True
    resource, _, verb = permission.partition(":")
    return verb == "*" and resource in KNOWN_RESOURCES


def permission_problem(permission: str) -> str:
    """Why ``permission`` cannot be held, for an INVALID_ARGUMENT message ("" when it is valid)."""
    if valid_permission(permission):
        return ""
    shown = repr(permission[:64]) + ("..." if len(permission) > 64 else "")
    return (
        f"{shown} is not a known permission (*, resource:* or one of {', '.join(sorted(KNOWN_PERMISSIONS))})"
    )


def grants(held: Iterable[str], permission: str) -> bool:
    """Whether the permissions ``held`` grant ``permission``."""
    held = set(held)
    if "*" in held or permission == AUTHENTICATED:
        return True
    if permission == ADMIN:
        return False
    resource = permission.split(":", 1)[0]
    return permission in held or f"{resource}:*" in held
