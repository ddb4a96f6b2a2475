"""The SQLAlchemy storage backend on SQLite and PostgreSQL: the storage contract, plus its own details."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pluggy
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from controlplane import hookspecs
from controlplane.config import load_settings
from controlplane.domain.model import AgentInfo, Subtask, Task, TaskStatus
from controlplane.errors import AlreadyExists, Unavailable
from controlplane.storage.base import IdempotencyRecord, StorageBackendFactory, TaskQuery, WriteBatch
from controlplane.storage.executor import StorageExecutor
from controlplane.storage.sql import SqlBackend, SqlBackendFactory, codec, plugin, raw_writes, schema, wal
from controlplane.storage.sql.backend import translate_errors
from controlplane.storage.sql.migrations import SCRIPT_LOCATION, alembic_config
from controlplane.storage.sql.wal import WalCheckpointer
from controlplane.storage.testing import (
    StorageContract,
    full_agent,
    full_subtask,
    full_task,
    minimal_agent,
    minimal_subtask,
    minimal_task,
)
from controlplane.storage.testing_capabilities import (
    AccessContract,
    AuditContract,
    CheckpointContract,
    JoinTokenContract,
)

UNREACHABLE_POSTGRES = "postgresql://postgres@127.0.0.1:1/maos?connect_timeout=2"


# --- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_url: str) -> str:
    """The session's PostgreSQL database, migrated once."""
    store = SqlBackendFactory().open(postgres_url)
    try:
        store.migrate()
    finally:
        store.close()
    return postgres_url


def _truncate_all(store: SqlBackend) -> None:
    """Empty every table of the schema (alembic_version is not one of them)."""
    names = ", ".join(table.name for table in schema.ALL_TABLES)
    with store.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names}"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlBackend]:
    """A migrated, empty backend: a fresh SQLite file, or the truncated session PostgreSQL database."""
    if request.param == "sqlite":
        store = SqlBackendFactory().open(f"sqlite:///{tmp_path / 'maos.db'}")
        store.migrate()
    else:
        store = SqlBackendFactory().open(request.getfixturevalue("migrated_postgres_url"))
        _truncate_all(store)
    yield store
    store.close()


@pytest.fixture
def postgres_backend(migrated_postgres_url: str) -> Iterator[SqlBackend]:
    """A migrated, empty PostgreSQL backend."""
    store = SqlBackendFactory().open(migrated_postgres_url)
    _truncate_all(store)
    yield store
    store.close()


def _url(store: SqlBackend) -> str:
    return store.engine.url.render_as_string(hide_password=False)


# --- the contract --------------------------------------------------------------


class TestSqlStorageContract(
    StorageContract, AccessContract, JoinTokenContract, CheckpointContract, AuditContract
):
    """The storage contract and that of every optional capability the backend offers, on SQLite and on PostgreSQL."""


# --- codec ---------------------------------------------------------------------

_SAMPLES: list[tuple[str, Callable[[], Any], Callable[[Any], dict[str, Any]], Callable[[Any], Any]]] = [
    ("full_task", full_task, codec.task_to_row, codec.task_from_row),
    ("minimal_task", minimal_task, codec.task_to_row, codec.task_from_row),
    ("full_subtask", full_subtask, codec.subtask_to_row, codec.subtask_from_row),
    ("minimal_subtask", minimal_subtask, codec.subtask_to_row, codec.subtask_from_row),
    ("full_agent", full_agent, codec.agent_to_row, codec.agent_from_row),
    ("minimal_agent", minimal_agent, codec.agent_to_row, codec.agent_from_row),
    (
        "idempotency",
        lambda: IdempotencyRecord("p", "CreateTask", "r", "h", "tasks/t", 1.5),
        codec.idempotency_to_row,
        codec.idempotency_from_row,
    ),
]


@pytest.mark.parametrize(
    ("make", "to_row", "from_row"), [s[1:] for s in _SAMPLES], ids=[s[0] for s in _SAMPLES]
)
def test_codec_round_trip(
    make: Callable[[], Any], to_row: Callable[[Any], dict[str, Any]], from_row: Callable[[Any], Any]
) -> None:
    original = make()
    row = to_row(original)
    assert from_row(row) == original
    assert to_row(from_row(row)) == row  # encoding is deterministic


@pytest.mark.parametrize(
    ("make", "cls"),
    [(full_task, Task), (full_subtask, Subtask), (full_agent, AgentInfo)],
    ids=["task", "subtask", "agent"],
)
def test_full_samples_set_every_field(make: Callable[[], Any], cls: type) -> None:
    sample = make()
    for field in dataclasses.fields(cls):
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            continue  # required: no default to differ from
        assert getattr(sample, field.name) != default, f"{cls.__name__}.{field.name} is left at its default"


