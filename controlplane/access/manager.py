"""Users, roles and API keys: held in memory, written through the storage thread.

The manager is the authority of one control-plane process: a revocation or
rotation takes effect on the very next call. Keys unknown in memory are
looked up in the database (at most once a second) so keys created by another
process (``maos init``) work without a restart. ``last_used_time`` is
written at most once a minute per key.

Agents have keys of two built-in users holding the ``agent`` role:

* ``users/local-agents``: the one key per control-plane start that supervised
  local agents use (``local agents``). Each start revokes the keys of earlier
  starts (one that crashed never revoked its own) and a clean shutdown revokes
  its own, so no such key outlives the control plane that issued it. This
  assumes one control plane per database, as the in-memory engine does.
* ``users/joined-agents``: the credentials agents get for a join token
  (:mod:`controlplane.access.join_tokens`). Each is limited to
  ``agent:connect`` and bound to one agent: its caller is ``agents/{agent}``,
  which may register only as that agent and type. Listed and revoked like any
  API key (display name ``agents/{agent}``). A credential lives 90 days and is
  renewed when its agent registers in the last third of that
  (:meth:`AccessManager.renew_agent_credential`).

Every key records the ``uid`` of its user (a random id each user record gets
at creation), and a key whose user's uid differs is refused: user ids are
reused (``bob``, then ``bob`` again), so a user deleted and created anew never
inherits a key of the old one, not even one that escaped revocation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
import uuid
from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

from controlplane.access import keys
from controlplane.access.permissions import BUILTIN_ROLES, grants, permission_problem
from controlplane.errors import (
    AlreadyExists,
    CredentialRefused,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from controlplane.storage.base import StoresAccess, require

DEFAULT_TTL = 90 * 86400.0
MAX_TTL = 365 * 86400.0
DEFAULT_OVERLAP = 86400.0
_LAST_USED_EVERY = 60.0
_ROLE_ID = re.compile(r"[a-z][a-z0-9-]{0,62}")  # fullmatch: "$" would accept a trailing newline
_USER_ID = re.compile(r"[^a-z0-9-]+")
#: Longest email address accepted (RFC 5321's path limit less its angle brackets).
MAX_EMAIL = 254
_EMAIL_ATOM = r"[A-Za-z0-9_%+'-]+"
_DOMAIN_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: A dot-atom local part of at most 64 characters (no leading, trailing or double dot), then a host name.
_EMAIL = re.compile(
    rf"(?=[^@]{{1,64}}@){_EMAIL_ATOM}(?:\.{_EMAIL_ATOM})*"
    rf"@{_DOMAIN_LABEL}(?:\.{_DOMAIN_LABEL})*"
)
ADMIN_USER = "admin"
AGENT_USER = "local-agents"
JOINED_AGENTS_USER = "joined-agents"
#: Users ``bootstrap_sync`` creates; they cannot be deleted.
BUILTIN_USERS = frozenset({ADMIN_USER, AGENT_USER, JOINED_AGENTS_USER})
#: The owner of the agents the control plane starts on its own (its ``agents.pool``).
CONTROL_PLANE = f"users/{AGENT_USER}"
#: The display name of the key supervised local agents use.
LOCAL_AGENTS_KEY = "local agents"
#: Lifetime of a joined agent's credential.
AGENT_CREDENTIAL_TTL = DEFAULT_TTL
#: A joined agent's credential is renewed at Register once less than this is left of it.
AGENT_CREDENTIAL_RENEW_WITHIN = AGENT_CREDENTIAL_TTL / 3


def normal_email(email: str) -> str:
    """``email`` lowercased, the form users are stored and compared in.

    Raises:
        InvalidArgument: longer than :data:`MAX_EMAIL` or not ``local@host`` (a dot-atom local part
            of letters, digits and ``_%+'-``; ``../..@x`` is refused).
    """
    shown = repr(email[:64]) + ("..." if len(email) > 64 else "")
    if len(email) > MAX_EMAIL:
        raise InvalidArgument(
            f"user.email is {len(email)} characters long; at most {MAX_EMAIL}", field="user.email"
        )
    if not _EMAIL.fullmatch(email):
        raise InvalidArgument(
            f"{shown} is not an email address (local-part@host, as in dev@example.com)", field="user.email"
        )
    return email.lower()


def check_permissions(permissions: list[str], field: str) -> None:
    """INVALID_ARGUMENT naming the first permission that is not a known one (``field[index]``)."""
    for index, perm in enumerate(permissions):
        problem = permission_problem(perm)
        if problem:
            raise InvalidArgument(problem, field=f"{field}[{index}]")


def valid_role_id(role_id: str) -> bool:
    """Whether ``role_id`` is a role id: a lowercase letter, then lowercase letters, digits or '-' (max 63)."""
    return bool(_ROLE_ID.fullmatch(role_id))


@dataclass(frozen=True)
class BoundAgent:
    """What a joined agent's credential binds: its id and type, its owner, and whether its token was typed."""

    agent_id: str
    agent_type: str
    owner: str = ""
    typed: bool = False


@dataclass(frozen=True)
class Caller:
    """An authenticated principal and what it may do."""

    principal: str
    key_id: str = ""
    roles: tuple[str, ...] = ()
    role_permissions: frozenset[str] = frozenset()
    key_permissions: frozenset[str] = frozenset()  # empty: all of the roles'

    def may(self, permission: str) -> bool:
        """Whether every grant (the roles', then the key's own list) allows ``permission``."""
        if not grants(self.role_permissions, permission):
            return False
        return not self.key_permissions or grants(self.key_permissions, permission)

    @property
    def permissions(self) -> list[str]:
        """The effective permissions, for GetCaller."""
        if not self.key_permissions:
            return sorted(self.role_permissions)
        return sorted(p for p in self.key_permissions if grants(self.role_permissions, p))


@dataclass
class AccessManager:
    """Users, roles and keys of one control plane; ``storage`` is a StorageExecutor."""

    storage: Any
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    api_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    _last_reload: float = 0.0
    # Serializes changes of users, roles and keys: a role cannot be deleted while a user gets it,
    # and a key cannot be created for a user being deleted (it would escape revocation).
    _changing: asyncio.Lock = field(default_factory=asyncio.Lock)

    # --- loading and bootstrap ---------------------------------------------------

    @property
    def store(self) -> StoresAccess:
        """The storage backend, which must offer the optional ``StoresAccess`` capability."""
        return require(self.storage.backend, StoresAccess, "users, roles and API keys")

    def load_sync(self) -> None:
        """Read everything (on the caller's thread; used before serving and by ``maos init``)."""
        backend = self.store
        self._take(
            backend.access_list("users"), backend.access_list("roles"), backend.access_list("api_keys")
        )

    def _take(
        self, users: list[dict[str, Any]], roles: list[dict[str, Any]], api_keys: list[dict[str, Any]]
    ) -> None:
        self.users = {r["id"]: r for r in users}
        self.roles = {r["id"]: r for r in roles}
        self.api_keys = {r["id"]: r for r in api_keys}
        for role_id, (description, perms) in BUILTIN_ROLES.items():
            self.roles[role_id] = {
                "id": role_id,
                "description": description,
                "permissions": perms,
                "builtin": True,
            }

    def bootstrap_sync(self) -> None:
        """Create ``users/admin`` (role admin), ``users/local-agents`` and ``users/joined-agents`` (role
        agent) if missing."""
        self.load_sync()
        backend = self.store
        for user_id, email, role in (
            (ADMIN_USER, "admin@localhost", "admin"),
            (AGENT_USER, "agents@localhost", "agent"),
            (JOINED_AGENTS_USER, "joined-agents@localhost", "agent"),
        ):
            if user_id not in self.users:
                record = {
                    "id": user_id,
                    "email": email,
                    "roles": [role],
                    "disabled": False,
                    "create_time": time.time(),
                    "uid": uuid.uuid4().hex,
                }
                try:
                    backend.access_put("users", user_id, record)
                except AlreadyExists:  # a replica starting at the same time created it first
                    found = {r["id"]: r for r in backend.access_list("users")}.get(user_id)
                    if found is None:
                        raise
                    record = found
                self.users[user_id] = record

    def issue_key_sync(
        self, user_id: str, name: str, permissions: list[str] | None = None, ttl: float | None = DEFAULT_TTL
    ) -> tuple[dict[str, Any], str]:
        """Create a key directly in the database (bootstrap, launcher); returns (record, secret)."""
        record, secret = self._new_key(user_id, name, permissions or [], ttl)
        self.store.access_put("api_keys", record["id"], record, create=True)
        self.api_keys[record["id"]] = record
        return record, secret

    def issue_local_agents_key_sync(
        self, replica: str = "", running: Container[str] = (), ttl: float = 30 * 86400.0
    ) -> str:
        """Revoke the local agents' keys of earlier starts, then issue this start's; returns its secret.

        The key is marked with ``replica``; keys of the other replicas in ``running`` (those still
        alive on a shared database) stay valid, since their launched agents use them.
        """
        now = time.time()
        for record in self.api_keys.values():
            if (
                record["user"] == AGENT_USER
                and record.get("display_name") == LOCAL_AGENTS_KEY
                and not record.get("revoke_time")
                and record.get("replica", "") not in running
            ):
                record["revoke_time"] = now
                self.store.access_put("api_keys", record["id"], dict(record))
        record, secret = self._new_key(AGENT_USER, LOCAL_AGENTS_KEY, [], ttl)
        record["replica"] = replica
        self.store.access_put("api_keys", record["id"], record, create=True)
        self.api_keys[record["id"]] = record
        return secret

    async def refresh(self) -> None:
        """Read users, roles and keys again (replicas sharing a database: what another replica created,
        revoked, disabled or deleted holds here too from now on)."""
        store = self.store
        async with self._changing:  # not in the middle of a change made here
            users = await self.storage.call(store.access_list, "users")
            roles = await self.storage.call(store.access_list, "roles")
            api_keys = await self.storage.call(store.access_list, "api_keys")
            self._take(users, roles, api_keys)

    async def revoke_local_agents_key(self, secret: str) -> None:
        """Revoke the local agents' key of this start (at shutdown)."""
        record = self.api_keys.get(keys.parse(secret) or "")
        if record is not None and not record.get("revoke_time"):
            record["revoke_time"] = time.time()
            await self.storage.call(self.store.access_put, "api_keys", record["id"], dict(record))

    async def issue_agent_credential(
        self, agent_id: str, agent_type: str, join_token: str, *, owner: str = "", typed: bool = False
    ) -> tuple[dict[str, Any], str]:
        """The credential of an agent that joined with ``join_token``: a key of ``users/joined-agents``
        limited to ``agent:connect`` and bound to ``agents/{agent_id}`` of ``agent_type``.

        ``owner`` (the token's creator) owns the agent; ``typed``: the token was bound to agent
        types, so the agent may claim only its type's capabilities, on every connection.
        """
        record, secret = self._new_key(
            JOINED_AGENTS_USER, f"agents/{agent_id}", ["agent:connect"], AGENT_CREDENTIAL_TTL
        )
        record.update(agent=agent_id, agent_type=agent_type, join_token=join_token, owner=owner, typed=typed)
        await self.storage.call(self.store.access_put, "api_keys", record["id"], record)
        self.api_keys[record["id"]] = record
        return record, secret

    async def renew_agent_credential(self, secret: str) -> str:
        """A new secret for a joined agent's credential ``secret`` once it is in the last third of its life.

        Returns:
            The new secret, or "" when ``secret`` is not such a credential or has more than
            :data:`AGENT_CREDENTIAL_RENEW_WITHIN` left.

        The key keeps its id, agent and permissions; the new secret lives
        :data:`AGENT_CREDENTIAL_TTL` from now. ``secret`` keeps working until
        its own expiry, so an agent that never received the new one (its stream
        broke before ``Registered`` arrived) connects again with it and is
        given another.
        """
        if not self._renewable(secret):  # the usual case, decided without waiting for the lock
            return ""
        async with self._changing:
            expire = self._renewable(secret)
            key_id = keys.parse(secret)
            record = self.api_keys.get(key_id or "")
            if not expire or record is None:  # revoked meanwhile
                return ""
            now = time.time()
            renewed = keys.generate(key_id)
            updated = {
                **record,
                "digest": keys.digest(renewed),
                "expire_time": now + AGENT_CREDENTIAL_TTL,
                "old_digest": keys.digest(secret),
                "old_expire_time": expire,
            }
            await self.storage.call(self.store.access_put, "api_keys", record["id"], updated)
            self.api_keys[record["id"]] = updated
            return renewed

    def _renewable(self, secret: str) -> float | None:
        """The expiry of ``secret`` when it is a joined agent's valid credential due for renewal, else None."""
        record = self.api_keys.get(keys.parse(secret) or "")
        if record is None or not record.get("agent") or record.get("revoke_time"):
            return None
        if keys.matches(secret, record["digest"]):
            expire = record.get("expire_time")
        elif record.get("old_digest") and keys.matches(secret, record["old_digest"]):
            expire = record.get("old_expire_time")
        else:
            return None
        if not expire or expire - time.time() > AGENT_CREDENTIAL_RENEW_WITHIN:
            return None
        return float(expire)

    def bound_agent(self, caller: Caller) -> BoundAgent | None:
        """The agent the caller's credential is bound to; None for other keys."""
        record = self.api_keys.get(caller.key_id) if caller.key_id else None
        if record is None or not record.get("agent"):
            return None
        return BoundAgent(
            record["agent"], record.get("agent_type", ""), record.get("owner", ""), bool(record.get("typed"))
        )

    # --- authentication ----------------------------------------------------------

    async def authenticate(self, secret: str) -> Caller:
        """The caller a key belongs to.

        Raises:
            Unauthenticated: malformed or unknown keys (or a wrong secret).
            CredentialRefused: expired (CREDENTIAL_EXPIRED) or revoked (CREDENTIAL_REVOKED) keys,
                and keys of disabled or deleted users.
        """
        key_id = keys.parse(secret)
        if key_id is None:
            raise Unauthenticated("the API key is malformed (bad format or checksum)")
        record = self.api_keys.get(key_id)
        if record is None and time.monotonic() - self._last_reload > 1.0:
            self._last_reload = time.monotonic()
            rows = await self.storage.call(self.store.access_list, "api_keys")
            for row in rows:
                self.api_keys.setdefault(row["id"], row)
            users = await self.storage.call(self.store.access_list, "users")
            for row in users:
                self.users.setdefault(row["id"], row)
            record = self.api_keys.get(key_id)
        if record is None:
            raise Unauthenticated("unknown API key")
        now = time.time()
        current = keys.matches(secret, record["digest"])
        previous = bool(record.get("old_digest")) and keys.matches(secret, record["old_digest"])
        if not (current or previous):
            raise Unauthenticated("unknown API key")
        if record.get("revoke_time"):
            raise CredentialRefused("the API key was revoked", reason="ERROR_REASON_CREDENTIAL_REVOKED")
        expire = record.get("expire_time") if current else record.get("old_expire_time")
        if expire and now >= expire:
            raise CredentialRefused("the API key expired", reason="ERROR_REASON_CREDENTIAL_EXPIRED")
        user = self.users.get(record["user"])
        # A key of an earlier user of the same id (deleted, then created anew) is not this user's.
        if user is None or user.get("disabled") or user.get("uid") != record.get("user_uid"):
            raise CredentialRefused("the API key's user is disabled or deleted")
        if now - (record.get("last_used_time") or 0) >= _LAST_USED_EVERY:
            record["last_used_time"] = now
            await self.storage.call(self.store.access_put, "api_keys", key_id, dict(record))
        return self.key_caller(record)

    def key_caller(self, record: dict[str, Any]) -> Caller:
        """The :class:`Caller` acting through a key (for a joined agent's credential: the agent itself)."""
        caller = self.caller_of(self.users[record["user"]], record["id"], record.get("permissions") or [])
        if record.get("agent"):
            caller = dataclasses.replace(caller, principal=f"agents/{record['agent']}")
        return caller

    def caller_of(
        self, user: dict[str, Any], key_id: str = "", key_permissions: list[str] | None = None
    ) -> Caller:
        """The :class:`Caller` of a user (through one of its keys)."""
        perms: set[str] = set()
        for role in user.get("roles", []):
            perms.update(self.roles.get(role, {}).get("permissions", []))
        return Caller(
            principal=f"users/{user['id']}",
            key_id=key_id,
            roles=tuple(user.get("roles", [])),
            role_permissions=frozenset(perms),
            key_permissions=frozenset(key_permissions or []),
        )

    # --- users and roles ------------------------------------------------------------

    async def create_user(self, email: str, roles: list[str]) -> dict[str, Any]:
        """A new user named after its email's local part."""
        async with self._changing:
            return await self._create_user(email, roles)

    async def _create_user(self, email: str, roles: list[str]) -> dict[str, Any]:
        email = normal_email(email)
        # Stored lowercased; users created before that compare lowercased too.
        if any(u["email"].lower() == email for u in self.users.values()):
            raise AlreadyExists(f"a user with email {email} already exists")
        self._check_roles(roles)
        base = _USER_ID.sub("-", email.split("@", 1)[0].lower()).strip("-") or "user"
        user_id, n = base, 1
        while user_id in self.users:
            n += 1
            user_id = f"{base}-{n}"
        record = {
            "id": user_id,
            "email": email,
            "roles": list(roles),
            "disabled": False,
            "create_time": time.time(),
            "uid": uuid.uuid4().hex,
        }
        await self.storage.call(self.store.access_put, "users", user_id, record)
        self.users[user_id] = record
        return record

    def user(self, user_id: str) -> dict[str, Any]:
        """One user (NOT_FOUND otherwise)."""
        record = self.users.get(user_id)
        if record is None:
            raise NotFound(f"user {user_id!r} does not exist", reason="ERROR_REASON_USER_NOT_FOUND")
        return record

    def _check_roles(self, roles: list[str]) -> None:
        for role in roles:
            if role not in self.roles:
                raise NotFound(f"role {role!r} does not exist", reason="ERROR_REASON_ROLE_NOT_FOUND")

    async def update_user(
        self, caller: Caller, user_id: str, *, roles: list[str] | None = None, disabled: bool | None = None
    ) -> dict[str, Any]:
        """Replace a user's roles and/or set ``disabled`` (None: unchanged).

        A disabled user's keys are refused from the next call on. Callers cannot
        change their own roles or disable themselves (another admin must), so an
        admin cannot lock everyone out by mistake.

        Raises:
            NotFound: unknown user (USER_NOT_FOUND) or role (ROLE_NOT_FOUND).
            FailedPrecondition: the caller's own user.
        """
        async with self._changing:
            record = self.user(user_id)
            if roles is not None:
                roles = list(dict.fromkeys(roles))
                self._check_roles(roles)
            changes = {k: v for k, v in (("roles", roles), ("disabled", disabled)) if v is not None}
            if not changes or all(record.get(k) == v for k, v in changes.items()):
                return record
            if caller.principal == f"users/{user_id}":
                raise FailedPrecondition(
                    "you cannot change your own roles or disable yourself; another admin can",
                    reason="ERROR_REASON_NOT_SUPPORTED",
                )
            updated = {**record, **changes}
            await self.storage.call(self.store.access_put, "users", user_id, updated)
            self.users[user_id] = updated
            return updated

    async def delete_user(self, caller: Caller, user_id: str) -> None:
        """Delete a user and revoke its keys (refused from the next call on).

        Raises:
            NotFound: unknown user (USER_NOT_FOUND).
            FailedPrecondition: a built-in user (admin, local-agents, joined-agents), or the caller's own user.
        """
        async with self._changing:
            self.user(user_id)
            if user_id in BUILTIN_USERS:
                raise FailedPrecondition(
                    f"user {user_id!r} is built in and cannot be deleted; disable it instead",
                    reason="ERROR_REASON_NOT_SUPPORTED",
                )
            if caller.principal == f"users/{user_id}":
                raise FailedPrecondition(
                    "you cannot delete yourself; another admin can", reason="ERROR_REASON_NOT_SUPPORTED"
                )
            now = time.time()
            for key in [
                k for k in self.api_keys.values() if k["user"] == user_id and not k.get("revoke_time")
            ]:
                revoked = {**key, "revoke_time": now}  # keys first: a failure below leaves them revoked
                await self.storage.call(self.store.access_put, "api_keys", key["id"], revoked)
                self.api_keys[key["id"]] = revoked
            await self.storage.call(self.store.access_delete, "users", user_id)
            del self.users[user_id]

    async def save_role(
        self, role_id: str, permissions: list[str] | None, description: str | None, create: bool
    ) -> dict[str, Any]:
        """Create or update a custom role."""
        async with self._changing:
            return await self._save_role(role_id, permissions, description, create)

    async def _save_role(
        self, role_id: str, permissions: list[str] | None, description: str | None, create: bool
    ) -> dict[str, Any]:
        if not valid_role_id(role_id):
            raise InvalidArgument(f"{role_id!r} is not a role id ([a-z][a-z0-9-]*)", field="role_id")
        existing = self.roles.get(role_id)
        if create and existing is not None:
            raise AlreadyExists(f"role {role_id!r} already exists")
        if not create and existing is None:
            raise NotFound(f"role {role_id!r} does not exist", reason="ERROR_REASON_ROLE_NOT_FOUND")
        if existing is not None and existing.get("builtin"):
            raise FailedPrecondition(f"role {role_id!r} is built in", reason="ERROR_REASON_NOT_SUPPORTED")
        check_permissions(list(permissions or []), "role.permissions")
        record = dict(existing or {"id": role_id, "description": "", "permissions": [], "builtin": False})
        if permissions is not None:
            record["permissions"] = list(permissions)
        if description is not None:
            record["description"] = description
        await self.storage.call(self.store.access_put, "roles", role_id, record)
        self.roles[role_id] = record
        return record

    async def delete_role(self, role_id: str) -> None:
        """Delete a custom role that no user holds.

        Raises:
            NotFound: unknown role (ROLE_NOT_FOUND).
            FailedPrecondition: a built-in role, or one users still hold (named in the message).
        """
        async with self._changing:
            role = self.roles.get(role_id)
            if role is None:
                raise NotFound(f"role {role_id!r} does not exist", reason="ERROR_REASON_ROLE_NOT_FOUND")
            if role.get("builtin"):
                raise FailedPrecondition(f"role {role_id!r} is built in", reason="ERROR_REASON_NOT_SUPPORTED")
            holders = sorted(f"users/{u['id']}" for u in self.users.values() if role_id in u.get("roles", []))
            if holders:
                shown = ", ".join(holders[:10]) + (
                    f" and {len(holders) - 10} more" if len(holders) > 10 else ""
                )
                raise FailedPrecondition(
                    f"role {role_id!r} is held by {shown}; take it from them first",
                    reason="ERROR_REASON_NOT_SUPPORTED",
                )
            await self.storage.call(self.store.access_delete, "roles", role_id)
            del self.roles[role_id]

    # --- API keys -------------------------------------------------------------------

    def _new_key(
        self, user_id: str, name: str, permissions: list[str], ttl: float | None, key_id: str | None = None
    ) -> tuple[dict[str, Any], str]:
        check_permissions(permissions, "api_key.permissions")
        secret = keys.generate()
        key_id = keys.parse(secret)
        assert key_id is not None
        now = time.time()
        record = {
            "id": key_id,
            "user": user_id,
            "user_uid": self.users.get(user_id, {}).get("uid"),
            "display_name": name,
            "permissions": list(permissions),
            "create_time": now,
            "expire_time": now + ttl if ttl else None,
            "last_used_time": None,
            "revoke_time": None,
            "digest": keys.digest(secret),
            "old_digest": "",
            "old_expire_time": None,
        }
        return record, secret

    async def create_key(
        self, caller: Caller, user_id: str, name: str, permissions: list[str], ttl: float | None
    ) -> tuple[dict[str, Any], str]:
        """A new key for the caller (or, for an admin, for ``user_id``).

        A key never grants more than the calling key holds: an empty ``permissions``
        (everything the user has) is refused to a key limited to some permissions.

        Raises:
            PermissionDenied: another user's key from a non-admin, a permission the caller lacks,
                or an unrestricted key asked for by a restricted one.
        """
        target = user_id or caller.principal.removeprefix("users/")
        if target != caller.principal.removeprefix("users/") and not caller.may("*"):
            raise PermissionDenied("only an admin can create keys for another user")
        ttl = ttl if ttl else DEFAULT_TTL
        if ttl > MAX_TTL:
            raise InvalidArgument("ttl is at most 365 days", field="ttl")
        check_permissions(permissions, "api_key.permissions")
        self._check_within(caller, permissions, "create a key")
        async with self._changing:  # delete_user revokes every key of the user it sees: this one too
            self.user(target)
            record, secret = self._new_key(target, name, permissions, ttl)
            await self.storage.call(self.store.access_put, "api_keys", record["id"], record)
            self.api_keys[record["id"]] = record
            return record, secret

    @staticmethod
    def _check_within(caller: Caller, permissions: list[str], action: str) -> None:
        """PERMISSION_DENIED unless a key of ``permissions`` (empty: all of its user's) grants no more
        than the caller's own key."""
        if not permissions and caller.key_permissions:
            raise PermissionDenied(
                f"this key is limited to {', '.join(sorted(caller.key_permissions))}: it cannot {action} "
                "with every permission of its user; list the permissions (at most its own)",
                metadata={"permission": "*"},
            )
        for perm in permissions:
            if not caller.may(perm):
                raise PermissionDenied(
                    f"cannot {action} granting {perm!r}, which the calling key lacks",
                    metadata={"permission": perm},
                )

    def _owned_key(self, caller: Caller, key_id: str) -> dict[str, Any]:
        if not keys.valid_id(key_id):  # a whole key pasted by mistake must not be echoed (nor audited)
            raise InvalidArgument(
                "name must be apiKeys/ID, ID being the 12 letters or digits after maos_key_ "
                "(not the whole key)",
                field="name",
            )
        record = self.api_keys.get(key_id)
        if record is None or (f"users/{record['user']}" != caller.principal and not caller.may("*")):
            raise NotFound(f"API key {key_id!r} does not exist", reason="ERROR_REASON_API_KEY_NOT_FOUND")
        return record

    def list_keys(
        self, caller: Caller, user_id: str = "", include_revoked: bool = False
    ) -> list[dict[str, Any]]:
        """The caller's keys (an admin: everyone's, or ``user_id``'s)."""
        mine = caller.principal.removeprefix("users/")
        if user_id and user_id != mine and not caller.may("*"):
            raise PermissionDenied("only an admin can list another user's keys")
        wanted = user_id or (None if caller.may("*") else mine)
        return [
            k
            for k in self.api_keys.values()
            if (wanted is None or k["user"] == wanted) and (include_revoked or not k.get("revoke_time"))
        ]

    async def revoke_key(self, caller: Caller, key_id: str) -> dict[str, Any]:
        """Revoke a key; effective on the next call."""
        async with self._changing:
            record = self._owned_key(caller, key_id)
            record["revoke_time"] = record.get("revoke_time") or time.time()
            await self.storage.call(self.store.access_put, "api_keys", key_id, dict(record))
            return record

    async def rotate_key(
        self, caller: Caller, key_id: str, overlap: float | None
    ) -> tuple[dict[str, Any], str]:
        """A new secret for the key; the old one works for ``overlap`` seconds more."""
        async with self._changing:
            record = self._owned_key(caller, key_id)
            if record.get("revoke_time"):
                raise FailedPrecondition(
                    "a revoked key cannot be rotated", reason="ERROR_REASON_NOT_SUPPORTED"
                )
            # The new secret is as powerful as the key: a narrower key may not obtain it.
            self._check_within(caller, list(record.get("permissions") or []), f"rotate apiKeys/{key_id}")
            overlap = DEFAULT_OVERLAP if overlap is None else overlap
            body = keys.PREFIX + key_id
            secret = keys.generate(key_id)
            assert secret.startswith(body)
            now = time.time()
            old_expire = now + overlap
            if record.get("expire_time"):
                old_expire = min(old_expire, record["expire_time"])
            record.update(
                old_digest=record["digest"] if overlap > 0 else "",
                old_expire_time=old_expire,
                digest=keys.digest(secret),
            )
            await self.storage.call(self.store.access_put, "api_keys", key_id, dict(record))
            return record, secret
