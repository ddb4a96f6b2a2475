"""Checkpoint create and restore for 100,000 tasks (goals: create < 2 s, restore < 5 s).

Workload: N tasks (default 100,000), each with one subtask, written straight
through the SQLite storage backend in a temporary directory; then one
checkpoint is taken (snapshot + encode + compress + checksum + store) and
restored (verify + compare + upsert every row), as the control plane does.

    python -m benchmarks.checkpoints [--tasks 100000] [--url sqlite:///...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from controlplane.checkpoints import service
from controlplane.domain.model import Subtask, SubtaskStatus, Task, TaskStatus
from controlplane.storage.base import WriteBatch
from controlplane.storage.sql import SqlBackendFactory


def seed(backend, n: int) -> None:
    """Write ``n`` tasks with one queued subtask each, in batches of 10,000."""
    for start in range(0, n, 10_000):
        ids = range(start, min(start + 10_000, n))
        backend.write(
            WriteBatch(
                tasks=[
                    Task(
                        id=f"t{i:08d}",
                        seq=i + 1,
                        description=f"benchmark task {i}",
                        status=TaskStatus.RUNNING,
                    )
                    for i in ids
                ],
                subtasks=[
                    Subtask(
                        task_id=f"t{i:08d}",
                        id="s1",
                        title="work",
                        instructions=f"do item {i}",
                        status=SubtaskStatus.QUEUED,
                    )
                    for i in ids
                ],
            )
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument(
        "--url", default=None, help="Database URL (default: SQLite in a temporary directory)."
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        backend = SqlBackendFactory().open(args.url or f"sqlite:///{Path(tmp) / 'bench.db'}")
        backend.migrate()
        started = time.perf_counter()
        seed(backend, args.tasks)
        print(
            f"workload: {args.tasks:,} tasks + {args.tasks:,} subtasks on {backend.kind} "
            f"(seeded in {time.perf_counter() - started:.2f} s)"
        )

        started = time.perf_counter()
        record = service.take(backend, display_name="bench")
        create = time.perf_counter() - started
        print(
            f"create:  {create:.2f} s  (goal < 2 s)  {record.size / 2**20:.1f} MiB -> "
            f"{record.compressed_size / 2**20:.1f} MiB, {record.task_count:,} tasks"
        )

        stored = backend.get_checkpoint(record.id, True)
        started = time.perf_counter()
        report = service.recover(backend, stored, [], verify_only=False, requeue_later=False)
        restore = time.perf_counter() - started
        print(f"restore: {restore:.2f} s  (goal < 5 s)  verify + compare + upsert; changes {report.changes}")
        backend.close()


if __name__ == "__main__":
    main()
