"""Throw-away databases for the store benchmarks.

A file in a temporary folder on SQLite; a database named ``ludex_bench_<hex>`` on
PostgreSQL and MariaDB/MySQL, created through the service URL and dropped
afterwards (even when the benchmark fails).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

_DRIVERS: Final = {"postgres": "postgresql+asyncpg", "mysql": "mysql+asyncmy"}


@asynccontextmanager
async def fresh_database(kind: str, base_url: str | None, folder: Path) -> AsyncIterator[str]:
    """Yield the URL (ludex form, e.g. ``postgresql://...``) of a new, empty database.

    ``kind`` is ``sqlite`` (``base_url`` unused; the file goes in ``folder``),
    ``postgres`` or ``mysql`` (``base_url`` is a URL to a database on that server
    whose user may create databases).
    """
    if kind == "sqlite":
        yield f"sqlite:///{folder}/bench.db"
        return
    if kind not in _DRIVERS or not base_url:
        raise ValueError(f"fresh_database: kind {kind!r} needs a postgres or mysql base URL")
    name = f"ludex_bench_{uuid.uuid4().hex[:12]}"
    admin = create_async_engine(
        make_url(base_url).set(drivername=_DRIVERS[kind]), isolation_level="AUTOCOMMIT"
    )
    created = False
    try:
        async with admin.connect() as conn:
            if kind == "postgres":
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
            else:
                await conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        created = True
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        try:
            if created:
                async with admin.connect() as conn:
                    if kind == "postgres":
                        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    else:
                        await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        finally:
            await admin.dispose()
