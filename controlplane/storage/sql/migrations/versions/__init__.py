"""Alembic revisions (a package only so that it ships with the wheel)."""
