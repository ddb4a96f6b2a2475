"""``Client.with_token``: many callers, each with their own key, over one channel (a real secured server)."""

from __future__ import annotations

import grpc
import pytest

from agent_sdk.client import Client
from agent_sdk.errors import UnauthenticatedError
from controlplane.app import App
from tests.controlplane.access.test_access import user_key


async def test_each_view_calls_with_its_own_key_over_the_shared_channel(secured: App) -> None:
    dev = await user_key(secured, "dev@example.com", "developer")
    viewer = await user_key(secured, "viewer@example.com", "viewer")
    async with Client(secured.address) as base:
        as_dev, as_viewer = base.with_token(dev), base.with_token(viewer)
        assert as_dev.channel is base.channel and as_viewer.channel is base.channel
        dev_caller, viewer_caller = await as_dev.get_caller(), await as_viewer.get_caller()
        assert list(dev_caller.roles) == ["roles/developer"] and list(viewer_caller.roles) == ["roles/viewer"]
        assert dev_caller.principal != viewer_caller.principal
        with pytest.raises(UnauthenticatedError) as info:
            await base.get_caller()  # the base client still sends no key
        assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert base.with_token(None).token is None and base.token is None
