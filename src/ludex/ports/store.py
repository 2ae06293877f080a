"""Operational store port: the transactional source of truth (SQLAlchemy 2, async).

SQLite, PostgreSQL and MariaDB/MySQL sit behind the same interface and the same
Alembic migrations. Services get sessions from ``transaction()``; everything done
in one ``async with`` block commits or rolls back together (this is what makes the
transactional outbox possible: rows and their events in one commit).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession


class OperationalStore(Protocol):
    @property
    def dialect(self) -> str:
        """``sqlite``, ``postgresql`` or ``mysql``."""
        ...

    @property
    def engine(self) -> AsyncEngine: ...

    async def start(self) -> None:
        """Create the engine (and the SQLite file's folder); no migration."""
        ...

    async def migrate(self, revision: str = "head") -> None:
        """Apply Alembic migrations up to ``revision``."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    def transaction(self, *, read_only: bool = False) -> AbstractAsyncContextManager[AsyncSession]:
        """A session inside one transaction: commit on success, roll back on error.
        ``read_only`` promises the block only reads (SQLite then takes no write lock)."""
        ...
