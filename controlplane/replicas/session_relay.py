"""Agents' work moving with their sessions between live replicas, over the replicas' bus.

An agent that resumes its session on one replica while another, alive, holds the tasks of the work
it runs keeps that work: the holder hands it over (:mod:`controlplane.scheduler.session_moves`).
This module is the bus's side of it: each replica answers ``hand_over`` requests for the tasks it
holds (declining the others at once), and gives its engine a way to ask the replica holding them.
"""

from __future__ import annotations

from typing import Any

from controlplane.replicas.bus import ReplicaBus
from controlplane.scheduler.session_moves import SessionMoves

#: The bus's request kind for hand-overs.
HAND_OVER = "hand_over"


def install_session_relay(bus: ReplicaBus, moves: SessionMoves) -> None:
    """Let ``moves`` ask the replica holding a resuming agent's work for it through ``bus``, and hand
    over the work held here when another replica asks."""

    async def ask(body: dict[str, Any], holder: str) -> tuple[str, dict[str, Any]] | None:
        """Ask replica ``holder`` only: its id and answer, or None (it holds none of the tasks).

        Raises:
            MaosError: The holder refused (a stale or forged session), or stopped answering.
        """
        answer = await bus.ask(HAND_OVER, body, only=holder)
        if answer is None or answer.truncated:
            return None
        return answer.replica, answer.result

    bus.handle(HAND_OVER, moves.give)
    moves.ask = ask
