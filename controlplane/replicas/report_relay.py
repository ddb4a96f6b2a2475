"""Reports carried to the replica holding their task, over the replicas' bus.

An agent's result or failure that reaches a replica not holding its task, while another live
replica holds it, is applied there (:mod:`controlplane.scheduler.relayed_reports`): this module
is the bus's side of it. Each replica answers ``report`` requests for the tasks it holds (declining
the others at once), and gives its agent side a way to ask.
"""

from __future__ import annotations

from typing import Any

from controlplane.replicas.bus import ReplicaBus

#: The bus's request kind for carried reports.
REPORT = "report"


def install_report_relay(bus: ReplicaBus, agent_side: Any) -> None:
    """Let ``agent_side`` (an :class:`~controlplane.scheduler.agent_side.AgentSide`) carry reports to the
    replicas holding their tasks through ``bus``, and apply those carried to this replica."""

    async def relay(body: dict[str, Any]) -> dict[str, Any] | None:
        """The holder's answer to a report, or None: no live replica holds its task.

        Raises:
            InvalidArgument: The report is longer than the bus carries (or the holder found it malformed).
        """
        answer = await bus.ask(REPORT, body)
        if answer is None or answer.truncated:
            return None
        return answer.result

    bus.handle(REPORT, agent_side.carried.apply)
    agent_side.carried.relay = relay
