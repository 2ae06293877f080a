"""Outbox relay: publishes committed outbox rows to the event bus, in id order.

One round (:meth:`OutboxRelay.run_once`):

1. With a KeyValue store, hold the leader lease ``outbox-relay`` (acquire, or renew
   when a third of it has run down); a relay that does not hold it publishes
   nothing, so normally exactly one relay publishes.
2. In one short transaction, select the unpublished rows (``published_at IS NULL``)
   ``ORDER BY id LIMIT batch_size``, and decode each one. A row that does not decode
   is a bug in its producer or in the catalog: the relay logs its outbox id and
   raises; it never skips a row.
3. ``bus.publish_many`` in id order; it returns once every record is durable.
4. In a second short transaction, set ``published_at`` on exactly those ids.

Guarantees, precisely:

* **Order.** Among committed rows, rows are published in id order. Ids are assigned
  at insert, commits may land in another order: a transaction that inserts first
  (lower id) and commits later is published in a later round, after higher ids.
  Because the relay selects on the ``published_at IS NULL`` flag rather than
  reading from a high-water-mark id cursor, such a late row is never skipped.
* **Per-key order.** Records with the same partition key reach the bus in the order
  their transactions committed, provided producers serialize writes per key (they
  lock the aggregate's row, e.g. ``SELECT ... FOR UPDATE`` on the table or the
  account, before adding events), so that for one key insert order equals commit
  order. The bus keeps publish order per key.
* **Delivery.** At least once. A crash (or a lost lease) between publishing and
  marking re-publishes the batch in a later round; consumers dedupe by event id
  (``ludex.services.idempotent``). A round that fails before publishing publishes
  nothing and leaves the rows for the next round.

The ``after_publish`` hook runs between steps 3 and 4 with the batch's outbox ids;
it exists so tests can inject a crash at the one point that matters. Production
code leaves it unset.

This service must never mark a row it has not seen acknowledged by the bus, never
skip an undecodable row, and never hold a database transaction open while it
publishes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import UTC, datetime, timedelta

import structlog
from prometheus_client import Counter, Gauge

from ludex.adapters.sql.outbox import (
    count_unpublished,
    fetch_unpublished,
    mark_published,
    purge_published,
)
from ludex.errors import BackendError, EventError, LockLost, StoreError
from ludex.events import Envelope, decode
from ludex.ports.bus import EventBus
from ludex.ports.kv import KeyValue, Lease
from ludex.ports.store import OperationalStore

AfterPublish = Callable[[list[int]], Awaitable[None]]

LOCK_NAME = "outbox-relay"
MAX_BACKOFF_SECONDS = 5.0

PUBLISHED = Counter("ludex_outbox_published_total", "Outbox rows published to the bus")
LAG = Gauge(
    "ludex_outbox_lag_rows",
    "Outbox rows waiting to be published (measured when a round finds a full batch)",
)

log = structlog.get_logger(__name__)


def _default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class OutboxRelay:
    """Moves committed outbox rows to the bus; see the module docstring for guarantees."""

    def __init__(
        self,
        store: OperationalStore,
        bus: EventBus,
        kv: KeyValue | None = None,
        *,
        batch_size: int = 500,
        poll_interval: float = 0.05,
        lease_seconds: float = 10.0,
        owner: str | None = None,
        lock_name: str = LOCK_NAME,
        after_publish: AfterPublish | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if poll_interval <= 0 or lease_seconds <= 0:
            raise ValueError("poll_interval and lease_seconds must be > 0")
        self._store = store
        self._bus = bus
        self._kv = kv
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._lease_seconds = lease_seconds
        self._owner = owner or _default_owner()
        self._lock_name = lock_name
        self._after_publish = after_publish
        self._lease: Lease | None = None
        self._renewed_at = 0.0

    @property
    def owner(self) -> str:
        return self._owner

    @property
    def is_leader(self) -> bool:
        """True while this relay holds the lease (always True without a KeyValue)."""
        return self._kv is None or self._lease is not None

    async def run(self, stop: asyncio.Event) -> None:
        """Publish rounds until ``stop`` is set; back off while a backend is down."""
        delay = self._poll_interval
        log.info("outbox.relay.started", owner=self._owner, batch_size=self._batch_size)
        try:
            while not stop.is_set():
                try:
                    published = await self.run_once()
                    delay = self._poll_interval
                except BackendError as exc:
                    log.warning("outbox.relay.backend_error", error=str(exc), retry_in=delay)
                    published = 0
                    delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                if published >= self._batch_size:
                    await asyncio.sleep(0)  # more rows wait; let others run, then go on
                    continue
                with suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
        finally:
            await self._release()
            log.info("outbox.relay.stopped", owner=self._owner)

    async def run_once(self) -> int:
        """One round; returns how many rows it published (0 when not the leader)."""
        if not await self._lead():
            return 0
        async with self._store.transaction() as session:
            rows = await fetch_unpublished(session, self._batch_size)
        if not rows:
            LAG.set(0)
            return 0
        envelopes: list[Envelope] = []
        for row in rows:
            try:
                envelopes.append(decode(row.payload))
            except EventError as exc:
                log.error(
                    "outbox.undecodable_row",
                    outbox_id=row.id,
                    event_id=row.event_id,
                    event_type=row.event_type,
                    error=str(exc),
                )
                raise StoreError(
                    f"outbox row {row.id} (event {row.event_id}, {row.event_type}) cannot be "
                    f"decoded: {exc}; fix its producer or the event catalog, then restart the "
                    "relay (rows are never skipped)"
                ) from exc
        ids = [row.id for row in rows]
        await self._bus.publish_many(envelopes)
        log.debug("outbox.published", event_ids=[e.id for e in envelopes], outbox_ids=ids)
        if self._after_publish is not None:
            await self._after_publish(ids)
        async with self._store.transaction() as session:
            await mark_published(session, ids, datetime.now(UTC))
        PUBLISHED.inc(len(ids))
        log.info(
            "outbox.batch_published",
            count=len(ids),
            first_event_id=envelopes[0].id,
            last_event_id=envelopes[-1].id,
            first_outbox_id=ids[0],
            last_outbox_id=ids[-1],
        )
        if len(rows) < self._batch_size:
            LAG.set(0)
        else:
            async with self._store.transaction() as session:
                LAG.set(await count_unpublished(session))
        return len(ids)

    async def purge_published(self, older_than: timedelta) -> int:
        """Housekeeping: delete rows published more than ``older_than`` ago."""
        cutoff = datetime.now(UTC) - older_than
        async with self._store.transaction() as session:
            purged = await purge_published(session, cutoff)
        log.info("outbox.purged", count=purged, published_before=cutoff.isoformat())
        return purged

    async def _lead(self) -> bool:
        if self._kv is None:
            return True
        if self._lease is None:
            self._lease = await self._kv.acquire_lock(
                self._lock_name, self._owner, self._lease_seconds
            )
            if self._lease is None:
                return False
            self._renewed_at = time.monotonic()
            log.info("outbox.relay.leader", owner=self._owner, token=self._lease.token)
            return True
        # Renew once a third of the lease has run down, timed on our own monotonic clock
        # so a skewed wall clock cannot let the lease lapse unnoticed.
        if time.monotonic() - self._renewed_at < self._lease_seconds / 3:
            return True
        try:
            self._lease = await self._kv.renew_lock(self._lease, self._lease_seconds)
        except LockLost:
            log.warning("outbox.relay.lease_lost", owner=self._owner)
            self._lease = None
            return False
        self._renewed_at = time.monotonic()
        return True

    async def _release(self) -> None:
        lease, self._lease = self._lease, None
        if lease is not None and self._kv is not None:
            try:
                await self._kv.release_lock(lease)
            except Exception as exc:  # the lease lapses on its own; never mask the exit
                log.warning("outbox.relay.release_failed", owner=self._owner, error=str(exc))