def test_rows_have_exactly_the_table_columns() -> None:
    # claimed_by is the writing replica's (set by the backend, see storage/sql/claims.py), like a subtask's ord
    assert set(codec.task_to_row(full_task())) | {"claimed_by"} == set(schema.tasks.columns.keys())
    assert set(codec.subtask_to_row(full_subtask())) | {"ord"} == set(schema.subtasks.columns.keys())
    assert set(codec.agent_to_row(full_agent())) == set(schema.agents.columns.keys())
    record = IdempotencyRecord("p", "m", "r", "h", "x", 1.0)
    assert set(codec.idempotency_to_row(record)) == set(schema.idempotency.columns.keys())


def test_task_row_columns_and_json() -> None:
    task = full_task(seq=7)
    row = codec.task_to_row(task)
    assert (row["id"], row["seq"], row["owner"], row["batch"]) == (task.id, 7, "alice", "batch-1")
    assert (row["status"], row["priority"]) == (3, 3) and type(row["status"]) is int
    data = json.loads(row["data"])
    assert "seq" not in data and "status" not in data  # columns are not duplicated in the JSON
    assert data["plan"]["subtasks"][1]["kind"] == 2
    assert data["failure"]["subtask"] == "merge"


def test_subtask_binary_encoding() -> None:
    subtask = full_subtask()
    row = codec.subtask_to_row(subtask)
    assert row["checkpoint"] == subtask.checkpoint
    data = json.loads(row["data"])
    assert "checkpoint" not in data
    assert base64.b64decode(data["artifacts"][0]["content"]) == bytes(range(256))


def test_decoding_tolerates_added_and_removed_fields() -> None:
    row = codec.task_to_row(full_task())
    data = json.loads(row["data"])
    del data["output"], data["usage"]["model_calls"]
    data["field_from_the_future"] = 1
    data["consensus"]["knob_from_the_future"] = True
    task = codec.task_from_row({**row, "data": json.dumps(data)})
    assert task.output == "" and task.usage.model_calls == 0
    assert task.usage.input_tokens == 11 and task.consensus.threshold == 0.75


# --- error translation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (OperationalError("SELECT 1", {}, Exception("connection refused")), Unavailable),
        (IntegrityError("INSERT", {}, Exception("duplicate key")), AlreadyExists),
        (DBAPIError("SELECT 1", {}, Exception("server closed"), connection_invalidated=True), Unavailable),
        (ProgrammingError("SELEC 1", {}, Exception("syntax error")), ProgrammingError),
        (ValueError("not a database error"), ValueError),
    ],
    ids=["operational", "integrity", "invalidated", "programming", "other"],
)
def test_translate_errors(raised: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected) as info, translate_errors():
        raise raised
    if expected is Unavailable:
        assert info.value.reason == "ERROR_REASON_STORAGE_UNAVAILABLE"
        assert info.value.__cause__ is raised


def test_unreachable_postgres_is_unavailable() -> None:
    store = SqlBackendFactory().open(UNREACHABLE_POSTGRES)
    try:
        with pytest.raises(Unavailable) as info:
            store.ping()
        assert info.value.reason == "ERROR_REASON_STORAGE_UNAVAILABLE"
        with pytest.raises(Unavailable):
            store.write(WriteBatch(tasks=[minimal_task()]))
        with pytest.raises(Unavailable):
            store.get_task("t")
    finally:
        store.close()


def test_duplicate_seq_raises_already_exists_and_writes_nothing(backend: SqlBackend) -> None:
    backend.write(WriteBatch(tasks=[minimal_task("a", seq=1)]))
    batch = WriteBatch(
        tasks=[minimal_task("b", seq=2), minimal_task("c", seq=1)],
        subtasks=[minimal_subtask("b", "s1")],
        agents=[minimal_agent()],
    )
    with pytest.raises(AlreadyExists):
        backend.write(batch)
    assert backend.get_tasks(["b", "c"]) == []
    assert backend.get_subtasks("b") == []
    assert backend.list_agents() == []


# --- behaviour and performance -------------------------------------------------


def test_write_throughput(backend: SqlBackend, record_property: Callable[[str, object], None]) -> None:
    tasks = [minimal_task(f"t{i}", seq=i + 1, description="d" * 80) for i in range(10_000)]
    subtasks = [minimal_subtask(f"t{i}", "s1", instructions="i" * 80) for i in range(10_000)]
    started = time.perf_counter()
    backend.write(WriteBatch(tasks=tasks, subtasks=subtasks))
    elapsed = time.perf_counter() - started
    record_property(f"write_10k_tasks_10k_subtasks_{backend.kind}_s", round(elapsed, 3))
    assert backend.next_task_seq() == 10_000
    assert len(backend.load_unfinished()[1]) == 10_000
    assert elapsed < (3.0 if backend.kind == "sqlite" else 10.0)


