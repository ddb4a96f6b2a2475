"""``build_task``'s retry keywords, through a real control plane (tests.harness.server)."""

from __future__ import annotations

import pytest

from agent_sdk.client import Client, build_task
from agent_sdk.errors import InvalidArgumentError
from controlplane.app import App


def test_build_task_sets_only_the_fields_given() -> None:
    policy = build_task("x", initial_backoff=0.25, max_backoff=0).retry_policy
    assert policy.HasField("initial_backoff") and policy.initial_backoff.ToNanoseconds() == 250_000_000
    assert policy.HasField("max_backoff") and policy.max_backoff.ToNanoseconds() == 0  # 0 is a value
    assert not policy.HasField("backoff_multiplier") and not policy.HasField("max_retries")
    assert not build_task("x").HasField("retry_policy")


async def test_the_stored_task_carries_the_policy(control_plane: App) -> None:
    async with Client(control_plane.address, timeout=5) as client:
        created = await client.submit_task(
            description="retry policy",
            max_retries=2,
            initial_backoff=0.25,
            backoff_multiplier=1.5,
            max_backoff=90,
        )
        stored = (await client.get_task(created.name)).task.retry_policy
        assert (
            stored.max_retries,
            stored.initial_backoff.ToMilliseconds(),
            stored.backoff_multiplier,
            stored.max_backoff.ToSeconds(),
        ) == (2, 250, 1.5, 90)

        plain = await client.submit_task(description="defaults")
        defaults = (await client.get_task(plain.name)).task.retry_policy
        # The harness's tasks.default_* settings: 3 retries, 0.05 s, x2 (built in), 0.5 s cap.
        assert (
            defaults.max_retries,
            defaults.initial_backoff.ToMilliseconds(),
            defaults.backoff_multiplier,
            defaults.max_backoff.ToMilliseconds(),
        ) == (3, 50, 2.0, 500)


@pytest.mark.parametrize(
    ("fields", "field", "text"),
    [
        (
            {"initial_backoff": -1, "max_backoff": 5},
            "task.retry_policy.initial_backoff",
            "is -1 s; must be between 0 and 3600 seconds",
        ),
        (
            {"backoff_multiplier": 0.5},
            "task.retry_policy.backoff_multiplier",
            "is 0.5; must be between 1 and 10",
        ),
        (
            {"initial_backoff": 10, "max_backoff": 5},
            "task.retry_policy.max_backoff",
            "is 5 s, less than initial_backoff (10 s)",
        ),
        (
            {"initial_backoff": 1, "max_backoff": 90_000},
            "task.retry_policy.max_backoff",
            "is 90000 s; at most 86400",
        ),
    ],
)
async def test_bad_policies_name_the_field_and_value(
    control_plane: App, fields: dict, field: str, text: str
) -> None:
    async with Client(control_plane.address, timeout=5) as client:
        with pytest.raises(InvalidArgumentError) as invalid:
            await client.submit_task(description="bad retry policy", **fields)
        assert [f for f, _ in invalid.value.field_violations] == [field]
        assert text in invalid.value.message
        assert [t async for t in client.iter_tasks()] == []
