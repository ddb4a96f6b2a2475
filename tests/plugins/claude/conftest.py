"""Fixtures: the fake Messages API, assignments, and a Context whose reports are collected."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from agent_sdk.context import Assignment, Context
from maos_plugins.claude.config import ClaudeConfig
from tests.harness.messages_api import MessagesAPIServer

API_KEY = "sk-ant-test-key"


@pytest.fixture(autouse=True)
def _no_real_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in these tests may reach Anthropic: drop keys and base URLs from the environment."""
    for name in (
        "ANTHROPIC_API_KEY",
        "CLAUDE_API_KEY",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_PROFILE",
        "MAOS_CLAUDE_API_KEY",
        "MAOS_CLAUDE_BASE_URL",
        "MAOS_CLAUDE_MODEL",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def api() -> Iterator[MessagesAPIServer]:
    """A started fake Messages API that accepts only :data:`API_KEY`."""
    server = MessagesAPIServer(api_key=API_KEY)
    with server:
        yield server


@pytest.fixture
def config(api: MessagesAPIServer) -> ClaudeConfig:
    """A configuration pointed at the fake server (fast SDK retries)."""
    return ClaudeConfig(api_key=API_KEY, base_url=api.base_url, max_retries=2, timeout=10.0)


def params(api: MessagesAPIServer, **extra: Any) -> dict[str, Any]:
    """Agent-type parameters pointing at ``api``."""
    return {"api_key": API_KEY, "base_url": api.base_url, "timeout": 10, **extra}


def assignment(**fields: Any) -> Assignment:
    """An assignment with sensible defaults."""
    base = Assignment(
        task="t1",
        subtask="s0",
        attempt=0,
        lease_epoch=1,
        title="Cloud trends",
        instructions="List the top 3 cloud computing trends of 2025.",
        capability="researcher",
        kind=1,
        task_description="Research the top 3 cloud computing trends in 2025",
        context="This is for a healthcare application",
        constraints="Must follow HIPAA compliance",
        metadata={},
        inputs={},
        resume_checkpoint=None,
        deadline=None,
        priority=2,
    )
    return replace(base, **fields)


class Collector:
    """A fake ``send`` for :class:`Context`: records progress and output in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, kind: str, fields: dict[str, Any]) -> None:
        self.events.append((kind, dict(fields)))

    @property
    def outputs(self) -> list[str]:
        return [f["text"] for k, f in self.events if k == "output"]

    @property
    def sequences(self) -> list[int]:
        return [f["sequence"] for k, f in self.events if k == "output"]

    @property
    def progress(self) -> list[float]:
        return [f["fraction"] for k, f in self.events if k == "progress"]


def context(a: Assignment | None = None, collector: Collector | None = None) -> tuple[Context, Collector]:
    """A Context over ``a`` whose reports go to a Collector."""
    collector = collector or Collector()
    return Context(a or assignment(), collector, logging.getLogger("test.claude")), collector
