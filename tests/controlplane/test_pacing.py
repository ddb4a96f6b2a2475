"""The pacer: permits in arrival order, held while the breaker is open, deferred past max_wait."""

from __future__ import annotations

import asyncio
import time

import pytest

from agent_sdk.pacing import ModelCallDeferred
from controlplane.config import load_settings
from controlplane.domain.model_limits import BreakerState, CallOutcome, RateLimits
from controlplane.errors import InvalidArgument
from controlplane.metrics import Metrics
from controlplane.pacing import MAX_MODELS, Deferred, Grant, Pacer
from tests.harness.server import make_settings, wait_for

MODEL = "claude-test"


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_the_fast_path_grants_at_once_and_counts() -> None:
    metrics = Metrics()
    pacer = Pacer(metrics=metrics)
    grant = await pacer.acquire(MODEL, 100, 200)
    assert isinstance(grant, Grant) and grant.waited == 0
    pacer.report(grant.permit_id, CallOutcome(200, input_tokens=90, output_tokens=20))
    (status,) = pacer.status()
    assert status.state == BreakerState.CLOSED and status.granted == 1 and status.in_flight == 0
    assert sample(metrics, "maos_model_permits_total", model=MODEL, outcome="granted") == 1
    assert sample(metrics, "maos_model_breaker_state", model=MODEL) == 1


async def test_an_overloaded_answer_holds_every_caller_then_lets_one_through() -> None:
    metrics = Metrics()
    pacer = Pacer(metrics=metrics)
    first = await pacer.acquire(MODEL)
    assert isinstance(first, Grant)
    reported = time.monotonic()
    pacer.report(first.permit_id, CallOutcome(529, retry_after=0.3))
    assert sample(metrics, "maos_model_breaker_state", model=MODEL) == 2
    assert sample(metrics, "maos_model_overloaded_answers_total", model=MODEL, status="529") == 1

    waiters = [asyncio.create_task(pacer.acquire(MODEL, max_wait=5, holder=f"a{i}")) for i in range(3)]
    await asyncio.sleep(0)
    asked = time.monotonic()  # every waiter has asked by now (a loaded machine may be late to ask)
    probe = await waiters[0]  # the first in line gets the test call once the hold ends
    assert isinstance(probe, Grant) and time.monotonic() - reported >= 0.29
    assert probe.waited >= 0.29 - (asked - reported)  # it waited for the rest of the hold
    assert not waiters[1].done() and pacer.status()[0].held == 2
    assert sample(metrics, "maos_model_calls_held", model=MODEL) == 2
    pacer.report(probe.permit_id, CallOutcome(200))  # recovered: two at once, then more
    second, third = await asyncio.gather(waiters[1], waiters[2])
    assert isinstance(second, Grant) and isinstance(third, Grant)
    assert pacer.status()[0].state == BreakerState.CLOSED and pacer.status()[0].in_flight_cap == 2
    assert sample(metrics, "maos_model_permits_total", model=MODEL, outcome="held") == 3
    assert sample(metrics, "maos_model_permit_wait_seconds_count") == 4


async def test_a_hold_longer_than_max_wait_is_deferred_with_the_time_left() -> None:
    pacer = Pacer()
    grant = await pacer.acquire(MODEL)
    pacer.report(grant.permit_id, CallOutcome(429, retry_after=30))
    answer = await pacer.acquire(MODEL, max_wait=0.05)
    assert isinstance(answer, Deferred) and 29 < answer.retry_after <= 30
    assert "rate limited (429)" in answer.reason
    model_pacer = pacer.model_pacer()  # the same, as the control plane's own calls see it
    with pytest.raises(ModelCallDeferred) as info:
        await model_pacer.permit(MODEL, max_wait=0.05)
    assert info.value.retryable and info.value.error_type == "ModelPaced" and info.value.retry_after > 29


