"""Servicers, checkpoints and the other doors use the engine's public methods only.

They never reach into its committer, storage, records or private attributes: the engine's
components can then change (claims from shared storage, several replicas) without them.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
REACHING_IN = re.compile(
    r"\bengine\.(committer|storage|sessions|agents|leases|tasks|subtasks|runtime|book|dispatch)\b"
    r"|\bengine\._"
)


def test_no_module_outside_the_scheduler_reaches_into_the_engine() -> None:
    offenders = []
    for package in ("controlplane", "cli", "plugins", "agent_sdk"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.is_relative_to(ROOT / "controlplane" / "scheduler"):
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if REACHING_IN.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "use an Engine method instead:\n" + "\n".join(offenders)


def test_the_pattern_catches_what_it_is_for() -> None:
    assert REACHING_IN.search("await self.engine.committer.durable()")
    assert REACHING_IN.search("self.engine.tasks.get(task_id)")
    assert REACHING_IN.search("engine._timeouts")
    assert not REACHING_IN.search("self.engine.tasks_in_memory()")
    assert not REACHING_IN.search("engine.storage_kind")
