"""Autoscaling of supervised agents (``scaling.*``): a periodic job that gathers counts and applies them.

Every ``scaling.interval`` seconds :class:`Autoscaler` reads, per type of ``scaling.types``, the
queued subtasks its agents could take and the oldest wait (counts the engine keeps as work moves), its supervised
agents (the launcher) and those idle past ``scaling.idle_seconds``, asks
:func:`controlplane.domain.scaling.decide` for the desired counts, then launches agents or drains
and stops idle ones. The last decision per type is kept for ``maos status`` and the metrics.

With replicas on one database the queued work also counts this replica's share of the unclaimed
backlog (tasks no replica holds, :mod:`controlplane.replicas.backlog`): the backlog of a type
divided between the live replicas autoscaling it that can add agents of it
(:func:`~controlplane.domain.scaling.backlog_share`, read from the replica registry's heartbeats:
``details.autoscaling`` lists the types a replica autoscales, ``details.scaling_room`` those it can
add agents of now), in chunks of ``scaling.queue_depth_threshold``, so a deep backlog scales agents
up somewhere without every replica scaling up for all of it, and a replica at its limits leaves its
part to the others (when no replica can add agents of the type, it is split between all of them).
``maos_scaling_queue_depth`` exports the held work plus the share: its sum over replicas counts
the backlog once.

With ``scaling.types`` set and ``scaling.enabled`` off, it only decides and exports: the current
agents are then the connected ones of the type (run by another supervisor, such as a Kubernetes
Deployment scaled by KEDA or an HPA on ``maos_scaling_queue_depth`` or ``maos_scaling_desired_agents``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

from controlplane.config import Settings
from controlplane.domain.model import now
from controlplane.domain.pool import wildcard_match
from controlplane.domain.scaling import Decision, Policy, TypeLimits, TypeLoad, backlog_share, decide
from controlplane.periodic import PeriodicJob

log = logging.getLogger(__name__)

#: Seconds a drained idle agent has to leave before its process is killed.
DRAIN_GRACE = 5.0
#: Seconds a type whose launch failed counts as unable to add agents (its backlog goes elsewhere).
LAUNCH_RETRY = 60.0


def autoscaling_wanted(settings: Settings) -> bool:
    """Whether the control plane autoscales (``scaling.enabled``) or only decides and exports
    (``scaling.types`` set)."""
    return bool(settings["scaling.enabled"] or settings["scaling.types"])


@dataclass
class TypeScaling:
    """What ``maos status`` shows of one autoscaled type."""

    agent_type: str
    min: int
    max: int
    current: int = 0
    desired: int = 0
    queued: int = 0
    oldest_wait: float = 0.0
    reason: str = ""
    decided_at: float = 0.0
    #: Unclaimed tasks in the whole system agents of the type could take, as counted by the
    #: decision (replicas only, else None).
    unclaimed: int | None = None
    #: This replica's share of them, counted in the decision (replicas only, else None).
    unclaimed_share: int | None = None

    @property
    def demand(self) -> int:
        """The queued work the decision counted: held plus the share of the unclaimed backlog."""
        return self.queued + (self.unclaimed_share or 0)


class Autoscaler:
    """Launches and stops supervised agents to follow the queue (see the module docstring)."""

    def __init__(self, engine: Any, launcher: Any, settings: Settings, metrics: Any = None):
        self.engine = engine
        self.launcher = launcher
        self.settings = settings
        self.metrics = metrics
        self.limits = {name: TypeLimits(b["min"], b["max"]) for name, b in settings["scaling.types"].items()}
        self.policy = Policy(
            queue_depth=settings["scaling.queue_depth_threshold"],
            wait_seconds=settings["scaling.wait_threshold"],
            cooldown=settings["scaling.cooldown"],
            up_step=settings["scaling.scale_up_increment"],
            down_step=settings["scaling.scale_down_increment"],
            max_agents=settings["system.max_agents"],
        )
        self.idle_seconds = settings["scaling.idle_seconds"]
        #: Launch and stop agents (``scaling.enabled``); otherwise only decide and export (for Kubernetes).
        self.apply = bool(settings["scaling.enabled"])
        self.state = {name: TypeScaling(name, lim.min, lim.max) for name, lim in self.limits.items()}
        self._changed_at: dict[str, float] = {}
        self._idle_since: dict[str, float] = {}
        #: The unclaimed backlog of replicas sharing a database, and their registry (who else
        #: autoscales a type): set by the app when it has them.
        self.backlog: Any = None
        self.registry: Any = None
        #: The types this replica can add agents of now (published in the registry).
        self._room: set[str] = set(self.limits)
        #: When each type's last launch failed (monotonic).
        self._launch_failed: dict[str, float] = {}
        self._registry_failing = False
        self._job = PeriodicJob("autoscaling", self.step, settings["scaling.interval"])
        if metrics is not None:
            metrics.watch_scaling(self.snapshot)

    def start(self) -> None:
        """Start deciding every ``scaling.interval`` seconds."""
        self._job.start()

    async def stop(self) -> None:
        """Stop deciding (agents already launched stay)."""
        await self._job.stop()

    def attach(self, replicas: Any) -> None:
        """Split the unclaimed backlog of ``replicas`` (their registry and backlog) with the other
        replicas: publish the autoscaled types, and those this replica can add agents of, in its
        heartbeat."""
        self.backlog = replicas.backlog
        self.registry = replicas
        base = replicas.details
        replicas.details = lambda: {**base(), **self.registry_details()}

    def registry_details(self) -> dict[str, Any]:
        """What the replica registry shows of this replica's autoscaling (see the module docstring)."""
        if not self.limits:
            return {}
        return {"autoscaling": sorted(self.limits), "scaling_room": sorted(self._room)}

    def snapshot(self) -> list[TypeScaling]:
        """The last decision of every autoscaled type (with the unclaimed backlog it counted)."""
        return list(self.state.values())

    # --- counts ---------------------------------------------------------------

    def _queued(self, wall: float) -> dict[str, tuple[int, float]]:
        """Per autoscaled type: (queued subtasks it could take, oldest wait in seconds)."""
        caps = {name: self._capabilities(name) for name in self.limits}
        out = {name: [0, 0.0] for name in self.limits}
        for (agent_type, capability), (count, since) in self.engine.queued_demand().items():
            waited = max(0.0, wall - (since or wall))
            for name, capabilities in caps.items():
                if wildcard_match(agent_type, capability, name, capabilities):
                    out[name][0] += count
                    out[name][1] = max(out[name][1], waited)
        return {name: (int(n), float(w)) for name, (n, w) in out.items()}

    async def _shares(self, wall: float) -> dict[str, tuple[int, int, float]]:
        """Per autoscaled type: (the unclaimed backlog, this replica's share of it, its oldest wait).

        Empty on a single control plane. The backlog of a type is split between the live
        replicas autoscaling it that can add agents of it (this one by its room now, the others
        by their last heartbeat), or between all those autoscaling it when none can. The registry
        is read only when some type has a backlog; when it cannot be read (the database is away),
        the shares are 0 (no replica scales up for work it cannot tell is its share).
        """
        if self.backlog is None:
            return {}
        backlog = {name: self.backlog.for_type(name, self._capabilities(name), wall) for name in self.limits}
        if not any(count for count, _ in backlog.values()):
            return {name: (0, 0, 0.0) for name in self.limits}
        this = self.registry.replica if self.registry is not None else ""
        try:
            views = await self.registry.replicas() if self.registry is not None else []
        except Exception as exc:  # noqa: BLE001 - the database is away: decide on the held work alone
            if not self._registry_failing:
                log.warning(
                    "autoscaling counts no unclaimed work while the replicas cannot be read (%s)", exc
                )
                self._registry_failing = True
            return {name: (count, 0, wait) for name, (count, wait) in backlog.items()}
        if self._registry_failing:
            log.warning("autoscaling: the replicas can be read again; the unclaimed work is split again")
            self._registry_failing = False
        out = {}
        for name, (count, wait) in backlog.items():
            autoscaling, room = {this}, {this} if name in self._room else set()
            for view in views:
                details = view.row.details or {}
                if view.lost or view.row.id == this or name not in details.get("autoscaling", ()):
                    continue
                autoscaling.add(view.row.id)
                if name in details.get("scaling_room", details["autoscaling"]):
                    room.add(view.row.id)
            share = backlog_share(count, sorted(room or autoscaling), this, self.policy.queue_depth)
            out[name] = (count, share, wait)
        return out

    def _update_room(self, loads: dict[str, TypeLoad], policy: Policy, mono: float) -> None:
        """Note the types this replica can add agents of now: under their ``max`` and
        ``system.max_agents``, and not failing to launch."""
        total = sum(load.current for load in loads.values())
        self._room = {
            name
            for name, load in loads.items()
            if load.current < max(self.limits[name].min, self.limits[name].max)
            and total < policy.max_agents
            and mono - self._launch_failed.get(name, -LAUNCH_RETRY) >= LAUNCH_RETRY
        }

    def _capabilities(self, name: str) -> frozenset[str]:
        supply = getattr(self.engine, "supply", None)
        spec = supply.specs().get(name) if supply is not None else None
        return frozenset(getattr(spec, "capabilities", ())) | {name}

    def _launches(self, name: str) -> list[Any]:
        return [
            launch
            for launch in self.launcher.launches.values()
            if launch.agent_type == name and not launch.stopping
        ]

    def _sessions(self, name: str) -> list[Any]:
        """Connected agents of the type (those another supervisor, such as Kubernetes, runs too)."""
        return [
            session
            for session in self.engine.connected()
            if session.info.agent_type == name and not session.closed and not session.draining
        ]

    def _idle(self, units: list[Any], mono: float) -> list[Any]:
        """Launches (or sessions) whose agent has run nothing for ``scaling.idle_seconds``, longest idle first."""
        idle: list[tuple[float, Any]] = []
        for unit in units:
            if self.apply:
                session = self.engine.connected_session(unit.agent_id) if unit.agent_id else None
            else:
                session = unit
            if session is None or session.closed or session.running:
                self._idle_since.pop(unit.id, None)
                continue
            since = self._idle_since.setdefault(unit.id, mono)
            if mono - since >= self.idle_seconds:
                idle.append((since, unit))
        return [unit for _since, unit in sorted(idle, key=lambda pair: pair[0])]

    # --- one decision ---------------------------------------------------------

    async def step(self) -> dict[str, Decision]:
        """Decide once and apply it; the decisions by type."""
        mono, wall = time.monotonic(), now()
        queued = self._queued(wall)
        if self.apply:
            launches = {name: self._launches(name) for name in self.limits}
            live = {launch.id for launch in self.launcher.launches.values()}
            others = sum(
                1
                for launch in self.launcher.launches.values()
                if not launch.stopping and launch.agent_type not in self.limits
            )
        else:
            launches = {name: self._sessions(name) for name in self.limits}
            live = {session.id for session in self.engine.connected()}
            others = 0
        idle = {name: self._idle(launches[name], mono) for name in self.limits}
        self._idle_since = {k: v for k, v in self._idle_since.items() if k in live}
        policy = Policy(**{**self.policy.__dict__, "max_agents": max(0, self.policy.max_agents - others)})
        loads = {
            name: TypeLoad(
                queued=queued[name][0],
                oldest_wait=queued[name][1],
                current=len(launches[name]),
                idle=len(idle[name]),
                since_change=(mono - self._changed_at[name]) if name in self._changed_at else None,
            )
            for name in self.limits
        }
        self._update_room(loads, policy, mono)
        shares = await self._shares(wall)
        for name, (_count, share, wait) in shares.items():
            loads[name] = dataclasses.replace(loads[name], unclaimed=share, unclaimed_wait=wait)
        decisions = decide(loads, self.limits, policy)
        for name, decision in decisions.items():
            current = loads[name].current
            delta = decision.delta(current) if self.apply else 0
            if delta > 0:
                started = await self._launch(name, delta)
                self._event(name, "up", started)
                if started < delta:
                    self._launch_failed[name] = mono
                    self._room.discard(name)
                else:
                    self._launch_failed.pop(name, None)
            elif delta < 0:
                stopped = self._drain(idle[name][:-delta] or launches[name][delta:])
                self._event(name, "down", stopped)
            if not self.apply and self.state[name].decided_at and current != self.state[name].current:
                self._changed_at[name] = mono  # another supervisor scaled the type
            if delta:
                self._changed_at[name] = mono
                log.info("autoscaling %s: %d -> %d (%s)", name, current, decision.desired, decision.reason)
            self.state[name] = TypeScaling(
                name,
                self.limits[name].min,
                self.limits[name].max,
                current=current,
                desired=decision.desired,
                queued=loads[name].queued,
                oldest_wait=loads[name].oldest_wait,
                reason=decision.reason,
                decided_at=wall,
                unclaimed=shares[name][0] if name in shares else None,
                unclaimed_share=shares[name][1] if name in shares else None,
            )
        return decisions

    async def _launch(self, name: str, count: int) -> int:
        started = 0
        for _ in range(count):
            try:
                await self.launcher.spawn(name)
            except Exception as exc:  # noqa: BLE001 - the next decision tries again; the log says why
                log.warning("autoscaling could not launch a %s agent: %s", name, exc)
                break
            started += 1
        return started

    def _drain(self, launches: list[Any]) -> int:
        """Drain the launches' agents (no new work) and stop their processes."""
        for launch in launches:
            if launch.agent_id and self.engine.connected_session(launch.agent_id) is not None:
                try:
                    self.engine.drain_agent(launch.agent_id, DRAIN_GRACE)
                except Exception as exc:  # noqa: BLE001 - the process is stopped all the same
                    log.warning("draining agent %s failed: %s", launch.agent_id, exc)
            self.launcher.stop_after(launch, DRAIN_GRACE)
        return len(launches)

    def _event(self, name: str, direction: str, count: int) -> None:
        if count and self.metrics is not None:
            self.metrics.scale_event(name, direction, count)
