"""AnalyticsStore on chDB: ClickHouse running inside this process, data on local disk.

``chdb://var/olap`` keeps its data in the directory ``var/olap`` (created when
missing); ``chdb://:memory:`` is a throw-away store. The SQL is the same as on a
ClickHouse server (see :mod:`ludex.adapters.olap.schema`), and values go in and
come out through the shared codec (:mod:`ludex.adapters.olap.sql`), so results
have the same Python types as :class:`~ludex.adapters.olap.clickhouse.ClickHouseStore`.

chDB's engine is synchronous: every call runs in a worker thread
(``asyncio.to_thread``), one at a time. chDB documents its sessions as
thread-safe, but concurrent queries with parameters on one session lose their
parameters (``Substitution `v` is not set``), so calls are serialized: callers
wait on an asyncio lock, and a thread lock guards the session itself.

chDB allows one data directory per process at a time: opening a second store on
another path while one is open raises :class:`~ludex.errors.BackendUnavailable`
(several stores on the same path are fine).

This module must never block the event loop on the engine and never let a chDB
exception escape untranslated.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import chdb.session

from ludex.adapters.olap import schema
from ludex.adapters.olap.sql import (
    OUTPUT_SETTINGS,
    RESULT_FORMAT,
    decode_result,
    encode_rows,
    insert_statement,
    quote_identifier,
    render_params,
)
from ludex.errors import BackendError, BackendUnavailable, ConfigError

SCHEME: Final = "chdb://"
MEMORY: Final = ":memory:"

T = TypeVar("T")
Session = Any  # chdb.session.Session; chdb ships no usable type hints
_new_session: Callable[[str], Session] = chdb.session.Session


def path_from_url(url: str) -> str:
    """The data location of a ``chdb://PATH`` URL (``:memory:`` or a directory)."""
    if not url.lower().startswith(SCHEME):
        raise ConfigError(f"{url!r} is not a chdb:// URL; use chdb://PATH or chdb://:memory:")
    location = url[len(SCHEME) :]
    if "?" in location or "#" in location:
        raise ConfigError(f"{url!r}: chdb:// URLs take no options; use chdb://PATH")
    if not location:
        raise ConfigError(f"{url!r} names no path; use chdb://PATH or chdb://:memory:")
    return location


class ChdbStore:
    """AnalyticsStore on an in-process chDB session."""

    def __init__(self, location: str, *, database: str = schema.DEFAULT_DATABASE) -> None:
        quote_identifier(database)  # fail early on a bad name
        self.location = location
        self.database = database
        self._session: Session | None = None
        self._engine_lock = threading.Lock()
        self._queue = asyncio.Lock()

    @classmethod
    def from_url(cls, url: str) -> ChdbStore:
        return cls(path_from_url(url))

    def __repr__(self) -> str:
        return f"ChdbStore({self.location!r}, database={self.database!r})"

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Open the session (once) and apply the DDL (every time: it is idempotent)."""
        if self._session is None:
            session = await asyncio.to_thread(self._open)
            with self._engine_lock:
                if self._session is None:
                    self._session = session
                    session = None
            if session is not None:  # lost a race with a concurrent start
                await asyncio.to_thread(session.close)
        await self._call(self._apply_ddl)

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    async def ping(self) -> None:
        await self._call(lambda s: s.query("SELECT 1", "CSV"))

    # -- AnalyticsStore ------------------------------------------------------------

    async def execute(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None:
        params = render_params(parameters)
        await self._call(lambda s: s.query(sql, "CSV", params=params or None))

    async def insert(
        self, table: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
    ) -> int:
        if not rows:
            return 0
        statement = insert_statement(table, columns) + "\n" + encode_rows(rows, columns).decode()
        await self._call(lambda s: s.query(statement, "CSV"))
        return len(rows)

    async def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        params = render_params(parameters)
        body = await self._call(lambda s: s.query(sql, RESULT_FORMAT, params=params or None))
        return decode_result(body.bytes())

    # -- worker-thread side ----------------------------------------------------------

    def _open(self) -> Session:
        target = self.location
        if target != MEMORY:
            directory = Path(target).resolve()
            directory.mkdir(parents=True, exist_ok=True)
            # chDB compares paths literally: one spelling per directory.
            target = str(directory)
        try:
            session = _new_session(target)
        except (RuntimeError, ValueError) as exc:
            raise BackendUnavailable(
                f"cannot open the chDB store at {self.location!r}: {exc}. chDB holds one data "
                "directory per process; close the other store or use the same path"
            ) from None
        try:
            for name, value in OUTPUT_SETTINGS.items():
                session.query(f"SET {name} = '{value}'", "CSV")
        except (RuntimeError, ValueError) as exc:
            session.close()
            raise BackendUnavailable(f"cannot configure the chDB session: {exc}") from None
        return session

    def _apply_ddl(self, session: Session) -> None:
        database = quote_identifier(self.database)
        session.query(f"CREATE DATABASE IF NOT EXISTS {database}", "CSV")
        session.query(f"USE {database}", "CSV")
        for statement in schema.ddl_statements():
            session.query(statement, "CSV")

    def _call_sync(self, fn: Callable[[Session], T]) -> T:
        with self._engine_lock:
            session = self._session
            if session is None:
                raise BackendUnavailable(
                    f"the chDB store at {self.location!r} is not started (call start())"
                )
            try:
                return fn(session)
            except (RuntimeError, ValueError) as exc:
                raise BackendError(f"chDB: {str(exc).strip()}") from None

    async def _call(self, fn: Callable[[Session], T]) -> T:
        # Callers queue on the event loop, not in worker threads; the thread lock
        # still guards the session if a cancelled caller's thread is running on.
        async with self._queue:
            return await asyncio.to_thread(self._call_sync, fn)

    def _close(self) -> None:
        with self._engine_lock:
            session, self._session = self._session, None
            if session is not None:
                session.close()
