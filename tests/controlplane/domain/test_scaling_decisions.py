"""The autoscaling decision (controlplane.domain.scaling.decide): counts in, desired agents out."""

from controlplane.domain.scaling import Policy, TypeLimits, TypeLoad, backlog_share, decide

POLICY = Policy(queue_depth=2, wait_seconds=10.0, cooldown=30.0, up_step=1, down_step=1, max_agents=10)


def one(load: TypeLoad, lo: int = 0, hi: int = 4, policy: Policy = POLICY):
    return decide({"echo": load}, {"echo": TypeLimits(lo, hi)}, policy)["echo"]


def test_below_minimum_goes_straight_to_minimum_even_in_cooldown():
    d = one(TypeLoad(current=0, since_change=1.0), lo=2)
    assert d.desired == 2 and "minimum" in d.reason


def test_above_maximum_comes_down_to_maximum():
    assert one(TypeLoad(current=6), hi=4).desired == 4


def test_queue_depth_per_agent_scales_up_by_the_increment():
    d = one(TypeLoad(queued=4, current=2))
    assert d.desired == 3 and "4 queued" in d.reason
    assert one(TypeLoad(queued=3, current=2)).desired == 2  # under 2 per agent, nothing waited long
    assert one(TypeLoad(queued=8, current=1), policy=Policy(queue_depth=1, up_step=5)).desired == 4  # max


def test_no_agent_and_queued_work_scales_up():
    assert one(TypeLoad(queued=2, current=0)).desired == 1


def test_long_wait_scales_up_even_with_a_short_queue():
    d = one(TypeLoad(queued=1, oldest_wait=12.0, current=2))
    assert d.desired == 3 and "oldest queued 12s" in d.reason


def test_at_maximum_it_holds_and_says_so():
    d = one(TypeLoad(queued=20, current=4))
    assert d.desired == 4 and "maximum 4" in d.reason


def test_cooldown_holds_both_directions():
    assert one(TypeLoad(queued=9, current=1, since_change=5.0)).desired == 1
    assert one(TypeLoad(current=3, idle=3, since_change=5.0), lo=1).desired == 3
    assert one(TypeLoad(queued=9, current=1, since_change=31.0)).desired == 2


def test_idle_agents_scale_down_never_below_minimum_nor_more_than_idle():
    assert one(TypeLoad(current=3, idle=2), lo=1, policy=Policy(down_step=5)).desired == 1
    assert one(TypeLoad(current=3, idle=1), lo=0, policy=Policy(down_step=5)).desired == 2
    assert one(TypeLoad(current=1, idle=1), lo=1).desired == 1
    d = one(TypeLoad(current=2, idle=2), lo=0)
    assert d.desired == 1 and "idle" in d.reason


def test_queued_work_keeps_idle_agents():
    # Work it could take is queued (maybe not matchable right now): no scale-down.
    assert one(TypeLoad(queued=1, current=2, idle=2)).desired == 2


def test_steady_when_nothing_happens():
    d = one(TypeLoad(current=2))
    assert d.desired == 2 and d.reason == "steady"


def test_system_max_agents_caps_the_sum_oldest_wait_first():
    limits = {"a": TypeLimits(0, 5), "b": TypeLimits(0, 5), "c": TypeLimits(0, 5)}
    loads = {
        "a": TypeLoad(queued=9, oldest_wait=1.0, current=2),
        "b": TypeLoad(queued=9, oldest_wait=50.0, current=2),
        "c": TypeLoad(current=1),
    }
    out = decide(loads, limits, Policy(queue_depth=1, up_step=2, max_agents=6))
    assert out["b"].desired == 3  # the longest wait gets the one free place
    assert out["a"].desired == 2 and "system.max_agents" in out["a"].reason
    assert out["c"].desired == 1
    assert sum(d.desired for d in out.values()) <= 6


def test_types_without_load_are_decided_from_their_limits():
    out = decide({}, {"echo": TypeLimits(1, 3)}, POLICY)
    assert out["echo"].desired == 1


def test_backlog_shares_add_up_to_the_backlog_and_a_lone_task_moves_one_replica():
    replicas = ["r-b", "r-a", "r-c"]
    for unclaimed in (0, 1, 2, 3, 7, 100):
        shares = [backlog_share(unclaimed, replicas, r) for r in replicas]
        assert sum(shares) == unclaimed and max(shares) - min(shares) <= 1
    assert [backlog_share(1, replicas, r) for r in ("r-a", "r-b", "r-c")] == [1, 0, 0]
    assert backlog_share(7, ["alone"], "alone") == 7
    assert backlog_share(7, ["r-a", "r-b"], "r-b") == 3  # r-a gets the remainder: 4
    assert backlog_share(7, ["r-a"], "r-b") == 0  # a replica left out of the split (no room) gets none


def test_backlog_shares_come_in_chunks_of_the_depth_threshold():
    """With queue_depth q, a backlog under N*q still reaches the threshold on some replica."""
    replicas = ["r-a", "r-b", "r-c"]
    for unclaimed in range(0, 20):
        shares = [backlog_share(unclaimed, replicas, r, chunk=3) for r in replicas]
        assert sum(shares) == unclaimed, (unclaimed, shares)
        if unclaimed >= 3:
            assert shares[0] >= 3, (unclaimed, shares)
    assert [backlog_share(4, replicas, r, chunk=3) for r in replicas] == [3, 1, 0]
    assert [backlog_share(10, replicas, r, chunk=3) for r in replicas] == [4, 3, 3]
    assert [backlog_share(2, replicas, r, chunk=3) for r in replicas] == [2, 0, 0]


def test_a_share_of_the_unclaimed_backlog_counts_as_queued_work():
    # Nothing held: the share alone reaches the threshold (2 per agent).
    d = one(TypeLoad(queued=0, unclaimed=2, current=0))
    assert d.desired == 1 and "2 queued (2 unclaimed)" in d.reason
    # Held work plus the share: 1 + 3 = 4 for 2 agents scales up; held alone would not.
    assert one(TypeLoad(queued=1, current=2)).desired == 2
    assert one(TypeLoad(queued=1, unclaimed=3, current=2)).desired == 3
    # The backlog's wait counts only when this replica has a share of it.
    assert one(TypeLoad(queued=0, unclaimed=1, unclaimed_wait=12.0, current=2)).desired == 3
    assert one(TypeLoad(queued=0, unclaimed=0, unclaimed_wait=12.0, current=2)).desired == 2
    # A share keeps idle agents (work waits for them) and never goes past max or max_agents.
    assert one(TypeLoad(unclaimed=1, current=2, idle=2)).desired == 2
    assert one(TypeLoad(unclaimed=50, current=4), hi=4).desired == 4
    capped = decide(
        {"echo": TypeLoad(unclaimed=50, current=2), "other": TypeLoad(current=8)},
        {"echo": TypeLimits(0, 10), "other": TypeLimits(0, 10)},
        POLICY,
    )
    assert capped["echo"].desired == 2 and "max_agents" in capped["echo"].reason


def test_replicas_splitting_a_backlog_scale_up_for_it_once():
    replicas = ["r-1", "r-2"]
    policy = Policy(queue_depth=1, up_step=1, cooldown=0.0, max_agents=20)

    def desired(unclaimed: int) -> list[int]:
        return [
            one(
                TypeLoad(unclaimed=backlog_share(unclaimed, replicas, r), current=0), hi=10, policy=policy
            ).desired
            for r in replicas
        ]

    assert desired(1) == [1, 0]  # one task: one agent on one replica, not one on each
    assert desired(6) == [1, 1]  # each replica grows by the step for its own half
