"""Checkpoint create, verify and restore at scale (goals at 1,000,000 tasks: create < 10 s and restore
with verify < 30 s on SQLite, 2x that on PostgreSQL, in bounded memory).

Workload: N tasks (default 100,000), each with one queued subtask, bulk-inserted
straight into the ``tasks`` and ``subtasks`` tables (one template row of each,
varied by id, seq and description; executemany on SQLite, COPY with triggers
off on PostgreSQL, so the task counts are not kept for the seeded rows),
in a temporary SQLite file or a fresh PostgreSQL database. Then, each in a
process of its own that runs what the control plane's storage thread runs:
one checkpoint is taken (snapshot + encode + compress + checksum + store, in
chunks), verified (read + checksum + decode + compare with the database) and
restored (the same, then upsert the rows that differ). Between the take and the verify, one task in
ten is changed (its priority), so that the verify finds and the restore writes back a tenth of the
groups. Each phase prints its seconds and
the peak RSS of its process (the server's share of the work: its baseline is a
control plane process with nothing loaded, about 90 MiB).

    python -m benchmarks.checkpoints --tasks 1000000
    python -m benchmarks.checkpoints --tasks 1000000 --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from controlplane.domain.model import Subtask, SubtaskStatus, Task, TaskStatus  # noqa: E402
from controlplane.storage.sql import SqlBackendFactory, codec, schema  # noqa: E402

BATCH = 20_000


def seed(backend, n: int) -> None:
    """Bulk-insert ``n`` running tasks with one queued subtask each (not through the write path)."""
    task = codec.task_to_row(Task(id="t", seq=1, description="benchmark task @@", status=TaskStatus.RUNNING))
    sub = codec.subtask_to_row(
        Subtask(task_id="t", id="s1", title="work", instructions="do item @@", status=SubtaskStatus.QUEUED)
    )
    sub["ord"] = 0
    task_columns = [c.name for c in schema.tasks.columns]
    sub_columns = [c.name for c in schema.subtasks.columns]

    def task_rows(ids: range):
        for i in ids:
            row = {**task, "id": f"t{i:08d}", "seq": i + 1, "data": task["data"].replace("@@", str(i))}
            yield tuple(row.get(c) for c in task_columns)

    def sub_rows(ids: range):
        for i in ids:
            row = {**sub, "task_id": f"t{i:08d}", "ord": i, "data": sub["data"].replace("@@", str(i))}
            yield tuple(row.get(c) for c in sub_columns)

    pg = backend.kind == "postgresql"
    with backend.engine.begin() as conn:
        cursor = conn.connection.dbapi_connection.cursor()
        if pg:  # no per-row trigger (task counts) while seeding: they would take most of the time
            cursor.execute("SET LOCAL session_replication_role = replica")
        for start in range(0, n, BATCH):
            ids = range(start, min(start + BATCH, n))
            for table, columns, rows in (
                ("tasks", task_columns, task_rows(ids)),
                ("subtasks", sub_columns, sub_rows(ids)),
            ):
                if pg:
                    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                else:
                    marks = ", ".join("?" * len(columns))
                    cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        cursor.close()


def phase(name: str, url: str, checkpoint_id: str) -> None:
    """One phase in this process; prints a JSON line with its seconds and this process's peak RSS."""
    from controlplane.checkpoints import service

    backend = SqlBackendFactory().open(url)
    started, cpu = time.perf_counter(), time.process_time()
    out: dict[str, object] = {}
    if name == "create":
        record = service.take(backend, display_name="bench")
        out.update(id=record.id, size=record.size, compressed=record.compressed_size, tasks=record.task_count)
    else:
        record = backend.get_checkpoint(checkpoint_id)
        report = service.recover(backend, record, [], verify_only=name == "verify", requeue_later=False)
        out.update(changes=report.changes, applied=report.applied)
    out["seconds"] = time.perf_counter() - started
    out["cpu_seconds"] = time.process_time() - cpu
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    backend.close()
    print(json.dumps(out))


def run_phase(name: str, url: str, checkpoint_id: str = "") -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.checkpoints",
            "--phase",
            name,
            "--url",
            url,
            "--id",
            checkpoint_id,
        ],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent)),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument(
        "--database-url",
        default="",
        help="PostgreSQL server URL: a fresh database is made next to it (default: SQLite in a temporary folder).",
    )
    parser.add_argument("--phase", choices=("create", "verify", "restore"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--id", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phase(args.phase, args.url, args.id)
        return
    from benchmarks._common import fresh_database

    with contextlib.ExitStack() as stack:
        if args.database_url:
            url = stack.enter_context(fresh_database(args.database_url))
            url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        else:
            url = f"sqlite:///{Path(stack.enter_context(tempfile.TemporaryDirectory())) / 'bench.db'}"
        backend = SqlBackendFactory().open(url)
        backend.migrate()
        started = time.perf_counter()
        seed(backend, args.tasks)
        kind = backend.kind
        backend.close()
        print(
            f"workload: {args.tasks:,} tasks + {args.tasks:,} subtasks on {kind}, bulk-inserted into the "
            f"tables in {time.perf_counter() - started:.1f} s; each phase in its own process"
        )
        created = run_phase("create", url)
        backend = SqlBackendFactory().open(url)
        with backend.engine.begin() as conn:
            changed = conn.execute(
                text("UPDATE tasks SET priority = priority + 1 WHERE seq % 10 = 0")
            ).rowcount
        backend.close()
        print(
            f"create:  {created['seconds']:6.2f} s ({created['cpu_seconds']:.2f} s CPU)  peak RSS {created['peak_rss_mib']:.0f} MiB  "
            f"{created['size'] / 2**20:.0f} MiB -> {created['compressed'] / 2**20:.1f} MiB, "
            f"{created['tasks']:,} tasks; then {changed:,} tasks changed"
        )
        for name in ("verify", "restore"):
            done = run_phase(name, url, created["id"])
            print(
                f"{name + ':':8} {done['seconds']:6.2f} s ({done['cpu_seconds']:.2f} s CPU)  peak RSS {done['peak_rss_mib']:.0f} MiB  "
                f"changes {done['changes']}"
            )


if __name__ == "__main__":
    main()
