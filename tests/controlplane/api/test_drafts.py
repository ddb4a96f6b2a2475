"""Task definitions (batch entries, template bodies) survive proto -> domain -> proto unchanged."""

from __future__ import annotations

from pathlib import Path

from agent_sdk.client import build_task
from controlplane.api.drafts import INPUT_FIELDS, draft_from_pb, draft_to_pb
from controlplane.config import load_settings


def test_every_input_field_round_trips(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, environ={})
    msg = build_task(
        "Analyze {topic}",
        task_type="analysis",
        priority="HIGH",
        max_agents=3,
        depends_on=["t0123456789abcdef"],
        require_consensus=True,
        consensus_threshold=0.75,
        timeout=90,
        context="ctx",
        constraints="rules",
        metadata={"k": "v"},
        max_retries=5,
        agent_type="researcher",
        initial_backoff=2,
        backoff_multiplier=3,
        max_backoff=60,
        review_rounds=2,
        approve_plan=True,
    )
    msg.budget.max_total_tokens = 1000
    msg.budget.max_cost_micros = 5
    back = draft_to_pb(draft_from_pb(msg, settings))
    assert {f.name for f, _ in back.ListFields()} == INPUT_FIELDS
    for name in INPUT_FIELDS - {"consensus"}:
        assert getattr(back, name) == getattr(msg, name), name
    assert back.consensus.required and back.consensus.threshold == 0.75
