"""maos.v1.AgentService: list, inspect, spawn and steer agents.

Every holder of ``agent:view`` lists and reads every agent (they are shared:
any agent may be given anyone's work), with its owner; an agent's
``assignments`` show only subtasks of tasks the caller may see. Pausing,
resuming, draining and terminating an agent needs ``agent:manage`` and, for
an agent the caller does not own, ``agent:manage-all`` (PERMISSION_DENIED).

With several replicas (a :class:`~controlplane.api.forwarding.Forwarder` set), reads show the
agents of every replica (those connected here live, the others as committed), and a command for
an agent connected to another replica is run by that replica (docs/architecture.md, "Routing
between replicas").
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any, TypeVar, cast

import grpc
import pluggy

from controlplane.access.permissions import MANAGE_ALL_AGENTS, VIEW_ALL_TASKS
from controlplane.agent_types import agent_types
from controlplane.api import convert
from controlplane.api.context import caller_may, current_principal
from controlplane.api.forwarding import Forwarder
from controlplane.api.idempotency import request_fingerprint
from controlplane.api.paging import PageTokens, fitting, page_size
from controlplane.api.pb import agents_grpc, agents_pb, enums_pb, messages_pb, proto_enum
from controlplane.config import Settings
from controlplane.custom_agents import custom_agent_types, is_custom, shown_path
from controlplane.domain.limits import Limits, check_bytes, map_size
from controlplane.domain.model import AgentInfo, AgentStatus, now, subtask_name
from controlplane.domain.tasks import validate_request_id
from controlplane.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    request_id_reused,
)
from controlplane.launcher import Launch, LocalLauncher
from controlplane.logbook import LogBook, LogFilter
from controlplane.observability.observer import Observer
from controlplane.pool import check_type, type_warnings, unavailable
from controlplane.scheduler.engine import Engine

R = TypeVar("R")

DEFAULT_GRACE = 30.0
MAX_GRACE = 86400.0
SPAWN_WAIT = 15.0  # seconds SpawnAgents waits for launched processes to register
SPAWN_MEMORY = 10_000  # SpawnAgents request_ids remembered (oldest forgotten first)
#: Statuses of agents connected to no replica (listed after the connected ones).
OFFLINE = frozenset({AgentStatus.DISCONNECTED, AgentStatus.TERMINATED, AgentStatus.STARTING})


#: The per-agent calls another replica may run for us: name -> (request, response) classes.
FORWARDED = {
    "GetAgent": (agents_pb.GetAgentRequest, agents_pb.GetAgentResponse),
    "PauseAgent": (agents_pb.PauseAgentRequest, agents_pb.PauseAgentResponse),
    "ResumeAgent": (agents_pb.ResumeAgentRequest, agents_pb.ResumeAgentResponse),
    "DrainAgent": (agents_pb.DrainAgentRequest, agents_pb.DrainAgentResponse),
    "TerminateAgent": (agents_pb.TerminateAgentRequest, agents_pb.TerminateAgentResponse),
    "RestartAgent": (agents_pb.RestartAgentRequest, agents_pb.RestartAgentResponse),
    "GetAgentMetrics": (agents_pb.GetAgentMetricsRequest, agents_pb.GetAgentMetricsResponse),
}


class AgentServicer(agents_grpc.AgentServiceServicer):
    """Agents of this control plane (and, with a forwarder, of every replica)."""

    #: Carries calls for agents connected to other replicas (set by build_app on PostgreSQL).
    forwarder: Forwarder | None = None

    def __init__(
        self,
        engine: Engine,
        launcher: LocalLauncher | None,
        pm: pluggy.PluginManager,
        settings: Settings,
        observer: Observer | None = None,
        logbook: LogBook | None = None,
    ):
        self.engine = engine
        self.observer = observer  # controlplane.observability.observer.Observer: process readings
        self.logbook = logbook
        self.launcher = launcher
        self.pm = pm
        self.settings = settings
        self.tokens = PageTokens("ListAgents", lambda: engine.page_secret)
        self.limits = Limits.from_settings(settings)
        # (principal, request_id) -> (the request without its id, the launches it made).
        self._spawns: OrderedDict[tuple[str, str], tuple[str, asyncio.Future[list[Launch]]]] = OrderedDict()
        # Held from the max_agents check until the launches exist, so concurrent calls cannot overshoot.
        self._spawn_lock = asyncio.Lock()
        if launcher is not None:
            launcher.on_registered = self._launch_registered

    def _launch_registered(self, launch: Launch) -> None:
        """A launched process registered: give its agent the labels SpawnAgents asked for."""
        self.engine.label_agent(launch.agent_id, launch.labels)

    def _pb(self, info: AgentInfo) -> messages_pb.Agent:
        """An agent as the caller may see it: its assignments only of tasks the caller may see."""
        session = self.engine.connected_session(info.id)
        if session is not None:
            info.status = session.status()
            principal = None if caller_may(VIEW_ALL_TASKS) else current_principal()
            running = [
                subtask_name(t, s)
                for t, s in sorted(session.running)
                if principal is None or self.engine.task_owner(t) == principal
            ]
            return convert.agent_to_pb(info, running, session.free)
        return convert.agent_to_pb(info)

    def _listed(self, info: AgentInfo) -> messages_pb.Agent:
        """An agent as a list shows it; labels over ``limits.agent_labels_bytes`` (an agent registered
        before the limit was checked) are left out, with the label ``maos.labels-omitted`` saying so."""
        msg = self._pb(info)
        if map_size(msg.labels) > self.limits.agent_labels:
            size = map_size(msg.labels)
            msg.labels.clear()
            msg.labels["maos.labels-omitted"] = f"{size} bytes"
        return msg

    def use_forwarder(self, forwarder: Forwarder) -> None:
        """Reach agents connected to other replicas through ``forwarder`` (and serve theirs)."""
        self.forwarder = forwarder
        forwarder.serve(self, FORWARDED)

    async def _forward(self, response_cls: type[R], request: Any) -> R | None:
        """The answer of the replica the agent ``request.name`` is connected to, or None (answer here).

        Asked before anything is read here: an agent that registered on another replica a
        moment ago may not be committed yet, and its holder checks the call as it would its own.
        """
        if self.forwarder is None:
            return None
        agent_id = convert.parse_name(request.name, "agents")

        async def rebuild() -> R:  # its answer was too long for the bus: what it committed
            response = response_cls()
            response.agent.CopyFrom(self._pb(await self._info(request.name)))  # type: ignore[attr-defined]
            return response

        method = response_cls.__name__.removesuffix("Response")
        return cast(R | None, await self.forwarder.agent(method, request, agent_id, rebuild))

    async def _info(self, name: str) -> AgentInfo:
        agent_id = convert.parse_name(name, "agents")
        if self.forwarder is not None:  # it may be connected to another replica
            info = await self.engine.find_agent(agent_id)
        else:
            info = self.engine.agent(agent_id)
        if info is None:
            raise NotFound(f"agent agents/{agent_id} does not exist", reason="ERROR_REASON_AGENT_NOT_FOUND")
        return info

    async def _managed(self, name: str, action: str) -> AgentInfo:
        """The agent ``name`` if the caller may ``action`` it: its owner, or a holder of agent:manage-all.

        Raises:
            NotFound: no such agent.
            PermissionDenied: another principal's agent (every caller may list agents, so this
                tells nothing new).
        """
        info = await self._info(name)
        if info.owner != current_principal() and not caller_may(MANAGE_ALL_AGENTS):
            owner = info.owner or "no one"
            raise PermissionDenied(
                f"agents/{info.id} belongs to {owner}: to {action} another principal's agent you need the "
                f"permission {MANAGE_ALL_AGENTS!r}",
                metadata={"permission": MANAGE_ALL_AGENTS},
            )
        return info

    async def ListAgents(
        self, request: agents_pb.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> agents_pb.ListAgentsResponse:
        size = page_size(request.page_size)
        for index, status in enumerate(request.statuses):
            if status not in AgentStatus._value2member_map_:
                raise InvalidArgument(
                    f"statuses[{index}] {status} is not an agent status", field=f"statuses[{index}]"
                )
        filters = agents_pb.ListAgentsRequest()
        filters.CopyFrom(request)
        filters.ClearField("page_token")
        filters.ClearField("page_size")
        # Bound to the caller as well (the assignments shown depend on what it may see).
        caller = f"\0{current_principal()}:{caller_may(VIEW_ALL_TASKS)}"
        digest = filters.SerializeToString(deterministic=True) + caller.encode()
        start = self.tokens.read(request.page_token, digest) or 0
        agents = []
        shared = self.forwarder  # replicas: every replica's agents, from the database
        known = await self.engine.all_agents() if shared is not None else self.engine.known_agents()
        for info in known:
            session = self.engine.connected_session(info.id)
            # Across replicas, filtered and ordered on the status as committed (the same read on
            # every replica: the holder commits each change of its agents' live status), so that
            # a page token from one continues the same list on another.
            status = info.status if shared is not None else session.status() if session else info.status
            if status == AgentStatus.TERMINATED and not request.include_terminated and not request.statuses:
                continue
            if request.statuses and int(status) not in request.statuses:
                continue
            if request.agent_types and info.agent_type not in request.agent_types:
                continue
            # Connected agents first. Across replicas "connected" is read from each agent's status,
            # not from where it is connected, so that every replica lists them in one order and a
            # page token from one continues on another.
            offline = session is None if shared is None else status in OFFLINE
            agents.append((offline, info.connect_time or 0, info))
        agents.sort(key=lambda row: (row[0], -row[1], row[2].id))
        page = [self._listed(info) for _, _, info in agents[start : start + size]]
        size = fitting(page, self.limits.response)  # a page full in bytes ends early
        response = agents_pb.ListAgentsResponse(agents=page[:size])
        if start + size < len(agents):
            response.next_page_token = self.tokens.issue(start + size, digest)
        return response

    async def GetAgent(
        self, request: agents_pb.GetAgentRequest, context: grpc.aio.ServicerContext
    ) -> agents_pb.GetAgentResponse:
        if (forwarded := await self._forward(agents_pb.GetAgentResponse, request)) is not None:
            return forwarded  # live: its assignments and free slots
        info = await self._info(request.name)
        return agents_pb.GetAgentResponse(agent=self._pb(info))

    async def SpawnAgents(
        self, request: agents_pb.SpawnAgentsRequest, context: grpc.aio.ServicerContext
    ) -> agents_pb.SpawnAgentsResponse:
        validate_request_id(request.request_id)
        count = request.count or 1
        if not 1 <= count <= 100:
            raise InvalidArgument("count must be between 1 and 100", field="count")
        check_bytes(
            [("labels", map_size(request.labels), self.limits.agent_labels, "limits.agent_labels_bytes")]
        )
        # Unknown, or unable to run here (no key); off the event loop: it may read custom type files.
        spec = await asyncio.to_thread(check_type, self.pm, self.settings, request.agent_type)
        if self.launcher is None:
            raise FailedPrecondition(
                "this control plane does not launch local agents", reason="ERROR_REASON_NOT_SUPPORTED"
            )
        key = (current_principal(), request.request_id)
        if request.request_id:
            fingerprint = request_fingerprint(request)
            earlier = self._spawns.get(key)
            if earlier is not None:
                if earlier[0] != fingerprint:
                    raise request_id_reused(request.request_id)
                launches = await asyncio.shield(earlier[1])  # the same launches, never new ones
                return await self._spawned(spec, request, launches)
            outcome: asyncio.Future[list[Launch]] = asyncio.get_running_loop().create_future()
            self._spawns[key] = (fingerprint, outcome)
            if len(self._spawns) > SPAWN_MEMORY:
                self._spawns.popitem(last=False)
        try:
            launches = await self._launch(spec, request, count)
        except BaseException as exc:
            if request.request_id:
                self._spawns.pop(key, None)
                if isinstance(exc, Exception):
                    outcome.set_exception(exc)
                    outcome.exception()  # retrieved: concurrent repeats get it, nobody else must
                else:
                    outcome.cancel()
            raise
        if request.request_id:
            outcome.set_result(launches)
        return await self._spawned(spec, request, launches)

    async def _launch(self, spec: Any, request: agents_pb.SpawnAgentsRequest, count: int) -> list[Launch]:
        assert self.launcher is not None  # SpawnAgents refused the call without one
        async with self._spawn_lock:
            limit = self.settings["system.max_agents"]
            if self.launcher.active + count > limit:
                raise ResourceExhausted(
                    f"spawning {count} more would exceed system.max_agents ({limit}; {self.launcher.active} running)"
                )
            self.launcher.limits.admit(self.launcher.active, count)  # system.max_memory, all or none
            return [
                await self.launcher.spawn(
                    spec.name,
                    capabilities=list(request.capabilities) or None,
                    max_concurrency=request.max_concurrency,
                    labels=dict(request.labels),
                    owner=current_principal(),
                )
                for _ in range(count)
            ]

    async def _spawned(
        self, spec: Any, request: agents_pb.SpawnAgentsRequest, launches: list[Launch]
    ) -> agents_pb.SpawnAgentsResponse:
        """The answer of SpawnAgents: the registered agents (waiting a while for them)."""
        assert self.launcher is not None  # SpawnAgents refused the call without one
        # Answer with the registered agents; a process still starting after the
        # wait is listed as STARTING with its pid (it registers on its own).
        await self.launcher.wait_registered(launches, SPAWN_WAIT)
        launched = []
        for launch in launches:
            info = self.engine.agent(launch.agent_id) if launch.agent_id else None
            if info is not None:
                launched.append(self._pb(info))
            else:
                launched.append(
                    messages_pb.Agent(
                        agent_type=spec.name,
                        capabilities=list(request.capabilities) or list(spec.capabilities),
                        status=proto_enum(enums_pb.AgentStatus, AgentStatus.STARTING),
                        managed=True,
                        pid=launch.process.pid if launch.process else 0,
                        labels={**request.labels, "launch_id": launch.id},
                    )
                )
        return agents_pb.SpawnAgentsResponse(agents=launched)

    async def TerminateAgent(
        self, request: agents_pb.TerminateAgentRequest, context: grpc.aio.ServicerContext
    ) -> agents_pb.TerminateAgentResponse:
        validate_request_id(request.request_id)
        grace = (
            convert.checked_seconds(request.grace, "grace") if request.HasField("grace") else DEFAULT_GRACE
        )
        if not 0 <= grace <= MAX_GRACE:
            raise InvalidArgument(f"grace must be between 0 and {MAX_GRACE:g} seconds", field="grace")
        if (forwarded := await self._forward(agents_pb.TerminateAgentResponse, request)) is not None:
            return forwarded
        info = await self._managed(request.name, "terminate")
        info = self.engine.terminate_agent(info.id, grace, request.force)
        answer = self._pb(info)
        await self.engine.durable()  # re-queued work and the agent's state are recorded
        launch = self.launcher.by_agent(info.id) if self.launcher else None
        if launch is not None:
            assert self.launcher is not None  # the launch is one of its own
            if request.force:
                await self.launcher.stop_launch(launch, 0.5)
            else:
                # No restart once it exits; ended by the launcher if it is still running after the grace.
                self.launcher.stop_after(launch, grace)
        return agents_pb.TerminateAgentResponse(agent=answer)

    async def PauseAgent(
        self, request: agents_pb.PauseAgentRequest, context: grpc.aio.ServicerContext
    ) -> agents_pb.PauseAgentResponse:
        if (forwarded := await self._forward(agents_pb.PauseAgentResponse, request)) is not None:
            return forwarded
        info = await self._managed(request.name, "pause")
        answer = self._pb(self.engine.pause_agent(info.id))  # as of the request
        await self.engine.durable()
        return agents_pb.PauseAgentResponse(agent=answer)

    async def ResumeAgent(
        self, request: agents_pb.ResumeAgentRequest, context: grpc.aio.ServicerContext
    ) -> agents_pb.ResumeAgentResponse:
        if (forwarded := await self._forward(agents_pb.ResumeAgentResponse, request)) is not None:
            return forwarded
        info = await self._managed(request.name, "resume")
        answer = self._pb(self.engine.resume_agent(info.id))
        await self.engine.durable()
        return agents_pb.ResumeAgentResponse(agent=answer)

    async def DrainAgent(
        self, request: agents_pb.DrainAgentRequest, context: grpc.aio.ServicerContext
    ) -> agents_pb.DrainAgentResponse:
        grace = (
            convert.checked_seconds(request.grace, "grace") if request.HasField("grace") else DEFAULT_GRACE
        )
        if not 0 <= grace <= MAX_GRACE:
            raise InvalidArgument(f"grace must be between 0 and {MAX_GRACE:g} seconds", field="grace")
        if (forwarded := await self._forward(agents_pb.DrainAgentResponse, request)) is not None:
            return forwarded
        info = await self._managed(request.name, "drain")
        info = self.engine.drain_agent(info.id, grace)
        answer = self._pb(info)  # as of the request: the agent may be gone once the commit is done
        launch = self.launcher.by_agent(info.id) if self.launcher else None
        if launch is not None:
            launch.stopping = True  # a drained agent leaves for good: do not restart it
        await self.engine.durable()
        return agents_pb.DrainAgentResponse(agent=answer)

    async def ListAgentTypes(
        self, request: agents_pb.ListAgentTypesRequest, context: grpc.aio.ServicerContext
    ) -> agents_pb.ListAgentTypesResponse:
        home = self.settings

        def report() -> agents_pb.ListAgentTypesResponse:
            # Off the event loop: collecting the types reads the custom agent files of MAOS_HOME/agents, and
            # checking them may start their MCP servers to list their tools (once per server definition).
            types, custom = agent_types(self.pm, self.settings), custom_agent_types(self.pm, self.settings)
            shown = []
            for s in sorted(types.values(), key=lambda s: s.name):
                why = unavailable(s)
                shown.append(
                    agents_pb.AgentType(
                        name=s.name,
                        base_type=s.base_type,
                        capabilities=list(s.capabilities),
                        description=s.description,
                        source=shown_path(s.source, home) if is_custom(s, home) else s.source,
                        spawnable=self.launcher is not None and not why,
                        backing=proto_enum(enums_pb.AgentBacking, getattr(s, "backing", 0)),
                        unavailable_reason=why,
                        warnings=type_warnings(s),
                    )
                )
            # Paths relative to MAOS_HOME: where the server's files live is not the caller's business.
            return agents_pb.ListAgentTypesResponse(
                agent_types=shown,
                problems=[f"{shown_path(p.path, home)}: {p.message}" for p in custom.problems],
            )

        return await asyncio.to_thread(report)

    async def RestartAgent(
        self, request: agents_pb.RestartAgentRequest, context: grpc.aio.ServicerContext
    ) -> agents_pb.RestartAgentResponse:
        grace = (
            convert.checked_seconds(request.grace, "grace") if request.HasField("grace") else DEFAULT_GRACE
        )
        if not 0 <= grace <= MAX_GRACE:
            raise InvalidArgument(f"grace must be between 0 and {MAX_GRACE:g} seconds", field="grace")
        if (forwarded := await self._forward(agents_pb.RestartAgentResponse, request)) is not None:
            return forwarded
        info = await self._managed(request.name, "restart")
        launch = self.launcher.by_agent(info.id) if self.launcher else None
        if launch is None and info.managed and info.status == AgentStatus.TERMINATED:
            raise FailedPrecondition(
                f"agent agents/{info.id} is TERMINATED (stopped or restarted already); "
                "`maos agent list` shows the agents running now",
                reason="ERROR_REASON_AGENT_STATE",
            )
        if launch is None:
            where = (
                "this control plane does not launch local agents"
                if self.launcher is None
                else f"agent agents/{info.id} was not launched by this control plane"
                + ("" if info.managed else " (it connected on its own)")
            )
            raise FailedPrecondition(
                f"{where}, so it cannot be restarted here: restart its process where it runs, or "
                f"`maos agent terminate {info.id}` and `maos agent spawn {info.agent_type}`",
                reason="ERROR_REASON_NOT_SUPPORTED",
            )
        assert self.launcher is not None  # the launch is one of its own
        self.engine.terminate_agent(info.id, grace, request.force)
        await self.engine.durable()  # re-queued work and the old agent's state are recorded
        await self.launcher.restart(launch, 0.0 if request.force else grace)
        previous = self._pb(self.engine.agent(info.id) or info)  # TERMINATED once its stream ended
        await self.launcher.wait_registered([launch], SPAWN_WAIT)
        new = self.engine.agent(launch.agent_id) if launch.agent_id else None
        agent = (
            self._pb(new)
            if new is not None
            else messages_pb.Agent(
                agent_type=launch.agent_type,
                status=proto_enum(enums_pb.AgentStatus, AgentStatus.STARTING),
                managed=True,
                pid=launch.process.pid if launch.process else 0,
                labels={**launch.labels, "launch_id": launch.id},
            )
        )
        return agents_pb.RestartAgentResponse(previous=previous, agent=agent)

    async def GetAgentMetrics(
        self, request: agents_pb.GetAgentMetricsRequest, context: grpc.aio.ServicerContext
    ) -> agents_pb.GetAgentMetricsResponse:
        if (forwarded := await self._forward(agents_pb.GetAgentMetricsResponse, request)) is not None:
            return forwarded  # its process readings are where it runs
        info = await self._info(request.name)
        response = agents_pb.GetAgentMetricsResponse(agent=self._pb(info))
        reading = self.observer.agent_process(info.id) if self.observer is not None else None
        if reading is not None:
            response.process.CopyFrom(convert.process_to_pb(reading, info.id, info.agent_type))
        if self.logbook is not None:
            response.log_records.update(self.logbook.count_levels(LogFilter(agent_id=info.id)))
        if self.engine.connected_session(info.id) is not None and info.connect_time:
            response.connected_seconds = max(0.0, now() - info.connect_time)
        return response
