"""An example MAOS plugin: registers the ``reverser`` agent type.

MAOS loads this module through the ``maos`` entry point declared in
``pyproject.toml`` and calls its hook implementations.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent_sdk import Agent, AgentTypeSpec, Context
from controlplane import hookimpl

__version__ = "0.1.0"


class ReverserAgent(Agent):
    """Answers with its instructions reversed (a synthesis step joins its inputs first)."""

    agent_type = "reverser"
    capabilities = ["reverse", "synthesis"]
    max_concurrency = 8

    async def handle(self, ctx: Context) -> str:
        """Reverse the instructions."""
        a = ctx.assignment
        text = "\n".join(a.inputs[key] for key in sorted(a.inputs)) if a.inputs else a.instructions
        return text[::-1]


def _reverser(parameters: Mapping[str, Any]) -> Agent:
    return ReverserAgent()


@hookimpl
def register_agent_types(settings: Any) -> list[AgentTypeSpec]:
    """The ``reverser`` type: ``maos agent spawn reverser``, ``maos-agent run --type reverser``."""
    return [
        AgentTypeSpec(
            name="reverser",
            capabilities=tuple(ReverserAgent.capabilities),
            description="Reverses its instructions (example plugin).",
            factory=_reverser,
            max_concurrency=ReverserAgent.max_concurrency,
            source="maos-plugin-example",
        )
    ]
