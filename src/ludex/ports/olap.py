"""AnalyticsStore port: ClickHouse SQL, embedded (chDB) or on a server.

One set of DDL and queries serves both backends. Rows go in as dictionaries of
column name to value; queries return dictionaries. Query parameters use
ClickHouse's server-side binding syntax, ``{name:Type}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class AnalyticsStore(Protocol):
    async def start(self) -> None:
        """Connect and apply the DDL (idempotent)."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def execute(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None: ...

    async def insert(
        self, table: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
    ) -> int:
        """Insert rows; returns how many were written."""
        ...

    async def query(
        self, sql: str, parameters: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]: ...
