"""The forwarder runs a call on the replica holding its target, as the caller, and only there."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agent_sdk.proto.maos.v1 import agent_service_pb2 as agents_pb
from agent_sdk.proto.maos.v1 import messages_pb2 as msgs
from controlplane.access.manager import Caller
from controlplane.api.context import caller_may, caller_var, current_principal, principal_var
from controlplane.api.forwarding import Forwarder
from controlplane.errors import PermissionDenied, Unavailable
from controlplane.replicas.bus import Answer


class Bus:
    """Two replicas' buses in one process: a request runs the other side's handler in its own task."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}
        self.peer: Bus | None = None
        self.timeout = 3.0
        self.asked = 0

    def handle(self, kind: str, handler: Any) -> None:
        self.handlers[kind] = handler

    async def ask(self, kind: str, body: dict[str, Any]) -> Answer | None:
        self.asked += 1
        assert self.peer is not None
        result = await asyncio.get_running_loop().create_task(self.peer.handlers[kind](body))
        return None if result is None else Answer("cp-b", result)


class Engine:
    def __init__(self, agents: set[str], tasks: set[str] = frozenset(), claim: Any = None):  # type: ignore[assignment]
        self.agents, self.tasks = agents, tasks
        self._claim = claim

    async def claim_task(self, task_id: str) -> bool:
        """As the real engine's: without claims (SQLite) every task is held here."""
        return True if self._claim is None else bool(self._claim(task_id))

    def connected_session(self, agent_id: str) -> object | None:
        return object() if agent_id in self.agents else None

    def task_owner(self, task_id: str) -> str | None:
        return "users/x" if task_id in self.tasks else None


class Servicer:
    """Records who it ran as."""

    def __init__(self) -> None:
        self.ran_as: list[tuple[str, bool, bool]] = []

    async def PauseAgent(
        self, request: agents_pb.PauseAgentRequest, context: Any
    ) -> agents_pb.PauseAgentResponse:
        self.ran_as.append((current_principal(), caller_may("agent:manage-all"), caller_may("task:view-all")))
        if request.name == "agents/forbidden":
            raise PermissionDenied("agents/forbidden belongs to bob")
        return agents_pb.PauseAgentResponse(agent=msgs.Agent(name=request.name, replica="cp-b"))


def pair(a_engine: Engine, b_engine: Engine) -> tuple[Forwarder, Servicer]:
    bus_a, bus_b = Bus(), Bus()
    bus_a.peer, bus_b.peer = bus_b, bus_a
    a, b = Forwarder(bus_a, a_engine), Forwarder(bus_b, b_engine)  # type: ignore[arg-type]
    methods = {"PauseAgent": (agents_pb.PauseAgentRequest, agents_pb.PauseAgentResponse)}
    a.serve(Servicer(), methods)
    holder = Servicer()
    b.serve(holder, methods)
    return a, holder


async def rebuild() -> Any:
    raise AssertionError("not truncated")


async def test_the_holder_runs_the_call_as_the_caller() -> None:
    a, holder = pair(Engine(set()), Engine({"a1", "forbidden"}))
    caller = Caller(
        "users/dev",
        "k1",
        ("developer",),
        frozenset({"agent:manage", "task:view"}),
        frozenset({"agent:manage"}),
    )
    principal_var.set("users/dev")
    caller_var.set(caller)
    request = agents_pb.PauseAgentRequest(name="agents/a1")
    answer = await a.agent("PauseAgent", request, "a1", rebuild)
    assert answer is not None and answer.agent.replica == "cp-b"  # type: ignore[attr-defined]
    assert holder.ran_as == [("users/dev", False, False)]  # its own permissions, not more
    with pytest.raises(PermissionDenied, match="belongs to bob"):
        await a.agent(
            "PauseAgent", agents_pb.PauseAgentRequest(name="agents/forbidden"), "forbidden", rebuild
        )
    assert (current_principal(), caller_var.get()) == (
        "users/dev",
        caller,
    )  # the asker's context is untouched


async def test_a_target_held_here_or_nowhere_is_answered_here() -> None:
    a, holder = pair(Engine({"a1"}), Engine(set()))
    assert await a.agent("PauseAgent", agents_pb.PauseAgentRequest(name="agents/a1"), "a1", rebuild) is None
    assert a.bus.asked == 0  # type: ignore[attr-defined]
    assert await a.agent("PauseAgent", agents_pb.PauseAgentRequest(name="agents/zz"), "zz", rebuild) is None
    assert holder.ran_as == []  # B does not hold it: it declined without running anything


async def test_an_unfinished_task_nobody_holds_is_claimed_or_refused() -> None:
    claimed: list[str] = []

    def claim(task_id: str) -> bool:
        claimed.append(task_id)
        return task_id == "t1"

    a, _ = pair(Engine(set(), claim=claim), Engine(set()))
    await a.claim("t1")
    with pytest.raises(Unavailable, match="held by another replica that did not answer") as refused:
        await a.claim("t2")
    assert refused.value.reason == "ERROR_REASON_NOT_LEASE_HOLDER"
    assert claimed == ["t1", "t2"]
    plain, _ = pair(Engine(set()), Engine(set()))
    await plain.claim("t3")  # an engine without claims: acted on here, nothing raised
