"""Agent join tokens: what a new agent presents once, at Register, to get its own credential.

A token is ``id.secret`` in the form of Kubernetes bootstrap tokens,
``[a-z0-9]{6}.[a-z0-9]{16}`` (about 83 random bits in the secret). The id is
public (``joinTokens/{id}``: listings, audit records); only the SHA-256 of the
secret is stored, and it is compared in constant time. A token expires
(default 24 h, at most 30 days), may be limited to a number of uses
(``max_uses``, 0 = unlimited) and to agent types (empty = any), and can be
revoked.

Redeeming checks, in order: format and secret (UNAUTHENTICATED,
JOIN_TOKEN_NOT_FOUND for an unknown id or a wrong secret alike), revocation
(UNAUTHENTICATED, CREDENTIAL_REVOKED), expiry (UNAUTHENTICATED,
CREDENTIAL_EXPIRED), agent type (PERMISSION_DENIED) and uses left
(PERMISSION_DENIED too: an exhausted token never recovers, so the agent must
stop rather than retry as it would on RESOURCE_EXHAUSTED). Then the storage
counts the use in one conditional statement, durably, so two agents racing
for the last use cannot both join; a refused token changes nothing. Finally
the agent gets its credential from
:meth:`~controlplane.access.manager.AccessManager.issue_agent_credential`.
The use is counted before ``Registered`` reaches the agent: should the
stream break in between (a network blip, the agent killed), that use is spent
although the agent never saw its credential, so a single-use token is gone
and the agent needs a new one.

Revoking a token stops further joins; agents that already joined keep their
credentials (revoke those as API keys).

A token bound to agent types also bounds what its agents may claim: an agent
of such a token declares only capabilities of its type (those the type
registry lists for it, :mod:`controlplane.agent_types`), so it is given only
that type's work. A claim beyond is refused at Register, PERMISSION_DENIED
naming the capabilities refused and those allowed, before a use is counted;
the agent's credential keeps the limit for its later connections. A token
bound to no type limits nothing.

The token's creator owns the agents that join with it (recorded on their
credentials): pausing, draining or terminating them needs no
``agent:manage-all`` for that principal.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controlplane.domain.model import new_agent_id
from controlplane.domain.tasks import valid_type_name
from controlplane.errors import (
    Aborted,
    AlreadyExists,
    CredentialRefused,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from controlplane.storage.base import StoresJoinTokens, require
from controlplane.storage.records import JoinTokenRecord
from maos_common.limits import MAX_JOIN_TOKEN_USES

if TYPE_CHECKING:
    from controlplane.access.manager import AccessManager

DEFAULT_TTL = 86400.0
MAX_TTL = 30 * 86400.0
MAX_USES = MAX_JOIN_TOKEN_USES
MAX_AGENT_TYPES = 64
_ALPHABET = string.ascii_lowercase + string.digits
_FORMAT = re.compile(r"([a-z0-9]{6})\.([a-z0-9]{16})")
_ID = re.compile(r"[a-z0-9]{6}")
_NOT_FOUND = "ERROR_REASON_JOIN_TOKEN_NOT_FOUND"


def _random(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def digest(secret: str) -> str:
    """SHA-256 hex digest of a token's secret part (what is stored)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def parse(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed token, else None."""
    match = _FORMAT.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


def name(token_id: str) -> str:
    """The resource name, ``joinTokens/{id}``."""
    return f"joinTokens/{token_id}"


def valid_id(token_id: str) -> bool:
    """Whether ``token_id`` is a token's public id (``[a-z0-9]{6}``, without the secret)."""
    return bool(_ID.fullmatch(token_id))


@dataclass(frozen=True)
class Redemption:
    """A successful join: the new agent's id, its credential and the credential's key id."""

    agent_id: str
    key_id: str
    credential: str


