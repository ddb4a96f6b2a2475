"""Page tokens: one key signs every list's tokens, and a token continues only the list, the
filters and the caller it was issued for; an overlong one is refused before it is decoded."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError
from agent_sdk.proto.maos.v1 import task_service_pb2 as tasks_pb
from agent_sdk.proto.maos.v1 import template_service_pb2 as templates_pb
from controlplane.api.paging import MAX_TOKEN_LENGTH, PageTokens
from controlplane.app import build_app
from controlplane.errors import InvalidArgument
from tests.harness.server import admin_key, make_settings

KEY = b"k" * 32


def test_a_token_of_one_list_is_not_read_by_another() -> None:
    tasks, batches = PageTokens("ListTasks", lambda: KEY), PageTokens("ListBatches", lambda: KEY)
    token = tasks.issue(5, b"same filters")
    assert tasks.read(token, b"same filters") == 5
    with pytest.raises(InvalidArgument) as caught:
        batches.read(token, b"same filters")
    assert caught.value.reason == "ERROR_REASON_INVALID_PAGE_TOKEN"
    assert "of another list" in str(caught.value)
    pair = PageTokens("ListLogs", lambda: KEY).issue_pair(2, 1, 2, b"f")
    with pytest.raises(InvalidArgument):
        PageTokens("ListAgents", lambda: KEY).read_pair(pair, b"f")


def test_an_overlong_token_is_refused_unread() -> None:
    tokens = PageTokens("ListTasks", lambda: KEY)
    token = tokens.issue(5, b"f")
    assert len(token) < 64
    # Characters outside the alphabet are dropped by the decoder: the same position, padded out.
    padded = token + "!" * ((MAX_TOKEN_LENGTH - len(token)) // 4 * 4)
    assert tokens.read(padded, b"f") == 5
    with pytest.raises(InvalidArgument) as caught:
        tokens.read(padded + "!!!!", b"f")
    assert caught.value.reason == "ERROR_REASON_INVALID_PAGE_TOKEN"
    with pytest.raises(InvalidArgument):
        tokens.read("A" * 100_000, b"f")


async def test_list_tokens_are_bound_to_their_list_and_caller(tmp_path: Path) -> None:
    """ListCheckpoints (a list whose answer is the same for every caller) binds its tokens to the
    caller too; a ListTasks token is refused by ListTemplates; an overlong token by ListTasks."""
    app = build_app(make_settings(tmp_path / "home", **{"security.auth": "required"}))
    await app.start("127.0.0.1:0")
    try:
        async with Client(app.address, token=await admin_key(app)) as admin:
            for n in range(3):
                await admin.create_checkpoint(f"checkpoint {n}")
                await admin.submit_task(description=f"task {n}")
            dev = (await admin.create_user("dev@example.com", ["developer"])).name.removeprefix("users/")
            _, key = await app.storage.call(app.access.issue_key_sync, dev, "k")
            first = await admin.list_checkpoints(page_size=1)
            assert first.next_page_token
            async with Client(app.address, token=key) as as_dev:
                with pytest.raises(MaosRpcError) as caught:
                    await as_dev.list_checkpoints(page_size=1, page_token=first.next_page_token)
                assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
                assert caught.value.reason == "ERROR_REASON_INVALID_PAGE_TOKEN"
                assert "another caller" in caught.value.message
            rest = await admin.list_checkpoints(page_size=5, page_token=first.next_page_token)
            assert len(rest.checkpoints) >= 2

            tasks = await admin.tasks.ListTasks(tasks_pb.ListTasksRequest(page_size=1))
            assert tasks.next_page_token
            with pytest.raises(MaosRpcError) as refused:
                await admin.templates.ListTemplates(
                    templates_pb.ListTemplatesRequest(page_token=tasks.next_page_token)
                )
            assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
            assert "of another list" in refused.value.message
            with pytest.raises(MaosRpcError) as refused:
                await admin.tasks.ListTasks(
                    tasks_pb.ListTasksRequest(page_size=1, page_token=tasks.next_page_token + "!" * 300)
                )
            assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await app.stop(grace=1.0)
