"""Counting votes. Pure functions: no state, no I/O.

Strategies (``consensus.voting_strategy`` or the task's own):

* ``majority`` — each vote counts 1;
* ``weighted`` — each vote counts the voter's track record (reliability)
  times its confidence;
* ``unanimous`` — every vote must name the same candidate.

A candidate wins when its share of the (weighted) votes reaches the
threshold and no other candidate has as much.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

STRATEGIES = ("majority", "weighted", "unanimous")


@dataclass(frozen=True)
class Ballot:
    """One counted vote."""

    voter: str
    candidate_id: str
    confidence: float


@dataclass(frozen=True)
class Tally:
    """The result of counting one round."""

    reached: bool
    leader: str  # "" when there were no votes
    agreement: float  # the leader's share of the (weighted) votes, 0-1
    weights: dict[str, float]  # the weight each voter's vote got


def vote_weight(strategy: str, confidence: float, reliability: float) -> float:
    """The weight of one vote under ``strategy``."""
    if strategy == "weighted":
        return max(0.0, reliability) * max(0.0, min(1.0, confidence))
    return 1.0


def tally(
    strategy: str, threshold: float, ballots: Sequence[Ballot], reliability: Mapping[str, float]
) -> Tally:
    """Count a round of votes."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown voting strategy {strategy!r}")
    weights = {b.voter: vote_weight(strategy, b.confidence, reliability.get(b.voter, 0.5)) for b in ballots}
    totals: dict[str, float] = defaultdict(float)
    for ballot in ballots:
        totals[ballot.candidate_id] += weights[ballot.voter]
    total = sum(totals.values())
    if not ballots or total <= 0:
        return Tally(False, "", 0.0, weights)
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    leader, best = ranked[0]
    unique = len(ranked) == 1 or ranked[1][1] < best
    agreement = best / total
    reached = len(totals) == 1 if strategy == "unanimous" else unique and agreement >= threshold - 1e-09
    return Tally(reached, leader, round(agreement, 4), weights)
