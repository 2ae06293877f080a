"""Alembic environment: runs the ludex migrations on a connection ludex hands over.

``SqlStore.migrate()`` opens a connection on its async engine, takes the migration
lock and calls Alembic through ``connection.run_sync``, putting the synchronous
connection in ``config.attributes["connection"]`` (Alembic's asyncio cookbook,
"programmatic API use, connection sharing"). Used directly by the ``alembic``
command (with ``-x url=...`` or ``LUDEX_STORE_URL``), it builds its own store.

This module must never configure logging (the application owns that) nor log a URL
with its password.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from ludex.adapters.sql.tables import metadata

config = context.config


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone() -> None:
    from ludex.adapters.sql import create_store
    from ludex.config import load_settings

    url = context.get_x_argument(as_dictionary=True).get("url") or load_settings().store_url
    store = create_store(url, pool_size=1)
    await store.start()
    try:
        async with store.engine.connect() as connection:
            await connection.run_sync(_configure_and_run)
            await connection.commit()
    finally:
        await store.close()


def _run_offline() -> None:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    shared = config.attributes.get("connection")
    if shared is None:
        asyncio.run(_run_standalone())
    else:
        _configure_and_run(shared)
