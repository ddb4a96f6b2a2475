"""Bounds of what callers send: one home for the server's checks and the CLI's options.

The server (:mod:`controlplane.domain.tasks`) validates with these; the CLI bounds its options
with the same numbers without importing the server.
"""

from __future__ import annotations

__all__ = [
    "MAX_BACKOFF",
    "MAX_BACKOFF_MULTIPLIER",
    "MAX_DEPENDENCIES",
    "MAX_INITIAL_BACKOFF",
    "MAX_JOIN_TOKEN_USES",
    "MAX_METADATA_ENTRIES",
    "MAX_RETRIES",
    "MAX_REVIEW_ROUNDS",
    "MAX_TASK_AGENTS",
    "MAX_TIMEOUT",
    "max_agents_problem",
]

MAX_METADATA_ENTRIES = 64
MAX_DEPENDENCIES = 100
#: Most agents one task may use at once (a fan-out to a pool of 10,000 agents fits).
MAX_TASK_AGENTS = 10_000
MAX_TIMEOUT = 7 * 86400.0
#: Bounds of a task's retry policy (the CLI's options use the same).
MAX_RETRIES = 100
MAX_INITIAL_BACKOFF = 3600.0
MAX_BACKOFF_MULTIPLIER = 10.0
MAX_BACKOFF = 86400.0
#: Most uses a join token may allow (0: unlimited).
MAX_JOIN_TOKEN_USES = 2**32 - 1
#: Most review rounds a task may ask for (``review_rounds``; see controlplane.domain.review).
MAX_REVIEW_ROUNDS = 5


def max_agents_problem(value: int) -> str:
    """What is wrong with ``value`` as a task's ``max_agents`` ("" when nothing is).

    The one check of the bound, for a new task, RetryTask and UpdateTask alike.
    """
    return "" if 1 <= value <= MAX_TASK_AGENTS else f"must be between 1 and {MAX_TASK_AGENTS}"
