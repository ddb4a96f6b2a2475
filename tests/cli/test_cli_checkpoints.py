"""``maos checkpoint`` and ``maos recover`` against a real control plane."""

from __future__ import annotations

import json
from pathlib import Path

from maos_cli._errors import EXIT_FAILED_PRECONDITION, EXIT_INVALID_ARGUMENT, EXIT_NOT_FOUND
from tests.cli.conftest import Maos


async def test_create_list_show_export_import_recover(maos: Maos, tmp_path: Path) -> None:
    result = await maos("task", "submit", "What is 2+2?")
    assert result.exit_code == 0, result.output
    task_id = result.stdout.strip()
    result = await maos("checkpoint", "create", "--name", "nightly", "--description", "before upgrade")
    assert result.exit_code == 0, result.output
    ck = result.stdout.strip()
    assert ck.startswith("c")

    result = await maos("checkpoint", "list")
    assert result.exit_code == 0 and ck in result.stdout and "nightly" in result.stdout
    result = await maos("-o", "json", "checkpoint", "show", "latest")
    data = json.loads(result.stdout)
    assert data["name"] == f"checkpoints/{ck}" and int(data["task_count"]) >= 1 and len(data["sha256"]) == 64

    file = tmp_path / "ck.maos"
    result = await maos("checkpoint", "export", ck, "--output", str(file))
    assert result.exit_code == 0, result.output
    assert (await maos("checkpoint", "delete", ck)).exit_code == 0
    assert (await maos("checkpoint", "show", ck)).exit_code == EXIT_NOT_FOUND
    result = await maos("checkpoint", "import", str(file))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == ck

    result = await maos("recover", "--verify")
    assert result.exit_code == 0, result.output
    assert "integrity ok" in result.stdout and "not applied" in result.stdout and "tasks" in result.stdout
    result = await maos("-o", "json", "recover", "--checkpoint", ck, "--component", "tasks")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["applied"] is True
    assert (await maos("task", "show", task_id)).exit_code == 0


async def test_damaged_file_and_bad_inputs(maos: Maos, tmp_path: Path) -> None:
    ck = (await maos("checkpoint", "create")).stdout.strip()
    file = tmp_path / "ck.maos"
    assert (await maos("checkpoint", "export", ck, "--output", str(file))).exit_code == 0
    data = bytearray(file.read_bytes())
    data[-10] ^= 0xFF
    file.write_bytes(bytes(data))
    assert (await maos("checkpoint", "delete", ck)).exit_code == 0
    result = await maos("checkpoint", "import", str(file))
    assert result.exit_code == EXIT_FAILED_PRECONDITION and "corrupt" in result.stderr
    assert (await maos("recover", "--component", "bogus")).exit_code in (
        EXIT_NOT_FOUND,
        EXIT_INVALID_ARGUMENT,
    )
    assert (await maos("recover", "--checkpoint", "nope", "--verify")).exit_code == EXIT_NOT_FOUND
    not_a_file = tmp_path / "x"
    not_a_file.write_text("hello")
    assert (await maos("checkpoint", "import", str(not_a_file))).exit_code == EXIT_INVALID_ARGUMENT


async def test_offline_recovery_after_wipe(offline_maos: Maos, tmp_path: Path) -> None:
    """No server: seed a database, export, wipe it, then `maos recover --offline --file`."""
    from controlplane.api.servicers.checkpoints import checkpoint_to_pb
    from controlplane.checkpoints import service
    from controlplane.storage.base import WriteBatch
    from controlplane.storage.sql import SqlBackendFactory
    from controlplane.storage.testing import full_task, minimal_task
    from maos_cli.checkpoints import write_file

    home = offline_maos.home
    home.mkdir(parents=True)
    url = f"sqlite:///{home / 'maos.db'}"
    backend = SqlBackendFactory().open(url)
    backend.migrate()
    backend.write(WriteBatch(tasks=[full_task("ta", seq=1), minimal_task("tb", seq=2)]))
    record = service.take(backend)
    stored = backend.get_checkpoint(record.id, True)
    backend.close()
    file = tmp_path / "ck.maos"
    write_file(file, checkpoint_to_pb(stored), stored.payload)
    for name in ("maos.db", "maos.db-wal", "maos.db-shm"):
        (home / name).unlink(missing_ok=True)

    result = await offline_maos("-o", "json", "recover", "--offline", "--file", str(file))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["applied"] is True
    backend = SqlBackendFactory().open(url)
    try:
        assert [t.id for t in backend.get_tasks(["ta", "tb"])] == ["ta", "tb"]
        assert backend.get_task("ta") == full_task("ta", seq=1)
    finally:
        backend.close()
