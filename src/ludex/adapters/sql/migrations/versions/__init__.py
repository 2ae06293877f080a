"""Alembic revisions, oldest first (``r0001_...``). Loaded by Alembic, never imported."""
