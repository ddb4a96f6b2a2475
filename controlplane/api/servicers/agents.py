"""maos.v1.AgentService: list, inspect, spawn and steer agents."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

import grpc

from controlplane.agent_types import agent_types
from controlplane.custom_agents import custom_agent_types
from controlplane.api import convert
from controlplane.api.context import current_principal
from controlplane.api.paging import PageTokens, page_size
from controlplane.api.pb import agents_grpc, agents_pb, messages_pb
from controlplane.domain.model import AgentInfo, AgentStatus
from controlplane.domain.tasks import validate_request_id
from controlplane.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from controlplane.launcher import Launch, LocalLauncher
from controlplane.pool import check_type, unavailable
from controlplane.scheduler.engine import Engine

DEFAULT_GRACE = 30.0
SPAWN_WAIT = 15.0  # seconds SpawnAgents waits for launched processes to register
SPAWN_MEMORY = 10_000  # SpawnAgents request_ids remembered (oldest forgotten first)


class AgentServicer(agents_grpc.AgentServiceServicer):
    """Agents of this control plane."""

    def __init__(self, engine: Engine, launcher: LocalLauncher | None, pm, settings):
        self.engine = engine
        self.launcher = launcher
        self.pm = pm
        self.settings = settings
        self.tokens = PageTokens()
        # (principal, request_id) -> (the request without its id, the launches it made).
        self._spawns: OrderedDict[tuple[str, str], tuple[bytes, asyncio.Future[list[Launch]]]] = OrderedDict()
        # Held from the max_agents check until the launches exist, so concurrent calls cannot overshoot.
        self._spawn_lock = asyncio.Lock()
        if launcher is not None:
            launcher.on_registered = self._launch_registered

    def _launch_registered(self, launch: Launch) -> None:
        """A launched process registered: give its agent the labels SpawnAgents asked for."""
        info = self.engine.agents.get(launch.agent_id)
        if info is not None and launch.labels:
            info.labels = {**info.labels, **launch.labels}
            self.engine.committer.agent(info)

    def _pb(self, info: AgentInfo):
        session = self.engine.sessions.get(info.id)
        if session is not None:
            info.status = session.status()
            return convert.agent_to_pb(info, [f"tasks/{t}/subtasks/{s}" for t, s in sorted(session.running)],
                                       session.free)
        return convert.agent_to_pb(info)

    def _info(self, name: str) -> AgentInfo:
        agent_id = convert.parse_name(name, "agents")
        info = self.engine.agents.get(agent_id)
        if info is None:
            raise NotFound(f"agent agents/{agent_id} does not exist", reason="ERROR_REASON_AGENT_NOT_FOUND")
        return info

    async def ListAgents(self, request, context: grpc.aio.ServicerContext) -> agents_pb.ListAgentsResponse:
        size = page_size(request.page_size)
        for index, status in enumerate(request.statuses):
            if status not in AgentStatus._value2member_map_:
                raise InvalidArgument(f"statuses[{index}] {status} is not an agent status", field=f"statuses[{index}]")
        filters = agents_pb.ListAgentsRequest()
        filters.CopyFrom(request)
        filters.ClearField("page_token")
        filters.ClearField("page_size")
        start = self.tokens.read(request.page_token, filters.SerializeToString(deterministic=True)) or 0
        agents = []
        for info in self.engine.agents.values():
            session = self.engine.sessions.get(info.id)
            status = session.status() if session else info.status
            if status == AgentStatus.TERMINATED and not request.include_terminated and not request.statuses:
                continue
            if request.statuses and int(status) not in request.statuses:
                continue
            if request.agent_types and info.agent_type not in request.agent_types:
                continue
            agents.append((session is None, info.connect_time or 0, info))
        agents.sort(key=lambda row: (row[0], -row[1], row[2].id))
        page = agents[start:start + size]
        response = agents_pb.ListAgentsResponse(agents=[self._pb(info) for _, _, info in page])
        if start + size < len(agents):
            response.next_page_token = self.tokens.issue(start + size, filters.SerializeToString(deterministic=True))
        return response

    async def GetAgent(self, request, context: grpc.aio.ServicerContext) -> agents_pb.GetAgentResponse:
        return agents_pb.GetAgentResponse(agent=self._pb(self._info(request.name)))

    async def SpawnAgents(self, request, context: grpc.aio.ServicerContext) -> agents_pb.SpawnAgentsResponse:
        validate_request_id(request.request_id)
        count = request.count or 1
        if not 1 <= count <= 100:
            raise InvalidArgument("count must be between 1 and 100", field="count")
        spec = check_type(self.pm, self.settings, request.agent_type)  # unknown, or cannot run here (no key)
        if self.launcher is None:
            raise FailedPrecondition("this control plane does not launch local agents",
                                     reason="ERROR_REASON_NOT_SUPPORTED")
        key = (current_principal(), request.request_id)
        if request.request_id:
            unkeyed = agents_pb.SpawnAgentsRequest()
            unkeyed.CopyFrom(request)
            unkeyed.ClearField("request_id")
            fingerprint = unkeyed.SerializeToString(deterministic=True)
            earlier = self._spawns.get(key)
            if earlier is not None:
                if earlier[0] != fingerprint:
                    raise InvalidArgument(
                        f"request_id {request.request_id!r} was already used for a different request; "
                        "use a new request_id", field="request_id", reason="ERROR_REASON_REQUEST_ID_REUSED")
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

    async def _launch(self, spec, request, count: int) -> list[Launch]:
        async with self._spawn_lock:
            limit = self.settings["system.max_agents"]
            if self.launcher.active + count > limit:
                raise ResourceExhausted(
                    f"spawning {count} more would exceed system.max_agents ({limit}; {self.launcher.active} running)"
                )
            return [
                await self.launcher.spawn(spec.name, capabilities=list(request.capabilities) or None,
                                          max_concurrency=request.max_concurrency, labels=dict(request.labels))
                for _ in range(count)
            ]

    async def _spawned(self, spec, request, launches: list[Launch]) -> agents_pb.SpawnAgentsResponse:
        """The answer of SpawnAgents: the registered agents (waiting a while for them)."""
        # Answer with the registered agents; a process still starting after the
        # wait is listed as STARTING with its pid (it registers on its own).
        await self.launcher.wait_registered(launches, SPAWN_WAIT)
        launched = []
        for launch in launches:
            info = self.engine.agents.get(launch.agent_id) if launch.agent_id else None
            if info is not None:
                launched.append(self._pb(info))
            else:
                launched.append(messages_pb.Agent(
                    agent_type=spec.name, capabilities=list(request.capabilities) or list(spec.capabilities),
                    status=AgentStatus.STARTING, managed=True,
                    pid=launch.process.pid if launch.process else 0,
                    labels={**request.labels, "launch_id": launch.id}))
        return agents_pb.SpawnAgentsResponse(agents=launched)

    async def TerminateAgent(self, request, context: grpc.aio.ServicerContext) -> agents_pb.TerminateAgentResponse:
        validate_request_id(request.request_id)
        info = self._info(request.name)
        grace = convert.seconds(request.grace) if request.HasField("grace") else DEFAULT_GRACE
        if grace < 0:
            raise InvalidArgument("grace cannot be negative", field="grace")
        info = self.engine.terminate_agent(info.id, grace, request.force)
        answer = self._pb(info)
        await self.engine.committer.durable()  # re-queued work and the agent's state are recorded
        launch = self.launcher.by_agent(info.id) if self.launcher else None
        if launch is not None:
            if request.force:
                await self.launcher.stop_launch(launch, 0.5)
            else:
                # No restart once it exits; ended by the launcher if it is still running after the grace.
                self.launcher.stop_after(launch, grace)
        return agents_pb.TerminateAgentResponse(agent=answer)

    async def PauseAgent(self, request, context: grpc.aio.ServicerContext) -> agents_pb.PauseAgentResponse:
        answer = self._pb(self.engine.pause_agent(self._info(request.name).id))  # as of the request
        await self.engine.committer.durable()
        return agents_pb.PauseAgentResponse(agent=answer)

    async def ResumeAgent(self, request, context: grpc.aio.ServicerContext) -> agents_pb.ResumeAgentResponse:
        answer = self._pb(self.engine.resume_agent(self._info(request.name).id))
        await self.engine.committer.durable()
        return agents_pb.ResumeAgentResponse(agent=answer)

    async def DrainAgent(self, request, context: grpc.aio.ServicerContext) -> agents_pb.DrainAgentResponse:
        grace = convert.seconds(request.grace) if request.HasField("grace") else DEFAULT_GRACE
        if grace < 0:
            raise InvalidArgument("grace cannot be negative", field="grace")
        info = self.engine.drain_agent(self._info(request.name).id, grace)
        answer = self._pb(info)  # as of the request: the agent may be gone once the commit is done
        launch = self.launcher.by_agent(info.id) if self.launcher else None
        if launch is not None:
            launch.stopping = True  # a drained agent leaves for good: do not restart it
        await self.engine.committer.durable()
        return agents_pb.DrainAgentResponse(agent=answer)

    async def ListAgentTypes(self, request, context: grpc.aio.ServicerContext) -> agents_pb.ListAgentTypesResponse:
        return agents_pb.ListAgentTypesResponse(
            agent_types=[
                agents_pb.AgentType(name=s.name, base_type=s.base_type, capabilities=list(s.capabilities),
                                    description=s.description, source=s.source,
                                    spawnable=self.launcher is not None and not unavailable(s),
                                    backing=int(getattr(s, "backing", 0)), unavailable_reason=unavailable(s))
                for s in sorted(agent_types(self.pm, self.settings).values(), key=lambda s: s.name)
            ],
            problems=[str(p) for p in custom_agent_types(self.pm, self.settings).problems],
        )
