"""A storage backend as its author writes it: the guide's wrapper, certified by the shipped contract suite.

The wrapper of docs/plugins.md (``observed+sqlite:///...``) is run through
``controlplane.storage.testing`` from a project of its own (its own conftest
and pytest run, as an author outside MAOS has them), and serves a real
control plane from an installed entry point: every row of the engine's state
it stores reaches its ``write``, though the SQLite backend it wraps could
commit on the event loop (``write_now``).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent_sdk.proto.maos.v1 import enums_pb2 as enums
from controlplane.storage.executor import fast_write
from tests.controlplane.api.test_task_service import submit, wait_status
from tests.harness.server import Stubs, make_settings, start_app, wait_for_agents
from tests.plugins.sites import ROOT, guide_files, install

MODULE = "observed_storage"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install(
        tmp_path_factory.mktemp("observed-site"),
        "maos-storage-observed",
        {"observed": MODULE},
        {f"{MODULE}.py": guide_files()[f"{MODULE}.py"]},
    )


@pytest.fixture
def on_path(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(ROOT)]))
    try:
        yield site
    finally:
        sys.modules.pop(MODULE, None)
        importlib.invalidate_caches()


@pytest.mark.slow
def test_the_contract_suite_certifies_it_from_the_authors_own_project(site: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    files = guide_files()
    for name in ("conftest.py", "test_observed_storage.py"):
        (project / name).write_text(files[name])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAOS_")}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)])
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " failed" not in done.stdout
    assert (
        "TestObservedBackend::test_round_trip_fully_populated"
        in subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    )


async def test_a_control_plane_on_it_writes_every_row_through_its_write(
    on_path: Path, maos_home: Path, agent_processes
) -> None:
    url = f"observed+sqlite:///{maos_home / 'maos.db'}"
    app = await start_app(make_settings(maos_home, **{"database.primary_url": url}))
    stubs = Stubs(app.address)
    try:
        backend = app.storage.backend
        assert type(backend).__name__ == "ObservedBackend"
        assert fast_write(backend.inner) is not None  # the wrapped SQLite backend could write on the loop
        assert fast_write(backend) is None  # but the wrapper's batches all go through its write
        agent_processes(app.address, "echo", home=maos_home)
        await wait_for_agents(app, 1, timeout=25)
        before = backend.rows_written
        task = await submit(stubs, "count me")
        done = await wait_status(
            stubs, task.name, enums.TASK_STATUS_COMPLETED, enums.TASK_STATUS_FAILED, timeout=20
        )
        assert done.status == enums.TASK_STATUS_COMPLETED, done
        await app.engine.committer.durable()
        # At least the task and its subtask, each in its latest state.
        assert backend.rows_written >= before + 2
        stored = await app.storage.call(backend.get_task, task.name.removeprefix("tasks/"))
        assert stored is not None and stored.status.name == "COMPLETED"
    finally:
        await stubs.close()
        await app.stop(grace=1.0)
