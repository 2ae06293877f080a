"""``SqlStore``: the operational store on SQLAlchemy 2 (asyncio) and Alembic.

One class serves SQLite (aiosqlite), PostgreSQL (asyncpg) and MySQL/MariaDB
(asyncmy); ``create_store`` in ``ludex.adapters.sql`` picks the driver from the URL.

What each backend gets, and why:

* SQLite: WAL journal, ``busy_timeout``, foreign keys on, and every transaction
  opened with ``BEGIN IMMEDIATE`` (the driver's own implicit transactions are turned
  off). Taking the write lock up front means a read-then-write transaction waits
  for the lock instead of failing with ``SQLITE_BUSY`` half way, DDL is
  transactional (Alembic runs in one transaction), and two processes migrating
  the same file serialize. The price is one writer at a time, which is what SQLite
  offers anyway.
* MySQL/MariaDB: ``utf8mb4`` and ``READ COMMITTED``, the isolation PostgreSQL
  uses by default, so that the contract suite sees the same behaviour everywhere.
* PostgreSQL/MySQL: ``migrate()`` holds an advisory lock (``pg_advisory_lock`` /
  ``GET_LOCK``) around the upgrade, so two processes starting together do not race;
  Alembic itself makes a second run a no-op.

Errors are translated here: a constraint violation becomes
:class:`~ludex.errors.StoreError`; a server that cannot be reached becomes
:class:`~ludex.errors.BackendUnavailable`. Messages carry the URL with its password
redacted. This module must never log or raise a URL that still holds a password.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any, Final, Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Table, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.dml import Insert

from ludex.config import redact_url
from ludex.errors import BackendUnavailable, ConfigError, LudexError, StoreError

Dialect = Literal["sqlite", "postgresql", "mysql"]

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS: Final = 15_000
CONNECT_TIMEOUT_S: Final = 10.0
PING_TIMEOUT_S: Final = 10.0
MYSQL_LOCK_WAIT_S: Final = 600

_DRIVERS: Final[dict[str, tuple[Dialect, str]]] = {
    "sqlite": ("sqlite", "sqlite+aiosqlite"),
    "postgresql": ("postgresql", "postgresql+asyncpg"),
    "postgres": ("postgresql", "postgresql+asyncpg"),
    "mysql": ("mysql", "mysql+asyncmy"),
    "mariadb": ("mysql", "mysql+asyncmy"),
}

# Errors that mean "could not talk to the server" rather than "the server said no".
_UNREACHABLE: Final = (OSError, TimeoutError, ConnectionError)


def _parse(url: str) -> tuple[Dialect, URL]:
    redacted = redact_url(url)
    scheme = url.partition("://")[0].lower()
    if scheme not in _DRIVERS:
        raise ConfigError(
            f"store URL {redacted!r} has an unknown scheme {scheme!r}; use sqlite:///PATH, "
            "postgresql://USER:PASS@HOST:PORT/DB or mysql://USER:PASS@HOST:PORT/DB"
        )
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        raise ConfigError(f"store URL {redacted!r} cannot be parsed") from None
    dialect, driver = _DRIVERS[scheme]
    parsed = parsed.set(drivername=driver)
    if dialect == "mysql":
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    if dialect != "sqlite" and not parsed.host:
        raise ConfigError(f"store URL {redacted!r} has no host")
    return dialect, parsed


def _cause(exc: BaseException) -> str:
    """The driver's message without SQLAlchemy's echo of the statement and its parameters."""
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__}: {orig}".strip()


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return cfg


def _run_alembic(connection: Connection, direction: str, revision: str) -> None:
    cfg = _alembic_config()
    cfg.attributes["connection"] = connection
    if direction == "upgrade":
        command.upgrade(cfg, revision)
    else:
        command.downgrade(cfg, revision)


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest migration shipped with this version of ludex."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships migrations
        raise StoreError("no migrations found in the ludex package; reinstall ludex")
    return head


def _make_parent_folder(database: str) -> None:
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any, *, memory: bool) -> None:
    # Hand transaction control to SQLAlchemy: we emit BEGIN IMMEDIATE ourselves.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # The busy timeout first: switching to WAL needs a lock, and another process
        # migrating or writing the same file holds one (without the timeout, the
        # switch fails at once with "database is locked").
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


READ_ONLY_OPTION: Final = "ludex_read_only"


def _on_sqlite_begin(connection: Connection) -> None:
    # A read-only transaction is DEFERRED: under WAL it reads a snapshot and never waits
    # for (or blocks) the writer. Every other one takes the write lock at once.
    read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def insert_ignore(dialect: str, table: Table) -> Insert:
    """An INSERT that skips rows whose key already exists (written by another writer or
    an earlier attempt): ON CONFLICT DO NOTHING on PostgreSQL and SQLite, INSERT IGNORE on
    MySQL / MariaDB (which also turns other errors into warnings: validate first)."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    if dialect in {"mysql", "mariadb"}:
        return mysql.insert(table).prefix_with("IGNORE")
    raise StoreError(f"insert_ignore does not support the {dialect!r} dialect")


