"""First-party MAOS plugin: Claude-backed agents and planner, through the official ``anthropic`` SDK.

* Agent types ``researcher``, ``coder``, ``analyst``, ``tester``, ``coordinator``
  (:mod:`maos_plugins.claude.agents`), each a role prompt plus the capabilities of the
  user guide's table.
* :class:`maos_plugins.claude.planner.ClaudePlanner`: a subtask DAG through tool use,
  falling back to the deterministic plan with a warning.
* Settings: ``claude.api_key`` (or ``ANTHROPIC_API_KEY`` / ``CLAUDE_API_KEY``),
  ``claude.model`` (default :data:`maos_plugins.claude.config.DEFAULT_MODEL`),
  ``claude.base_url`` (or ``ANTHROPIC_BASE_URL``); per-type parameters
  ``model``, ``max_tokens``, ``temperature``, ``base_url``, ``max_retries``,
  ``max_retry_wait``, ``timeout``.
* Every Messages API call runs under a permit of the control plane's pacer
  (:func:`maos_plugins.claude.client.paced_call`), which holds the whole pool's calls after a
  429/529 (settings ``models.rate_limits``, ``models.breaker.*``).
"""

from maos_plugins.claude.agents import (
    AGENT_CLASSES,
    AnalystAgent,
    ClaudeAgent,
    CoderAgent,
    CoordinatorAgent,
    ResearcherAgent,
    TesterAgent,
    agent_type_specs,
)
from maos_plugins.claude.config import DEFAULT_MODEL, ClaudeConfig, resolve_config
from maos_plugins.claude.planner import ClaudePlanner

__all__ = [
    "AGENT_CLASSES",
    "DEFAULT_MODEL",
    "AnalystAgent",
    "ClaudeAgent",
    "ClaudeConfig",
    "ClaudePlanner",
    "CoderAgent",
    "CoordinatorAgent",
    "ResearcherAgent",
    "TesterAgent",
    "agent_type_specs",
    "resolve_config",
]
