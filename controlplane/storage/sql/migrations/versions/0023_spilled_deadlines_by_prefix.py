"""The deadline index of queued tasks kept in the database, settled by the text's first key (SQLite).

Migration 0022 let ``ix_tasks_spilled_deadline``'s condition skip the JSON parse of a row whose text
holds ``"timeout":null,"context":`` anywhere, but a nested object (``review_state``, ``approval``)
holding that pair would have left a task with a timeout out of the index. The codec now writes
``timeout`` as the first key of a task's ``data``, so the condition asks whether the text begins with
``{"timeout":null,``: a prefix can only be the top-level key, so no row is settled wrongly, and the
comparison costs less than the search. Text that begins any other way (written by an earlier version,
with spaces, another field order) is parsed as before, so the index holds exactly the spilled tasks
whose top-level ``timeout`` is above 0. The queries carry the same condition
(``controlplane.storage.sql.spill.WITH_DEADLINE``).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0023"
down_revision: str | Sequence[str] | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DEADLINE = "json_extract(data, '$.start_time') + json_extract(data, '$.timeout')"
# (``\\:``: op.execute reads its text as SQLAlchemy's text(), where ``:null`` would be a parameter.)
_BEFORE = (
    "claimed_by = '~spilled' AND instr(data, '\"timeout\"\\:null,\"context\":') = 0 "
    "AND json_extract(data, '$.timeout') > 0"
)
_NOW = (
    "claimed_by = '~spilled' AND substr(data, 1, 16) <> '{\"timeout\"\\:null,' "
    "AND json_extract(data, '$.timeout') > 0"
)


def _index(where: str) -> None:
    op.execute("DROP INDEX IF EXISTS ix_tasks_spilled_deadline")
    op.execute(f"CREATE INDEX ix_tasks_spilled_deadline ON tasks (({_DEADLINE})) WHERE {where}")


def upgrade() -> None:
    """On SQLite, the deadline index made anew, its condition settled by the text's first key."""
    if op.get_bind().dialect.name == "sqlite":
        _index(_NOW)


def downgrade() -> None:
    """On SQLite, the deadline index as migration 0022 made it."""
    if op.get_bind().dialect.name == "sqlite":
        _index(_BEFORE)
