"""Consumer-side deduplication: apply each event's effect exactly once.

The bus delivers at least once (the outbox relay re-publishes after a crash, a
consumer re-reads after a crash before its commit). A consumer whose effect lives
in the operational store makes it exactly-once by recording the event id in
``processed_events`` in the same transaction as the effect:

* :func:`process_once` inserts ``(consumer, event_id)`` with the backend's
  insert-or-ignore (``ON CONFLICT DO NOTHING`` on PostgreSQL and SQLite,
  ``INSERT IGNORE`` on MySQL) and reports from the row count whether this is the
  first time. No IntegrityError is raised, so the caller's transaction stays
  usable (on PostgreSQL an error would abort it). A concurrent duplicate waits for
  the first transaction and then sees the row (or inserts it if that one rolled
  back).
* :class:`IdempotentConsumer` wraps a handler: for each record, one transaction
  holding ``process_once`` and the handler's writes; after the whole batch, the bus
  offsets are committed. A crash anywhere re-delivers, and the re-delivery is
  skipped for every event whose transaction had committed.

This module must never commit bus offsets before the effects of those records are
committed, and never swallow a handler's error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from prometheus_client import Counter
from sqlalchemy import CursorResult, Insert
from sqlalchemy.ext.asyncio import AsyncSession

from ludex.adapters.sql.store import insert_ignore
from ludex.adapters.sql.tables import CONSUMER_LENGTH, EVENT_ID_LENGTH, processed_events
from ludex.errors import StoreError
from ludex.events import Envelope
from ludex.ports.bus import Consumer, EventBus, Record, StartFrom
from ludex.ports.store import OperationalStore

Handler = Callable[[AsyncSession, Envelope], Awaitable[None]]

DUPLICATES = Counter(
    "ludex_events_duplicate_total",
    "Events delivered again and skipped by an idempotent consumer",
    ["consumer"],
)

log = structlog.get_logger(__name__)


def _insert_ignore(dialect: str, values: dict[str, Any]) -> Insert:
    # INSERT IGNORE (MySQL) also downgrades other errors to warnings; the arguments are
    # checked in process_once, so a duplicate key is the only one left.
    return insert_ignore(dialect, processed_events).values(**values)


async def process_once(session: AsyncSession, consumer: str, event_id: str) -> bool:
    """Record that ``consumer`` processes ``event_id``; False if it already did.

    Runs in the caller's transaction: if that transaction rolls back, the event
    counts as not processed.
    """
    if not consumer or len(consumer) > CONSUMER_LENGTH:
        raise StoreError(f"consumer name must be 1 to {CONSUMER_LENGTH} characters: {consumer!r}")
    if len(event_id) != EVENT_ID_LENGTH or not event_id.isascii():
        raise StoreError(f"event id {event_id!r} is not a ULID ({EVENT_ID_LENGTH} characters)")
    if not session.in_transaction():
        raise StoreError("process_once needs the caller's open transaction (store.transaction())")
    statement = _insert_ignore(
        session.bind.dialect.name if session.bind is not None else "",
        {"consumer": consumer, "event_id": event_id, "processed_at": datetime.now(UTC)},
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    return int(result.rowcount) == 1


class IdempotentConsumer:
    """Applies ``handler(session, envelope)`` once per event id for consumer ``name``."""

    def __init__(self, store: OperationalStore, name: str, handler: Handler) -> None:
        if not name or len(name) > CONSUMER_LENGTH:
            raise ValueError(f"consumer name must be 1 to {CONSUMER_LENGTH} characters")
        self._store = store
        self._name = name
        self._handler = handler

    @property
    def name(self) -> str:
        return self._name

    async def handle(self, envelope: Envelope) -> bool:
        """Apply one event in its own transaction; False if it was applied before."""
        async with self._store.transaction() as session:
            if not await process_once(session, self._name, envelope.id):
                DUPLICATES.labels(consumer=self._name).inc()
                log.debug("event.duplicate_skipped", consumer=self._name, event_id=envelope.id)
                return False
            await self._handler(session, envelope)
        return True

    async def handle_records(self, consumer: Consumer, records: Sequence[Record]) -> int:
        """Apply a polled batch, then commit its offsets; returns how many were new."""
        applied = 0
        for record in records:
            if await self.handle(record.envelope):
                applied += 1
        if records:
            await consumer.commit(records)
        return applied

    async def run(
        self,
        bus: EventBus,
        topics: Sequence[str],
        stop: asyncio.Event,
        *,
        group: str | None = None,
        start: StartFrom = "earliest",
        max_records: int = 500,
        poll_timeout: float = 0.2,
    ) -> None:
        """Consume ``topics`` in ``group`` (default: the consumer name) until ``stop``."""
        async with bus.consumer(topics, group or self._name, start=start) as consumer:
            while not stop.is_set():
                records = await consumer.poll(max_records=max_records, timeout=poll_timeout)
                await self.handle_records(consumer, records)
