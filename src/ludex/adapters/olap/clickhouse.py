"""AnalyticsStore on a ClickHouse server, through clickhouse-connect's asyncio client.

``clickhouse://USER:PASS@HOST:PORT/DB`` (plain HTTP, port 8123 by default) or
``clickhouses://…`` (HTTPS, port 8443 by default); the port is the server's HTTP
port, not the native 9000. The database defaults to ``ludex`` and is created at
start. Requires ClickHouse 23.8 or newer (``session_timezone``).

The client (``clickhouse_connect.get_async_client``, aiohttp underneath) talks to
the server as soon as it is created (version, time zone, settings), so it is
created by :meth:`ClickHouseStore.start` (or by the first call that needs it)
and closed by :meth:`~ClickHouseStore.close`. Every request runs with
``session_timezone=UTC`` and ``date_time_input_format=basic``, like the chDB
session.

Parameters are bound server-side: the SQL keeps its ``{name:Type}``
placeholders and each value travels as an HTTP ``param_<name>`` field that the
server parses with the declared type. The values are rendered by the codec
shared with chDB (:func:`ludex.adapters.olap.sql.render_params`); clickhouse-connect
chooses server-side binding because the SQL holds ``{name:Type}`` placeholders
and forwards the rendered text untouched (its own formatting differs from
chDB's in escapes, booleans and datetimes). SQL without placeholders is sent
without parameters, so clickhouse-connect never falls back to client-side
``%`` formatting.

Results come in ClickHouse's Native format and clickhouse-connect turns them
into Python values (time-zone-aware datetimes, UTC for columns without a zone;
tuples as tuples); :func:`~ludex.adapters.olap.sql.normalize_native_rows` makes
the few that differ (Float32, Decimal, FixedString) match chDB's, so both
backends return the same Python types for the same columns. Inserts send Native
blocks through ``client.insert(..., column_names=...)``, which first reads the
table's column types (``DESCRIBE TABLE``: one extra round trip per insert);
naive datetimes are taken as UTC.

Where this backend still differs from :class:`~ludex.adapters.olap.chdb.ChdbStore`:

* insert values must be Python values of the column's type (``datetime`` for a
  DateTime column, ``date`` for a Date column…): the server parses chDB's JSON
  rows, so text works there, while clickhouse-connect serializes on the client
  and mostly rejects text (:class:`~ludex.errors.BackendError`, and it logs the
  traceback) or, for DateTime64, reads naive text as *local* time;
* a String that is not valid UTF-8 comes back as the hex of its bytes
  (clickhouse-connect's fallback) where chDB fails to decode the result;
* types outside the table in :mod:`ludex.adapters.olap.sql` (Time, Interval,
  Variant, Dynamic, JSON, Nested, geo types) come back as clickhouse-connect
  converts them, not in their JSON form.

Errors: a refused or timed-out connection, an unknown host, a dropped stream or
an HTTP 429/503/504 answer (after clickhouse-connect's retries of read-only
queries) raises :class:`~ludex.errors.BackendUnavailable`; an error reported by
ClickHouse raises :class:`~ludex.errors.BackendError` with the server's message.
The password goes only into the client's ``Authorization`` header and never
appears in a message, a log or ``repr``.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.binding import external_bind_re
from clickhouse_connect.driver.exceptions import (
    ClickHouseError,
    OperationalError,
    StreamFailureError,
)

from ludex.adapters.olap import schema
from ludex.adapters.olap.sql import (
    OUTPUT_SETTINGS,
    native_row_value,
    normalize_native_rows,
    quote_identifier,
    quote_table,
    render_params,
    row_values,
)
from ludex.config import redact_url
from ludex.errors import BackendError, BackendUnavailable, ConfigError

if TYPE_CHECKING:
    from clickhouse_connect.driver.asyncclient import AsyncClient

DEFAULT_PORTS: Final = {"clickhouse": 8123, "clickhouses": 8443}
# Server settings for every request: the same session as chDB's.
SESSION_SETTINGS: Final[Mapping[str, str]] = {
    "session_timezone": OUTPUT_SETTINGS["session_timezone"],
    # clickhouse-connect would make it best_effort; chDB parses datetimes as ClickHouse does.
    "date_time_input_format": "basic",
}
# Tuples come back as tuples (clickhouse-connect's default makes named tuples dicts).
_QUERY_FORMATS: Final = {"Tuple": "tuple"}
# What encoding insert rows may raise on the client (a value of the wrong type).
_ENCODE_ERRORS: Final = (TypeError, ValueError, ArithmeticError, AttributeError, struct.error)

T = TypeVar("T")


class _Rendered:
    """A parameter already rendered by the shared codec; clickhouse-connect sends ``str()``."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


