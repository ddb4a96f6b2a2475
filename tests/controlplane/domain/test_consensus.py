"""Vote counting."""

from __future__ import annotations

import pytest

from controlplane.domain.consensus import Ballot, tally


def votes(*pairs: tuple[str, str], confidence: float = 1.0) -> list[Ballot]:
    return [Ballot(voter, choice, confidence) for voter, choice in pairs]


def test_majority_reaches_the_threshold() -> None:
    result = tally("majority", 0.75, votes(("a", "x"), ("b", "x"), ("c", "x"), ("d", "y")), {})
    assert result.reached and result.leader == "x" and result.agreement == 0.75


def test_majority_below_the_threshold_or_tied_fails() -> None:
    assert not tally("majority", 0.75, votes(("a", "x"), ("b", "x"), ("c", "y")), {}).reached
    tie = tally("majority", 0.5, votes(("a", "x"), ("b", "y")), {})
    assert not tie.reached and tie.agreement == 0.5


def test_weighted_by_track_record_and_confidence() -> None:
    ballots = [Ballot("veteran", "x", 1.0), Ballot("new1", "y", 1.0), Ballot("new2", "y", 0.5)]
    reliability = {"veteran": 0.95, "new1": 0.3, "new2": 0.3}
    result = tally("weighted", 0.6, ballots, reliability)
    assert result.leader == "x" and result.reached
    assert result.weights == {"veteran": 0.95, "new1": 0.3, "new2": 0.15}
    by_head_count = tally("majority", 0.6, ballots, reliability)  # one vote each: y wins 2 to 1
    assert by_head_count.reached and by_head_count.leader == "y"


def test_unanimous() -> None:
    assert tally("unanimous", 0.1, votes(("a", "x"), ("b", "x")), {}).reached
    assert not tally("unanimous", 0.1, votes(("a", "x"), ("b", "x"), ("c", "y")), {}).reached


def test_no_votes_and_unknown_strategy() -> None:
    assert tally("majority", 0.5, [], {}).reached is False
    with pytest.raises(ValueError):
        tally("loudest", 0.5, [], {})
