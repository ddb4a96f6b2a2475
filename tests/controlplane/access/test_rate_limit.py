"""Rate limits: the token buckets on a fake clock, then end to end on a real control plane.

A principal over its rate gets RESOURCE_EXHAUSTED (ERROR_REASON_RATE_LIMITED)
with a RetryInfo delay, the refused call changes nothing, other principals
are unaffected and the bucket refills; a peer with too many failed
authentications is refused before its key is read; an agent stream counts
once; health checks are never limited; refusals are audited and counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent_sdk.builtin import EchoAgent
from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError
from agent_sdk.worker import Worker
from controlplane.access import keys
from controlplane.access.rate_limit import FAILED_AUTH, PRINCIPAL, RATE_LIMITED, CallLimits, TokenBuckets
from controlplane.api.auth import peer_address
from controlplane.app import App
from controlplane.errors import ResourceExhausted
from tests.harness.server import make_settings, start_app, wait_for


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- the buckets ------------------------------------------------------------------


def test_burst_then_refusal_with_the_delay_to_the_next_token() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=2, burst=3, clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(0.5)
    clock.now += 0.25
    assert buckets.take("a") == pytest.approx(0.25)  # a refusal takes nothing
    clock.now += 0.25
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == pytest.approx(0.5)


def test_refill_stops_at_the_burst() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=10, burst=2, clock=clock)
    buckets.take("a"), buckets.take("a")
    clock.now += 3600
    assert [buckets.take("a") for _ in range(3)][:2] == [0.0, 0.0]
    assert buckets.take("a") > 0


def test_keys_are_independent_and_wait_takes_nothing() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=1, burst=1, clock=clock)
    assert buckets.wait("a") == 0.0 and len(buckets) == 0
    assert buckets.take("a") == 0.0
    assert buckets.wait("a") == pytest.approx(1.0)
    assert buckets.take("b") == 0.0
    clock.now += 0.5
    assert buckets.wait("a") == pytest.approx(0.5) and buckets.wait("a") == pytest.approx(0.5)


def test_idle_buckets_are_dropped_when_full_again() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=1, burst=5, clock=clock)
    for key in ("a", "b", "c"):
        buckets.take(key)
    clock.now += 4.9
    buckets.take("b")  # still in use
    clock.now += 0.2  # a and c are full again (5 s idle); b is not
    buckets.take("d")
    assert sorted(buckets._buckets) == ["b", "d"]
    assert buckets.take("a") == 0.0  # a new bucket is the same as the dropped one


def test_memory_is_bounded_by_max_keys() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=1, burst=1000, max_keys=100, clock=clock)
    for i in range(10_000):
        buckets.take(f"peer-{i}")
        clock.now += 0.001
    assert len(buckets) == 100
    assert "peer-9999" in buckets._buckets and "peer-0" not in buckets._buckets


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("inf"), 1), (float("nan"), 1), (1, 0.5)])
def test_bad_parameters_are_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBuckets(rate, burst)


def test_limits_from_settings_zero_turns_a_limit_off(tmp_path: Path) -> None:
    defaults = CallLimits.from_settings(make_settings(tmp_path))
    assert defaults is not None and defaults.per_principal is not None and defaults.failed_auth is not None
    assert (defaults.per_principal.rate, defaults.per_principal.burst) == (5000.0, 10000.0)
    only_auth = CallLimits.from_settings(make_settings(tmp_path, **{"security.rate_limit.burst": 0}))
    assert only_auth is not None and only_auth.per_principal is None and only_auth.failed_auth is not None
    assert CallLimits.from_settings(make_settings(tmp_path, **{
        "security.rate_limit.rate": 0, "security.rate_limit.failed_auth_rate": 0})) is None


def test_call_limits_refuse_with_reason_delay_and_limit() -> None:
    clock = FakeClock()
    limits = CallLimits(TokenBuckets(1, 1, clock=clock), TokenBuckets(0.1, 2, clock=clock))
    limits.admit("users/a")
    with pytest.raises(ResourceExhausted) as refused:
        limits.admit("users/a")
    assert refused.value.reason == RATE_LIMITED and refused.value.metadata == {"limit": PRINCIPAL}
    assert refused.value.retry_after == pytest.approx(1.0)
    limits.admit("users/b")
    for _ in range(2):
        assert limits.failed_authentication("ipv4:10.0.0.1") is None
    throttled = limits.failed_authentication("ipv4:10.0.0.1")
    assert isinstance(throttled, ResourceExhausted) and throttled.reason == RATE_LIMITED
    assert throttled.metadata == {"limit": FAILED_AUTH} and throttled.retry_after == pytest.approx(10.0)
    assert limits.failed_authentication("ipv4:10.0.0.2") is None
    clock.now += 10
    assert limits.failed_authentication("ipv4:10.0.0.1") is None


@pytest.mark.parametrize(("peer", "address"), [
    ("ipv4:127.0.0.1:51234", "ipv4:127.0.0.1"), ("ipv6:[::1]:7100", "ipv6:[::1]"),
    ("unix:/tmp/maos.sock", "unix:/tmp/maos.sock"), ("", ""),
])
def test_peer_address_drops_the_port(peer: str, address: str) -> None:
    assert peer_address(peer) == address


# --- end to end -------------------------------------------------------------------


async def limited_app(home: Path, **limits: float) -> App:
    return await start_app(make_settings(home, **{"security.auth": "required", **{
        f"security.rate_limit.{k}": v for k, v in limits.items()}}))


@pytest.fixture
async def slow(maos_home: Path) -> AsyncIterator[App]:
    """Each principal: bursts of 2, then a call every 2 seconds."""
    app = await limited_app(maos_home, rate=0.5, burst=2)
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


async def key_of(app: App, email: str, *roles: str) -> str:
    """A new user's API key, made without calling the API (so no call is spent)."""
    user = await app.access.create_user(email, list(roles))
    _, secret = await app.storage.call(app.access.issue_key_sync, user["id"], "k")
    return secret


