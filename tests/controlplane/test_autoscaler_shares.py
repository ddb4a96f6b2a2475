"""The autoscaler's share of the unclaimed backlog (Autoscaler._shares): which replicas split it.

The registry and the backlog are small stand-ins holding the rows and counts a real registry and
backlog would return; the split itself is the domain's (controlplane.domain.scaling.backlog_share).
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from controlplane.autoscaler import Autoscaler
from controlplane.domain.scaling import Policy, TypeLoad
from controlplane.replicas.registry import ReplicaView
from controlplane.storage.replicas import ReplicaRow
from tests.harness.server import make_settings


class Backlog:
    def __init__(self, counts: dict[str, int]):
        self.counts = counts

    def for_type(self, name: str, capabilities: frozenset[str], wall: float) -> tuple[int, float]:
        return self.counts.get(name, 0), 3.0


class Registry:
    def __init__(self, replica: str, views: list[ReplicaView] | Exception):
        self.replica = replica
        self.views = views
        self.details = dict

    async def replicas(self) -> list[ReplicaView]:
        if isinstance(self.views, Exception):
            raise self.views
        return self.views


def view(replica: str, lost: bool = False, **details: Any) -> ReplicaView:
    return ReplicaView(ReplicaRow(replica, "", "", 0.0, 0.0, details), lost=lost, this=False)


def autoscaler(tmp_path: Path, registry: Registry, counts: dict[str, int], depth: int = 1) -> Autoscaler:
    settings = make_settings(
        tmp_path,
        **{"scaling.types": {"echo": {"min": 0, "max": 4}, "sleep": {"min": 0, "max": 4}}},
        **{"scaling.queue_depth_threshold": depth},
    )
    scaler = Autoscaler(SimpleNamespace(), SimpleNamespace(), settings)
    scaler.attach(
        SimpleNamespace(
            backlog=Backlog(counts), replica=registry.replica, replicas=registry.replicas, details=dict
        )
    )
    scaler.registry = registry
    return scaler


async def test_lost_peers_and_peers_not_autoscaling_the_type_get_no_share(tmp_path: Path) -> None:
    views = [
        view("r-a", autoscaling=["echo", "sleep"]),
        view("r-b", lost=True, autoscaling=["echo", "sleep"]),  # lost: out of the split
        view("r-c", autoscaling=["sleep"]),  # does not autoscale echo
        view("r-d", autoscaling=["echo", "sleep"]),
    ]
    shares = {}
    for this in ("r-a", "r-c", "r-d"):
        scaler = autoscaler(tmp_path, Registry(this, views), {"echo": 5, "sleep": 6})
        shares[this] = await scaler._shares(0.0)
    assert shares["r-a"]["echo"] == (5, 3, 3.0)  # echo split between r-a and r-d: 3 + 2
    assert shares["r-d"]["echo"] == (5, 2, 3.0)
    assert [shares[r]["sleep"][1] for r in ("r-a", "r-c", "r-d")] == [2, 2, 2]
    # A replica whose own row was not read yet counts itself in: r-a, r-d and r-e split echo.
    new = await autoscaler(tmp_path, Registry("r-e", views), {"echo": 5})._shares(0.0)
    assert new["echo"] == (5, 1, 3.0)


async def test_a_registry_that_cannot_be_read_gives_no_share_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = Registry("r-a", ConnectionError("database away"))
    scaler = autoscaler(tmp_path, registry, {"echo": 5})
    with caplog.at_level(logging.WARNING, logger="controlplane.autoscaler"):
        for _ in range(3):
            assert (await scaler._shares(0.0))["echo"] == (5, 0, 3.0)
        registry.views = [view("r-a", autoscaling=["echo"])]
        assert (await scaler._shares(0.0))["echo"] == (5, 5, 3.0)
    messages = [record.getMessage() for record in caplog.records]
    assert sum("while the replicas cannot be read" in m for m in messages) == 1, messages
    assert sum("can be read again" in m for m in messages) == 1, messages


async def test_a_replica_without_room_leaves_the_backlog_to_one_with_room(tmp_path: Path) -> None:
    """A backlog of 1 goes to a replica that can add an agent, not to the lowest id at its max."""
    # r-a (lowest id) is at its maximum of echo; r-b can add one.
    views = [
        view("r-a", autoscaling=["echo"], scaling_room=[]),
        view("r-b", autoscaling=["echo"], scaling_room=["echo"]),
    ]
    a = autoscaler(tmp_path, Registry("r-a", views), {"echo": 1})
    b = autoscaler(tmp_path, Registry("r-b", views), {"echo": 1})
    full = {"echo": TypeLoad(current=4), "sleep": TypeLoad()}
    a._update_room(full, a.policy, 0.0)
    b._update_room({"echo": TypeLoad(current=1), "sleep": TypeLoad()}, b.policy, 0.0)
    assert a.registry_details() == {"autoscaling": ["echo", "sleep"], "scaling_room": ["sleep"]}
    assert [(await s._shares(0.0))["echo"][1] for s in (a, b)] == [0, 1]
    # At system.max_agents, or just after a failed launch, a replica has no room either.
    a._update_room({"echo": TypeLoad(current=1), "sleep": TypeLoad()}, Policy(max_agents=1), 0.0)
    assert "echo" not in a._room
    a._launch_failed["echo"] = 100.0
    a._update_room({"echo": TypeLoad(current=1), "sleep": TypeLoad()}, a.policy, 110.0)
    assert "echo" not in a._room
    # When no replica has room, the backlog is still split (counted once across replicas).
    views[1] = view("r-b", autoscaling=["echo"], scaling_room=[])
    assert (await a._shares(0.0))["echo"][1] == 1


async def test_a_backlog_under_replicas_times_the_depth_threshold_reaches_it_somewhere(
    tmp_path: Path,
) -> None:
    views = [view(r, autoscaling=["echo"]) for r in ("r-a", "r-b", "r-c")]
    for backlog in (1, 2, 3, 5, 7, 12):
        shares = [
            (await autoscaler(tmp_path, Registry(r, views), {"echo": backlog}, depth=3)._shares(0.0))["echo"][
                1
            ]
            for r in ("r-a", "r-b", "r-c")
        ]
        assert sum(shares) == backlog, (backlog, shares)
        if backlog >= 3:
            assert max(shares) >= 3, (backlog, shares)  # some replica reaches the threshold


async def test_the_status_shows_the_backlog_and_the_share_of_one_decision(tmp_path: Path) -> None:
    """UNCLAIMED and SHARE come from the same step: a later count does not show beside an older share."""
    registry = Registry(
        "r-a", [view("r-a", autoscaling=["echo", "sleep"]), view("r-b", autoscaling=["echo", "sleep"])]
    )
    scaler = autoscaler(tmp_path, registry, {"echo": 4})
    scaler.engine = SimpleNamespace(queued_demand=dict, connected=list)  # decides and exports only
    await scaler.step()
    scaler.backlog.counts["echo"] = 40  # counted again after the decision
    [echo] = [row for row in scaler.snapshot() if row.agent_type == "echo"]
    assert (echo.unclaimed, echo.unclaimed_share) == (4, 2)
