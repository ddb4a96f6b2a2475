"""Agent types: what ``maos agent spawn TYPE`` and ``maos-agent run --type TYPE`` can run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent_sdk.agent import Agent


@dataclass(frozen=True)
class AgentTypeSpec:
    """A named way to build an agent.

    Attributes:
        name: The type name (``researcher``, ``echo``, ``domain_researcher``).
        capabilities: What agents of the type can do.
        description: One line for ``maos agent types``.
        factory: Builds the agent from its parameters.
        max_concurrency: Assignments one agent process runs at once by default.
        base_type: For custom types, the type they specialise.
        parameters: Parameters passed to the factory.
        source: "builtin", a plugin's name, or the YAML file it came from.
        environment: Names of environment variables a launched agent of this type receives from the
            control plane's environment, beyond the allow-list of :mod:`agent_sdk.environment`
            (a model-backed type: its model key). Custom types inherit their base type's.
    """

    name: str
    capabilities: tuple[str, ...]
    description: str
    factory: Callable[[Mapping[str, Any]], Agent]
    max_concurrency: int = 1
    base_type: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    source: str = "builtin"
    environment: tuple[str, ...] = ()

    def build(self) -> Agent:
        """A new agent of this type."""
        return self.factory(self.parameters)
