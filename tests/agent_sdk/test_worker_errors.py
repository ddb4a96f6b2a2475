"""``Worker.run()`` raises the SDK's typed errors, as ``Client`` does (a real secured server)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from agent_sdk.builtin import EchoAgent
from agent_sdk.errors import MaosRpcError, UnauthenticatedError
from agent_sdk.worker import Worker
from controlplane.app import App


async def test_a_worker_refused_by_the_server_raises_the_typed_error(secured: App) -> None:
    worker = Worker(EchoAgent(), secured.address, token="maos_key_not-a-real-key")
    with pytest.raises(UnauthenticatedError) as refused:
        await asyncio.wait_for(worker.run(), 30)
    assert isinstance(refused.value, MaosRpcError) and not isinstance(refused.value, grpc.aio.AioRpcError)
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert refused.value.message  # the server's message, as Client would carry it
