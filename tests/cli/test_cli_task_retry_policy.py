"""``maos task submit`` retry options, ``--format`` and the option ranges the server enforces.

Against a real control plane (tests.harness.server, SQLite); no agent is needed since the
tests only store and read tasks. Its test settings make the default backoff 0.05 s with a
0.5 s cap (tests.harness.server.TEST_OVERRIDES).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from controlplane.app import App
from maos_cli._errors import EXIT_INVALID_ARGUMENT, EXIT_USAGE
from tests.cli.conftest import Maos


@pytest.fixture
def cli(control_plane: App, maos_home: Path) -> Maos:
    """The CLI bound to a running control plane (no agents)."""
    return Maos(control_plane.address, maos_home)


async def stored_ids(cli: Maos) -> list[str]:
    result = await cli("task", "list", "--all", "-o", "json")
    assert result.exit_code == 0, result.output
    return [t["name"] for t in json.loads(result.stdout)["tasks"]]


async def shown(cli: Maos, task_id: str) -> dict:
    result = await cli("task", "show", task_id, "-o", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["task"]


async def test_submit_stores_the_retry_policy_given(cli: Maos) -> None:
    result = await cli(
        "task",
        "submit",
        "retry me",
        "--max-retries",
        "5",
        "--retry-backoff",
        "2s",
        "--retry-multiplier",
        "3",
        "--retry-max-backoff",
        "1m",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    task_id = json.loads(result.stdout)["task_id"]

    policy = (await shown(cli, task_id))["retry_policy"]
    assert policy == {
        "max_retries": 5,
        "initial_backoff": "2s",
        "backoff_multiplier": 3.0,
        "max_backoff": "60s",
    }

    table = await cli("task", "show", task_id)
    assert "Retry policy:  5 retries, after 2.0s, x3, at most 1m" in table.stdout


async def test_unset_retry_fields_take_the_server_defaults(cli: Maos) -> None:
    result = await cli(
        "task", "submit", "only the multiplier", "--retry-multiplier", "1.5", "--retry-max-backoff", "500ms"
    )
    assert result.exit_code == 0, result.output
    policy = (await shown(cli, result.stdout.strip()))["retry_policy"]
    # max_retries 3 and the 0.05 s initial backoff are the server's tasks.default_* settings.
    assert policy == {
        "max_retries": 3,
        "initial_backoff": "0.050s",
        "backoff_multiplier": 1.5,
        "max_backoff": "0.500s",
    }


async def test_a_cap_below_the_initial_backoff_is_refused_by_the_server(cli: Maos) -> None:
    result = await cli("task", "submit", "bad cap", "--retry-backoff", "2m", "--retry-max-backoff", "1m")
    assert result.exit_code == EXIT_INVALID_ARGUMENT, result.output
    assert "task.retry_policy.max_backoff: is 60 s, less than initial_backoff (120 s)" in result.stderr

    # The cap the caller did not give is the server's default (0.5 s here): the message says so by value.
    result = await cli("task", "submit", "bad default cap", "--retry-backoff", "2s")
    assert result.exit_code == EXIT_INVALID_ARGUMENT, result.output
    assert "task.retry_policy.max_backoff: is 0.5 s, less than initial_backoff (2 s)" in result.stderr
    assert await stored_ids(cli) == []


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--retry-backoff", "-1s"], "'-1s' is negative"),
        (["--retry-backoff", "2h"], "'2h' is 7200 s, more than the 3600 s allowed"),
        (["--retry-max-backoff", "-5"], "'-5' is negative"),
        (["--retry-max-backoff", "2d"], "'2d' is 172800 s, more than the 86400 s allowed"),
        (["--retry-backoff", "soon"], "'soon' is not a duration"),
        (["--retry-multiplier", "0.5"], "0.5 is not in the range 1<=x<=10"),
        (["--retry-multiplier", "11"], "11.0 is not in the range 1<=x<=10"),
        (["--max-retries", "101"], "101 is not in the range 0<=x<=100"),
        (["--max-agents", "0"], "0 is not in the range x>=1"),
    ],
)
async def test_bad_values_are_usage_errors_before_any_call(cli: Maos, args: list[str], error: str) -> None:
    result = await cli("task", "submit", "never sent", *args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert f"Invalid value for '{args[0]}': {error}" in result.stderr
    assert await stored_ids(cli) == []


async def test_format_is_an_alias_of_output(cli: Maos) -> None:
    result = await cli("task", "submit", "formatted", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data) == ["task_id"] and data["task_id"].startswith("t")
    task_id = data["task_id"]

    listed = await cli("task", "list", "--format", "yaml")  # on another command
    assert listed.exit_code == 0, listed.output
    assert [t["name"] for t in yaml.safe_load(listed.stdout)["tasks"]] == [f"tasks/{task_id}"]

    shown_json = await cli("--format", "json", "task", "show", task_id)  # the global option too
    assert shown_json.exit_code == 0, shown_json.output
    assert json.loads(shown_json.stdout)["task"]["name"] == f"tasks/{task_id}"

    bad = await cli("task", "list", "--format", "xml")
    assert bad.exit_code == EXIT_USAGE
    assert "Invalid value for '-o' / '--output' / '--format'" in bad.stderr


async def test_update_max_agents_range_matches_the_server(cli: Maos) -> None:
    task_id = (await cli("task", "submit", "to update", "--agent-type", "nobody")).stdout.strip()
    help_text = (await cli("task", "update", "--help")).stdout
    assert "[x>=1]" in help_text and "[x>=0]" not in help_text

    zero = await cli("task", "update", task_id, "--max-agents", "0")
    assert zero.exit_code == EXIT_USAGE
    assert "Invalid value for '--max-agents': 0 is not in the range x>=1" in zero.stderr

    one = await cli("task", "update", task_id, "--max-agents", "1", "-o", "json")
    assert one.exit_code == 0, one.output
    assert json.loads(one.stdout)["max_agents"] == 1
