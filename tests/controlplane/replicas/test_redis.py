"""Redis for real: the connection at start, the health component, and the wake-up buses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from agent_sdk.proto.maos.v1 import system_service_pb2 as system_pb
from benchmarks.replicas import measure
from controlplane.app import build_app
from controlplane.errors import Unavailable
from controlplane.replicas.wakeups import PostgresWakeupBus, RedisWakeupBus
from tests.harness.server import Stubs, free_port, make_settings, start_app, wait_for

DEAD_REDIS = "redis://127.0.0.1:1/0"


async def test_a_dead_redis_url_stops_the_start_saying_what_to_do(maos_home: Path) -> None:
    with pytest.raises(Unavailable) as caught:
        build_app(make_settings(maos_home, **{"redis.url": DEAD_REDIS}))
    text = caught.value.message
    assert "cannot reach Redis at redis.url redis://127.0.0.1:1/0" in text
    assert "Start Redis or fix redis.url" in text and "leave redis.url empty" in text
    assert not (maos_home / "maos.db").exists()  # refused before the database was touched


def test_maos_start_with_a_dead_redis_exits_6(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MAOS_HOME": str(tmp_path / "home"),
        "MAOS_REDIS_URL": DEAD_REDIS,
        "MAOS_AGENTS_POOL": "",
        "MAOS_SERVER_METRICS_PORT": "0",
        "MAOS_SERVER_HTTP_PORT": "0",
        "MAOS_SERVER_DASHBOARD_PORT": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "maos_cli.main", "start", "--address", f"127.0.0.1:{free_port()}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 6, done.stderr
    assert "cannot reach Redis at redis.url redis://127.0.0.1:1/0" in done.stderr


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of this test alone (so the test can stop it)."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        yield f"redis://127.0.0.1:{port}/0", server
    finally:
        server.kill()
        server.wait(timeout=10)


async def test_health_reports_redis_truthfully(maos_home: Path, redis_url: str, private_redis) -> None:
    url, server = private_redis
    import redis

    def answers() -> bool:
        try:
            return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    await wait_for(answers, timeout=10, message="the private Redis to answer")
    app = await start_app(make_settings(maos_home, **{"redis.url": url}))
    stubs = Stubs(app.address)
    try:
        health = await stubs.system.GetHealth(system_pb.GetHealthRequest(components=["redis"]))
        [component] = health.components
        assert (component.state, component.message) == (enums.COMPONENT_STATE_HEALTHY, "reachable")
        server.kill()
        server.wait(timeout=10)

        async def unhealthy() -> system_pb.ComponentHealth | None:
            reply = await stubs.system.GetHealth(system_pb.GetHealthRequest(components=["redis"]), timeout=10)
            return reply if reply.components[0].state == enums.COMPONENT_STATE_UNHEALTHY else None

        reply = await wait_for(unhealthy, timeout=15, interval=0.2, message="redis reported unhealthy")
        assert reply.state == enums.COMPONENT_STATE_UNHEALTHY
        assert "127.0.0.1" in reply.components[0].message
    finally:
        await stubs.close()
        await app.stop(grace=1.0)


async def test_without_redis_the_component_is_disabled(maos_home: Path) -> None:
    app = await start_app(make_settings(maos_home))
    stubs = Stubs(app.address)
    try:
        health = await stubs.system.GetHealth(system_pb.GetHealthRequest(components=["redis"]))
        assert health.components[0].state == enums.COMPONENT_STATE_DISABLED
    finally:
        await stubs.close()
        await app.stop(grace=1.0)


@pytest.fixture(params=["redis", "postgres"])
async def two_buses(request: pytest.FixtureRequest, redis_namespace: str):
    """Two wake-up buses of one kind, each on its own connections (as two replicas have)."""
    if request.param == "redis":
        import redis.asyncio as aioredis

        clients = [aioredis.Redis.from_url(request.getfixturevalue("redis_url")) for _ in range(2)]
        buses = [RedisWakeupBus(c, redis_namespace) for c in clients]
    else:
        url = request.getfixturevalue("postgres_url")
        clients = []
        buses = [PostgresWakeupBus(url, "maos_test_") for _ in range(2)]
    yield buses
    for bus in buses:
        await bus.close()
    for client in clients:
        await client.aclose()


async def test_a_wake_up_published_on_one_bus_reaches_the_other(two_buses) -> None:
    one, other = two_buses
    got: asyncio.Queue[str] = asyncio.Queue()
    other.subscribe("submit", got.put_nowait)
    other.subscribe("cancel", lambda payload: got.put_nowait(f"cancel {payload}"))
    await other.start()
    await one.start()
    await one.publish("submit", "tasks/t1")
    assert await asyncio.wait_for(got.get(), 5) == "tasks/t1"
    await one.publish("cancel", "")
    assert await asyncio.wait_for(got.get(), 5) == "cancel "
    await one.publish("nobody_listens", "x")  # no subscriber: nothing arrives
    await one.publish("submit", "tasks/t2")
    assert await asyncio.wait_for(got.get(), 5) == "tasks/t2"
    with pytest.raises(ValueError, match="topic 'Bad topic!'"):
        await one.publish("Bad topic!")
    with pytest.raises(ValueError, match="payload is 4001 bytes; the limit is 4000"):
        await one.publish("submit", "x" * 4001)


async def test_wake_ups_cross_processes_in_milliseconds(redis_url: str, postgres_url: str) -> None:
    for kind, url in (("redis", redis_url), ("postgres", postgres_url)):
        latencies = await measure(kind, url, 40, warmup=5)
        assert len(latencies) == 40
        assert 0 < sorted(latencies)[20] < 250, (kind, latencies)  # the median, far below a poll interval
