"""The one permission each RPC needs, and the built-in roles.

Permissions are ``resource:verb`` strings; ``*`` grants everything and
``resource:*`` every verb of a resource. Deny by default: a method missing
from :data:`METHOD_PERMISSIONS` needs ``admin``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Anyone authenticated.
AUTHENTICATED = "authenticated"
#: Permission that only ``*`` grants.
ADMIN = "admin"
#: Lets a principal see and act on other principals' tasks.
VIEW_ALL_TASKS = "task:view-all"

_T, _A, _S, _C = "/maos.v1.TaskService/", "/maos.v1.AgentService/", "/maos.v1.SystemService/", "/maos.v1.CheckpointService/"
_X, _U = "/maos.v1.AccessService/", "/maos.v1.AuditService/"
_B, _TP = "/maos.v1.BatchService/", "/maos.v1.TemplateService/"

METHOD_PERMISSIONS: dict[str, str] = {
    **{_T + m: "task:submit" for m in ("SubmitTask", "BatchSubmitTasks", "StreamSubmitTasks")},
    **{_T + m: "task:view" for m in ("GetTask", "ListTasks", "GetTaskResults", "AnalyzeTask", "WatchTask")},
    _T + "CancelTask": "task:cancel", _T + "RetryTask": "task:update", _T + "UpdateTask": "task:update",
    **{_A + m: "agent:view" for m in ("ListAgents", "GetAgent", "ListAgentTypes")},
    _A + "SpawnAgents": "agent:spawn",
    **{_A + m: "agent:manage" for m in ("TerminateAgent", "PauseAgent", "ResumeAgent", "DrainAgent")},
    **{_S + m: "system:view" for m in ("GetStatus", "GetHealth", "GetMetricsSummary", "ListLogs", "TailLogs",
                                        "WatchEvents", "GetConfig")},
    _S + "SetConfig": ADMIN,
    **{_C + m: "checkpoint:view" for m in ("ListCheckpoints", "GetCheckpoint", "ExportCheckpoint")},
    _C + "CreateCheckpoint": "checkpoint:create", _C + "ImportCheckpoint": "checkpoint:create",
    _C + "DeleteCheckpoint": "checkpoint:delete", _C + "Recover": ADMIN,
    _X + "GetCaller": AUTHENTICATED,
    **{_X + m: "apikey:manage" for m in ("CreateApiKey", "ListApiKeys", "RevokeApiKey", "RotateApiKey")},
    **{_X + m: "agent:join-token" for m in ("CreateJoinToken", "ListJoinTokens", "RevokeJoinToken")},
    _U + "ListAuditRecords": "audit:view",
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
READ_ONLY = frozenset(m for m, p in METHOD_PERMISSIONS.items() if p.endswith(":view") or m.endswith(
    ("/GetCaller", "/ListApiKeys", "/GetUser", "/ListUsers", "/GetRole", "/ListRoles", "/ListJoinTokens",
     "/GetConfig"))) | frozenset({"/maos.v1.AgentGateway/Connect", *(
         f"{REFLECTION}{version}.ServerReflection/ServerReflectionInfo" for version in ("v1alpha", "v1"))})

_VIEWER = ["task:view", "agent:view", "system:view", "checkpoint:view"]
BUILTIN_ROLES: dict[str, tuple[str, list[str]]] = {
    "viewer": ("Reads tasks, agents, system state and checkpoints.", _VIEWER),
    "developer": ("Viewer plus submitting and managing its own tasks, agents and API keys.",
                  [*_VIEWER, "task:submit", "task:cancel", "task:update", "agent:spawn", "agent:manage",
                   "apikey:manage"]),
    "admin": ("Everything.", ["*"]),
    "agent": ("Connects agents to the gateway.", ["agent:connect"]),
}

_PERMISSION = re.compile(r"^(\*|[a-z][a-z0-9-]*:(\*|[a-z][a-z0-9-]*))$")


def needed(method: str) -> str | None:
    """The permission ``method`` needs; None for health checks (no authentication, for probes).

    Server reflection describes the whole API, so it needs admin (OWASP API5).
    """
    if method.startswith(REFLECTION):
        return ADMIN
    if method.startswith("/grpc."):
        return None
    return METHOD_PERMISSIONS.get(method, ADMIN)


def valid_permission(permission: str) -> bool:
    """Whether ``permission`` is ``*``, ``resource:verb`` or ``resource:*``."""
    return bool(_PERMISSION.match(permission))


def grants(held: Iterable[str], permission: str) -> bool:
    """Whether the permissions ``held`` grant ``permission``."""
    held = set(held)
    if "*" in held or permission == AUTHENTICATED:
        return True
    if permission == ADMIN:
        return False
    resource = permission.split(":", 1)[0]
    return permission in held or f"{resource}:*" in held
