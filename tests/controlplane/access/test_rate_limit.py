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
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent_sdk.builtin import EchoAgent
from agent_sdk.client import Client
from agent_sdk.errors import MaosRpcError, ResourceExhaustedError
from agent_sdk.proto.maos.v1 import agent_gateway_pb2 as gw
from agent_sdk.worker import Worker
from controlplane.access import keys
from controlplane.access.rate_limit import FAILED_AUTH, PRINCIPAL, RATE_LIMITED, CallLimits, TokenBuckets
from controlplane.api.auth import peer_address
from controlplane.app import App
from controlplane.errors import ResourceExhausted
from tests.controlplane.access.test_access import task_count
from tests.harness.server import make_settings, start_app, stored_audit, wait_for


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


def test_keys_are_independent() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(rate=1, burst=1, clock=clock)
    assert len(buckets) == 0
    assert buckets.take("a") == 0.0
    assert buckets.take("b") == 0.0
    clock.now += 0.5
    assert buckets.take("a") == pytest.approx(0.5) and buckets.take("a") == pytest.approx(0.5)
    assert len(buckets) == 2


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
    assert (
        CallLimits.from_settings(
            make_settings(
                tmp_path, **{"security.rate_limit.rate": 0, "security.rate_limit.failed_auth_rate": 0}
            )
        )
        is None
    )


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


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.1:51234", "ipv4:127.0.0.1"),
        ("ipv6:[::1]:7100", "ipv6:[::1]"),
        ("unix:/tmp/maos.sock", "unix:/tmp/maos.sock"),
        ("", ""),
    ],
)
def test_peer_address_drops_the_port(peer: str, address: str) -> None:
    assert peer_address(peer) == address


# --- end to end -------------------------------------------------------------------


async def limited_app(home: Path, **limits: float) -> App:
    return await start_app(
        make_settings(
            home,
            **{"security.auth": "required", **{f"security.rate_limit.{k}": v for k, v in limits.items()}},
        )
    )


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


async def health_ok(app: App) -> bool:
    async with grpc.aio.insecure_channel(app.address) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5
        )
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def refused_calls(app: App, method: str, limit: str) -> float:
    service, name = method.split("/")
    return (
        app.metrics.registry.get_sample_value(
            "maos_rate_limited_total",
            {"grpc_service": f"maos.v1.{service}", "grpc_method": name, "limit": limit},
        )
        or 0
    )


async def test_over_the_rate_is_refused_changes_nothing_and_refills(slow: App) -> None:
    async with (
        Client(slow.address, token=await key_of(slow, "alice@example.com", "developer")) as alice,
        Client(slow.address, token=await key_of(slow, "bob@example.com", "developer")) as bob,
    ):
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
    records = await stored_audit(slow, principal="users/alice")
    denied = [
        (r["method"].rsplit("/", 1)[1], r["status_code"], r["reason"])
        for r in records
        if r["decision"] == "DENY"
    ]
    assert denied and set(denied) == {("SubmitTask", "RESOURCE_EXHAUSTED", RATE_LIMITED)}


async def test_an_agent_stream_counts_once(maos_home: Path) -> None:
    app = await limited_app(maos_home, rate=0.001, burst=2)  # no refill within the test
    worker = Worker(
        EchoAgent(), app.address, token=await key_of(app, "agent@example.com", "agent"), reconnect=False
    )
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
        records = await stored_audit(app, action="ListTasks")
        assert (
            sorted(r["status_code"] for r in records) == ["RESOURCE_EXHAUSTED"] * 2 + ["UNAUTHENTICATED"] * 3
        )
        assert all(r["peer"].startswith("ipv4:127.0.0.1:") for r in records)
    finally:
        await app.stop(grace=1.0)


# --- joining agents ------------------------------------------------------------