async def task_count(app: App) -> int:
    return sum((await app.storage.call(app.storage.backend.count_tasks_by_status)).values())


async def health_ok(app: App) -> bool:
    async with grpc.aio.insecure_channel(app.address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def refused_calls(app: App, method: str, limit: str) -> float:
    service, name = method.split("/")
    return app.metrics.registry.get_sample_value(
        "maos_rate_limited_total", {"grpc_service": f"maos.v1.{service}", "grpc_method": name, "limit": limit}) or 0


async def test_over_the_rate_is_refused_changes_nothing_and_refills(slow: App) -> None:
    async with Client(slow.address, token=await key_of(slow, "alice@example.com", "developer")) as alice, \
            Client(slow.address, token=await key_of(slow, "bob@example.com", "developer")) as bob:
        await alice.submit_task(description="one")
        await alice.submit_task(description="two")
        with pytest.raises(MaosRpcError) as refused:
            await alice.submit_task(description="three")
        error = refused.value
        assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.reason == RATE_LIMITED
        assert 0 < error.retry_delay <= 2.0 and error.metadata == {"limit": PRINCIPAL}
        assert await task_count(slow) == 2
        assert refused_calls(slow, "TaskService/SubmitTask", PRINCIPAL) == 1

        assert (await bob.list_tasks()).tasks == []  # another principal is unaffected
        assert await health_ok(slow) and await health_ok(slow) and await health_ok(slow)

        async def accepted() -> bool:
            try:
                await alice.submit_task(description="three")
            except MaosRpcError as exc:
                assert exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                return False
            return True

        await wait_for(accepted, 10, interval=0.1, message="alice's bucket to refill")
    assert await task_count(slow) == 3
    records = await slow.storage.call(lambda: slow.storage.backend.list_audit(principal="users/alice"))
    denied = [(r["method"].rsplit("/", 1)[1], r["status_code"], r["reason"])
              for r in records if r["decision"] == "DENY"]
    assert denied and set(denied) == {("SubmitTask", "RESOURCE_EXHAUSTED", RATE_LIMITED)}


async def test_an_agent_stream_counts_once(maos_home: Path) -> None:
    app = await limited_app(maos_home, rate=0.001, burst=2)  # no refill within the test
    worker = Worker(EchoAgent(), app.address, token=await key_of(app, "agent@example.com", "agent"),
                    reconnect=False)
    runner = None
    try:
        runner = asyncio.get_running_loop().create_task(worker.run())
        await asyncio.wait_for(worker.registered.wait(), 15)
        async with Client(app.address, token=await key_of(app, "dev@example.com", "developer")) as dev:
            await dev.submit_task(description="first")
            await dev.submit_task(description="second")
        await wait_for(lambda: worker.completed >= 2, 15, message="two subtasks done over one stream")
        # The stream carried register, results and heartbeats, but took one call of two.
        async with Client(app.address, token=worker.token) as same_principal:
            await same_principal.get_caller()
            with pytest.raises(MaosRpcError) as refused:
                await same_principal.get_caller()
        assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await worker.shutdown(grace=1.0)
        if runner is not None:
            await asyncio.wait_for(runner, 15)
        await app.stop(grace=1.0)


async def test_failed_authentication_is_throttled_per_peer_and_good_keys_still_work(maos_home: Path) -> None:
    app = await limited_app(maos_home, failed_auth_rate=0.001, failed_auth_burst=3)
    try:
        good = await key_of(app, "dev@example.com", "developer")
        for token in ("not-a-key", keys.generate(), None):
            async with Client(app.address, token=token) as stranger:
                with pytest.raises(MaosRpcError) as denied:
                    await stranger.list_tasks()
                assert denied.value.code == grpc.StatusCode.UNAUTHENTICATED
        for token in (keys.generate(), None):  # failures from this address are now told to wait
            async with Client(app.address, token=token) as client:
                with pytest.raises(MaosRpcError) as throttled:
                    await client.list_tasks()
                error = throttled.value
                assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED and error.reason == RATE_LIMITED
                assert error.retry_delay > 0 and error.metadata == {"limit": FAILED_AUTH}
        async with Client(app.address, token=good) as client:  # another client at the address is unaffected
            assert await client.list_tasks() is not None
        assert refused_calls(app, "TaskService/ListTasks", FAILED_AUTH) == 2
        assert await health_ok(app)
        records = await app.storage.call(lambda: app.storage.backend.list_audit(action="ListTasks"))
        assert sorted(r["status_code"] for r in records) == ["RESOURCE_EXHAUSTED"] * 2 + ["UNAUTHENTICATED"] * 3
        assert all(r["peer"].startswith("ipv4:127.0.0.1:") for r in records)
    finally:
        await app.stop(grace=1.0)
