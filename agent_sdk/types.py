"""Agent types (what ``maos agent spawn TYPE`` and ``maos-agent run --type TYPE`` can run), step kinds
and agent backings."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent_sdk.agent import Agent


class SubtaskKind(enum.IntEnum):
    """What a step of a plan asks of its agent (``Assignment.kind``; values are ``maos.v1.SubtaskKind``).

    Attributes:
        WORK: One part of the task: do what the instructions say; ``inputs`` hold the results of the steps
            it depends on.
        SYNTHESIS: Combine the results of the other parts (``inputs``, one per part) into the task's one
            answer. Only agents that declare the ``synthesis`` capability (or whose type the task names and
            that declare it) are handed this step.
        CANDIDATE: One candidate answer of a consensus step: answer the instructions on your own; the
            candidates are then voted on.
        REVIEW: Grade the task's answer (``inputs["answer"]``) against its description, context and
            constraints; return the verdict as JSON, ``{"approved": true}`` or ``{"approved": false,
            "changes": ["..."], "summary": "..."}`` (``maos.v1.ReviewVerdict``; see :func:`verdict_json`).
            An output holding no verdict counts as an approval.
        REVISION: Revise the task's answer (``inputs["answer"]``) to make the changes the instructions list;
            return the whole revised answer.
    """

    UNSPECIFIED = 0
    WORK = 1
    SYNTHESIS = 2
    CANDIDATE = 3
    REVIEW = 4
    REVISION = 5


def verdict_json(approved: bool, changes: list[str] | tuple[str, ...] = (), summary: str = "") -> str:
    """The output of a REVIEW step: a ``maos.v1.ReviewVerdict`` as JSON."""
    import json

    data: dict[str, Any] = {"approved": bool(approved)}
    if changes:
        data["changes"] = [str(c) for c in changes]
    if summary:
        data["summary"] = summary
    return json.dumps(data)


class AgentBacking(enum.IntEnum):
    """What does an agent's work (``maos.v1.AgentBacking``); sent at Register.

    Attributes:
        UNSPECIFIED: Not said; the control plane treats it as MODEL.
        MODEL: A model (for example Claude) does the work.
        OFFLINE: No model (echo, noop, sleep, shell, python): such agents take only work addressed to
            them (their type, or a capability they declare by name), and other work only while no
            connected agent of another kind could take it.
    """

    UNSPECIFIED = 0
    MODEL = 1
    OFFLINE = 2


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
        backing: What does the work of its agents (model-backed or offline).
        precondition: Called with the type's parameters; returns why agents of the type cannot run with
            this configuration (for example "no Anthropic API key: set ..."), or "" when they can. The
            control plane refuses to spawn or start such a type.
        pool_share: How many agents of the type the default pool holds when the type can run (0: none).
        validate: Called with a custom type's parameters when its file is loaded (cheap, nothing
            started); raises ValueError saying what is wrong, and the file is skipped with that message.
            Custom types inherit their base type's.
        advisory: Called with the type's parameters; returns notes about this configuration that do
            not stop the type from running (for example an allow-listed tool nothing offers), shown by
            ``maos agent types`` and ``maos plugins list``. Custom types inherit their base type's.
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
    backing: AgentBacking = AgentBacking.UNSPECIFIED
    precondition: Callable[[Mapping[str, Any]], str] | None = None
    pool_share: int = 0
    validate: Callable[[Mapping[str, Any]], None] | None = None
    advisory: Callable[[Mapping[str, Any]], list[str]] | None = None

    def build(self) -> Agent:
        """A new agent of this type."""
        return self.factory(self.parameters)

    def unavailable(self) -> str:
        """Why agents of this type cannot run with this configuration; "" when they can."""
        return self.precondition(self.parameters) if self.precondition is not None else ""

    def warnings(self) -> list[str]:
        """Notes about this configuration that do not stop the type from running."""
        return list(self.advisory(self.parameters)) if self.advisory is not None else []
