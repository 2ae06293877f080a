"""AnalyticsStore on a ClickHouse server, over its HTTP interface (httpx, asyncio).

``clickhouse://USER:PASS@HOST:PORT/DB`` (plain HTTP, port 8123 by default) or
``clickhouses://…`` (HTTPS, port 8443 by default); the port is the server's HTTP
port, not the native 9000. The database defaults to ``ludex`` and is created at
start. Requires ClickHouse 23.8 or newer (``session_timezone``).

Queries bind values server-side: the SQL goes in the request body and every
``{name:Type}`` value as an HTTP ``param_<name>`` field, rendered by the codec
shared with chDB (:mod:`ludex.adapters.olap.sql`); results come back as
``JSONCompactEachRowWithNamesAndTypes`` and are decoded by the same codec, so
both backends return the same Python types for the same columns. Inserts send
``INSERT INTO t (cols) FORMAT JSONCompactEachRow`` with the rows as the body.

Why not clickhouse-connect: its asyncio client needs aiohttp, which ludex does
not depend on, and sharing the codec with chDB makes type parity hold by
construction rather than by test.

Errors: a refused or timed-out connection, or a 5xx gateway answer, raises
:class:`~ludex.errors.BackendUnavailable`; an error reported by ClickHouse raises
:class:`~ludex.errors.BackendError` with the server's message. The password is
sent only in a header and never appears in a message, a log or ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import httpx

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
from ludex.config import redact_url
from ludex.errors import BackendError, BackendUnavailable, ConfigError

DEFAULT_PORTS: Final = {"clickhouse": 8123, "clickhouses": 8443}
_UNAVAILABLE_STATUS: Final = frozenset({502, 503, 504})


class ClickHouseStore:
    """AnalyticsStore on a ClickHouse server."""

    def __init__(self, url: str, *, timeout: float = 30.0, connect_timeout: float = 5.0) -> None:
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
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self._base_url = f"{'https' if scheme == 'clickhouses' else 'http'}://{host}:{port}/"
        self._headers = {"X-ClickHouse-User": unquote(parts.username or "default")}
        if parts.password:
            self._headers["X-ClickHouse-Key"] = unquote(parts.password)
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._client: httpx.AsyncClient | None = None
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
        await self._request(
            f"CREATE DATABASE IF NOT EXISTS {quote_identifier(self.database)}", use_database=False
        )
        for statement in schema.ddl_statements():
            await self._request(statement)

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def ping(self) -> None:
        try:
            response = await self._http().get("ping")
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code != 200:
            raise BackendUnavailable(
                f"ClickHouse at {self._display_url} answered /ping with HTTP "
                f"{response.status_code}: {response.text.strip()[:200]}"
            )

    # -- AnalyticsStore ------------------------------------------------------------

    async def execute(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None:
        await self._request(sql, parameters)

    async def insert(
        self, table: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
    ) -> int:
        if not rows:
            return 0
        await self._request(insert_statement(table, columns), data=encode_rows(rows, columns))
        return len(rows)

    async def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return decode_result(await self._request(sql, parameters))

    # -- HTTP -----------------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._closed:
            raise BackendUnavailable(f"the store for {self._display_url} is closed (call start())")
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self._base_url, headers=self._headers, timeout=self._timeout
            )
        return self._client

    def _unreachable(self, exc: httpx.HTTPError) -> BackendUnavailable:
        detail = type(exc).__name__ + (f": {exc}" if str(exc) else "")
        return BackendUnavailable(f"ClickHouse at {self._display_url} is unreachable ({detail})")

    async def _request(
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        data: bytes | None = None,
        use_database: bool = True,
    ) -> bytes:
        fields: dict[str, str] = dict(OUTPUT_SETTINGS)
        # Buffer the whole answer so an error mid-query arrives as an HTTP error.
        fields["wait_end_of_query"] = "1"
        fields["default_format"] = RESULT_FORMAT
        if use_database:
            fields["database"] = self.database
        for name, value in render_params(parameters).items():
            fields[f"param_{name}"] = value
        if data is None:
            content = sql.encode()
        else:
            fields["query"] = sql
            content = data
        try:
            response = await self._http().post("", params=fields, content=content)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code == 200:
            return response.content
        message = response.text.strip() or f"HTTP {response.status_code}"
        if response.status_code in _UNAVAILABLE_STATUS:
            raise BackendUnavailable(f"ClickHouse at {self._display_url}: {message}")
        raise BackendError(f"ClickHouse: {message}")
