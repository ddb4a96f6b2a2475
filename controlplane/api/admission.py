"""Who may register as which agent on ``AgentGateway.Connect`` (with ``security.auth: required``).

The auth interceptor lets a Connect without ``authorization`` through as
:data:`JOINING`, a caller with no permissions, and nothing else: the first
``Register`` must then carry a join token, which :meth:`AgentAdmission.admit`
exchanges for the agent's own credential (returned in
``Registered.credential``). A Connect with a bearer is authenticated by the
interceptor as usual; a join token sent along with a bearer is ignored (not
counted). An agent's credential is bound to the agent it was issued for: it
registers only as that agent (a new session if its old one cannot be resumed)
and with that type, and it is renewed in ``Registered.credential`` once in the
last third of its life
(:meth:`~controlplane.access.manager.AccessManager.renew_agent_credential`).

Streams without a bearer are bounded, since nothing about their caller is
known yet:

* each one must send its ``Register`` within :attr:`AgentAdmission.register_timeout`;
* at most :attr:`AgentAdmission.max_joining_per_peer` of them per address, and
  :attr:`AgentAdmission.max_joining` in all, may be waiting for their
  admission at once; beyond that a stream is refused at once with
  RESOURCE_EXHAUSTED (``ERROR_REASON_LIMIT_EXCEEDED``, ErrorInfo ``limit``:
  ``joining_streams``, retry after a second), which the SDK's worker retries;
* a join that fails authentication (no token, a malformed or unknown token,
  a wrong secret) counts as a failed authentication of the address, like a
  bad API key (:mod:`controlplane.access.rate_limit`): once the address is over
  ``security.rate_limit.failed_auth_*`` such failures are answered
  RESOURCE_EXHAUSTED (``ERROR_REASON_RATE_LIMITED``) instead. A revoked or
  expired token stays UNAUTHENTICATED (its holder must stop, not retry), and
  a valid token still joins.

Every join, every renewal and every refusal here is audited (method
``AgentGateway/Connect``, resource the join token's or the credential's name).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from controlplane.access import join_tokens
from controlplane.access.join_tokens import JoinTokens
from controlplane.access.manager import AccessManager, Caller
from controlplane.access.rate_limit import RATE_LIMITED, CallLimits
from controlplane.api.context import bearer_token, caller_var, peer_address, principal_var
from controlplane.api.errors import status_code_for
from controlplane.domain.model import AgentInfo
from controlplane.errors import (
    CredentialRefused,
    MaosError,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from controlplane.metrics import Metrics

#: The one method reachable without a bearer token.
CONNECT = "/maos.v1.AgentGateway/Connect"
#: The caller of a Connect that came without a bearer, until its join token is exchanged.
JOINING = Caller(principal="")
#: The ``limit`` of a refusal for too many streams waiting to join (ErrorInfo metadata, metric label).
JOINING_STREAMS = "joining_streams"

Audit = Callable[..., None]


@dataclass(frozen=True)
class Admitted:
    """The outcome of admission: the id to register under (empty: a new one) and a credential to hand over.

    ``joined``: the agent has just joined with a join token (it resumes nothing); otherwise a
    non-empty ``credential`` renews the one the agent connected with.
    """

    agent_id: str = ""
    credential: str = ""
    joined: bool = False
    #: The principal owning the agent: its join token's creator, or the API key's principal.
    owner: str = ""


class AgentAdmission:
    """Checks a Register against the stream's caller; exchanges join tokens and renews credentials."""

    #: Seconds a stream without a bearer may take to send its Register.
    register_timeout = 10.0
    #: Most streams without a bearer from one address waiting for admission at once.
    max_joining_per_peer = 64
    #: Most streams without a bearer waiting for admission at once, all addresses together.
    max_joining = 1024

    def __init__(
        self,
        access: AccessManager,
        tokens: JoinTokens,
        audit: Audit,
        limits: CallLimits | None = None,
        metrics: Metrics | None = None,
    ):
        self.access = access
        self.tokens = tokens
        self.audit = audit
        self.limits = limits
        self.metrics = metrics
        self._joining: Counter[str] = Counter()

    @staticmethod
    def joining() -> bool:
        """Whether the current stream came without a bearer token."""
        return caller_var.get() is JOINING

    @contextlib.contextmanager
    def joining_slot(self, context: Any) -> Iterator[None]:
        """Hold one of the bounded places of streams without a bearer while their admission runs.

        Raises:
            ResourceExhausted: too many such streams from this address, or in all (audited and
                counted like the rate limits' refusals).
        """
        peer = peer_address(context.peer() or "")
        if self._joining[peer] >= self.max_joining_per_peer or self._joining.total() >= self.max_joining:
            error = ResourceExhausted(
                "too many agents are joining at once (streams without credentials waiting for their "
                "Register); try again in a moment",
                retry_after=1.0,
                metadata={"limit": JOINING_STREAMS},
            )
            if self.metrics is not None:
                self.metrics.call_rate_limited(CONNECT, JOINING_STREAMS)
            self.audit(CONNECT, None, context, None, status_code_for(error).name, error.reason)
            raise error
        self._joining[peer] += 1
        try:
            yield
        finally:
            self._joining[peer] -= 1
            if self._joining[peer] <= 0:
                del self._joining[peer]

    def _refusal(self, exc: MaosError, context: Any) -> MaosError:
        """What to answer for ``exc``: a failed authentication counts against the peer's address."""
        if self.limits is None or not isinstance(exc, Unauthenticated) or isinstance(exc, CredentialRefused):
            return exc
        refusal = self.limits.failed_authentication(peer_address(context.peer() or "")) or exc
        if refusal.reason == RATE_LIMITED and self.metrics is not None:
            self.metrics.call_rate_limited(CONNECT, refusal.metadata.get("limit", ""))
        return refusal

    def unauthenticated(self, context: Any, message: str) -> MaosError:
        """The (audited, counted) error for a stream without a bearer that brought no join token."""
        error = self._refusal(Unauthenticated(message), context)
        self.audit(CONNECT, None, context, None, status_code_for(error).name, error.reason)
        return error

    async def admit(self, info: AgentInfo, join_token: str, resume_agent: str, context: Any) -> Admitted:
        """Decide under which identity the agent described by ``info`` registers.

        Raises:
            Unauthenticated: no bearer and a missing or bad join token.
            ResourceExhausted: such failures from this address are over their rate.
            PermissionDenied: a type the token or credential does not allow, a used-up
                token, or a credential resuming another agent.
        """
        caller = caller_var.get()
        if caller is JOINING:
            return await self._join(info, join_token, context)
        bound = self.access.bound_agent(caller) if isinstance(caller, Caller) else None
        if bound is None:  # an API key holding agent:connect: its principal owns the agent
            return Admitted(owner=caller.principal if isinstance(caller, Caller) else "")
        agent_id, agent_type = bound.agent_id, bound.agent_type
        try:
            if info.agent_type != agent_type:
                raise PermissionDenied(
                    f"this credential belongs to agents/{agent_id}, of type {agent_type!r}",
                    metadata={"agent": f"agents/{agent_id}"},
                )
            if resume_agent and resume_agent != agent_id:
                raise PermissionDenied(
                    f"this credential belongs to agents/{agent_id}, not agents/{resume_agent}",
                    metadata={"agent": f"agents/{agent_id}"},
                )
            if bound.typed:  # its join token was bound to types: so is every later connection
                self.tokens.check_capabilities(
                    agent_type, info.capabilities, f"the credential of agents/{agent_id}"
                )
        except MaosError as exc:
            self.audit(CONNECT, caller, context, None, status_code_for(exc).name, exc.reason)
            raise
        assert isinstance(caller, Caller)  # only a Caller has a bound agent
        renewed = await self.access.renew_agent_credential(bearer_token(context.invocation_metadata()) or "")
        if renewed:
            self.audit(CONNECT, caller, context, None, "OK", resource=f"apiKeys/{caller.key_id}")
        return Admitted(agent_id=agent_id, credential=renewed, owner=bound.owner)

    async def _join(self, info: AgentInfo, token: str, context: Any) -> Admitted:
        parsed = join_tokens.parse(token)
        resource = join_tokens.name(parsed[0]) if parsed else ""
        try:
            joined = await self.tokens.redeem(token, info.agent_type, info.capabilities)
        except MaosError as exc:
            refusal = self._refusal(exc, context)
            self.audit(
                CONNECT, None, context, None, status_code_for(refusal).name, refusal.reason, resource=resource
            )
            if refusal is not exc:
                raise refusal from None
            raise
        caller = self.access.key_caller(self.access.api_keys[joined.key_id])
        caller_var.set(caller)
        principal_var.set(caller.principal)
        self.audit(CONNECT, caller, context, None, "OK", resource=resource)
        return Admitted(
            agent_id=joined.agent_id,
            credential=joined.credential,
            joined=True,
            owner=self.access.api_keys[joined.key_id].get("owner", ""),
        )