class SqlStore:
    """The operational store port over one SQLAlchemy async engine."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        if pool_size < 1:
            raise ConfigError(f"store pool size must be >= 1, got {pool_size}")
        self._dialect, self._url = _parse(url)
        self._redacted = redact_url(url)
        self._pool_size = pool_size
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    def __repr__(self) -> str:
        return f"SqlStore({self._redacted!r})"

    @property
    def dialect(self) -> Dialect:
        return self._dialect

    @property
    def url(self) -> str:
        """The store URL with its password redacted."""
        return self._redacted

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise StoreError(f"store {self._redacted} is not started; call start() first")
        return self._engine

    async def start(self) -> None:
        if self._engine is not None:
            return
        kwargs: dict[str, Any] = {}
        memory = False
        if self._dialect == "sqlite":
            database = self._url.database or ""
            memory = database in {"", ":memory:"} or database.startswith("file::memory:")
            if memory:
                kwargs["poolclass"] = StaticPool
            else:
                try:
                    await asyncio.to_thread(_make_parent_folder, database)
                except OSError as exc:
                    raise BackendUnavailable(
                        f"cannot create the folder of {self._redacted}: {exc}"
                    ) from None
                kwargs["pool_size"] = self._pool_size
        elif self._dialect == "postgresql":
            kwargs.update(
                pool_size=self._pool_size,
                max_overflow=self._pool_size,
                pool_pre_ping=True,
                connect_args={"timeout": CONNECT_TIMEOUT_S},
            )
        else:
            kwargs.update(
                pool_size=self._pool_size,
                max_overflow=self._pool_size,
                pool_pre_ping=True,
                pool_recycle=3600,
                isolation_level="READ COMMITTED",
                connect_args={"connect_timeout": int(CONNECT_TIMEOUT_S)},
            )
        engine = create_async_engine(self._url, **kwargs)
        if self._dialect == "sqlite":

            def on_connect(dbapi_connection: Any, record: Any) -> None:
                _on_sqlite_connect(dbapi_connection, record, memory=memory)

            event.listen(engine.sync_engine, "connect", on_connect)
            event.listen(engine.sync_engine, "begin", _on_sqlite_begin)
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def close(self) -> None:
        engine, self._engine, self._sessions = self._engine, None, None
        if engine is not None:
            await engine.dispose()

    async def ping(self) -> None:
        """Run ``SELECT 1``; raise BackendUnavailable if the database cannot be reached."""
        try:
            async with asyncio.timeout(PING_TIMEOUT_S), self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except LudexError:
            raise
        except (sa_exc.SQLAlchemyError, *_UNREACHABLE) as exc:
            raise BackendUnavailable(
                f"store {self._redacted} is unreachable: {_cause(exc)}"
            ) from None

    @asynccontextmanager
    async def transaction(self, *, read_only: bool = False) -> AsyncIterator[AsyncSession]:
        """A session in one transaction: commit when the block ends, roll back on error.

        ``read_only`` promises the block only reads: on SQLite the transaction then does
        not take the write lock (a snapshot under WAL), so readers polling the store never
        queue behind, or delay, the writer. Other databases ignore it.

        SQLAlchemy errors are translated: lost or refused connections to
        BackendUnavailable, everything else (constraint violations included) to
        StoreError. Other exceptions from the block pass through unchanged.
        """
        if self._sessions is None:
            raise StoreError(f"store {self._redacted} is not started; call start() first")
        async with self._sessions() as session:
            try:
                async with session.begin():
                    try:
                        await session.connection(
                            execution_options={READ_ONLY_OPTION: True} if read_only else None
                        )
                    except (sa_exc.SQLAlchemyError, *_UNREACHABLE) as exc:
                        raise BackendUnavailable(
                            f"store {self._redacted}: cannot open a transaction: {_cause(exc)}"
                        ) from None
                    yield session
            except sa_exc.IntegrityError as exc:
                raise StoreError(
                    f"store {self._redacted}: integrity violation: {_cause(exc)}"
                ) from exc
            except sa_exc.DBAPIError as exc:
                if exc.connection_invalidated:
                    raise BackendUnavailable(
                        f"store {self._redacted}: connection lost: {_cause(exc)}"
                    ) from exc
                raise StoreError(f"store {self._redacted}: {_cause(exc)}") from exc
            except sa_exc.SQLAlchemyError as exc:
                raise StoreError(f"store {self._redacted}: {_cause(exc)}") from exc

    async def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema to ``revision``; idempotent, safe from concurrent processes."""
        await self._alembic("upgrade", revision)

    async def downgrade(self, revision: str = "base") -> None:
        """Downgrade the schema to ``revision`` (``base`` drops every ludex table)."""
        await self._alembic("downgrade", revision)

    async def current_revision(self) -> str | None:
        """The revision the database is at, or None before the first migration."""
        try:
            async with self.engine.connect() as conn:
                return await conn.run_sync(_current_revision)
        except (sa_exc.SQLAlchemyError, *_UNREACHABLE) as exc:
            raise StoreError(f"store {self._redacted}: {_cause(exc)}") from None

    async def _alembic(self, direction: str, revision: str) -> None:
        try:
            async with self.engine.connect() as conn:
                await self._lock_migrations(conn)
                try:
                    async with conn.begin():
                        await conn.run_sync(_run_alembic, direction, revision)
                finally:
                    await self._unlock_migrations(conn)
        except LudexError:
            raise
        except CommandError as exc:
            raise StoreError(
                f"store {self._redacted}: {direction} to {revision!r}: {exc}"
            ) from None
        except _UNREACHABLE as exc:
            raise BackendUnavailable(
                f"store {self._redacted}: {direction} to {revision!r}: {_cause(exc)}"
            ) from None
        except sa_exc.SQLAlchemyError as exc:
            raise StoreError(
                f"store {self._redacted}: {direction} to {revision!r} failed: {_cause(exc)}"
            ) from exc

    def _lock_key(self) -> tuple[int, str]:
        # Advisory locks are per database on PostgreSQL but per server on MySQL, so the
        # MySQL name carries the database name (GET_LOCK names stop at 64 characters).
        digest = hashlib.sha256(b"ludex-migrations").digest()
        pg_key = int.from_bytes(digest[:8], "big", signed=True)
        database = self._url.database or ""
        my_name = "ludex-migrate:" + database
        if len(my_name) > 64:
            my_name = "ludex-migrate:" + hashlib.sha256(database.encode()).hexdigest()[:40]
        return pg_key, my_name

    async def _lock_migrations(self, conn: AsyncConnection) -> None:
        pg_key, my_name = self._lock_key()
        if self._dialect == "postgresql":
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": pg_key})
        elif self._dialect == "mysql":
            got = await conn.scalar(
                text("SELECT GET_LOCK(:name, :wait)"), {"name": my_name, "wait": MYSQL_LOCK_WAIT_S}
            )
            if got != 1:
                await conn.rollback()
                raise StoreError(
                    f"store {self._redacted}: another process held the migration lock for "
                    f"{MYSQL_LOCK_WAIT_S}s; retry when its migration is done"
                )
        # SQLite needs no lock: the migration transaction begins IMMEDIATE.
        # End the implicit transaction so the migration starts with a fresh snapshot.
        await conn.commit()

    async def _unlock_migrations(self, conn: AsyncConnection) -> None:
        if self._dialect == "sqlite":
            return
        pg_key, my_name = self._lock_key()
        try:
            if conn.in_transaction():
                await conn.rollback()
            if self._dialect == "postgresql":
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": pg_key})
            else:
                await conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": my_name})
            await conn.commit()
        except (sa_exc.SQLAlchemyError, *_UNREACHABLE):
            # A session-level lock must never go back to the pool: drop the connection,
            # which ends the server session and releases the lock with it.
            with suppress(Exception):
                await conn.invalidate()
