"""The shapes every client tool and tool source share.

A *client tool* is one the agent runs itself when the model asks for it (a workspace file tool, a
tool of an MCP server); server tools (web search, code execution) run on the API's side and are
only named in the request. A *tool source* offers client tools for an agent's lifetime: it is
opened before the agent's first assignment and closed when the agent stops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class ToolOutput:
    """What a tool call answers: text for the model's ``tool_result`` block.

    ``is_error`` marks a failed call; the model sees the text as an error result and may try
    again or go on without it (a failing tool never fails the subtask by itself).
    """

    content: str
    is_error: bool = False


@runtime_checkable
class ClientTool(Protocol):
    """A tool the agent runs: a name, a description and a JSON schema for its input."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def input_schema(self) -> dict[str, Any]: ...

    async def call(self, arguments: dict[str, Any]) -> ToolOutput:
        """Run the tool; raising is allowed (the loop turns it into an error result)."""
        ...


@runtime_checkable
class ToolSource(Protocol):
    """Client tools offered for an agent's lifetime (for example an MCP server's)."""

    @property
    def name(self) -> str: ...

    async def open(self) -> None:
        """Start or connect; raise with a message a person can act on when it cannot."""
        ...

    def tools(self) -> Sequence[ClientTool]:
        """The tools offered once open."""
        ...

    async def close(self) -> None: ...