def test_duplicates_within_a_batch_keep_the_last(backend: SqlBackend) -> None:
    batch = WriteBatch(
        tasks=[minimal_task(output="old"), minimal_task(output="new")],
        subtasks=[minimal_subtask(attempt=1), minimal_subtask(attempt=2)],
        agents=[minimal_agent(pid=1), minimal_agent(pid=2)],
    )
    backend.write(batch)
    task = backend.get_task("task-min")
    assert task is not None and task.output == "new"
    assert [s.attempt for s in backend.get_subtasks("task-min")] == [2]
    assert [a.pid for a in backend.list_agents()] == [2]


def test_a_tasks_immutable_columns_are_written_once(backend: SqlBackend) -> None:
    """Later writes update a task's state but leave what was fixed at acceptance (and its index entries) alone."""
    first = full_task()
    backend.write(WriteBatch(tasks=[first]))
    later = dataclasses.replace(
        first,
        status=TaskStatus.COMPLETED,
        output="done",
        owner="someone-else",
        seq=first.seq + 100,
        task_type="other",
        create_time=1.0,
        batch="b-other",
    )
    backend.write(WriteBatch(tasks=[later]))
    stored = backend.get_task(first.id)
    assert stored is not None
    assert (stored.status, stored.output) == (TaskStatus.COMPLETED, "done")
    assert {c: getattr(stored, c) for c in schema.TASK_IMMUTABLE_COLUMNS} == {
        c: getattr(first, c) for c in schema.TASK_IMMUTABLE_COLUMNS
    }


def test_get_tasks_with_many_ids(backend: SqlBackend) -> None:
    tasks = [minimal_task(f"t{i:04d}", seq=i + 1) for i in range(1200)]
    backend.write(WriteBatch(tasks=tasks))
    wanted = [t.id for t in reversed(tasks)] + ["missing"]
    assert backend.get_tasks(wanted) == list(reversed(tasks))


def test_next_incarnation_is_atomic_across_connections(backend: SqlBackend) -> None:
    stores = [SqlBackendFactory().open(_url(backend)) for _ in range(4)]
    try:
        with ThreadPoolExecutor(max_workers=len(stores)) as pool:
            runs = pool.map(lambda store: [store.next_incarnation() for _ in range(25)], stores)
            values = [value for run in runs for value in run]
    finally:
        for store in stores:
            store.close()
    assert sorted(values) == list(range(1, 101))


# The SQLite-only deadline index of migration 0021 is an expression index, which reflection skips.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_schema_matches_migrations(backend: SqlBackend) -> None:
    with backend.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), schema.metadata) == []


def test_migrated_to_head(backend: SqlBackend) -> None:
    with backend.engine.connect() as conn:
        head = ScriptDirectory.from_config(alembic_config(conn)).get_current_head()
        current = MigrationContext.configure(conn).get_current_revision()
    assert head == current
    assert head == sorted(p.stem.split("_")[0] for p in (SCRIPT_LOCATION / "versions").glob("0*.py"))[-1]
    assert (SCRIPT_LOCATION / "script.py.mako").is_file()


# --- SQLite --------------------------------------------------------------------


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dirs" / "maos.db"
    store = SqlBackendFactory().open(f"sqlite:///{path}")
    try:
        assert path.parent.is_dir()  # created by open()
        store.migrate()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    finally:
        store.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_sqlite_commits_leave_checkpoints_to_the_checkpointer(tmp_path: Path) -> None:
    store = SqlBackendFactory().open(f"sqlite:///{tmp_path / 'maos.db'}")
    try:
        store.migrate()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == wal.AUTOCHECKPOINT_FRAMES
    finally:
        store.close()


def _sqlite_store(tmp_path: Path) -> SqlBackend:
    store = SqlBackendFactory().open(f"sqlite:///{tmp_path / 'maos.db'}")
    store.migrate()
    return store


def test_write_now_commits_a_batch_on_the_calling_thread(tmp_path: Path) -> None:
    store = _sqlite_store(tmp_path)
    try:
        task = dataclasses.replace(full_task(), id="task-now", seq=99)
        assert store.write_now(
            WriteBatch(
                tasks=[task],
                subtasks=[dataclasses.replace(full_subtask(), task_id="task-now")],
                audit=[{"time": 1.0, "principal": "users/a", "method": "/m"}],
            )
        )
        assert store.get_task("task-now") == task
        assert [s.id for s in store.get_subtasks("task-now")] == [full_subtask().id]
        assert [r["method"] for r in store.list_audit(limit=10)] == ["/m"]
    finally:
        store.close()


