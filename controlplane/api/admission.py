"""Who may register as which agent on ``AgentGateway.Connect`` (with ``security.auth: required``).

The auth interceptor lets a Connect without ``authorization`` through as
:data:`JOINING`, a caller with no permissions, and nothing else: the first
``Register`` must then carry a join token, which :meth:`AgentAdmission.admit`
exchanges for the agent's own credential (returned in
``Registered.credential``). A Connect with a bearer is authenticated by the
interceptor as usual; a join token sent along with a bearer is ignored (not
counted). An agent's credential is bound to the agent it was issued for: it
registers only as that agent (a new session if its old one cannot be resumed)
and with that type.

Every join, and every refusal here, is audited (method ``AgentGateway/Connect``,
resource the join token's name).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from controlplane.access import join_tokens
from controlplane.access.join_tokens import JoinTokens
from controlplane.access.manager import AccessManager, Caller
from controlplane.api.context import caller_var, principal_var
from controlplane.api.errors import status_code_for
from controlplane.domain.model import AgentInfo
from controlplane.errors import MaosError, PermissionDenied, Unauthenticated

#: The one method reachable without a bearer token.
CONNECT = "/maos.v1.AgentGateway/Connect"
#: The caller of a Connect that came without a bearer, until its join token is exchanged.
JOINING = Caller(principal="")

Audit = Callable[..., None]


@dataclass(frozen=True)
class Admitted:
    """The outcome of admission: the id to register under (empty: a new one) and a new credential."""

    agent_id: str = ""
    credential: str = ""


class AgentAdmission:
    """Checks a Register against the stream's caller; exchanges join tokens."""

    #: Seconds a stream without a bearer may take to send its Register.
    register_timeout = 10.0

    def __init__(self, access: AccessManager, tokens: JoinTokens, audit: Audit):
        self.access = access
        self.tokens = tokens
        self.audit = audit

    @staticmethod
    def joining() -> bool:
        """Whether the current stream came without a bearer token."""
        return caller_var.get() is JOINING

    async def unauthenticated(self, context: Any, message: str) -> Unauthenticated:
        """The (audited) error for a stream without a bearer that cannot join."""
        error = Unauthenticated(message)
        self.audit(CONNECT, None, context, None, "UNAUTHENTICATED", error.reason)
        return error

    async def admit(self, info: AgentInfo, join_token: str, resume_agent: str, context: Any) -> Admitted:
        """Decide under which identity the agent described by ``info`` registers.

        Raises:
            Unauthenticated: no bearer and a missing or bad join token.
            PermissionDenied: a type the token or credential does not allow, a used-up
                token, or a credential resuming another agent.
        """
        caller = caller_var.get()
        if caller is JOINING:
            return await self._join(info, join_token, context)
        bound = self.access.bound_agent(caller) if isinstance(caller, Caller) else None
        if bound is None:
            return Admitted()  # an API key holding agent:connect
        agent_id, agent_type = bound
        try:
            if info.agent_type != agent_type:
                raise PermissionDenied(f"this credential belongs to agents/{agent_id}, of type {agent_type!r}",
                                       metadata={"agent": f"agents/{agent_id}"})
            if resume_agent and resume_agent != agent_id:
                raise PermissionDenied(f"this credential belongs to agents/{agent_id}, not agents/{resume_agent}",
                                       metadata={"agent": f"agents/{agent_id}"})
        except MaosError as exc:
            self.audit(CONNECT, caller, context, None, status_code_for(exc).name, exc.reason)
            raise
        return Admitted(agent_id=agent_id)

    async def _join(self, info: AgentInfo, token: str, context: Any) -> Admitted:
        parsed = join_tokens.parse(token)
        resource = join_tokens.name(parsed[0]) if parsed else ""
        try:
            joined = await self.tokens.redeem(token, info.agent_type)
        except MaosError as exc:
            self.audit(CONNECT, None, context, None, status_code_for(exc).name, exc.reason, resource=resource)
            raise
        caller = self.access.key_caller(self.access.api_keys[joined.key_id])
        caller_var.set(caller)
        principal_var.set(caller.principal)
        self.audit(CONNECT, caller, context, None, "OK", resource=resource)
        return Admitted(agent_id=joined.agent_id, credential=joined.credential)
