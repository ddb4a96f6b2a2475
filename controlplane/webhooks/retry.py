"""When a failed delivery is tried again, and when it is given up."""

from __future__ import annotations

import random
from dataclasses import dataclass

#: Each retry waits this many times longer than the one before (up to ``max_backoff``).
MULTIPLIER = 2.0
#: The delay is drawn between this fraction of the nominal delay and the whole of it, so
#: receivers that failed together are not all retried at the same instant.
JITTER_FLOOR = 0.75


@dataclass(frozen=True)
class RetrySchedule:
    """Exponential backoff with jitter, bounded by a total time.

    Args:
        initial: Nominal delay before the first retry, in seconds.
        max_backoff: Longest delay between two attempts.
        window: Time from the event after which a failing delivery is given up.
    """

    initial: float
    max_backoff: float
    window: float

    def delay(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``failed_attempts``-th failed attempt (1 for the first)."""
        nominal = min(self.max_backoff, self.initial * MULTIPLIER ** max(0, failed_attempts - 1))
        return nominal * (rng or random).uniform(JITTER_FLOOR, 1.0)

    def next_attempt(
        self, created: float, now: float, failed_attempts: int, rng: random.Random | None = None
    ) -> float | None:
        """When to try again after a failure at ``now``, or None: the window is over, give up."""
        due = now + self.delay(failed_attempts, rng)
        return None if due > created + self.window else due