def test_write_now_on_a_locked_database_writes_nothing_and_says_so_at_once(tmp_path: Path) -> None:
    store = _sqlite_store(tmp_path)
    store.write(WriteBatch(tasks=[minimal_task()]))
    other = sqlite3.connect(tmp_path / "maos.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        task = dataclasses.replace(full_task(), id="task-now", seq=99)
        started = time.monotonic()
        assert store.write_now(WriteBatch(tasks=[task])) is False
        assert time.monotonic() - started < 1.0  # not the 5 s busy timeout
        other.execute("ROLLBACK")
        assert store.get_task("task-now") is None
        assert store.write_now(WriteBatch(tasks=[task])) is True  # the connection is usable again
        assert store.get_task("task-now") == task
    finally:
        other.close()
        store.close()


def test_write_now_raises_what_write_raises(tmp_path: Path) -> None:
    store = _sqlite_store(tmp_path)
    try:
        store.write(WriteBatch(tasks=[dataclasses.replace(minimal_task(), id="a", seq=1)]))
        with pytest.raises(AlreadyExists):
            store.write_now(WriteBatch(tasks=[dataclasses.replace(minimal_task(), id="b", seq=1)]))
        assert store.get_task("b") is None
        store.write_now(
            WriteBatch(tasks=[dataclasses.replace(minimal_task(), id="c", seq=2)])
        )  # rolled back cleanly
        assert store.get_task("c") is not None
    finally:
        store.close()


def test_write_now_is_not_offered_in_memory_or_on_postgresql(postgres_backend: SqlBackend) -> None:
    memory = SqlBackendFactory().open("sqlite://")
    try:
        memory.migrate()
        memory.write(WriteBatch(tasks=[minimal_task()]))
        assert memory.write_now(WriteBatch(tasks=[full_task()])) is False
        assert memory.get_task("task-full") is None
    finally:
        memory.close()
    postgres_backend.write(WriteBatch(tasks=[minimal_task()]))
    assert postgres_backend.write_now(WriteBatch(tasks=[full_task()])) is False
    assert postgres_backend.get_task("task-full") is None


AUDIT_PAGE = {"time": 1.0, "principal": "users/a", "method": "/m", "pad": "x" * 3000}  # about one page


def test_the_checkpointer_copies_and_restarts_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wal, "RESTART_FRAMES", 512)
    store = _sqlite_store(tmp_path)
    log = tmp_path / "maos.db-wal"
    try:
        store.write(WriteBatch(tasks=[minimal_task()]))
        checkpointer = store._wal_checkpointer()
        assert checkpointer is not None
        for _ in range(6):  # bursts of about 1,000 frames, each followed by a checkpoint
            done = checkpointer.checkpoints
            for _ in range(500):
                store.write_now(WriteBatch(audit=[AUDIT_PAGE]))
            deadline = time.monotonic() + 10
            while checkpointer.checkpoints <= done + 1:  # one that began after the burst has ended
                assert time.monotonic() < deadline, "no checkpoint within 10 s"
                time.sleep(0.01)
        assert checkpointer.restarts > 0
        assert (
            log.stat().st_size < 15 * 2**20
        )  # restarted: never restarted, the log would hold 6,000+ frames (25 MB)
    finally:
        store.close()
    assert not log.exists() or log.stat().st_size == 0  # closed: everything is in the database


def test_a_reader_that_pins_the_log_holds_commits_back_briefly_not_for_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wal, "RESTART_FRAMES", 200)
    store = _sqlite_store(tmp_path)
    reader = sqlite3.connect(tmp_path / "maos.db", isolation_level=None)
    try:
        store.write(WriteBatch(tasks=[minimal_task()]))
        checkpointer = store._wal_checkpointer()
        assert checkpointer is not None
        reader.execute("BEGIN")  # an outside reader (a backup, a shell) keeps a snapshot open
        reader.execute("SELECT count(*) FROM tasks").fetchone()
        worst = 0.0
        deadline = time.monotonic() + 10
        while checkpointer.checkpoints < 4:  # rounds that saw the log past RESTART_FRAMES
            assert time.monotonic() < deadline, "the checkpointer did not run"
            started = time.monotonic()
            if not store.write_now(WriteBatch(audit=[AUDIT_PAGE])):
                store.write(WriteBatch(audit=[AUDIT_PAGE]))
            worst = max(worst, time.monotonic() - started)
        assert checkpointer.restarts == 0  # it could not restart, and does not claim it did
        assert worst < 1.0  # a RESTART waits RESTART_WAIT_MS for the reader, not the 5 s busy timeout
    finally:
        reader.close()
        store.close()


