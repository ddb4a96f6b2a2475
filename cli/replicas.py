"""The replicas table of ``maos status``: every control plane registered on the database."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from maos_cli._output import seconds_text, table


def _seconds(ts: Any) -> float:
    return float(ts.seconds + ts.nanos / 1e9)


def replicas_table(replicas: Sequence[Any], now: float | None = None) -> str:
    """``Replicas:`` and a row per replica: id, address, age, last heartbeat, agents, leases, jobs."""
    now = time.time() if now is None else now
    rows = []
    for r in replicas:
        beat = f"{seconds_text(max(0.0, now - _seconds(r.heartbeat_time)))} ago"
        rows.append(
            [
                f"{r.id} *" if r.current else r.id,
                r.address,
                r.version,
                seconds_text(max(0.0, now - _seconds(r.start_time))),
                f"LOST (last {beat})" if r.lost else beat,
                str(r.connected_agents),
                str(r.leases_held),
                ",".join(r.jobs),
            ]
        )
    return "Replicas (* answered this call):\n" + table(
        ["REPLICA", "ADDRESS", "VERSION", "AGE", "HEARTBEAT", "AGENTS", "LEASES", "JOBS"], rows
    )
