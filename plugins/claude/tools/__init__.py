"""Tools a model-backed agent offers the model: client tools it runs itself, and their sources."""

from maos_plugins.claude.tools.base import ClientTool, ToolOutput, ToolSource

__all__ = ["ClientTool", "ToolOutput", "ToolSource"]