def test_commits_checkpoint_by_themselves_when_the_checkpointer_falls_far_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wal, "AUTOCHECKPOINT_FRAMES", 256)
    monkeypatch.setattr(WalCheckpointer, "_checkpoint", lambda self, connection: None)  # stalled
    store = _sqlite_store(tmp_path)
    try:
        store.write(WriteBatch(tasks=[minimal_task()]))
        for _ in range(3000):
            store.write_now(WriteBatch(audit=[AUDIT_PAGE]))
        assert (tmp_path / "maos.db-wal").stat().st_size < 2 * 256 * 4200
        assert len(store.list_audit(limit=5000)) == 3000
    finally:
        store.close()


def test_sqlite_in_memory_shares_one_database() -> None:
    store = SqlBackendFactory().open("sqlite://")
    try:
        store.migrate()
        store.write(WriteBatch(tasks=[full_task()]))
        assert store.get_task("task-full") == full_task()
        assert store.kind == "sqlite"
    finally:
        store.close()


# --- PostgreSQL ----------------------------------------------------------------


def test_postgres_disables_prepared_statements(postgres_backend: SqlBackend) -> None:
    with postgres_backend.engine.connect() as conn:
        assert conn.connection.driver_connection.prepare_threshold is None


def test_postgres_migrate_analyzes_tables(postgres_backend: SqlBackend) -> None:
    names = [table.name for table in schema.ALL_TABLES]
    query = text("SELECT relname, reltuples FROM pg_class WHERE relname = ANY(:names) AND relkind = 'r'")
    with postgres_backend.engine.connect() as conn:
        before = {r.reltuples for r in conn.execute(query, {"names": names})}
    assert before == {-1}  # truncated: never analysed
    postgres_backend.migrate()
    with postgres_backend.engine.connect() as conn:
        analysed = dict(conn.execute(query, {"names": names}).all())
    assert analysed == dict.fromkeys(names, 0)


# --- factory and plugin --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "handled"),
    [
        ("sqlite:///maos.db", True),
        ("sqlite://", True),
        ("sqlite+pysqlite:////var/lib/maos.db", True),
        ("postgresql://u@h/db", True),
        ("POSTGRESQL://u@h/db", True),
        ("postgresql+psycopg://u@h/db", True),
        ("postgresql+psycopg2://u@h/db", False),
        ("postgresql+asyncpg://u@h/db", False),
        ("mysql://u@h/db", False),
        ("redis://localhost", False),
        ("sqlite", False),
        ("", False),
    ],
)
def test_factory_handles(url: str, handled: bool) -> None:
    assert SqlBackendFactory().handles(url) is handled


def test_factory_normalises_postgresql_urls() -> None:
    factory: StorageBackendFactory = SqlBackendFactory()
    store = factory.open("postgresql://postgres@127.0.0.1:1/maos")  # does not connect
    try:
        assert factory.name == "sqlalchemy"
        assert store.kind == "postgresql"
        assert store.engine.url.drivername == "postgresql+psycopg"
        assert store.engine.url.database == "maos"
    finally:
        store.close()


def test_factory_rejects_other_databases() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        SqlBackendFactory().open("mysql://u@h/db")


def test_plugin_registers_the_factory() -> None:
    manager = pluggy.PluginManager("maos")
    manager.add_hookspecs(hookspecs)
    manager.register(plugin)
    (factories,) = manager.hook.register_storage_backends()
    assert [type(f) for f in factories] == [SqlBackendFactory]
    assert factories[0].handles("sqlite:///x.db")


def test_without_the_postgres_extra_sqlite_works_and_postgresql_says_what_to_install(tmp_path: Path) -> None:
    # A fresh interpreter in which psycopg cannot be imported, as after `pip install maos` alone.
    script = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from controlplane.storage.sql.backend import create_sql_engine\n"
        f"create_sql_engine('sqlite:///{tmp_path / 'maos.db'}').dispose()\n"
        "try:\n"
        "    create_sql_engine('postgresql://postgres@127.0.0.1:5432/test')\n"
        "except ValueError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'maos[postgres]'" in done.stdout


def test_task_counts_migration_counts_existing_tasks(tmp_path: Path) -> None:
    """Upgrading a database that already holds tasks counts them once, then the triggers keep counting."""
    from alembic import command

    store = SqlBackendFactory().open(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        with store.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0012")
        row = codec.task_to_row(minimal_task("old", seq=1, status=TaskStatus.COMPLETED))
        with store.engine.begin() as conn:
            conn.execute(schema.tasks.insert(), [row, {**row, "id": "old2", "seq": 2}])
        store.migrate()
        assert store.count_tasks_by_status()[TaskStatus.COMPLETED] == 2
        store.write(WriteBatch(tasks=[minimal_task("new", seq=3)]))
        with store.engine.begin() as conn:
            conn.execute(schema.tasks.delete().where(schema.tasks.c.id == "old"))
        counts = store.count_tasks_by_status()
        assert (counts[TaskStatus.COMPLETED], counts[TaskStatus.PENDING]) == (1, 1)
    finally:
        store.close()


def _tasks_indexes(store: SqlBackend) -> set[str]:
    with store.engine.connect() as conn:
        if store.kind == "sqlite":
            found = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'tasks'")
            )
        else:
            found = conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'tasks'"))
        return set(found.scalars())


