"""Autoscaling decisions for supervised agents: a pure function of counts, no processes or I/O.

:func:`decide` takes, per agent type, the queued work it could take, the oldest queued wait, the
agents it has and those idle past ``scaling.idle_seconds``, with the limits, and returns the desired
number of agents per type with the reason. The control plane (``controlplane.autoscaler``) gathers
the counts and launches or drains to match.

With several replicas on one database each replica decides for its own agents, on the work it
holds plus its share of the *unclaimed* backlog (work no replica holds yet, which every replica
sees whole): :func:`backlog_share` splits that backlog between the live replicas autoscaling the
type that can still add agents of it, so that N replicas do not each scale up for all of it,
the shares add up to it exactly and some replica able to scale up takes it.

Rules, per type:

* never below ``min`` nor above ``max``; below ``min``: up to ``min`` at once (no cooldown);
* the queued work is the work held plus the share of the unclaimed backlog (``unclaimed``);
* scale up by ``up_step`` when the queued work reaches ``queue_depth`` per agent (at least
  ``queue_depth`` with no agent), or some work waited ``wait_seconds`` or more;
* scale down by at most ``down_step`` (and no more than the idle agents) when nothing is queued
  and agents have been idle past ``idle_seconds``;
* no up or down within ``cooldown`` seconds of the type's last change (so it does not flap);
* the sum over all types stays within ``max_agents`` (``system.max_agents``): scale-ups are granted
  in order of the oldest wait, then the deepest queue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TypeLimits:
    """The bounds of one type (``scaling.types.<type>``)."""

    min: int = 0
    max: int = 1


@dataclass(frozen=True)
class Policy:
    """The thresholds shared by every type (``scaling.*``)."""

    queue_depth: int = 1
    wait_seconds: float = 10.0
    cooldown: float = 30.0
    up_step: int = 1
    down_step: int = 1
    max_agents: int = 10


@dataclass(frozen=True)
class TypeLoad:
    """What one type sees now.

    Attributes:
        queued: Queued subtasks agents of the type could take (held by this control plane).
        oldest_wait: Seconds the oldest of them has been queued (0 with none).
        current: The type's supervised agents (registered or starting, not stopping).
        idle: Those idle past ``scaling.idle_seconds`` (no running work).
        since_change: Seconds since the type's last scale event (None: never).
        unclaimed: This control plane's share of the unclaimed backlog agents of the type could
            take (:func:`backlog_share`; 0 on a single control plane).
        unclaimed_wait: Seconds the oldest unclaimed task has waited (counted when the share is not 0).
    """

    queued: int = 0
    oldest_wait: float = 0.0
    current: int = 0
    idle: int = 0
    since_change: float | None = None
    unclaimed: int = 0
    unclaimed_wait: float = 0.0

    @property
    def demand(self) -> int:
        """The work the decision counts: held plus the share of the unclaimed backlog."""
        return self.queued + self.unclaimed

    @property
    def longest_wait(self) -> float:
        """The oldest wait of that work."""
        return max(self.oldest_wait, self.unclaimed_wait if self.unclaimed else 0.0)


def backlog_share(unclaimed: int, sharing: Sequence[str], this: str, chunk: int = 1) -> int:
    """This replica's share of ``unclaimed`` tasks split between the replicas ``sharing`` them.

    The backlog is dealt in whole chunks of ``chunk`` tasks (``scaling.queue_depth_threshold``),
    one chunk each in turn to the replicas by id, then the last partial chunk to the next one:
    the shares add up to ``unclaimed`` exactly (a sum over replicas counts the backlog once), and
    a backlog under N chunks still reaches the depth threshold on some replica instead of being
    spread too thin to reach it anywhere. A lone task moves one replica, not all. A replica not
    in ``sharing`` (one that cannot take more agents of the type) gets nothing.
    """
    if unclaimed <= 0 or this not in sharing:
        return 0
    ranked = sorted(set(sharing))
    index, n, chunk = ranked.index(this), len(ranked), max(1, chunk)
    whole, rest = divmod(unclaimed, chunk)
    rounds, extra = divmod(whole, n)
    share = (rounds + (1 if index < extra else 0)) * chunk
    return share + (rest if index == extra % n else 0)


@dataclass(frozen=True)
class Decision:
    """The desired agents of one type and why."""

    desired: int
    reason: str

    def delta(self, current: int) -> int:
        """Agents to launch (positive) or drain (negative)."""
        return self.desired - current


def _wanted(load: TypeLoad, limits: TypeLimits, policy: Policy) -> Decision:
    """The type's decision ignoring the other types (``max_agents`` is applied after)."""
    lo, hi = limits.min, max(limits.min, limits.max)
    if load.current < lo:
        return Decision(lo, f"below minimum {lo}")
    if load.current > hi:
        return Decision(hi, f"above maximum {hi}")
    cooling = load.since_change is not None and load.since_change < policy.cooldown
    queued, wait = load.demand, load.longest_wait
    shown = f"{queued} queued" + (f" ({load.unclaimed} unclaimed)" if load.unclaimed else "")
    deep = queued >= policy.queue_depth * max(1, load.current)
    waited = queued > 0 and wait >= policy.wait_seconds
    if deep or waited:
        if load.current >= hi:
            return Decision(load.current, f"{shown} but at maximum {hi}")
        if cooling:
            return Decision(load.current, f"{shown}; cooling down")
        why = f"{shown} for {load.current} agent(s)" if deep else f"oldest queued {wait:.0f}s"
        return Decision(min(hi, load.current + policy.up_step), why)
    if queued == 0 and load.idle > 0 and load.current > lo:
        if cooling:
            return Decision(load.current, f"{load.idle} idle; cooling down")
        step = min(policy.down_step, load.idle, load.current - lo)
        return Decision(load.current - step, f"{load.idle} idle agent(s)")
    return Decision(load.current, "steady")


def decide(
    loads: Mapping[str, TypeLoad], limits: Mapping[str, TypeLimits], policy: Policy
) -> dict[str, Decision]:
    """The desired agents of every type of ``limits`` (see the module docstring)."""
    wanted = {name: _wanted(loads.get(name, TypeLoad()), lim, policy) for name, lim in limits.items()}
    current = {name: loads.get(name, TypeLoad()).current for name in limits}
    # Shrinking and holding first; growth only into the room left under max_agents.
    total = sum(min(current[n], d.desired) for n, d in wanted.items())
    growing = [n for n, d in wanted.items() if d.desired > current[n]]
    growing.sort(key=lambda n: (-loads.get(n, TypeLoad()).longest_wait, -loads.get(n, TypeLoad()).demand, n))
    out = {n: d for n, d in wanted.items() if n not in growing}
    for name in growing:
        room = max(0, policy.max_agents - total)
        grant = min(room, wanted[name].desired - current[name])
        total += grant
        if grant:
            out[name] = Decision(current[name] + grant, wanted[name].reason)
        else:
            out[name] = Decision(current[name], f"{wanted[name].reason}; system.max_agents reached")
    return out
