"""An agent's session: what the engine knows of one connected stream."""

from __future__ import annotations

import asyncio
from typing import Any

from controlplane.domain.model import AgentInfo, AgentStatus


class AgentSession:
    """A connected agent: its credit, its running work and its outbox."""

    def __init__(self, info: AgentInfo):
        self.info = info
        self.capabilities = frozenset([*info.capabilities, info.agent_type])
        self.running: set[tuple[str, str]] = set()
        self.paused = False
        self.draining = False
        self.closed = False
        # Set when one of its leases expired: a frozen or cut-off agent gets no new
        # work until it shows signs of life again (any message clears it).
        self.suspect = False
        self.outbox: asyncio.Queue[Any] = asyncio.Queue()
        # Reports waiting for the commit of generation ``ack_generation``.
        self.ack_generation = -1
        self.ack_refs: list[Any] = []

    @property
    def id(self) -> str:
        """The agent id."""
        return self.info.id

    @property
    def free(self) -> int:
        """Slots the control plane may still fill (credit)."""
        if self.paused or self.draining or self.closed or self.suspect:
            return 0
        return max(0, self.info.max_concurrency - len(self.running))

    def send(self, command: Any) -> None:
        """Queue a command for the agent (dropped once the stream is closed)."""
        if not self.closed:
            self.outbox.put_nowait(command)

    def status(self) -> AgentStatus:
        """The agent's status as shown to users."""
        if self.closed:
            return AgentStatus.DISCONNECTED
        if self.draining:
            return AgentStatus.DRAINING
        if self.paused:
            return AgentStatus.PAUSED
        return AgentStatus.BUSY if self.running else AgentStatus.IDLE
