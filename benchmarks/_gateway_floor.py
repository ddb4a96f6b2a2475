"""A bare grpc.aio AgentGateway, the floor under ``benchmarks/agents.py`` (not a control plane).

Usage: python benchmarks/_gateway_floor.py ADDRESS HEARTBEAT_SECONDS IDLE_HEARTBEAT_SECONDS

It speaks just enough of ``maos.v1.AgentGateway/Connect`` for the swarm (``_swarm.py``): each
stream's Register is answered with a Registered carrying the given heartbeat intervals, and every
later message (heartbeats) is read and dropped. Each stream has an outbox read by its writer, as in
the control plane. Three calls on raw bytes steer it (no protobuf, no storage, no access control,
no interceptors):

* ``/floor.Control/Status``: ``"CONNECTED WRITTEN"``, the streams held and the messages written
  after Registered;
* ``/floor.Control/Assign``: one Assignment on every stream's outbox (answered at once);
* ``/floor.Control/Cancel``: one Cancel for that assignment on every stream's outbox (answered at once).

Whatever MAOS adds (leases, durable state, scheduling, access control, metrics) comes on top of
what this process costs for the same messages.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw  # noqa: E402
from agent_sdk.proto.maos.v1 import agent_gateway_pb2_grpc as gw_grpc  # noqa: E402
from controlplane.api.server import SERVER_OPTIONS  # noqa: E402

CONTROL = "floor.Control"


def _duration(seconds: float) -> Duration:
    value = Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


class FloorGateway(gw_grpc.AgentGatewayServicer):
    """Holds agent streams; reads and drops what they send; writes what is put on their outboxes."""

    def __init__(self, heartbeat: float, idle_heartbeat: float):
        self.heartbeat = _duration(heartbeat)
        self.idle_heartbeat = _duration(idle_heartbeat)
        self.outboxes: dict[int, asyncio.Queue[gw.ConnectResponse]] = {}
        self.written = 0
        self._next = 0

    async def Connect(
        self, request_iterator: AsyncIterator[gw.ConnectRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[gw.ConnectResponse]:
        try:
            await request_iterator.__anext__()  # the Register
        except StopAsyncIteration:
            return
        self._next += 1
        number = self._next
        outbox: asyncio.Queue[gw.ConnectResponse] = asyncio.Queue()
        self.outboxes[number] = outbox
        reader = asyncio.get_running_loop().create_task(self._read(request_iterator))
        try:
            yield gw.ConnectResponse(
                registered=gw.Registered(
                    agent=f"agents/a{number}",
                    session_id=f"s{number}",
                    heartbeat_interval=self.heartbeat,
                    idle_heartbeat_interval=self.idle_heartbeat,
                    lease_ttl=_duration(60),
                )
            )
            while True:
                yield await outbox.get()
                self.written += 1
        finally:
            reader.cancel()
            del self.outboxes[number]

    @staticmethod
    async def _read(requests: AsyncIterator[gw.ConnectRequest]) -> None:
        async for message in requests:
            message.WhichOneof("message")  # as a control plane would look at it, and no more

    async def status(self, request: bytes, context: Any) -> bytes:
        return f"{len(self.outboxes)} {self.written}".encode()

    async def assign(self, request: bytes, context: Any) -> bytes:
        for number, outbox in self.outboxes.items():
            assignment = gw.Assignment(ref=self._ref(number), task="tasks/floor", title=f"p{number}")
            outbox.put_nowait(gw.ConnectResponse(assignment=assignment))
        return b"ok"

    async def cancel(self, request: bytes, context: Any) -> bytes:
        for number, outbox in self.outboxes.items():
            outbox.put_nowait(gw.ConnectResponse(cancel=gw.Cancel(ref=self._ref(number), reason="cancelled")))
        return b"ok"

    @staticmethod
    def _ref(number: int) -> gw.AssignmentRef:
        return gw.AssignmentRef(subtask=f"tasks/floor/subtasks/p{number}", attempt=1, lease_epoch=1)


async def serve(address: str, heartbeat: float, idle_heartbeat: float) -> None:
    gateway = FloorGateway(heartbeat, idle_heartbeat)
    server = grpc.aio.server(options=SERVER_OPTIONS)  # the control plane's options
    gw_grpc.add_AgentGatewayServicer_to_server(gateway, server)
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                CONTROL,
                {
                    name: grpc.unary_unary_rpc_method_handler(handler)
                    for name, handler in (
                        ("Status", gateway.status),
                        ("Assign", gateway.assign),
                        ("Cancel", gateway.cancel),
                    )
                },
            )
        ]
    )
    server.add_insecure_port(address)
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))
