"""A heartbeat's free slots change an agent's credit only when they say something new."""

from __future__ import annotations

from controlplane.domain.model import AgentInfo
from controlplane.scheduler.sessions import AgentSession


def session(max_concurrency: int = 2) -> AgentSession:
    return AgentSession(AgentInfo(id="a1", agent_type="worker", max_concurrency=max_concurrency))


def test_an_idle_agent_repeating_its_report_changes_nothing() -> None:
    s = session()
    assert not s.reports_change(2, 0)  # what it reported at register
    s.report_free(2, 0)
    assert s.reported_free == 2 and s.free == 2


def test_fewer_or_more_free_slots_are_a_change() -> None:
    s = session()
    assert s.reports_change(1, 0)
    s.report_free(1, 0)
    assert s.reported_free == 1 and not s.reports_change(1, 0)
    assert s.reports_change(2, 0)


def test_work_sent_after_the_heartbeat_was_written_still_counts_as_taken() -> None:
    s = session()
    s.running.add(("t1", "s1"))  # assigned, not yet acknowledged by this heartbeat
    s.assigned()
    assert s.reported_free == 1
    assert not s.reports_change(2, 0)  # 2 free less the one in flight: still 1
    assert s.reports_change(2, 1)  # it ran it already and still has 2 free: credit came back
    s.report_free(2, 1)
    assert s.reported_free == 2
