"""The operational store on SQLAlchemy 2 (asyncio): SQLite, PostgreSQL, MySQL/MariaDB.

``create_store(url)`` picks the driver from the URL scheme; nothing connects until
``start()``. The schema is built by the Alembic migrations shipped in
``migrations/`` (``await store.migrate()``). The transactional outbox's table
operations live in :mod:`ludex.adapters.sql.outbox`.

This package must never log a URL that still holds its password.
"""

from __future__ import annotations

from ludex.adapters.sql.store import SqlStore, head_revision

__all__ = ["SqlStore", "create_store", "head_revision"]


def create_store(url: str, *, pool_size: int = 10) -> SqlStore:
    """A store for ``url``: ``sqlite:///PATH`` (aiosqlite), ``postgresql://`` or
    ``postgres://`` (asyncpg), ``mysql://`` or ``mariadb://`` (asyncmy, utf8mb4).

    Raises :class:`~ludex.errors.ConfigError` for any other scheme.
    """
    return SqlStore(url, pool_size=pool_size)
