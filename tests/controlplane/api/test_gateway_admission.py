"""What the gateway checks of a Register before the engine sees it.

It fails closed (a stream without credentials and no admission wired is
UNAUTHENTICATED, never registered), honours ``launch_id`` only from the local
agents' key (or with access control off), and takes agent type names exactly
(no trailing newline). Every refusal changes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from controlplane.api.admission import JOINING
from controlplane.api.context import caller_var
from controlplane.api.servicers.gateway import GatewayServicer
from controlplane.app import App
from controlplane.errors import Unauthenticated
from tests.controlplane.access.test_join_tokens import join, refused, register, state
from tests.controlplane.access.test_rate_limit import key_of


class NoEngine:
    """An engine that must not be reached."""

    def register(self, *args: Any) -> Any:
        raise AssertionError("the engine was asked to register a stream without credentials")


class PeerContext:
    """The little of a ServicerContext the gateway reads before registering."""

    def peer(self) -> str:
        return "ipv4:10.0.0.7:50412"

    def invocation_metadata(self) -> tuple[()]:
        return ()


async def messages(*items: gw.ConnectRequest) -> AsyncIterator[gw.ConnectRequest]:
    for item in items:
        yield item


async def test_a_stream_without_credentials_is_refused_when_no_admission_is_wired() -> None:
    """The interceptor lets a bearer-less Connect through as JOINING; without admission nothing checks it."""
    gateway = GatewayServicer(NoEngine(), admission=None)  # type: ignore[arg-type]
    token = caller_var.set(JOINING)
    try:
        stream = gateway.Connect(
            messages(gw.ConnectRequest(register=register(join_token="abc123." + "a" * 16))), PeerContext()
        )
        with pytest.raises(Unauthenticated):
            await stream.__anext__()
    finally:
        caller_var.reset(token)


async def test_without_access_control_a_register_needs_no_admission() -> None:
    """The same servicer with auth off (no caller) reaches the engine: only JOINING is refused."""
    gateway = GatewayServicer(NoEngine(), admission=None)  # type: ignore[arg-type]
    stream = gateway.Connect(messages(gw.ConnectRequest(register=register())), PeerContext())
    with pytest.raises(AssertionError, match="engine was asked"):
        await stream.__anext__()


@pytest.mark.parametrize("agent_type", ["echo\n", "echo\r\n", "\necho", "ec ho", "1echo", "e" * 64, ""])
async def test_agent_type_names_are_taken_exactly(control_plane: App, agent_type: str) -> None:
    before = await state(control_plane)
    error = await refused(
        control_plane,
        gw.ConnectRequest(register=register(agent_type)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "ERROR_REASON_INVALID_FIELD",
    )
    assert [f for f, _ in error.field_violations] == ["register.agent_type"]
    assert await state(control_plane) == before


class Launches:
    """Records what the gateway tells the launcher."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, launch_id: str, agent_id: str) -> None:
        self.calls.append((launch_id, agent_id))


async def test_launch_id_is_honoured_only_from_the_local_agents_key(
    secured: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    launches = Launches()
    monkeypatch.setattr(secured.launcher, "registered", launches)
    other_agent_key = await key_of(secured, "agents@example.com", "agent")
    registered, stream = await join(secured, register(launch_id="l-1"), bearer=other_agent_key)
    await stream.close()
    assert launches.calls == []
    assert not secured.engine.agents[registered.agent.removeprefix("agents/")].managed

    assert secured.launcher.token
    registered, stream = await join(secured, register(launch_id="l-2"), bearer=secured.launcher.token)
    await stream.close()
    agent_id = registered.agent.removeprefix("agents/")
    assert launches.calls == [("l-2", agent_id)] and secured.engine.agents[agent_id].managed


async def test_launch_id_is_honoured_without_access_control(
    control_plane: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    launches = Launches()
    monkeypatch.setattr(control_plane.launcher, "registered", launches)
    registered, stream = await join(control_plane, register(launch_id="l-3"))
    await stream.close()
    agent_id = registered.agent.removeprefix("agents/")
    assert launches.calls == [("l-3", agent_id)] and control_plane.engine.agents[agent_id].managed
