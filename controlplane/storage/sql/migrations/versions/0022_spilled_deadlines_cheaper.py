"""The deadline index of queued tasks kept in the database, kept at less cost (SQLite).

``ix_tasks_spilled_deadline`` (migration 0021) holds the spilled tasks with a timeout. SQLite
evaluates a partial index's condition on every write of a column it names, so each spill and each
take-back (which set and clear ``claimed_by``) parsed the task's whole ``data`` JSON for
``json_extract(data, '$.timeout')``: about half the cost of clearing the marks of a batch read back.
The condition now first asks whether the text holds the top-level ``"timeout":null`` as this version
writes it (compact JSON, ``timeout`` followed by ``context``), a short search that settles nearly
every row; only the others are parsed. Text written any other way is parsed as before, so the
index holds the same rows. The queries carry the same condition
(``controlplane.storage.sql.spill.WITH_DEADLINE``): SQLite uses a partial index only for a query
whose condition contains the index's terms.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0022"
down_revision: str | Sequence[str] | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DEADLINE = "json_extract(data, '$.start_time') + json_extract(data, '$.timeout')"
_BEFORE = "claimed_by = '~spilled' AND json_extract(data, '$.timeout') > 0"
# (``\\:``: op.execute reads its text as SQLAlchemy's text(), where ``:null`` would be a parameter.)
_NOW = (
    "claimed_by = '~spilled' AND instr(data, '\"timeout\"\\:null,\"context\":') = 0 "
    "AND json_extract(data, '$.timeout') > 0"
)


def _index(where: str) -> None:
    op.execute("DROP INDEX IF EXISTS ix_tasks_spilled_deadline")
    op.execute(f"CREATE INDEX ix_tasks_spilled_deadline ON tasks (({_DEADLINE})) WHERE {where}")


def upgrade() -> None:
    """On SQLite, the deadline index made anew with the cheaper condition."""
    if op.get_bind().dialect.name == "sqlite":
        _index(_NOW)


def downgrade() -> None:
    """On SQLite, the deadline index as migration 0021 made it."""
    if op.get_bind().dialect.name == "sqlite":
        _index(_BEFORE)
