"""The hint a ``work`` wake-up carries: who gave tasks up, the best of them, what their steps need."""

from __future__ import annotations

import json

import pytest

from controlplane.scheduler.work_hints import PAYLOAD_LIMIT, WorkHint


def test_a_hint_survives_its_payload() -> None:
    hint = WorkHint(origin="replica-a")
    hint.add(2, 1000.0, [("echo", "")])
    hint.add(2, 900.0, [("coder", "python")])
    hint.add(4, 1200.0, [])
    got = WorkHint.decode(hint.encode())
    assert got.origin == "replica-a"
    assert got.oldest == {2: 900.0, 4: 1200.0}
    assert got.needs == {("echo", ""), ("coder", "python")}
    assert got.best(120.0) == min(900.0 - 2 * 120.0, 1200.0 - 4 * 120.0)  # the ready queue's order


def test_who_could_take_the_tasks() -> None:
    hint = WorkHint(origin="a")
    hint.add(2, 1.0, [("echo", "")])
    assert hint.could_take([("echo", frozenset(), False)])
    assert not hint.could_take([("sleep", frozenset(), False)])
    assert not hint.could_take([])
    hint.add(2, 2.0, None)  # a task any agent may take (not planned yet)
    assert hint.could_take([("sleep", frozenset(), False)])


@pytest.mark.parametrize(
    "payload", ["", "not json", "[1, 2]", '{"oldest": {"x": 1}}', '{"needs": [1]}', "null"]
)
def test_an_empty_or_unreadable_payload_means_anything(payload: str) -> None:
    hint = WorkHint.decode(payload)
    assert hint.origin == "" and hint.best(120.0) is None
    assert hint.could_take([("any-type", frozenset(), False)])


def test_a_payload_stays_under_the_limit() -> None:
    hint = WorkHint(origin="a")
    hint.add(1, 5.0, [(f"type-{i}", "capability" * 5) for i in range(200)])
    payload = hint.encode()
    assert len(payload.encode()) <= PAYLOAD_LIMIT
    got = WorkHint.decode(payload)
    assert got.needs is None and got.oldest == {1: 5.0}  # the needs are left out: anything
    huge = WorkHint(origin="x" * 5000)
    huge.add(1, 5.0, [])
    assert len(huge.encode().encode()) <= PAYLOAD_LIMIT
    assert json.loads(huge.encode())["from"]


def test_the_tasks_given_up_are_named_while_they_fit_then_the_first_that_fit() -> None:
    hint = WorkHint(origin="a", ids=["t1", "t2"])
    hint.add(2, 1.0, [("echo", "")])
    assert WorkHint.decode(hint.encode()).ids == ["t1", "t2"]
    many = WorkHint(origin="a", ids=[f"t{i:024d}" for i in range(200)])
    many.add(2, 1.0, [("echo", "")])
    encoded = many.encode()
    got = WorkHint.decode(encoded)
    assert len(encoded.encode()) <= PAYLOAD_LIMIT
    assert 100 < len(got.ids) < 200 and got.ids == many.ids[: len(got.ids)]  # the first that fit
    assert got.needs == {("echo", "")}  # needs kept
    crowded = WorkHint(origin="a", ids=["t1"], needs={(f"type-{i:04d}", "") for i in range(400)})
    got = WorkHint.decode(crowded.encode())  # the needs alone overflow: nothing named, anything needed
    assert got.ids == [] and got.needs is None
    assert WorkHint.decode('{"from": "a", "ids": 7}').ids == []  # unreadable: not named (searched for)
