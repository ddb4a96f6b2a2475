"""The base class of agents written with the SDK."""

from __future__ import annotations

from typing import ClassVar

from agent_sdk.context import Context, Result


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

    async def handle(self, ctx: Context) -> Result | str:
        """Do the work of one assignment and return its result."""
        raise NotImplementedError