async def test_rates_from_settings_pace_calls() -> None:
    now = [100.0]
    pacer = Pacer(
        {MODEL: RateLimits(requests_per_minute=600)}, clock=lambda: now[0]
    )  # 600 at once, then 10/s
    for _ in range(600):
        assert pacer.grant_now(MODEL) is not None
    assert pacer.grant_now(MODEL) is None
    deferred = await pacer.acquire(MODEL, max_wait=0)
    assert isinstance(deferred, Deferred) and deferred.retry_after == pytest.approx(0.1)
    assert "rate limits" in deferred.reason and pacer.status()[0].usage["requests"] == 1.0
    now[0] += 0.11
    assert isinstance(await pacer.acquire(MODEL, max_wait=0), Grant)


async def test_a_leaving_holder_frees_its_permits() -> None:
    pacer = Pacer()
    pacer.report((await pacer.acquire(MODEL)).permit_id, CallOutcome(529, retry_after=0.05))
    probe = await pacer.acquire(MODEL, max_wait=2, holder="agent-1")
    assert isinstance(probe, Grant)
    blocked = asyncio.create_task(pacer.acquire(MODEL, max_wait=5, holder="agent-2"))
    await wait_for(lambda: pacer.status()[0].held == 1, 3, message="the second call held")
    assert not blocked.done()  # the test call is out
    pacer.release_holder("agent-1")  # its agent left without reporting
    assert isinstance(await asyncio.wait_for(blocked, 3), Grant)


async def test_bad_model_names_are_refused_and_models_are_bounded() -> None:
    pacer = Pacer()
    for bad in ("", "x" * 101, "model with spaces", "../etc"):
        with pytest.raises(ValueError, match="model name"):
            await pacer.acquire(bad)
    for i in range(MAX_MODELS):
        await pacer.acquire(f"model-{i}")
    extra = await pacer.acquire("one-too-many")
    assert isinstance(extra, Grant)  # granted, unpaced
    assert len(pacer.status()) == MAX_MODELS


def test_settings_configure_the_pacer(tmp_path) -> None:
    settings = make_settings(
        tmp_path,
        **{
            "models.rate_limits": {MODEL: {"requests_per_minute": 50, "output_tokens_per_minute": 8000}},
            "models.breaker.failure_threshold": 2,
            "models.breaker.cooldown": "2s",
            "models.breaker.max_cooldown": "1m",
        },
    )
    pacer = Pacer.from_settings(settings)
    assert pacer.configured[MODEL] == RateLimits(50, 0, 8000)
    assert (pacer.policy.failure_threshold, pacer.policy.cooldown, pacer.policy.max_cooldown) == (
        2,
        2.0,
        60.0,
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({MODEL: {"requests_per_minut": 5}}, "unknown key 'requests_per_minut'"),
        ({MODEL: {"requests_per_minute": -1}}, "cannot be negative"),
        ({MODEL: 50}, "expected a mapping"),
        ({"bad model": {"requests_per_minute": 5}}, "is not a model name"),
        ("[1, 2]", "expected a mapping of model names"),
    ],
)
def test_bad_rate_limits_are_refused_naming_the_setting(tmp_path, value, problem) -> None:
    with pytest.raises(InvalidArgument, match="models.rate_limits") as info:
        make_settings(tmp_path, **{"models.rate_limits": value})
    assert problem in str(info.value)


def test_rate_limits_come_from_the_environment_as_yaml(tmp_path) -> None:
    settings = load_settings(
        home=tmp_path, environ={"MAOS_MODELS_RATE_LIMITS": "{claude-test: {requests_per_minute: 5}}"}
    )
    assert settings["models.rate_limits"] == {
        MODEL: {"requests_per_minute": 5, "input_tokens_per_minute": 0, "output_tokens_per_minute": 0}
    }


async def test_a_holder_reports_only_on_its_own_permits() -> None:
    pacer = Pacer()
    mine = await pacer.acquire(MODEL, holder="agent-1")
    pacer.report(mine.permit_id, CallOutcome(529, retry_after=30), holder="agent-2")  # not its permit
    (status,) = pacer.status()
    assert status.state == BreakerState.CLOSED and status.in_flight == 1
    pacer.report(mine.permit_id, CallOutcome(200), holder="agent-1")
    assert pacer.status()[0].in_flight == 0
