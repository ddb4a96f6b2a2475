"""A 529 storm on a Claude pool: the control plane paces every agent's calls, and says so.

A real ``maos start`` with five Claude agent processes against the Messages API test server. The
model plans four parts plus a synthesis; the first part's call starts a storm (every call answered
529 with ``retry-after: 1``) lasting three seconds. Each agent retrying on its own would send about
three calls a second between them; paced, the API sees the calls already in flight plus one test
call per retry-after, and the task still completes. The breaker is visible in ``maos status`` and
in ``/metrics`` while it happens.
"""

from __future__ import annotations

import json
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_cli_foreground import Foreground
from tests.harness.exposition import without_replica
from tests.harness.messages_api import MessagesAPIServer
from tests.harness.planning_api import is_planning, model_like
from tests.harness.server import free_port, wait_for

pytestmark = pytest.mark.slow

API_KEY = "sk-ant-test-key"
POOL = {"researcher": 1, "coder": 1, "analyst": 1, "tester": 1, "coordinator": 1}
PARTS = 4
STORM_SECONDS = 3.0
RETRY_AFTER = 1.0


@pytest.fixture
def api() -> Iterator[MessagesAPIServer]:
    with MessagesAPIServer(api_key=API_KEY, responder=model_like(parts=PARTS)) as server:
        server.rate_limit_headers = {
            "anthropic-ratelimit-requests-limit": "4000",
            "anthropic-ratelimit-requests-remaining": "3999",
        }
        yield server


@pytest.fixture
def keyed(tmp_path: Path, api: MessagesAPIServer) -> Iterator[Foreground]:
    fg = Foreground(tmp_path / "home")
    fg.env.update(
        {
            "ANTHROPIC_API_KEY": API_KEY,
            "MAOS_CLAUDE_BASE_URL": api.base_url,
            "MAOS_SYSTEM_MAX_AGENTS": str(sum(POOL.values())),
            "MAOS_SERVER_METRICS_PORT": str(free_port()),
        }
    )
    try:
        yield fg
    finally:
        fg.cleanup()


def metrics(fg: Foreground) -> dict[str, float]:
    """The ``maos_model_*`` samples of /metrics, by their line's name and labels."""
    port = fg.env["MAOS_SERVER_METRICS_PORT"]
    body = without_replica(
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    )
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("maos_model_")
    }


async def test_a_529_storm_is_paced_across_the_pool_and_shown(
    keyed: Foreground, api: MessagesAPIServer
) -> None:
    assert keyed.run("init").returncode == 0
    keyed.start("--agents", ",".join(f"{k}={v}" for k, v in POOL.items()))
    await keyed.wait_serving(POOL)
    api.overload_when(lambda request: not is_planning(request), STORM_SECONDS, retry_after=RETRY_AFTER)

    submitted = await keyed.cli("task", "submit", "Compare four cloud providers for a hospital")
    assert submitted.exit_code == 0, submitted.output
    task_id = submitted.stdout.strip()

    async def breaker_open() -> dict | None:
        shown = await keyed.cli("-o", "json", "status")
        assert shown.exit_code == 0, shown.output
        paced = json.loads(shown.stdout)["status"]["model_pacing"]
        return next((p for p in paced if p["breaker"] == "OPEN"), None)

    opened = await wait_for(
        breaker_open, STORM_SECONDS + 5, interval=0.05, message="the breaker in maos status"
    )
    assert opened["overloaded_answers"] >= 1 and "overloaded (529)" in opened["last_problem"]
    assert opened["requests_per_minute"] == 4000  # learned from the answers' headers
    text = await keyed.cli("status")
    assert "Model calls (paced across agents)" in text.stdout and "OPEN" in text.stdout
    monitor = await keyed.cli("monitor", "--once")
    assert monitor.exit_code == 0, monitor.output
    assert "Model calls:" in monitor.stdout and opened["model"] in monitor.stdout
    assert metrics(keyed)[f'maos_model_breaker_state{{model="{opened["model"]}"}}'] == 2

    waited = await keyed.cli("task", "wait", task_id, "--timeout", "90")
    assert waited.exit_code == 0, waited.output + keyed.output()
    shown = json.loads((await keyed.cli("-o", "json", "task", "show", task_id)).stdout)
    assert shown["task"]["status"] == "COMPLETED"

    storm = api.storm_answers
    # Paced: the calls already in flight when the storm began, then one test call per retry-after.
    assert len(storm) <= PARTS + STORM_SECONDS / RETRY_AFTER + 2, storm
    later = [t for t in storm if t - storm[0] > 0.5]  # after the first burst, test calls are spaced out
    assert all(b - a >= 0.8 * RETRY_AFTER for a, b in zip(later, later[1:], strict=False)), storm

    model = opened["model"]
    samples = await wait_for(
        lambda: _settled(keyed, model, len(storm)), 10, interval=0.1, message="every 529 counted in /metrics"
    )
    assert samples[f'maos_model_breaker_state{{model="{model}"}}'] == 1  # closed again
    assert samples[f'maos_model_permits_total{{model="{model}",outcome="held"}}'] >= 1
    assert samples["maos_model_permit_wait_seconds_count"] >= PARTS + 1
    after = json.loads((await keyed.cli("-o", "json", "status")).stdout)["status"]["model_pacing"]
    assert next(p for p in after if p["model"] == model)["breaker"] == "CLOSED"

    assert keyed.signal_and_wait(signal.SIGTERM) == 0, keyed.output()


def _settled(fg: Foreground, model: str, answers: int) -> dict[str, float] | None:
    samples = metrics(fg)
    counted = samples.get(f'maos_model_overloaded_answers_total{{model="{model}",status="529"}}', 0)
    closed = samples.get(f'maos_model_breaker_state{{model="{model}"}}') == 1
    return samples if counted == answers and closed else None