def _revision(store: SqlBackend) -> str | None:
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _deadline_index_is_cheap(store: SqlBackend) -> bool | None:
    """Whether SQLite's deadline index settles rows by a text check first (migrations 0022 and 0023; None on
    PostgreSQL)."""
    if store.kind != "sqlite":
        return None
    with store.engine.connect() as conn:
        sql = conn.execute(
            text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'ix_tasks_spilled_deadline'")
        ).scalar_one()
    return "instr(" in sql or "substr(data, 1" in sql


def test_lean_task_indexes_migration_keeps_every_listing(backend: SqlBackend) -> None:
    """Upgrading a populated database from 0021 through 0022 and 0023 to the partial indexes of 0024 (and
    back) leaves every listing as it was."""
    from alembic import command

    with backend.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0021")
    assert _revision(backend) == "0021"
    assert _deadline_index_is_cheap(backend) in (False, None)
    assert "ix_tasks_status" in _tasks_indexes(backend)
    statuses = [
        TaskStatus.COMPLETED,
        TaskStatus.QUEUED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.RUNNING,
    ]
    tasks = [
        minimal_task(f"t{i:03d}", seq=i + 1, status=statuses[i % 5], batch="b1" if i % 7 == 0 else "")
        for i in range(60)
    ]
    rows = [
        {**codec.task_to_row(t), "claimed_by": "replica-a" if i % 10 == 0 else None}
        for i, t in enumerate(tasks)
    ]
    with backend.engine.begin() as conn:
        conn.execute(schema.tasks.insert(), rows)
    queries = [
        TaskQuery(statuses=[TaskStatus.QUEUED]),
        TaskQuery(statuses=[TaskStatus.QUEUED, TaskStatus.RUNNING], limit=5),
        TaskQuery(statuses=[TaskStatus.FAILED]),
        TaskQuery(statuses=[TaskStatus.FAILED, TaskStatus.CANCELLED], before_seq=40),
        TaskQuery(statuses=[TaskStatus.COMPLETED, TaskStatus.FAILED]),
        TaskQuery(batch="b1"),
        TaskQuery(batch=""),
    ]
    before = [[t.id for t in backend.list_tasks(q)] for q in queries]
    unfinished_before = [t.id for t in backend.load_unfinished()[0]]

    backend.migrate()
    assert _revision(backend) == "0024"
    assert _deadline_index_is_cheap(backend) in (True, None)
    assert {"ix_tasks_ended", "ix_tasks_batch", "ix_tasks_claimed_by"} <= _tasks_indexes(backend)
    assert "ix_tasks_status" not in _tasks_indexes(backend)
    assert [[t.id for t in backend.list_tasks(q)] for q in queries] == before
    assert [t.id for t in backend.load_unfinished()[0]] == unfinished_before
    assert before[0] == [t.id for t in reversed(tasks) if t.status == TaskStatus.QUEUED][:50]
    with backend.engine.connect() as conn:  # the partial indexes hold what their queries look for
        held = "SELECT count(*) FROM tasks WHERE claimed_by IS NOT NULL"
        assert conn.execute(text(held)).scalar_one() == 6

    with backend.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0023")
    assert _revision(backend) == "0023"
    assert _deadline_index_is_cheap(backend) in (True, None)
    assert "ix_tasks_status" in _tasks_indexes(backend)
    assert "ix_tasks_ended" not in _tasks_indexes(backend)
    assert [[t.id for t in backend.list_tasks(q)] for q in queries] == before
    backend.migrate()
    assert _revision(backend) == "0024"
    assert [[t.id for t in backend.list_tasks(q)] for q in queries] == before


