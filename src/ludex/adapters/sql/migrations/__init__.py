"""Alembic migrations of the operational store; run them with ``SqlStore.migrate()``.

``env.py`` is executed by Alembic, never imported by ludex code.
"""
