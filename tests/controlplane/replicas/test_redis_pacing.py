"""The model pacer's state in Redis: two replicas pace one model's buckets and breaker together."""

from __future__ import annotations

import time

import pytest
import redis

from controlplane.domain.model_limits import BreakerPolicy, BreakerState, CallOutcome, RateLimits
from controlplane.pacing import Grant, Pacer
from controlplane.replicas.redis_pacing import RedisPacingStore

MODEL = "claude-sonnet-4-6"


def _pacer(redis_url: str, prefix: str, replica: str, rpm: int = 2) -> Pacer:
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=1)
    return Pacer(
        {MODEL: RateLimits(requests_per_minute=rpm)},
        BreakerPolicy(failure_threshold=3, cooldown=30, max_cooldown=60),
        store=RedisPacingStore(client, prefix),
        id_prefix=replica,
    )


def test_two_replicas_share_the_rate(redis_url: str, redis_namespace: str) -> None:
    a, b = _pacer(redis_url, redis_namespace, "a"), _pacer(redis_url, redis_namespace, "b")
    assert a.clock is time.time  # shared state: the wall clock
    first, second = a.grant_now(MODEL, holder="x"), b.grant_now(MODEL, holder="y")
    assert isinstance(first, Grant) and isinstance(second, Grant)
    assert first.permit_id != second.permit_id  # unique across replicas
    assert a.grant_now(MODEL) is None and b.grant_now(MODEL) is None  # 2 a minute, spent on two replicas
    [status] = b.status()
    assert (status.model, status.in_flight, status.granted) == (MODEL, 2, 2)
    b.report(first.permit_id, CallOutcome(200), model=MODEL)  # b reports a's permit: one less in flight
    assert a.status()[0].in_flight == 1


def test_a_529_on_one_replica_opens_the_breaker_on_the_other(redis_url: str, redis_namespace: str) -> None:
    a, b = _pacer(redis_url, redis_namespace, "a", 100), _pacer(redis_url, redis_namespace, "b", 100)
    permit = a.grant_now(MODEL, holder="x")
    assert isinstance(permit, Grant)
    a.report(permit.permit_id, CallOutcome(529, retry_after=30))
    [seen] = b.status()
    assert seen.state == BreakerState.OPEN and 29 < seen.reopens_in <= 30
    assert "overloaded (529)" in seen.last_problem
    assert b.grant_now(MODEL) is None  # b holds its calls too


async def test_concurrent_grants_never_exceed_the_rate(redis_url: str, redis_namespace: str) -> None:
    pacers = [_pacer(redis_url, redis_namespace, str(i), rpm=10) for i in range(4)]
    granted = [g for _ in range(10) for p in pacers if (g := p.grant_now(MODEL)) is not None]
    assert len(granted) == 10 and len({g.permit_id for g in granted}) == 10


def test_without_redis_a_replica_paces_on_its_own(caplog: pytest.LogCaptureFixture) -> None:
    dead = _pacer("redis://127.0.0.1:1/0", "maos:", "a", rpm=1)
    assert isinstance(dead.grant_now(MODEL), Grant)
    assert dead.grant_now(MODEL) is None  # its own bucket of 1 a minute
    assert "paces on its own meanwhile" in caplog.text
    dead.store.client = None  # Redis is not tried again for a while (not one timeout per call)
    assert dead.grant_now(MODEL) is None and dead.status()[0].granted == 1


class _LostAnswer:
    """A Redis client whose transactions are applied but whose answer is lost (a timeout)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def __getattr__(self, name: str) -> object:
        return getattr(self.client, name)

    def pipeline(self, transaction: bool = True) -> object:
        pipe = self.client.pipeline(transaction=transaction)
        execute = pipe.execute

        def applied_then_timeout(*args: object, **kwargs: object) -> object:
            change = pipe.explicit_transaction  # the WATCH/MULTI of a change (creating the state answers)
            answer = execute(*args, **kwargs)
            if change:
                raise redis.TimeoutError("answer lost")
            return answer

        pipe.execute = applied_then_timeout  # type: ignore[method-assign]
        return pipe


def test_a_change_whose_answer_is_lost_is_applied_once_here(redis_url: str, redis_namespace: str) -> None:
    pacer = _pacer(redis_url, redis_namespace, "a", rpm=2)
    store = pacer.store
    assert isinstance(store, RedisPacingStore)
    store.client = _LostAnswer(store.client)
    assert isinstance(pacer.grant_now(MODEL), Grant)  # Redis took it; the answer was lost
    local = store._local[MODEL]
    assert local.granted == 1 and len(local.permits) == 1  # not twice on this replica's copy
    assert isinstance(pacer.grant_now(MODEL), Grant)  # Redis is away now: the second of 2 a minute
    assert pacer.grant_now(MODEL) is None