def test_task_listings_read_the_partial_indexes(tmp_path: Path) -> None:
    """SQLite lists unfinished tasks from the queue's index and FAILED ones from their own, not by walking
    every task in seq order."""
    store = _sqlite_store(tmp_path)
    try:
        store.write(WriteBatch(tasks=[minimal_task("t", seq=1)]))
        seen: list[tuple[str, Any]] = []

        def plans() -> list[str]:
            with store.engine.connect() as conn:
                cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                return [
                    " | ".join(
                        row[-1] for row in cursor.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
                    )
                    for sql, params in seen
                ]

        @event.listens_for(store.engine, "before_cursor_execute")
        def _keep(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
            if sql.lstrip().upper().startswith("SELECT"):
                seen.append((sql, params))

        store.load_unfinished()
        assert all("ix_tasks_claimable" in plan for plan in plans()), plans()
        seen.clear()
        store.list_tasks(TaskQuery(statuses=[TaskStatus.QUEUED, TaskStatus.PENDING]))
        assert "ix_tasks_claimable" in plans()[0]
        seen.clear()
        store.list_tasks(TaskQuery(statuses=[TaskStatus.FAILED]))
        assert "ix_tasks_ended" in plans()[0]
        seen.clear()
        store.list_tasks(TaskQuery(batch="b1"))
        assert "ix_tasks_batch" in plans()[0]
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_write_after_the_server_dropped_the_connection(postgres_backend: SqlBackend) -> None:
    """Connections are not pinged before use: one cut by the server fails one call, never more."""
    postgres_backend.write(WriteBatch(tasks=[minimal_task("before", seq=1)]))
    killer = create_engine(postgres_backend.engine.url)
    try:
        with killer.connect() as conn:
            pids = [
                pid
                for (pid,) in conn.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            ]
            assert pids  # the backend's pooled connection
            for pid in pids:
                conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        killer.dispose()
    failures = 0
    for _attempt in range(3):
        try:
            postgres_backend.write(WriteBatch(tasks=[minimal_task("after", seq=2)]))
            break
        except Unavailable:
            failures += 1
    assert failures <= 1
    assert postgres_backend.get_task("after") is not None
    assert postgres_backend.count_tasks_by_status()[TaskStatus.PENDING] == 2


@pytest.mark.postgres
def test_postgres_write_beyond_one_statement_is_one_transaction(
    postgres_backend: SqlBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write too large for one statement runs in chunks, all committed or none."""
    monkeypatch.setattr(raw_writes, "MAX_PARAMETERS", 100)
    postgres_backend.write(WriteBatch(tasks=[minimal_task("a", seq=1)]))
    tasks = [minimal_task(f"t{i}", seq=i + 2) for i in range(20)]
    with pytest.raises(AlreadyExists):
        postgres_backend.write(WriteBatch(tasks=[*tasks, minimal_task("dup", seq=1)]))
    assert postgres_backend.get_tasks([t.id for t in tasks]) == []
    subtasks = [minimal_subtask(t.id, "s1") for t in tasks]
    postgres_backend.write(WriteBatch(tasks=tasks, subtasks=subtasks, agents=[minimal_agent()]))
    assert len(postgres_backend.get_tasks([t.id for t in tasks])) == 20
    assert postgres_backend.get_subtasks("t19")[0].id == "s1"


@pytest.mark.postgres
def test_postgres_synchronous_commit_off_reaches_the_server(
    migrated_postgres_url: str, tmp_path: Path
) -> None:
    settings = load_settings(
        home=tmp_path,
        environ={
            "MAOS_DATABASE_PRIMARY_URL": migrated_postgres_url,
            "MAOS_DATABASE_SYNCHRONOUS_COMMIT": "off",
        },
    )
    store = SqlBackendFactory().open(settings.database_url)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(text("SHOW synchronous_commit")).scalar() == "off"
        store.write(WriteBatch(agents=[minimal_agent("relaxed")]))  # on the connection kept for writes
        assert store.get_agent("relaxed") is not None
    finally:
        store.close()
    default = SqlBackendFactory().open(migrated_postgres_url)
    try:
        with default.engine.connect() as conn:
            assert conn.execute(text("SHOW synchronous_commit")).scalar() == "on"
    finally:
        default.close()


def test_one_statement_joins_the_inserts_and_stops_at_the_parameter_limit() -> None:
    tasks = raw_writes.upsert(schema.tasks, "%s")
    audit = raw_writes.plain("audit_records", ("time", "principal", "method", "data"), "%s")
    row = (1.0, "p", "m", "{}")
    sql, params = raw_writes.one_statement([(tasks, []), (audit, [row, row])]) or ("", [])
    assert sql == raw_writes.numbered(audit.rows_sql(2)) and params == [*row, *row]
    assert sql.endswith("VALUES ($1, $2, $3, $4), ($5, $6, $7, $8)")
    joined = raw_writes.one_statement([(audit, [row]), (audit, [row])])
    expected = raw_writes.numbered(f"WITH w0 AS ({audit.rows_sql(1)}) {audit.rows_sql(1)}")
    assert joined is not None and joined[0] == expected and "$8" in expected
    many = [row] * (raw_writes.MAX_PARAMETERS // 4 + 1)
    assert raw_writes.one_statement([(audit, many)]) is None
    assert raw_writes.one_statement([(audit, [])]) is None
    chunks = list(raw_writes.in_chunks([(audit, many)]))
    assert [len(params) for _, params in chunks] == [raw_writes.MAX_PARAMETERS, 4]


async def test_quick_reads_run_beside_the_storage_thread_on_postgresql_only(backend: SqlBackend) -> None:
    """A checkpoint or a large commit holds the storage thread for seconds at a million tasks: on
    PostgreSQL, GetStatus's counts are read beside it; SQLite reads stay on the storage thread."""
    if backend.kind == "sqlite":
        assert not backend.concurrent_reads
        return
    executor = StorageExecutor(backend)
    release = threading.Event()
    busy = asyncio.ensure_future(executor.call(release.wait, 30))
    try:
        assert await asyncio.wait_for(executor.quick_read(backend.list_agents), 10) == []
        assert not busy.done()  # answered while the storage thread was still held
    finally:
        release.set()
        assert await busy
        executor.close()


def _wait_for_a_lock_wait(conn: Any, timeout: float = 10.0) -> None:
    """Return once another session of this database waits for a lock (else fail after ``timeout``)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + timeout
    engine = create_engine(conn.engine.url)
    try:
        with engine.connect() as watcher:
            while not watcher.execute(query).scalar_one():
                assert time.monotonic() < deadline, "nothing waited for the insert in flight"
                time.sleep(0.01)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_settled_idempotency_waits_for_a_commit_still_in_flight(
    postgres_backend: SqlBackend,
) -> None:
    """After a commit whose outcome is unknown, the read that settles it sees that commit if it lands."""
    assert postgres_backend.settled_idempotency_records([("p", "SubmitTask", "absent")]) == {}
    record = IdempotencyRecord("p", "SubmitTask", "in-flight", "h", "t1", 1.0)
    writer = create_engine(postgres_backend.engine.url)
    try:
        with writer.connect() as conn, ThreadPoolExecutor(1) as pool:
            transaction = conn.begin()
            conn.execute(schema.idempotency.insert().values(**codec.idempotency_to_row(record)))
            settling = pool.submit(
                postgres_backend.settled_idempotency_records,
                [("p", "SubmitTask", "in-flight"), ("p", "SubmitTask", "absent")],
            )
            # The settling read waits for the insert in flight: it has no answer while it is open.
            _wait_for_a_lock_wait(conn)
            assert not settling.done()
            transaction.commit()
            assert settling.result(timeout=10) == {record.key: record}  # (the absent key: no record)
    finally:
        writer.dispose()
    # It writes nothing itself: an absent key stays absent, a stored one unchanged.
    assert postgres_backend.get_idempotency("p", "SubmitTask", "absent") is None
    assert postgres_backend.get_idempotency("p", "SubmitTask", "in-flight") == record


@pytest.mark.postgres
def test_postgres_settled_idempotency_of_a_commit_that_did_not_land_is_none(
    postgres_backend: SqlBackend,
) -> None:
    record = IdempotencyRecord("p", "SubmitTask", "rolled-back", "h", "t1", 1.0)
    writer = create_engine(postgres_backend.engine.url)
    try:
        with writer.connect() as conn, ThreadPoolExecutor(1) as pool:
            transaction = conn.begin()
            conn.execute(schema.idempotency.insert().values(**codec.idempotency_to_row(record)))
            settling = pool.submit(postgres_backend.settled_idempotency_records, [record.key])
            _wait_for_a_lock_wait(conn)
            assert not settling.done()
            transaction.rollback()  # (the server aborts a transaction whose client went away)
            assert settling.result(timeout=10) == {}
    finally:
        writer.dispose()
    assert postgres_backend.get_idempotency("p", "SubmitTask", "rolled-back") is None


def test_replicas_drawing_the_page_token_key_together_get_one_key(postgres_backend: SqlBackend) -> None:
    """Two backends starting together on an empty database, on a site whose default isolation is
    repeatable read (where the later of two simultaneous draws fails to serialize): both end with
    the same key."""
    url = _url(postgres_backend) + "?options=-c%20default_transaction_isolation%3Drepeatable%5C%20read"
    stores = [SqlBackendFactory().open(url) for _ in range(2)]
    try:
        with stores[0].engine.connect() as conn:
            assert conn.execute(text("SHOW transaction_isolation")).scalar_one() == "repeatable read"
        for _ in range(20):  # the draws meet in some rounds
            with postgres_backend.engine.begin() as conn:
                conn.execute(text("DELETE FROM control_meta WHERE key LIKE 'page_token_key.%'"))
            barrier = threading.Barrier(len(stores))

            def draw(store: SqlBackend, barrier: threading.Barrier = barrier) -> bytes:
                barrier.wait(timeout=10)
                return store.page_token_key()

            with ThreadPoolExecutor(max_workers=len(stores)) as pool:
                keys = list(pool.map(draw, stores))
            assert keys[0] == keys[1] and len(keys[0]) == 32
    finally:
        for store in stores:
            store.close()
