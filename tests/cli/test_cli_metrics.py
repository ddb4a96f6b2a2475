"""``maos metrics``, ``maos resources``, ``maos status --resources`` and ``maos monitor`` sampling, as the
guide writes them, through the real CLI and server; exports are parsed back."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controlplane.app import App
from maos_cli._errors import EXIT_INVALID_ARGUMENT, EXIT_THRESHOLD, EXIT_USAGE
from maos_cli.monitor import EXIT_INTERRUPTED
from tests.cli.conftest import Maos, stdout_lines
from tests.harness.server import make_settings, start_app, wait_for


@pytest.fixture
async def control_plane(maos_home: Path) -> AsyncIterator[App]:
    """A control plane sampling its metrics history every 0.1 s."""
    app = await start_app(make_settings(maos_home, **{"metrics.history.interval": 0.1}))
    try:
        yield app
    finally:
        await app.stop(grace=1.0)


async def _history_samples(maos: Maos, least: int) -> None:
    async def enough() -> bool:
        result = await maos("-o", "json", "metrics", "--timeframe", "1h")
        return result.exit_code == 0 and json.loads(result.stdout)["samples"] >= least

    await wait_for(enough, 15, interval=0.1, message=f"{least} history samples")


async def test_metrics_now_by_category(maos: Maos) -> None:
    assert (await maos("task", "submit", "Echo this", "--wait")).exit_code == 0
    result = await maos("metrics")  # System performance overview
    assert result.exit_code == 0, result.output
    lines = stdout_lines(result)
    assert lines[0].split() == ["CATEGORY", "NAME", "LABELS", "VALUE"]
    assert any(line.split()[:2] == ["tasks", "maos_tasks_submitted_total"] for line in lines)
    assert any(line.startswith("rpc") and "grpc_server_handled_total" in line for line in lines)
    for category in ("system", "tasks", "agents"):  # Detailed metrics by category
        rows = stdout_lines(await maos("metrics", "--category", category))[1:]
        assert rows and all(row.split()[0] == category for row in rows), (category, rows)
    samples = json.loads((await maos("-o", "json", "metrics", "--category", "tasks")).stdout)["samples"]
    assert {s["category"] for s in samples} == {"tasks"}

    bad = await maos("metrics", "--category", "disks")
    assert bad.exit_code == EXIT_USAGE
    assert "'disks' is not one of 'system', 'tasks', 'agents', 'rpc', 'storage'" in bad.stderr


async def test_history_timeframes(maos: Maos) -> None:
    await _history_samples(maos, 3)
    for timeframe in ("24h", "7d"):  # Historical metrics
        result = await maos("metrics", "--timeframe", timeframe)
        assert result.exit_code == 0, result.output
        lines = stdout_lines(result)
        assert "samples over" in lines[0] and "kept 7d" in lines[0]
        assert lines[1].split() == ["CATEGORY", "NAME", "LAST", "MIN", "AVG", "MAX", "TREND"]
        names = {line.split()[1] for line in lines[2:]}
        assert {
            "maos_cpu_percent",
            "maos_memory_bytes",
            "maos_tasks_running",
            "maos_agents_connected",
            "maos_rpc_calls_total",
            "maos_database_size_bytes",
        } <= names
    data = json.loads(
        (
            await maos("-o", "json", "metrics", "--timeframe", "1h", "--category", "agents", "--points", "2")
        ).stdout
    )
    assert {s["category"] for s in data["series"]} == {"agents"}
    assert all(1 <= len(s["points"]) <= 2 for s in data["series"])
    connected = next(s for s in data["series"] if s["name"] == "maos_agents_connected")
    assert (
        0 < connected["points"][-1]["value"] <= 1.0
    )  # averaged: the echo agent connected after the first sample
    fine = json.loads((await maos("-o", "json", "metrics", "--timeframe", "10s", "--points", "1000")).stdout)
    uptime = [p["value"] for s in fine["series"] if s["name"] == "maos_uptime_seconds" for p in s["points"]]
    assert len(uptime) == fine["samples"] and uptime == sorted(uptime)  # one point per sample, oldest first

    for timeframe, code, text in [
        ("8d", EXIT_INVALID_ARGUMENT, "is longer than the history kept (metrics.history.retention 604800 s)"),
        ("0", EXIT_INVALID_ARGUMENT, "timeframe must be more than 0"),
        ("1y", EXIT_USAGE, "'1y' is not a duration"),
        ("-2h", EXIT_USAGE, "is negative"),
    ]:
        bad = await maos("metrics", "--timeframe", timeframe)
        assert bad.exit_code == code, (timeframe, bad.output)
        assert text in bad.stderr, (timeframe, bad.stderr)


async def test_exports_parse_back(maos: Maos, tmp_path: Path) -> None:
    assert (await maos("task", "submit", "Echo this", "--wait")).exit_code == 0
    prom, js, table = tmp_path / "metrics.prom", tmp_path / "metrics.json", tmp_path / "metrics.csv"
    result = await maos("metrics", "--export", "prometheus", "--output", str(prom))
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and f"to {prom}" in result.stderr
    families = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    assert families["maos_tasks_submitted"].type == "counter"
    assert sum(s.value for s in families["maos_tasks_submitted"].samples if s.name.endswith("_total")) == 1
    assert families["maos_task_run_seconds"].type == "histogram"  # with its buckets, as /metrics serves it

    assert (await maos("metrics", "--export", "json", "--output", str(js))).exit_code == 0
    samples = json.loads(js.read_text())["samples"]
    assert any(s["name"] == "maos_tasks_submitted_total" and s["value"] == 1 for s in samples)
    assert (
        await maos("metrics", "--category", "rpc", "--export", "csv", "--output", str(table))
    ).exit_code == 0
    rows = list(csv.DictReader(table.open()))
    assert rows and {r["category"] for r in rows} == {"rpc"} and all(float(r["value"]) >= 0 for r in rows)

    await _history_samples(maos, 2)
    history = tmp_path / "history.prom"
    assert (
        await maos(
            "metrics",
            "--timeframe",
            "10s",
            "--points",
            "1000",
            "--export",
            "prometheus",
            "--output",
            str(history),
        )
    ).exit_code == 0
    parsed = {f.name: f for f in text_string_to_metric_families(history.read_text())}
    points = parsed["maos_uptime_seconds"].samples
    assert parsed["maos_uptime_seconds"].type == "gauge" and len(points) >= 2
    assert all(p.timestamp is not None for p in points) and [p.value for p in points] == sorted(
        p.value for p in points
    )
    assert parsed["maos_rpc_calls"].type == "counter"
    history_csv = tmp_path / "history.csv"
    assert (
        await maos("metrics", "--timeframe", "24h", "--export", "csv", "--output", str(history_csv))
    ).exit_code == 0
    assert {r["name"] for r in csv.DictReader(history_csv.open())} >= {
        "maos_cpu_percent",
        "maos_tasks_completed",
    }


async def test_output_and_export_coexist(maos: Maos, tmp_path: Path) -> None:
    as_json = await maos("metrics", "--output", "json")  # without --export, --output is the format
    assert as_json.exit_code == 0 and "samples" in json.loads(as_json.stdout)
    file_only = await maos("metrics", "--output", str(tmp_path / "m.json"))
    assert file_only.exit_code == EXIT_USAGE and "needs --export FORMAT" in file_only.stderr
    assert not (tmp_path / "m.json").exists()
    no_file = await maos("metrics", "--export", "json")
    assert no_file.exit_code == EXIT_USAGE and "--export json needs --output FILE" in no_file.stderr
    to_stdout = await maos("-o", "yaml", "metrics", "--export", "csv", "--output", "-")
    assert to_stdout.exit_code == 0 and to_stdout.stdout.startswith("category,name,labels,value")
    bad_format = await maos("metrics", "--export", "xml", "--output", "x")
    assert (
        bad_format.exit_code == EXIT_USAGE
        and "'xml' is not one of 'prometheus', 'json', 'csv'" in bad_format.stderr
    )


async def test_resources_and_status_resources(maos: Maos) -> None:
    result = await maos("resources")  # Resource utilization
    assert result.exit_code == 0, result.output
    lines = stdout_lines(result)
    assert lines[0].split()[:3] == ["PID", "PROCESS", "TYPE"]
    assert (
        lines[1].split()[0] == str(os.getpid()) and "control plane" in lines[1]
    )  # the server runs in this test
    assert any(line.startswith("Machine:") and "cores" in line for line in lines)
    assert any(line.startswith("Agent streams:") and line.endswith("1") for line in lines)
    data = json.loads((await maos("-o", "json", "resources")).stdout)
    cp = data["control_plane"]
    assert cp["pid"] == os.getpid() and cp["measured"] and int(cp["memory_bytes"]) > 10_000_000
    assert 0 <= cp["cpu_percent"] <= 100 and int(data["database_size_bytes"]) > 0
    assert data["host"]["cpu_count"] >= 1 and data["agent_streams"] == 1

    status = stdout_lines(await maos("status", "--resources"))  # Resource usage
    assert any(line.startswith("CPU:") and "% of" in line for line in status)
    assert any(line.startswith("Memory:") for line in status)
    assert any(line.startswith("Connections:") and "1 agent streams" in line for line in status)
    assert any(line.startswith("Database:") and "KiB" in line or "MiB" in line for line in status)


async def test_monitor_samples_and_exports(maos: Maos, tmp_path: Path) -> None:
    result = await maos("monitor", "--metric", "cpu,memory,tasks", "--interval", "0.2s", "--duration", "1s")
    assert result.exit_code == 0, result.output
    lines = stdout_lines(result)
    assert lines[0].split() == ["TIME", "CPU", "MEMORY", "TASKS"]
    assert 3 <= len(lines) - 1 <= 7
    assert all(row.split()[1].endswith("%") and row.split()[3] == "0" for row in lines[1:])

    out = tmp_path / "system_metrics.csv"
    result = await maos(
        "monitor", "--export", "csv", "--output", str(out), "--interval", "0.2s", "--duration", "0.5s"
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) >= 2 and set(rows[0]) == {"time", "cpu", "memory", "tasks", "agents", "crossed"}
    assert all(float(r["agents"]) == 1 and 0 <= float(r["memory"]) < 100 for r in rows)
    out_json = tmp_path / "system_metrics.json"
    result = await maos(
        "monitor",
        "--metric",
        "memory",
        "--export",
        "json",
        "--output",
        str(out_json),
        "--interval",
        "0.2s",
        "--duration",
        "0.3s",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    assert data["metrics"] == ["memory"] and len(data["samples"]) >= 2

    as_json = await maos(
        "-o", "json", "monitor", "--metric", "queue,connections", "--interval", "0.2s", "--duration", "0.2s"
    )
    first = json.loads(stdout_lines(as_json)[0])
    assert set(first) == {"time", "queue", "connections", "crossed"}


async def test_monitor_threshold_highlights_and_exits_non_zero(maos: Maos) -> None:
    crossed = await maos(
        "monitor", "--metric", "memory,cpu", "--threshold", "0", "--interval", "0.2s", "--duration", "0.4s"
    )
    assert crossed.exit_code == EXIT_THRESHOLD, crossed.output
    rows = stdout_lines(crossed)[1:]
    assert rows and all(row.split()[1].endswith("%!") for row in rows)  # NO_COLOR: marked with "!"
    assert "memory reached --threshold 0% in" in crossed.stderr
    calm = await maos(
        "monitor", "--metric", "memory,cpu", "--threshold", "100", "--interval", "0.2s", "--duration", "0.2s"
    )
    assert calm.exit_code == 0 and "!" not in calm.stdout


async def test_monitor_bad_inputs(maos: Maos) -> None:
    for args, text in [
        (("--metric", "disk"), "unknown 'disk'; known: cpu, memory, tasks, agents, queue, connections"),
        (("--interval", "0.05s"), "0.05 s is shorter than 0.2 s"),
        (("--metric", "tasks", "--threshold", "90"), "applies to cpu and memory"),
        (("--follow", "--metric", "cpu"), "use one or the other"),
        (("--threshold", "120"), "120.0 is not in the range 0<=x<=100"),
        (("--export", "csv"), "--export csv needs --output FILE"),
    ]:
        result = await maos("monitor", *args)
        assert result.exit_code == EXIT_USAGE, (args, result.output)
        assert text in result.stderr, (args, result.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["--metric", "cpu,memory,tasks"],
        ["--interval", "5s", "--duration", "5m"],
        ["--metric", "memory,cpu", "--threshold", "90"],
        ["--export", "csv", "--output", "system_metrics.csv"],
    ],
)
async def test_monitor_as_the_guide_writes_it_runs_until_interrupted(
    maos: Maos, tmp_path: Path, args: list[str]
) -> None:
    env = {k: v for k, v in {**os.environ, **maos.env()}.items() if v is not None}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from maos_cli.main import main; main()",
        "monitor",
        *args,
        env=env,
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        header = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
        assert header[0] == "TIME" and "CPU" in header and "MEMORY" in header
        row = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
        assert row[header.index("CPU")].endswith("%")  # the first sample comes at once
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 30) == EXIT_INTERRUPTED
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if "--export" in args:
        rows = list(csv.DictReader((tmp_path / "system_metrics.csv").open()))
        assert len(rows) >= 1 and float(rows[0]["agents"]) == 1