async def test_failed_joins_are_throttled_per_peer_like_failed_keys(maos_home: Path) -> None:
    """Bad join tokens (and none) count as failed authentications; valid and revoked ones are not throttled."""
    from tests.controlplane.access.test_join_tokens import join, refused, register, state, uses

    app = await limited_app(maos_home, failed_auth_rate=0.001, failed_auth_burst=3)
    try:
        async with Client(app.address, token=await key_of(app, "ops@example.com", "admin")) as admin:
            good = await admin.create_join_token(max_uses=5)
            revoked = await admin.create_join_token()
            await admin.revoke_join_token(revoked.join_token.name)
        before = await state(app)
        U, R = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED
        unknown = gw.ConnectRequest(register=register(join_token="zzzzzz." + "a" * 16))
        for message, reason in (
            (unknown, "ERROR_REASON_JOIN_TOKEN_NOT_FOUND"),
            (gw.ConnectRequest(register=register(join_token="garbage")), "ERROR_REASON_UNAUTHENTICATED"),
            (gw.ConnectRequest(register=register()), "ERROR_REASON_UNAUTHENTICATED"),
        ):
            await refused(app, message, U, reason)
        for message in (unknown, gw.ConnectRequest(register=register())):  # the address is now told to wait
            error = await refused(app, message, R, RATE_LIMITED)
            assert error.metadata == {"limit": FAILED_AUTH} and error.retry_delay > 0
        # A token on record but revoked stays UNAUTHENTICATED: its holder must stop, not retry.
        await refused(
            app,
            gw.ConnectRequest(register=register(join_token=revoked.token)),
            U,
            "ERROR_REASON_CREDENTIAL_REVOKED",
        )
        assert await state(app) == before
        registered, stream = await join(app, register(join_token=good.token))  # a valid token still joins
        await stream.close()
        assert registered.credential and await uses(app, good.join_token.name) == 1
        assert refused_calls(app, "AgentGateway/Connect", FAILED_AUTH) == 2
        records = await stored_audit(app, action="AgentGateway/Connect")
        assert (
            sorted(r["status_code"] for r in records if r["decision"] == "DENY")
            == ["RESOURCE_EXHAUSTED"] * 2 + ["UNAUTHENTICATED"] * 4
        )
    finally:
        await app.stop(grace=1.0)


