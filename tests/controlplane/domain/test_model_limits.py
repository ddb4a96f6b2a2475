"""The pacing rules of one model: token buckets, the breaker's states, the gradual recovery."""

from __future__ import annotations

import pytest

from controlplane.domain.model_limits import (
    RAMP_END,
    BreakerPolicy,
    BreakerState,
    CallOutcome,
    ModelPacing,
    RateLimits,
)

OK = CallOutcome(200)


def pacing(limits: RateLimits | None = None, **policy: float) -> ModelPacing:
    return ModelPacing("claude-test", limits or RateLimits(), BreakerPolicy(**policy), now=0.0)


def take(p: ModelPacing, now: float, permit: str, inp: int = 0, out: int = 0) -> None:
    decision = p.decide(now, inp, out)
    assert decision.granted, decision
    p.grant(now, permit, inp, out)


def test_without_limits_every_call_goes() -> None:
    p = pacing()
    for i in range(100):
        take(p, 0.0, f"p{i}")
    assert p.status(0.0).in_flight == 100


def test_the_request_rate_spaces_calls_out() -> None:
    p = pacing(RateLimits(requests_per_minute=60))  # one a second, a burst of 60
    for i in range(60):
        take(p, 0.0, f"p{i}")
    decision = p.decide(0.0, 0, 0)
    assert not decision.granted and decision.wait == pytest.approx(1.0)
    assert p.decide(1.0, 0, 0).granted


def test_output_tokens_are_reserved_then_given_back() -> None:
    p = pacing(RateLimits(output_tokens_per_minute=10_000))
    take(p, 0.0, "a", out=8000)
    assert not p.decide(0.0, 0, 4000).granted  # 2000 left
    p.report(0.0, "a", CallOutcome(200, output_tokens=500))  # 7500 come back
    assert p.decide(0.0, 0, 4000).granted


def test_a_call_larger_than_a_minute_waits_for_a_full_bucket_only() -> None:
    p = pacing(RateLimits(input_tokens_per_minute=1000))
    take(p, 0.0, "a", inp=5000)  # counted as the whole minute, not refused for ever
    decision = p.decide(0.0, 5000, 0)
    assert decision.wait == pytest.approx(60.0)


def test_headers_teach_the_limits_and_lower_what_is_left() -> None:
    p = pacing(RateLimits(requests_per_minute=1000))
    take(p, 0.0, "a")
    p.report(
        0.0,
        "a",
        CallOutcome(
            200,
            headers={
                "anthropic-ratelimit-requests-limit": "50",
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-output-tokens-limit": "8000",
            },
        ),
    )
    assert p.limits() == RateLimits(50, 0, 8000)  # the lower of settings and the API's
    assert not p.decide(0.0, 0, 0).granted  # none remaining: wait for the refill
    assert p.decide(60 / 50, 0, 0).granted


def test_a_529_opens_the_breaker_for_the_retry_after_then_one_call_tests_the_api() -> None:
    p = pacing()
    take(p, 0.0, "a")
    take(p, 0.0, "b")
    p.report(0.1, "a", CallOutcome(529, retry_after=2.0))
    assert p.state == BreakerState.OPEN
    decision = p.decide(1.0, 0, 0)
    assert not decision.granted and decision.wait == pytest.approx(1.1)
    assert "overloaded (529)" in decision.reason
    p.report(1.5, "b", CallOutcome(529, retry_after=0.5))  # a call in flight: never shortens the hold
    assert p.decide(2.0, 0, 0).wait == pytest.approx(0.1)
    take(p, 2.1, "probe")
    assert p.state == BreakerState.HALF_OPEN
    assert p.decide(2.1, 0, 0).wait is None  # others wait for the test call's outcome
    p.report(2.5, "probe", OK)
    assert p.state == BreakerState.CLOSED


def test_recovery_is_gradual_and_a_failure_while_recovering_opens_again() -> None:
    p = pacing()
    p.report(0.0, "x", CallOutcome(429, retry_after=1.0))
    take(p, 1.0, "probe")
    p.report(1.0, "probe", OK)
    cap = p.window
    assert cap == 2
    take(p, 1.0, "a")
    take(p, 1.0, "b")
    assert not p.decide(1.0, 0, 0).granted  # at most 2 in flight
    p.report(1.0, "a", OK)
    assert p.window == 4
    while p.window is not None:
        take(p, 1.0, "n")
        p.report(1.0, "n", OK)
    assert p.status(1.0).in_flight_cap == 0 and p.last_problem == ""
    assert RAMP_END >= 8
    p.report(1.0, "b", CallOutcome(abandoned=True))
    # a fresh storm: the hold without retry-after is the cool-down, doubled each time
    p.report(2.0, "y", CallOutcome(503))
    assert p.state == BreakerState.CLOSED  # below the failure threshold
    p.report(2.0, "y", CallOutcome(0))
    p.report(2.0, "y", CallOutcome(500))
    assert p.state == BreakerState.OPEN and p.open_until == pytest.approx(7.0)
    take(p, 7.0, "probe")
    p.report(7.0, "probe", CallOutcome(500))
    assert p.state == BreakerState.OPEN and p.open_until == pytest.approx(17.0)


def test_client_errors_and_abandoned_calls_do_not_move_the_breaker() -> None:
    p = pacing(failure_threshold=1)
    for status in (400, 401, 404, 413):
        take(p, 0.0, "a")
        p.report(0.0, "a", CallOutcome(status))
    take(p, 0.0, "b")
    p.report(0.0, "b", CallOutcome(abandoned=True))
    assert p.state == BreakerState.CLOSED and not p.permits


def test_the_cool_down_is_capped() -> None:
    p = pacing(cooldown=5.0, max_cooldown=12.0)
    now = 0.0
    for _ in range(5):
        p.report(now, "x", CallOutcome(529))
        now = p.open_until
        p.decide(now, 0, 0)
    assert p.cooldown == 12.0


def test_calls_from_before_the_storm_do_not_stall_the_test_call() -> None:
    p = pacing()
    take(p, 0.0, "long-stream")
    p.report(0.0, "x", CallOutcome(529, retry_after=1.0))
    take(p, 1.0, "probe")
    assert p.status(1.0).in_flight == 2


def test_permits_of_vanished_callers_expire() -> None:
    p = pacing()
    p.report(0.0, "x", CallOutcome(529, retry_after=1.0))
    take(p, 1.0, "probe")  # never reported
    assert not p.decide(2.0, 0, 0).granted
    assert p.decide(10_000.0, 0, 0).granted


def test_status_shows_an_expired_hold_as_half_open() -> None:
    p = pacing()
    p.report(0.0, "x", CallOutcome(529, retry_after=3.0))
    shown = p.status(1.0)
    assert shown.state == BreakerState.OPEN and shown.reopens_in == pytest.approx(2.0)
    assert shown.overloaded_answers == 1 and "529" in shown.last_problem
    assert p.status(4.0).state == BreakerState.HALF_OPEN
