"""Reading ``/metrics`` text in tests."""

from __future__ import annotations

import re

_REPLICA = re.compile(r'(\{replica="[^"]*"\}|,replica="[^"]*")')


def without_replica(body: str) -> str:
    """The exposition text without the ``replica`` label every exported sample carries.

    Tests that look for one series by its other labels read the text as it was before the label
    (``maos_tasks_pending{queue="high"} 1.0``); tests/controlplane/test_metrics_replica.py checks
    the label itself.
    """
    return _REPLICA.sub("", body)
