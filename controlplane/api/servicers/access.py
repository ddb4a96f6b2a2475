"""AccessService (users, roles, API keys, join tokens) and AuditService over the AccessManager.

Pagination is simple offsets (users, roles, keys and join tokens are few).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from controlplane.access import join_tokens
from controlplane.access.join_tokens import JoinTokens
from controlplane.access.manager import MAX_TTL, AccessManager, Caller
from controlplane.api import convert
from controlplane.api.context import caller_var, current_principal
from controlplane.api.paging import page_size
from controlplane.api.pb import access_grpc, access_pb, audit_grpc, audit_pb, enums_pb, messages_pb
from controlplane.domain.limits import MAX_NAME_BYTES, MAX_TEXT_BYTES, check_bytes, quote, size_of
from controlplane.errors import InvalidArgument, NotFound, Unauthenticated
from controlplane.storage.base import StoresAudit, require
from controlplane.storage.records import JoinTokenRecord

#: What UpdateUser may change (an allowlist, OWASP API3).
USER_UPDATABLE = ("roles", "disabled")


def _ts(value: float | None) -> Any:
    return convert.timestamp(value) if value else None


def user_pb(u: dict[str, Any]) -> messages_pb.User:
    """A user record as a message."""
    return messages_pb.User(
        name=f"users/{u['id']}",
        email=u["email"],
        roles=[f"roles/{r}" for r in u["roles"]],
        disabled=bool(u.get("disabled")),
        create_time=_ts(u.get("create_time")),
    )


def role_pb(r: dict[str, Any]) -> messages_pb.Role:
    """A role record as a message."""
    return messages_pb.Role(
        name=f"roles/{r['id']}",
        description=r.get("description", ""),
        permissions=r.get("permissions", []),
        builtin=bool(r.get("builtin")),
    )


def key_pb(k: dict[str, Any]) -> messages_pb.ApiKey:
    """A key record as a message (never its digest)."""
    return messages_pb.ApiKey(
        name=f"apiKeys/{k['id']}",
        display_name=k.get("display_name", ""),
        user=f"users/{k['user']}",
        permissions=k.get("permissions", []),
        create_time=_ts(k.get("create_time")),
        expire_time=_ts(k.get("expire_time")),
        last_used_time=_ts(k.get("last_used_time")),
        revoke_time=_ts(k.get("revoke_time")),
        prefix=f"maos_key_{k['id']}",
    )


def join_token_pb(t: JoinTokenRecord) -> messages_pb.JoinToken:
    """A join token record as a message (never its digest)."""
    return messages_pb.JoinToken(
        name=join_tokens.name(t.id),
        agent_types=list(t.agent_types),
        expire_time=_ts(t.expire_time),
        max_uses=t.max_uses,
        uses=min(t.uses, join_tokens.MAX_USES),
        create_time=_ts(t.create_time),
        revoke_time=_ts(t.revoke_time),
    )


def _offset(token: str) -> int | None:
    """The position in a numeric page token; None for the first page; INVALID_ARGUMENT if malformed."""
    if not token:
        return None
    if not (token.isascii() and token.isdigit() and len(token) <= 18):
        raise InvalidArgument(
            "page_token is malformed; start again from the first page",
            field="page_token",
            reason="ERROR_REASON_INVALID_PAGE_TOKEN",
        )
    return int(token)


def _page(items: list[Any], request: Any) -> tuple[list[Any], str]:
    size = page_size(request.page_size)
    start = _offset(request.page_token) or 0
    chunk = items[start : start + size]
    return chunk, str(start + size) if start + size < len(items) else ""


def _check_text(*fields: tuple[str, str, int]) -> None:
    """INVALID_ARGUMENT for each free-text field over its bound in bytes."""
    check_bytes((field, size_of(value), limit, "") for field, value, limit in fields)


def _strip(name: str, collection: str) -> str:
    return name.removeprefix(collection + "/")


def _user_id(name: str, field: str) -> str:
    """The id of ``users/{user}`` (INVALID_ARGUMENT when empty)."""
    if not name:
        raise InvalidArgument(f"{field} is required (users/NAME)", field=field)
    return _strip(name, "users")


class AccessServicer(access_grpc.AccessServiceServicer):
    """Users, roles, API keys and join tokens."""

    def __init__(self, access: AccessManager, tokens: JoinTokens):
        self.access = access
        self.tokens = tokens

    def _caller(self) -> Caller:
        caller = caller_var.get()
        if isinstance(caller, Caller):
            return caller
        if self.access.users.get("admin") is None:
            raise Unauthenticated("authentication is off and no admin user exists")
        return self.access.caller_of(self.access.users["admin"])  # auth off: the local admin

    async def GetCaller(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        caller = caller_var.get()
        if not isinstance(caller, Caller):
            return access_pb.GetCallerResponse(principal=current_principal(), permissions=["*"])
        return access_pb.GetCallerResponse(
            principal=caller.principal,
            api_key=f"apiKeys/{caller.key_id}" if caller.key_id else "",
            roles=[f"roles/{r}" for r in caller.roles],
            permissions=caller.permissions,
        )

    async def CreateUser(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        user = await self.access.create_user(
            request.user.email, [_strip(r, "roles") for r in request.user.roles]
        )
        return access_pb.CreateUserResponse(user=user_pb(user))

    async def GetUser(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return access_pb.GetUserResponse(user=user_pb(self.access.user(_strip(request.name, "users"))))

    async def ListUsers(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        users, token = _page(sorted(self.access.users.values(), key=lambda u: u["email"]), request)
        return access_pb.ListUsersResponse(users=[user_pb(u) for u in users], next_page_token=token)

    async def UpdateUser(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        """Changes ``roles`` and/or ``disabled``; without a mask, the fields that are set (AIP-134)."""
        paths = set(request.update_mask.paths)
        if not paths:
            paths = {p for p, v in (("roles", request.user.roles), ("disabled", request.user.disabled)) if v}
        elif "*" in paths:
            paths = (paths - {"*"}) | set(USER_UPDATABLE)
        unknown = paths - set(USER_UPDATABLE)
        if unknown:
            raise InvalidArgument(
                f"cannot update {', '.join(sorted(unknown))}; update_mask may name "
                f"{' and '.join(USER_UPDATABLE)}",
                field="update_mask",
            )
        user = await self.access.update_user(
            self._caller(),
            _user_id(request.user.name, "user.name"),
            roles=[_strip(r, "roles") for r in request.user.roles] if "roles" in paths else None,
            disabled=request.user.disabled if "disabled" in paths else None,
        )
        return access_pb.UpdateUserResponse(user=user_pb(user))

    async def DeleteUser(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await self.access.delete_user(self._caller(), _user_id(request.name, "name"))
        return access_pb.DeleteUserResponse()

    async def CreateRole(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        role_id = request.role_id or _strip(request.role.name, "roles")
        _check_text(("role.description", request.role.description, MAX_TEXT_BYTES))
        role = await self.access.save_role(
            role_id, list(request.role.permissions), request.role.description, True
        )
        return access_pb.CreateRoleResponse(role=role_pb(role))

    async def GetRole(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        role = self.access.roles.get(_strip(request.name, "roles"))
        if role is None:
            raise NotFound(f"role {quote(request.name)} does not exist", reason="ERROR_REASON_ROLE_NOT_FOUND")
        return access_pb.GetRoleResponse(role=role_pb(role))

    async def ListRoles(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        roles, token = _page(sorted(self.access.roles.values(), key=lambda r: r["id"]), request)
        return access_pb.ListRolesResponse(roles=[role_pb(r) for r in roles], next_page_token=token)

    async def UpdateRole(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        _check_text(("role.description", request.role.description, MAX_TEXT_BYTES))
        paths = set(request.update_mask.paths) or {"permissions", "description"}
        unknown = paths - {"permissions", "description"}
        if unknown:
            raise InvalidArgument(f"cannot update {', '.join(sorted(unknown))}", field="update_mask")
        role = await self.access.save_role(
            _strip(request.role.name, "roles"),
            list(request.role.permissions) if "permissions" in paths else None,
            request.role.description if "description" in paths else None,
            False,
        )
        return access_pb.UpdateRoleResponse(role=role_pb(role))

    async def DeleteRole(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if not request.name:
            raise InvalidArgument("name is required (roles/NAME)", field="name")
        await self.access.delete_role(_strip(request.name, "roles"))
        return access_pb.DeleteRoleResponse()

    async def CreateApiKey(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        _check_text(("api_key.display_name", request.api_key.display_name, MAX_NAME_BYTES))
        ttl = convert.checked_seconds(request.ttl, "ttl") if request.HasField("ttl") else None
        record, secret = await self.access.create_key(
            self._caller(),
            _strip(request.api_key.user, "users"),
            request.api_key.display_name,
            list(request.api_key.permissions),
            ttl,
        )
        return access_pb.CreateApiKeyResponse(api_key=key_pb(record), secret=secret)

    async def ListApiKeys(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        found = self.access.list_keys(self._caller(), _strip(request.user, "users"), request.include_revoked)
        chunk, token = _page(sorted(found, key=lambda k: k["create_time"]), request)
        return access_pb.ListApiKeysResponse(api_keys=[key_pb(k) for k in chunk], next_page_token=token)

    async def RevokeApiKey(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        record = await self.access.revoke_key(self._caller(), _strip(request.name, "apiKeys"))
        return access_pb.RevokeApiKeyResponse(api_key=key_pb(record))

    async def RotateApiKey(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        overlap = convert.checked_seconds(request.overlap, "overlap") if request.HasField("overlap") else None
        if overlap is not None and overlap > MAX_TTL:
            raise InvalidArgument("overlap is at most 365 days", field="overlap")
        record, secret = await self.access.rotate_key(
            self._caller(), _strip(request.name, "apiKeys"), overlap
        )
        return access_pb.RotateApiKeyResponse(
            api_key=key_pb(record), secret=secret, old_secret_expire_time=_ts(record["old_expire_time"])
        )

    async def CreateJoinToken(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        ttl = convert.checked_seconds(request.ttl, "ttl") if request.HasField("ttl") else None
        record, token = await self.tokens.create(
            list(request.join_token.agent_types),
            request.join_token.max_uses,
            ttl,
            creator=current_principal(),
        )
        return access_pb.CreateJoinTokenResponse(join_token=join_token_pb(record), token=token)

    async def ListJoinTokens(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        chunk, token = _page(await self.tokens.list_tokens(), request)
        return access_pb.ListJoinTokensResponse(
            join_tokens=[join_token_pb(t) for t in chunk], next_page_token=token
        )

    async def RevokeJoinToken(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if not request.name:
            raise InvalidArgument("name is required, as joinTokens/ID", field="name")
        record = await self.tokens.revoke(_strip(request.name, "joinTokens"))
        return access_pb.RevokeJoinTokenResponse(join_token=join_token_pb(record))


class AuditServicer(audit_grpc.AuditServiceServicer):
    """Reads the append-only audit log.

    ``flushed`` resolves once every audit record queued so far is committed,
    so a caller reads its own calls' records.
    """

    def __init__(self, storage: Any, flushed: Callable[[], Awaitable[None]]):
        self.storage = storage
        self.flushed = flushed

    async def ListAuditRecords(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        size = page_size(request.page_size, default=100)
        before = _offset(request.page_token)
        wanted = ""
        if request.decision:
            if request.decision not in enums_pb.AuditDecision.values():
                raise InvalidArgument(f"unknown decision {request.decision}", field="decision")
            wanted = enums_pb.AuditDecision.Name(request.decision).removeprefix("AUDIT_DECISION_")
        store = require(self.storage.backend, StoresAudit, "an audit log")
        await self.flushed()
        rows: list[dict[str, Any]] = []
        while len(rows) <= size:  # the decision is filtered here: read on until a page is full
            chunk = await self.storage.call(
                lambda before=before: store.list_audit(
                    since=convert.optional_epoch(request, "since"),
                    until=convert.optional_epoch(request, "until"),
                    principal=request.principal,
                    action=request.action,
                    before_seq=before,
                    limit=size + 1,
                )
            )
            if not chunk:
                break
            before = chunk[-1]["seq"]
            rows.extend(r for r in chunk if not wanted or r.get("decision") == wanted)
            if len(chunk) <= size:
                break
        more = len(rows) > size
        rows = rows[:size]
        records = [audit_record_pb(r) for r in rows]
        return audit_pb.ListAuditRecordsResponse(
            records=records, next_page_token=str(rows[-1]["seq"]) if more else ""
        )


def audit_record_pb(r: dict[str, Any]) -> messages_pb.AuditRecord:
    """A stored audit record as a message."""
    return messages_pb.AuditRecord(
        id=r["id"],
        time=_ts(r["time"]),
        principal=r["principal"],
        key_id=r.get("key_id", ""),
        peer=r.get("peer", ""),
        method=r["method"],
        resource=r.get("resource", ""),
        decision=enums_pb.AuditDecision.Value(f"AUDIT_DECISION_{r.get('decision', 'UNSPECIFIED')}"),
        status_code=r.get("status_code", ""),
        request_id=r.get("request_id", ""),
        reason=r.get("reason", ""),
    )
