"""The analytics schema (``schema.sql``) and the small set of named queries over it.

Both AnalyticsStore backends apply :func:`ddl_statements` at start and run the
queries below unchanged, so SQL lives in exactly one place. Queries bind values
as ClickHouse ``{name:Type}`` parameters; they never format values into SQL.

The queries (each reads through ``FINAL`` so re-delivered events count once):

* :func:`events_per_type` — how many events of each type occurred since a time.
* :func:`event_count` — how many events there are, optionally of one type.

This module must never open a connection itself; it only talks through the
AnalyticsStore it is given.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from importlib import resources
from typing import Final

from ludex.ports.olap import AnalyticsStore

DEFAULT_DATABASE: Final = "ludex"
EVENTS_TABLE: Final = "events"
# The columns a writer fills; ingested_at takes its DEFAULT (the insert time).
EVENTS_COLUMNS: Final = (
    "event_id",
    "type",
    "topic",
    "key",
    "occurred_at",
    "producer",
    "version",
    "payload",
)


@cache
def ddl_statements() -> tuple[str, ...]:
    """The statements of ``schema.sql``, comments removed, in file order."""
    text = resources.files(__package__).joinpath("schema.sql").read_text(encoding="utf-8")
    statements: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("--"):
            continue
        current.append(line.rstrip())
        if stripped.endswith(";"):
            statements.append("\n".join(current).rstrip(";").strip())
            current = []
    if current:
        statements.append("\n".join(current).strip())
    return tuple(statements)


EVENTS_PER_TYPE_SQL: Final = """
SELECT type, count() AS events
FROM events FINAL
WHERE occurred_at >= {since:DateTime64(6, 'UTC')}
GROUP BY type
ORDER BY type
"""

EVENT_COUNT_SQL: Final = """
SELECT count() AS events
FROM events FINAL
WHERE {event_type:Nullable(String)} IS NULL OR type = {event_type:Nullable(String)}
"""


async def events_per_type(store: AnalyticsStore, since: datetime) -> dict[str, int]:
    """Event type → number of distinct events that occurred at or after ``since``."""
    rows = await store.query(EVENTS_PER_TYPE_SQL, {"since": since})
    return {str(row["type"]): int(row["events"]) for row in rows}


async def event_count(store: AnalyticsStore, event_type: str | None = None) -> int:
    """Number of distinct events, of ``event_type`` only when it is given."""
    rows = await store.query(EVENT_COUNT_SQL, {"event_type": event_type})
    return int(rows[0]["events"])
