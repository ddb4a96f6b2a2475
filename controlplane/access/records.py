"""Stored access-control records that storage backends read and write.

Plain data with no access logic, so :mod:`controlplane.storage` can depend on
it without importing how tokens are created, checked or redeemed
(:mod:`controlplane.access.join_tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JoinTokenRecord:
    """A stored join token (never its secret: only the SHA-256 ``digest`` of it)."""

    id: str
    digest: str
    agent_types: tuple[str, ...]
    max_uses: int
    uses: int
    create_time: float
    expire_time: float
    revoke_time: float | None = None
    #: The principal that created it, owner of the agents that join with it ("" for older tokens).
    creator: str = ""

    def exhausted(self) -> bool:
        """Whether every allowed use is spent."""
        return 0 < self.max_uses <= self.uses

    def allows(self, agent_type: str) -> bool:
        """Whether an agent of ``agent_type`` may join with it."""
        return not self.agent_types or agent_type in self.agent_types