class JoinTokens:
    """Creates, lists, revokes and redeems join tokens; ``storage`` is a StorageExecutor.

    ``agent_exists`` tells whether an agent id is in use in memory (the
    engine's agents, some of them not committed yet); new agents never get
    such an id, nor one stored or bound to a credential.
    """

    def __init__(
        self,
        storage: Any,
        access: AccessManager,
        agent_exists: Callable[[str], bool] = lambda agent_id: False,
        type_capabilities: Callable[[str], frozenset[str]] = lambda agent_type: frozenset(),
    ):
        """``type_capabilities`` names the capabilities the type registry gives a type (none if unknown)."""
        self.storage = storage
        self.access = access
        self.agent_exists = agent_exists
        self.type_capabilities = type_capabilities

    @property
    def store(self) -> StoresJoinTokens:
        """The storage backend, which must offer the optional ``StoresJoinTokens`` capability."""
        return require(self.storage.backend, StoresJoinTokens, "join tokens")

    def check_capabilities(self, agent_type: str, capabilities: Sequence[str], source: str) -> None:
        """PERMISSION_DENIED if ``capabilities`` go beyond those of ``agent_type`` (``source`` binds it)."""
        allowed = self.type_capabilities(agent_type) | {agent_type}
        beyond = [c for c in dict.fromkeys(capabilities) if c not in allowed]
        if beyond:
            shown = ", ".join(repr(c[:64]) for c in beyond[:10]) + (
                f" and {len(beyond) - 10} more" if len(beyond) > 10 else ""
            )
            raise PermissionDenied(
                f"{source} binds its agents to type {agent_type!r}, whose capabilities are "
                f"{', '.join(sorted(allowed))}; register.capabilities may not claim {shown}",
                metadata={"agent_type": agent_type, "capabilities": ",".join(beyond)[:256]},
            )

    async def create(
        self, agent_types: Sequence[str], max_uses: int, ttl: float | None, creator: str = ""
    ) -> tuple[JoinTokenRecord, str]:
        """A new token; returns (record, ``id.secret``). The secret is never available again.

        ``ttl`` None or 0 means the default, 24 h (as for API keys). ``creator`` (the calling
        principal) will own the agents that join with it.

        Raises:
            InvalidArgument: a negative or too long ``ttl``, ``max_uses`` out of range, bad agent types.
            Aborted: three random ids in a row were taken (retryable; practically never).
        """
        ttl = ttl or DEFAULT_TTL
        if not 0 < ttl <= MAX_TTL:
            raise InvalidArgument(
                f"ttl must be more than 0 and at most {int(MAX_TTL // 86400)} days", field="ttl"
            )
        if not 0 <= max_uses <= MAX_USES:
            raise InvalidArgument(
                f"max_uses must be between 0 (unlimited) and {MAX_USES}", field="join_token.max_uses"
            )
        if len(agent_types) > MAX_AGENT_TYPES:
            raise InvalidArgument(f"at most {MAX_AGENT_TYPES} agent types", field="join_token.agent_types")
        for index, agent_type in enumerate(agent_types):
            if not valid_type_name(agent_type):
                raise InvalidArgument(
                    f"{agent_type!r} is not an agent type name (a letter, then letters, digits, '_' or '-'; max 63)",
                    field=f"join_token.agent_types[{index}]",
                )
        now = time.time()
        for _ in range(3):  # a clash of random 6-character ids is rare; try again
            token_id, secret = _random(6), _random(16)
            record = JoinTokenRecord(
                id=token_id,
                digest=digest(secret),
                agent_types=tuple(dict.fromkeys(agent_types)),
                max_uses=max_uses,
                uses=0,
                create_time=now,
                expire_time=now + ttl,
                creator=creator,
            )
            try:
                await self.storage.call(self.store.put_join_token, record)
            except AlreadyExists:
                continue
            return record, f"{token_id}.{secret}"
        raise Aborted(
            "could not pick an unused join token id; try again", reason="ERROR_REASON_ALREADY_EXISTS"
        )

    async def list_tokens(self) -> list[JoinTokenRecord]:
        """Every token, revoked and expired ones included, oldest first."""
        tokens: list[JoinTokenRecord] = await self.storage.call(self.store.list_join_tokens)
        return tokens

    async def revoke(self, token_id: str) -> JoinTokenRecord:
        """Revoke a token (again: no change); agents that joined with it keep their credentials.

        Raises:
            InvalidArgument: ``token_id`` is not an id; the message does not repeat it, as it
                may be a whole token pasted by mistake (its secret must not reach logs).
            NotFound: no such token.
        """
        if not valid_id(token_id):
            raise InvalidArgument(
                "name must be joinTokens/ID, ID being the 6 letters or digits before the '.' of the token",
                field="name",
            )
        record: JoinTokenRecord | None = await self.storage.call(
            self.store.revoke_join_token, token_id, time.time()
        )
        if record is None:
            raise NotFound(f"join token {name(token_id)!r} does not exist", reason=_NOT_FOUND)
        return record

    async def redeem(self, token: str, agent_type: str, capabilities: Sequence[str] = ()) -> Redemption:
        """Count one use of ``token`` for an agent of ``agent_type`` and issue that agent's credential.

        Raises:
            Unauthenticated: malformed, unknown (or wrong secret), revoked or expired token.
            PermissionDenied: the type is not allowed, ``capabilities`` go beyond the type's (a
                token bound to types), or every use is spent.

        The use is counted durably before the credential is stored, and before
        the agent receives it in ``Registered``: should storing the credential
        fail (the database went away in between) or the stream break before
        ``Registered`` is delivered, that use is spent all the same (a token
        of one use is then gone).
        """
        parsed = parse(token)
        if parsed is None:
            raise Unauthenticated(
                "the join token is malformed (expected ID.SECRET, [a-z0-9]{6}.[a-z0-9]{16})"
            )
        token_id, secret = parsed
        record = await self.storage.call(self.store.get_join_token, token_id)
        stored = record.digest if record is not None else digest("")  # compare anyway: same timing
        if not hmac.compare_digest(digest(secret), stored) or record is None:
            raise Unauthenticated("unknown join token", reason=_NOT_FOUND)
        now = time.time()
        self._check(record, agent_type, now)
        if record.agent_types:
            self.check_capabilities(agent_type, capabilities, f"join token {name(token_id)}")
        agent_id = await self._new_agent_id(agent_type)
        counted = await self.storage.call(self.store.use_join_token, token_id, now)
        if counted is None:  # revoked, expired or used up since it was read
            latest = await self.storage.call(self.store.get_join_token, token_id) or record
            self._check(latest, agent_type, now)
            raise self._exhausted(latest)
        key, credential = await self.access.issue_agent_credential(
            agent_id, agent_type, name(token_id), owner=record.creator, typed=bool(record.agent_types)
        )
        return Redemption(agent_id=agent_id, key_id=key["id"], credential=credential)

    async def _new_agent_id(self, agent_type: str) -> str:
        """A fresh id (64 random bits) no agent has had: not in memory, not stored, bound to no credential."""
        for _ in range(3):
            agent_id = new_agent_id(agent_type)
            if self.agent_exists(agent_id) or any(
                k.get("agent") == agent_id for k in self.access.api_keys.values()
            ):
                continue
            if await self.storage.call(self.storage.backend.get_agent, agent_id) is None:
                return agent_id
        raise Aborted("could not pick an unused agent id; try again", reason="ERROR_REASON_ALREADY_EXISTS")

    def _check(self, record: JoinTokenRecord, agent_type: str, now: float) -> None:
        if record.revoke_time is not None:
            raise CredentialRefused(
                f"join token {name(record.id)} was revoked", reason="ERROR_REASON_CREDENTIAL_REVOKED"
            )
        if now >= record.expire_time:
            raise CredentialRefused(
                f"join token {name(record.id)} expired", reason="ERROR_REASON_CREDENTIAL_EXPIRED"
            )
        if not record.allows(agent_type):
            raise PermissionDenied(
                f"join token {name(record.id)} does not allow agents of type {agent_type!r} "
                f"(only {', '.join(record.agent_types)})",
                metadata={"join_token": name(record.id), "agent_type": agent_type},
            )
        if record.exhausted():
            raise self._exhausted(record)

    @staticmethod
    def _exhausted(record: JoinTokenRecord) -> PermissionDenied:
        return PermissionDenied(
            f"join token {name(record.id)} has been used {record.max_uses} of {record.max_uses} times",
            metadata={"join_token": name(record.id), "max_uses": str(record.max_uses)},
        )
