"""The analytics sink: every bus event lands in the analytics ``events`` table.

One consumer group (``analytics-sink``) reads every catalog topic; each polled
batch becomes one insert, and the bus offsets are committed only after the insert
succeeded. Delivery is therefore at-least-once: after a crash between insert and
commit the batch comes again, and the table's ReplacingMergeTree engine collapses
the duplicates (same type, occurred_at and event id); exact counts read ``FINAL``.

A failed insert keeps the batch and retries it (``run`` backs off exponentially);
nothing is committed until it lands. A record that does not decode is never
skipped: the sink logs its topic, partition and offset and stops with the
:class:`~ludex.errors.MalformedEvent`. Dead-lettering (parking the record and
seeking past it) is later work.

This service must never commit an offset whose events are not in the store, and
never imports a backend: it is given an EventBus and an AnalyticsStore.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter as Tally
from collections.abc import Sequence
from typing import Any, Final

import msgspec
import structlog
from prometheus_client import Counter

from ludex.errors import BackendError, MalformedEvent
from ludex.events import topics
from ludex.ports.bus import Consumer, EventBus, Record
from ludex.ports.olap import AnalyticsStore

log = structlog.get_logger(__name__)

GROUP: Final = "analytics-sink"
EVENTS_TABLE: Final = "events"
# Must match the events table in ludex/adapters/olap/schema.sql (a test checks it);
# ingested_at is left to its DEFAULT.
EVENT_COLUMNS: Final = (
    "event_id",
    "type",
    "topic",
    "key",
    "occurred_at",
    "producer",
    "version",
    "payload",
)

ROWS = Counter("ludex_analytics_rows_total", "Events written to the analytics store", ["type"])
INSERT_FAILURES = Counter(
    "ludex_analytics_insert_failures_total",
    "Analytics sink batches that failed to insert or commit (retried)",
)


def event_row(record: Record) -> dict[str, Any]:
    """The ``events`` row of one consumed record; the payload is stored as JSON text."""
    envelope = record.envelope
    return {
        "event_id": envelope.id,
        "type": envelope.type,
        "topic": record.topic,
        "key": envelope.key,
        "occurred_at": envelope.occurred_at,
        "producer": envelope.producer,
        "version": envelope.version,
        "payload": msgspec.json.encode(envelope.payload).decode(),
    }


class AnalyticsSink:
    """Copies every bus event into the analytics store, at least once."""

    def __init__(
        self,
        bus: EventBus,
        store: AnalyticsStore,
        *,
        group: str = GROUP,
        topics: Sequence[str] | None = None,
        batch_size: int = 500,
        poll_timeout: float = 1.0,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        self._bus = bus
        self._store = store
        self._group = group
        self._topics = list(topics) if topics is not None else None
        self._batch_size = batch_size
        self._poll_timeout = poll_timeout
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._consumer: Consumer | None = None
        self._pending: list[Record] = []

    async def run(self, stop: asyncio.Event) -> None:
        """Process batches until ``stop`` is set; retry backend failures, stop on bad records."""
        delay = self._retry_initial
        log.info("analytics_sink.started", group=self._group)
        try:
            while not stop.is_set():
                try:
                    await self.run_once()
                except MalformedEvent:
                    raise
                except BackendError as exc:
                    log.warning("analytics_sink.retrying", error=str(exc), retry_in=delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    delay = min(delay * 2, self._retry_max)
                else:
                    delay = self._retry_initial
        finally:
            await self.close()
            log.info("analytics_sink.stopped", group=self._group)

    async def run_once(self) -> int:
        """Insert one batch and commit it; returns how many events were written (0: none)."""
        consumer = await self._open()
        records = self._pending or await self._poll(consumer)
        if not records:
            return 0
        self._pending = records
        try:
            written = await self._store.insert(
                EVENTS_TABLE, [event_row(r) for r in records], EVENT_COLUMNS
            )
        except BackendError:
            INSERT_FAILURES.inc()
            raise
        # Inserted: a failed commit now only means re-delivery, which the engine collapses.
        self._pending = []
        try:
            await consumer.commit(records)
        except BackendError:
            INSERT_FAILURES.inc()
            raise
        for event_type, count in Tally(r.envelope.type for r in records).items():
            ROWS.labels(type=event_type).inc(count)
        log.debug("analytics_sink.batch", events=written)
        return written

    async def close(self) -> None:
        """Leave the consumer group; an uncommitted batch will be delivered again."""
        consumer, self._consumer = self._consumer, None
        self._pending = []
        if consumer is not None:
            await consumer.__aexit__(None, None, None)

    async def _open(self) -> Consumer:
        if self._consumer is None:
            wanted = self._topics if self._topics is not None else topics()
            consumer = self._bus.consumer(wanted, self._group, start="earliest")
            await consumer.__aenter__()
            self._consumer = consumer
        return self._consumer

    async def _poll(self, consumer: Consumer) -> list[Record]:
        try:
            return await consumer.poll(self._batch_size, self._poll_timeout)
        except MalformedEvent as exc:
            log.error(
                "analytics_sink.malformed_record",
                topic=getattr(exc, "topic", None),
                partition=getattr(exc, "partition", None),
                offset=getattr(exc, "offset", None),
                error=str(exc),
            )
            raise
