"""An agent's session: what the engine knows of one connected stream."""

from __future__ import annotations

import asyncio
from typing import Any

from controlplane.domain.model import AgentInfo, AgentStatus

#: Put on an outbox to end the stream that serves it.
END_OF_STREAM = object()


class AgentSession:
    """A connected agent: its credit, its running work and its outbox."""

    def __init__(self, info: AgentInfo):
        self.info = info
        self.capabilities = frozenset([*info.capabilities, info.agent_type])
        #: An offline agent (no model) keeps off typed work (see controlplane.domain.pool).
        self.offline = info.backing == 2
        self.running: set[tuple[str, str]] = set()
        self.paused = False
        self.draining = False
        self.closed = False
        #: The agent resumed this session on another replica, which holds its record now: nothing this
        #: session still does here (a late report, a heartbeat) writes that record.
        self.moved = False
        # Set when one of its leases expired: a frozen or cut-off agent gets no new
        # work until it shows signs of life again (any message clears it).
        self.suspect = False
        self.outbox: asyncio.Queue[Any] = asyncio.Queue()
        # Free slots as the agent last reported them, less what was sent since.
        self.reported_free = info.max_concurrency
        # Reports waiting for the commit of generation ``ack_generation``.
        self.ack_generation = -1
        self.ack_refs: list[Any] = []
        # Reports already durable, gathered into the next Committed message.
        self.durable_refs: list[Any] = []
        self.ack_timer: asyncio.TimerHandle | None = None

    @property
    def id(self) -> str:
        """The agent id."""
        return self.info.id

    @property
    def free(self) -> int:
        """Slots the control plane may still fill (credit): never more than the agent reported."""
        if self.paused or self.draining or self.closed or self.suspect:
            return 0
        return max(0, min(self.info.max_concurrency - len(self.running), self.reported_free))

    def report_free(self, free_slots: int, acknowledged: int) -> None:
        """A heartbeat: ``free_slots`` free while it ran ``acknowledged`` of the assignments we count."""
        self.reported_free = self._reported(free_slots, acknowledged)

    def reports_change(self, free_slots: int, acknowledged: int) -> bool:
        """Whether :meth:`report_free` with these figures would change what the agent reported."""
        return self._reported(free_slots, acknowledged) != self.reported_free

    def _reported(self, free_slots: int, acknowledged: int) -> int:
        in_flight = max(0, len(self.running) - acknowledged)  # sent after the agent wrote the heartbeat
        return max(0, free_slots - in_flight)

    def close(self) -> None:
        """End the stream serving this session (a newer stream replaced it, or the agent left)."""
        if not self.closed:
            self.closed = True
            if self.ack_timer is not None:
                self.ack_timer.cancel()
                self.ack_timer = None
            self.outbox.put_nowait(END_OF_STREAM)

    def assigned(self) -> None:
        """One more slot is taken by an assignment just sent."""
        self.reported_free = max(0, self.reported_free - 1)

    def released(self) -> None:
        """A slot came free (a result, failure, cancel or expired lease)."""
        self.reported_free = min(self.info.max_concurrency, self.reported_free + 1)

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
