"""Credit that comes back in a heartbeat gets queued work at once (a real server, the raw protocol).

An agent frozen past its lease (a blocking import, a long GC pause) loses the work, which is
re-queued; it then reports no free slot while it finishes the stale attempt, and a free slot
afterwards. That heartbeat alone must hand it the queued work again: nothing else may happen.
Leases last 3 s here (tests.harness.server.TEST_OVERRIDES).
"""

from __future__ import annotations

import asyncio

from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from controlplane.app import App
from tests.controlplane.scheduler.test_resume import connect, submit
from tests.harness.server import Stubs


async def test_a_heartbeat_that_frees_a_slot_gets_the_queued_work(control_plane: App, stubs: Stubs) -> None:
    agent, _ = await connect(control_plane.address)
    try:
        await submit(stubs)
        first = (await agent.receive("assignment")).assignment.ref
        # Frozen: no heartbeat, so the lease expires and the work is re-queued.
        cancel = (await asyncio.wait_for(agent.receive("cancel"), 10)).cancel
        assert cancel.ref == first
        agent.send(heartbeat=gw.Heartbeat(free_slots=0))  # alive again, still busy with the stale attempt
        agent.send(heartbeat=gw.Heartbeat(free_slots=1))  # done with it (one stream: read in this order)
        again = (await asyncio.wait_for(agent.receive("assignment"), 2)).assignment.ref
        assert again.subtask == first.subtask and again.attempt == first.attempt + 1
    finally:
        await agent.close()
