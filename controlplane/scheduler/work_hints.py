"""What a ``work`` wake-up says about the tasks a replica gave up, so the others can tell whether to look.

A replica that gives tasks up (see :mod:`.claims`) publishes one ``work`` wake-up after the commit that
released them. Every replica subscribed hears it; without more, each would run a claim pass (a database
round trip) for every wake-up, and with several replicas most of those passes find nothing they can take.
The payload (:class:`WorkHint`, JSON) tells each listener enough to skip a pass that cannot take anything:

* ``from``: the replica that gave the tasks up (it does not claim them back on its own wake-up);
* ``oldest``: per priority, the creation time of the oldest task given up, so a replica already full
  can tell whether any of them runs before the worst task it holds (it would swap only for those);
* ``needs``: the (agent type, capability) of the steps waiting in them, so a replica none of whose
  agents could take one of those does not look (absent: anything, e.g. a task not planned yet);
* ``ids``: the tasks given up, which a listener claims by id (one statement, no search) while their
  holder has not let them go yet (absent: the listener searches the claimable tasks). Past the payload's
  room only the first ones are named; the holder wakes the others again once it let the rest go.

A wake-up stays a hint: a listener that skips a pass still marks that claimable work may exist (its next
hungry dispatch pass looks), and the poll finds what any lost or skipped wake-up would have said. An empty
or unreadable payload (a replica stopping, an older version) means "anything": every listener looks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from controlplane.scheduler.queue import matches

#: Agents as the claims see them: (type, capabilities, offline).
Agents = list[tuple[str, frozenset[str], bool]]
#: Longest payload: past it only the first ``ids`` are named (none if even one does not fit), then the
#: ``needs`` are left out (anything), then the rest (the buses carry 4000 bytes).
PAYLOAD_LIMIT = 3500


@dataclass
class WorkHint:
    """The tasks one ``work`` wake-up announces (see the module docstring)."""

    origin: str = ""
    #: Priority (as an int) -> the creation time of the oldest such task; empty: unknown (any).
    oldest: dict[int, float] = field(default_factory=dict)
    #: (agent type, capability) of the waiting steps; None: anything.
    needs: set[tuple[str, str]] | None = field(default_factory=set)
    #: The tasks given up, to claim by id; empty: not said (search).
    ids: list[str] = field(default_factory=list)

    def add(self, priority: int, create_time: float, needs: Iterable[tuple[str, str]] | None) -> None:
        """Count one more task given up (``needs`` None: any agent may take it, e.g. not planned yet)."""
        if priority not in self.oldest or create_time < self.oldest[priority]:
            self.oldest[priority] = create_time
        if needs is None or self.needs is None:
            self.needs = None
        else:
            self.needs.update(needs)

    def best(self, aging_interval: float) -> float | None:
        """The smallest virtual time among the tasks (as the ready queue orders them), or None: unknown."""
        if not self.oldest:
            return None
        return min(created - priority * aging_interval for priority, created in self.oldest.items())

    def could_take(self, agents: Agents) -> bool:
        """Whether one of ``agents`` could take a step of these tasks (True when unknown)."""
        if self.needs is None:
            return True
        return any(
            matches(need, agent_type, caps, offline=offline)
            for need in self.needs
            for agent_type, caps, offline in agents
        )

    def encode(self) -> str:
        """The payload: JSON, at most :data:`PAYLOAD_LIMIT` bytes (details left out past it)."""
        body: dict[str, object] = {"from": self.origin, "oldest": {str(p): t for p, t in self.oldest.items()}}
        if self.needs is not None:
            body["needs"] = sorted(self.needs)
        if self.ids:
            body["ids"] = self.ids
        text = json.dumps(body, separators=(",", ":"))
        if len(text.encode()) > PAYLOAD_LIMIT and self.ids:  # name the first ones that fit
            body.pop("ids")
            room = PAYLOAD_LIMIT - len(json.dumps(body, separators=(",", ":")).encode()) - len(',"ids":[]')
            named: list[str] = []
            for task_id in self.ids:
                room -= len(json.dumps(task_id).encode()) + 1
                if room < 0:
                    break
                named.append(task_id)
            if named:
                body["ids"] = named
            text = json.dumps(body, separators=(",", ":"))
        if len(text.encode()) > PAYLOAD_LIMIT:
            body.pop("ids", None)
            text = json.dumps(body, separators=(",", ":"))
        if len(text.encode()) > PAYLOAD_LIMIT:
            body.pop("needs", None)
            text = json.dumps(body, separators=(",", ":"))
        if len(text.encode()) > PAYLOAD_LIMIT:
            text = json.dumps({"from": self.origin[:1000]}, separators=(",", ":"))
        return text

    @classmethod
    def decode(cls, payload: str) -> WorkHint:
        """The hint a payload carries; an empty or unreadable one says "anything" (no origin, no limits)."""
        try:
            body = json.loads(payload) if payload else {}
            if not isinstance(body, dict):
                raise TypeError("not an object")
            oldest = {int(p): float(t) for p, t in dict(body.get("oldest") or {}).items()}
            raw = body.get("needs")
            needs = None if raw is None else {(str(a), str(c)) for a, c in raw}
            ids = [str(task_id) for task_id in body.get("ids") or ()]
            return cls(origin=str(body.get("from") or ""), oldest=oldest, needs=needs, ids=ids)
        except (ValueError, TypeError, AttributeError):
            return cls(needs=None)
