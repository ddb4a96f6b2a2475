"""The base class of agents written with the SDK."""

from __future__ import annotations

from typing import ClassVar

from agent_sdk.context import Ballot, Context, Result, VoteChoice
from agent_sdk.pacing import UNPACED, ModelPacer
from agent_sdk.types import AgentBacking


class Agent:
    """Subclass, set the class attributes, and implement :meth:`handle`.

    Example::

        class Upper(Agent):
            agent_type = "upper"
            capabilities = ["text"]
            max_concurrency = 4

            async def handle(self, ctx):
                return ctx.assignment.instructions.upper()
    """

    agent_type: ClassVar[str] = ""
    capabilities: ClassVar[list[str]] = []
    max_concurrency: ClassVar[int] = 1
    #: What does the work (sent at Register). Agents that do no model work say OFFLINE, so the
    #: scheduler keeps them off typed work; UNSPECIFIED is treated as MODEL.
    backing: ClassVar[AgentBacking] = AgentBacking.UNSPECIFIED
    #: Permits for model calls (:mod:`agent_sdk.pacing`); the worker sets one over its stream.
    pacer: ModelPacer = UNPACED

    async def warm_up(self) -> None:
        """Pay start-up costs (imports, clients) before the agent registers, not on its first assignment.

        The worker awaits it once, before connecting; the default does nothing.
        """

    async def close(self) -> None:
        """Release what :meth:`warm_up` set up; the worker awaits it once when it stops."""

    async def handle(self, ctx: Context) -> Result | str:
        """Do the work of one assignment and return its result."""
        raise NotImplementedError

    async def vote(self, ballot: Ballot) -> VoteChoice:
        """Choose among candidate answers (consensus). The default abstains for the first candidate
        with low confidence; agents that can judge (Claude-backed ones) override it."""
        return VoteChoice(ballot.candidates[0].id, confidence=0.1, rationale="no judgement available")
