"""Transactional outbox: the table operations.

A service that changes state and emits events calls :func:`add_to_outbox` with the
session of its own transaction, so the state change and its events commit or
roll back together: there is no dual write to the database and the bus. The
relay (:mod:`ludex.services.outbox_relay`) later reads the committed rows in id
order, publishes them and marks them published.

Every envelope is validated by encoding it (``ludex.events.encode``) before it is
written; the stored payload is exactly those bytes.

This module must never commit, roll back or open a transaction of its own: the
caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

from sqlalchemy import CursorResult, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ludex.adapters.sql.tables import (
    EVENT_ID_LENGTH,
    EVENT_TYPE_LENGTH,
    PARTITION_KEY_LENGTH,
    TOPIC_LENGTH,
    outbox,
)
from ludex.errors import MalformedEvent, StoreError
from ludex.events import Envelope, encode


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One stored outbox row, payload still encoded."""

    id: int
    event_id: str
    topic: str
    event_type: str
    partition_key: str
    payload: bytes
    created_at: datetime
    published_at: datetime | None


_INSERT: Final = insert(outbox)


def outbox_row(envelope: Envelope, now: datetime) -> dict[str, Any]:
    payload = encode(envelope)
    if len(envelope.id) != EVENT_ID_LENGTH or not envelope.id.isascii():
        raise MalformedEvent(
            f"{envelope.type}: event id {envelope.id!r} is not a ULID "
            f"({EVENT_ID_LENGTH} ASCII characters); let new_event() choose it"
        )
    topic = envelope.topic
    for name, value, limit in (
        ("topic", topic, TOPIC_LENGTH),
        ("event type", envelope.type, EVENT_TYPE_LENGTH),
        ("partition key", envelope.key, PARTITION_KEY_LENGTH),
    ):
        if len(value) > limit:
            raise MalformedEvent(
                f"{envelope.type} (id {envelope.id}): {name} is {len(value)} characters; "
                f"the outbox stores at most {limit}"
            )
    return {
        "event_id": envelope.id,
        "topic": topic,
        "event_type": envelope.type,
        "partition_key": envelope.key,
        "payload": payload,
        "created_at": now,
        "published_at": None,
    }


async def add_to_outbox(session: AsyncSession, *envelopes: Envelope) -> None:
    """Write envelopes to the outbox inside the caller's transaction, in argument order.

    Raises :class:`~ludex.errors.EventError` for an envelope that does not encode (nothing
    is written), :class:`~ludex.errors.StoreError` if the session is not in a transaction.
    A duplicate event id fails the caller's commit with StoreError.
    """
    if not envelopes:
        return
    if not session.in_transaction():
        raise StoreError(
            "add_to_outbox needs the caller's open transaction (use store.transaction()); "
            "writing events outside it would split them from the state they describe"
        )
    now = datetime.now(UTC)
    rows = [outbox_row(envelope, now) for envelope in envelopes]
    # Core on the session's connection with a statement built once (no ORM execution
    # path, no per-call statement building or cache-key generation). Several rows: one
    # multi-row INSERT (executemany: a single VALUES list on SQLite and PostgreSQL, a
    # rewritten multi-row INSERT on MySQL); every backend assigns the autoincrement ids
    # in row order within one statement, which keeps ids in argument order.
    conn = await session.connection()
    await conn.execute(_INSERT, rows[0] if len(rows) == 1 else rows)


async def fetch_unpublished(session: AsyncSession, limit: int) -> list[OutboxRow]:
    """Committed, unpublished rows, lowest id first, at most ``limit``."""
    result = await session.execute(
        select(outbox).where(outbox.c.published_at.is_(None)).order_by(outbox.c.id).limit(limit)
    )
    return [
        OutboxRow(
            id=r.id,
            event_id=r.event_id,
            topic=r.topic,
            event_type=r.event_type,
            partition_key=r.partition_key,
            payload=bytes(r.payload),
            created_at=r.created_at,
            published_at=r.published_at,
        )
        for r in result
    ]


async def mark_published(
    session: AsyncSession, ids: Sequence[int], when: datetime | None = None
) -> int:
    """Mark exactly these rows published; returns how many were still unpublished."""
    if not ids:
        return 0
    result = cast(
        CursorResult[Any],
        await session.execute(
            update(outbox)
            .where(outbox.c.id.in_(list(ids)), outbox.c.published_at.is_(None))
            .values(published_at=when or datetime.now(UTC))
        ),
    )
    return int(result.rowcount)


async def count_unpublished(session: AsyncSession) -> int:
    """How many rows wait for the relay."""
    count = await session.scalar(
        select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
    )
    return int(count or 0)


async def purge_published(session: AsyncSession, before: datetime) -> int:
    """Delete rows published before ``before``; unpublished rows are never touched."""
    result = cast(
        CursorResult[Any],
        await session.execute(
            delete(outbox).where(outbox.c.published_at.is_not(None), outbox.c.published_at < before)
        ),
    )
    return int(result.rowcount)