async def test_streams_waiting_to_join_are_bounded_per_address(
    secured: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    from controlplane.api.admission import JOINING_STREAMS, AgentAdmission
    from tests.controlplane.access.test_access import fails
    from tests.controlplane.access.test_join_tokens import Stream, join, register, state

    monkeypatch.setattr(AgentAdmission, "max_joining_per_peer", 2)
    async with Client(secured.address, token=await key_of(secured, "ops@example.com", "admin")) as admin:
        token = (await admin.create_join_token()).token
    before = await state(secured)
    silent = [Stream(secured.address), Stream(secured.address)]  # no Register yet: they hold their places
    try:
        for stream in silent:
            await stream.call.wait_for_connection()

        async def third_refused() -> bool:
            extra = Stream(secured.address)
            try:
                error = await fails(
                    extra.status(), grpc.StatusCode.RESOURCE_EXHAUSTED, "ERROR_REASON_LIMIT_EXCEEDED"
                )
            except AssertionError:  # the silent streams' handlers may not have started yet
                return False
            finally:
                await extra.close()
            return error.metadata == {"limit": JOINING_STREAMS} and error.retry_delay > 0

        await wait_for(third_refused, 10, interval=0.05, message="a third stream without credentials refused")
        assert await state(secured) == before
    finally:
        for stream in silent:
            await stream.close()

    async def joins() -> bool:  # the places are free again once the silent streams are gone
        try:
            registered, stream = await join(secured, register(join_token=token))
        except MaosRpcError as exc:
            assert exc.code == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
            return False
        await stream.close()
        return bool(registered.credential)

    await wait_for(joins, 10, interval=0.05, message="a join once the places are free")


class Peer:
    """A ServicerContext's peer, for the admission's bookkeeping."""

    def __init__(self, peer: str):
        self._peer = peer

    def peer(self) -> str:
        return self._peer


def test_joining_places_per_address_and_in_all() -> None:
    from controlplane.api.admission import JOINING_STREAMS, AgentAdmission

    audited: list[tuple[Any, ...]] = []
    admission = AgentAdmission(
        None,
        None,  # type: ignore[arg-type]
        lambda *record, **extra: audited.append(record),
    )
    admission.max_joining_per_peer, admission.max_joining = 2, 3
    a, b, c = Peer("ipv4:10.0.0.1:1000"), Peer("ipv4:10.0.0.1:1001"), Peer("ipv4:10.0.0.2:1000")

    def enter(peer: str) -> None:
        with admission.joining_slot(Peer(peer)):
            pass

    def refused_admission() -> None:
        with admission.joining_slot(a):
            raise RuntimeError("refused")

    with admission.joining_slot(a), admission.joining_slot(b):  # one address, two ports
        with pytest.raises(ResourceExhausted) as per_peer:
            enter("ipv4:10.0.0.1:1002")
        assert per_peer.value.metadata == {"limit": JOINING_STREAMS}
        with admission.joining_slot(c), pytest.raises(ResourceExhausted):  # three in all
            enter("ipv4:10.0.0.3:1000")
    assert len(audited) == 2 and all(r[4] == "RESOURCE_EXHAUSTED" for r in audited)
    with pytest.raises(RuntimeError):  # a place is given back however the admission ends
        refused_admission()
    assert admission._joining.total() == 0
    with admission.joining_slot(a), admission.joining_slot(b), admission.joining_slot(c):
        pass


# --- refused credentials on record ----------------------------------------------


async def test_a_revoked_or_expired_key_is_unauthenticated_even_when_the_address_is_throttled(
    maos_home: Path,
) -> None:
    """So a worker with a revoked credential stops instead of retrying RESOURCE_EXHAUSTED for ever."""
    app = await limited_app(maos_home, failed_auth_rate=0.001, failed_auth_burst=1)
    worker = None
    runner = None
    try:
        revoked = await key_of(app, "agent@example.com", "agent")
        expired = await key_of(app, "other@example.com", "developer")
        app.access.api_keys[keys.parse(expired)]["expire_time"] = 1.0
        async with Client(app.address, token=await key_of(app, "ops@example.com", "admin")) as admin:
            await admin.revoke_api_key(keys.parse(revoked) or "")
        for attempt in range(2):  # the address uses its one failure, then is throttled
            async with Client(app.address, token=keys.generate()) as stranger:
                with pytest.raises(MaosRpcError) as failed:
                    await stranger.list_tasks()
            expected = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED)[attempt]
            assert failed.value.code == expected
        async with Client(app.address, token=expired) as client:
            with pytest.raises(MaosRpcError) as failed:
                await client.list_tasks()
        assert (failed.value.code, failed.value.reason) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "ERROR_REASON_CREDENTIAL_EXPIRED",
        )
        worker = Worker(EchoAgent(), app.address, token=revoked, max_backoff=0.05)
        runner = asyncio.get_running_loop().create_task(worker.run())
        with pytest.raises(MaosRpcError) as stopped:  # Worker.run() raises the SDK's typed errors
            await asyncio.wait_for(asyncio.shield(runner), 15)
        assert stopped.value.code == grpc.StatusCode.UNAUTHENTICATED
        assert stopped.value.reason == "ERROR_REASON_CREDENTIAL_REVOKED"
    finally:
        if worker is not None and runner is not None and not runner.done():
            await worker.shutdown(grace=0.1)
            runner.cancel()
        if runner is not None:
            await asyncio.gather(runner, return_exceptions=True)
        await app.stop(grace=1.0)


async def test_each_request_on_a_submit_stream_counts_against_the_principal_rate(slow: App) -> None:
    token = await key_of(slow, "dev@example.com", "developer")
    async with Client(slow.address, token=token) as client, client.submitter() as submitter:
        # bursts of 2: the stream's open takes one, the first submit the other, the second is refused
        first = await submitter.submit(description="one")
        with pytest.raises(ResourceExhaustedError) as refused:
            await submitter.submit(description="two")
        assert (
            refused.value.reason == RATE_LIMITED
            and refused.value.retry_delay
            and refused.value.retry_delay > 0
        )
        assert refused.value.metadata == {"limit": PRINCIPAL}
    assert first.name and await task_count(slow) == 1