def bind_parameters(sql: str, parameters: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The parameters to hand clickhouse-connect for ``sql``, rendered; None when there are none.

    Raises like :func:`~ludex.adapters.olap.sql.render_params` (a bad name, an
    unbindable value) before anything is sent. Parameters are left out when the
    SQL has no ``{name:Type}`` placeholder: clickhouse-connect would then format
    them into the SQL client-side, and the server would not use them anyway.
    """
    rendered = render_params(parameters)
    if not rendered or external_bind_re.search(sql) is None:
        return None
    return {name: _Rendered(text) for name, text in rendered.items()}


class ClickHouseStore:
    """AnalyticsStore on a ClickHouse server."""

    def __init__(self, url: str, *, timeout: float = 30.0, connect_timeout: float = 3.0) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        self._display_url = redact_url(url)
        if scheme not in DEFAULT_PORTS:
            raise ConfigError(f"{self._display_url!r} is not a clickhouse:// or clickhouses:// URL")
        if not parts.hostname:
            raise ConfigError(
                f"{self._display_url!r} has no host; use clickhouse://USER:PASS@HOST:PORT/DB"
            )
        if parts.query or parts.fragment:
            raise ConfigError(f"{self._display_url!r}: clickhouse URLs take no options")
        try:
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError:
            raise ConfigError(f"{self._display_url!r} has a bad port") from None
        self.database = unquote(parts.path.strip("/")) or schema.DEFAULT_DATABASE
        try:
            quote_identifier(self.database)
        except ValueError as exc:
            raise ConfigError(f"{self._display_url!r}: database {exc}") from None
        self._host = parts.hostname
        self._port = port
        self._interface = "https" if scheme == "clickhouses" else "http"
        self._username = unquote(parts.username or "default")
        self._password = unquote(parts.password or "")
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._client: AsyncClient | None = None
        self._connecting = asyncio.Lock()
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> ClickHouseStore:
        return cls(url)

    def __repr__(self) -> str:
        return f"ClickHouseStore({self._display_url!r})"

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Connect, create the database and apply the DDL (idempotent; reopens a closed store)."""
        self._closed = False
        create = f"CREATE DATABASE IF NOT EXISTS {quote_identifier(self.database)}"
        await self._command(create, use_database=False)
        for statement in schema.ddl_statements():
            await self._command(statement)

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def ping(self) -> None:
        if not await self._run(lambda client: client.ping()):
            raise BackendUnavailable(
                f"ClickHouse at {self._display_url} is unreachable (no answer to /ping)"
            )

    # -- AnalyticsStore ------------------------------------------------------------

    async def execute(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None:
        await self._command(sql, bind_parameters(sql, parameters))

    async def insert(
        self, table: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
    ) -> int:
        if not rows:
            return 0
        if not columns:
            raise ValueError("an insert needs at least one column")
        quote_table(table)  # plain identifiers only, as on chDB
        for column in columns:
            quote_identifier(column)
        data = row_values(rows, columns, native_row_value)
        try:
            await self._run(lambda client: client.insert(table, data, column_names=list(columns)))
        except _ENCODE_ERRORS as exc:
            raise BackendError(
                f"ClickHouse: cannot encode the rows for {table}: {type(exc).__name__}: {exc}"
            ) from None
        return len(rows)

    async def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        params = bind_parameters(sql, parameters)
        result = await self._run(
            lambda client: client.query(
                sql, parameters=params, query_formats=dict(_QUERY_FORMATS), query_tz=UTC
            )
        )
        if not result.column_names:  # a statement without a result set
            return []
        return normalize_native_rows(
            result.column_names, [t.name for t in result.column_types], result.result_rows
        )

    # -- client ---------------------------------------------------------------------

    async def _command(
        self, sql: str, parameters: dict[str, Any] | None = None, *, use_database: bool = True
    ) -> None:
        await self._run(
            lambda client: client.command(sql, parameters=parameters, use_database=use_database)
        )

    async def _run(self, call: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """``call`` with the connected client, its failures translated."""
        client = await self._connected()
        try:
            return await call(client)
        except (ClickHouseError, OSError, TimeoutError) as exc:
            raise self._translate(exc) from None

    async def _connected(self) -> AsyncClient:
        if self._closed:
            raise BackendUnavailable(f"the store for {self._display_url} is closed (call start())")
        if self._client is not None:
            return self._client
        async with self._connecting:
            if self._client is None:
                client = await self._connect()
                if self._closed:  # closed while connecting
                    await client.close()
                    raise BackendUnavailable(
                        f"the store for {self._display_url} is closed (call start())"
                    )
                self._client = client
            return self._client

    async def _connect(self) -> AsyncClient:
        try:
            client = await clickhouse_connect.get_async_client(
                host=self._host,
                port=self._port,
                interface=self._interface,
                username=self._username,
                password=self._password,
                settings=dict(SESSION_SETTINGS),
                connect_timeout=self._connect_timeout,
                send_receive_timeout=self._timeout,
                tz_mode="aware",
                client_name="ludex",
            )
        except (ClickHouseError, OSError, TimeoutError) as exc:
            raise self._translate(exc) from None
        # Created without a database (it may not exist yet); every later call uses it.
        client.database = self.database
        return client

    def _translate(self, exc: BaseException) -> BackendError:
        """A clickhouse-connect or network failure as a ludex error (no password in it)."""
        if isinstance(exc, StreamFailureError) and exc.code is not None:
            return BackendError(f"ClickHouse: {exc}")  # the server failed the query mid-stream
        if isinstance(exc, OperationalError | OSError | TimeoutError):
            detail = type(exc).__name__ + (f": {exc}" if str(exc) else "")
            return BackendUnavailable(
                f"ClickHouse at {self._display_url} is unreachable ({detail})"
            )
        return BackendError(f"ClickHouse: {exc}")
