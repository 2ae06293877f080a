"""Fresh, throw-away databases for the operational-store contract suites.

Every test gets its own database: a file in ``tmp_path`` on SQLite, a database
named ``ludex_t_<hex>`` on PostgreSQL and MariaDB/MySQL (created through the
service URL from ``scripts/services``, dropped afterwards). Shared by
``test_store.py`` and ``test_outbox.py``; not a test module itself.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from ludex.adapters.sql import SqlStore, create_store
from tests.conftest import service_url

BACKENDS = ["sqlite", "postgres", "mysql"]

_DRIVERS = {"postgres": "postgresql+asyncpg", "mysql": "mysql+asyncmy"}


@asynccontextmanager
async def fresh_database(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    """Yield the URL (ludex form, e.g. ``postgresql://...``) of an empty database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/store/ludex.db"
        return
    base = service_url(backend)
    name = f"ludex_t_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(
        make_url(base).set(drivername=_DRIVERS[backend]), isolation_level="AUTOCOMMIT"
    )
    try:
        async with admin.connect() as conn:
            if backend == "postgres":
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                await conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as conn:
            if backend == "postgres":
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            else:
                await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        await admin.dispose()


@asynccontextmanager
async def started_store(url: str, *, migrate: bool = True) -> AsyncIterator[SqlStore]:
    """A started store on ``url`` (migrated to head unless told otherwise), closed after."""
    store = create_store(url, pool_size=5)
    await store.start()
    try:
        if migrate:
            await store.migrate()
        yield store
    finally:
        await store.close()
