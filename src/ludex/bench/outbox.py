"""Transactional outbox throughput: ``add_to_outbox`` and the relay against bare inserts.

For every store backend (SQLite in a temporary folder always; PostgreSQL and
MariaDB/MySQL when a URL is known, each in a fresh database created for the run
and dropped afterwards, migrated to head):

1. ``add_to_outbox``: ``rows`` ``wallet.bet_placed`` envelopes in transactions of
   ``txn_size`` (one ``store.transaction()`` each), rows/s;
2. relay: ``OutboxRelay.run_once`` (batches of ``relay_batch``) until every row is
   published to an in-process bus and marked published, rows/s;
3. the outbox table is emptied, then the peer writes the same rows (same event ids,
   same pre-encoded payload bytes) into it with a bare SQLAlchemy Core
   ``insert(outbox)`` executemany per transaction of ``txn_size``: what the write
   costs without ludex's envelope encoding and validation and its one statement
   per row (which keeps ids in argument order on every backend);
4. emptied again, the same bare Core insert with one ``execute`` per row: it
   splits the gap between "one statement per row" and "encoding, validation and
   the ORM session".

The four phases run ``rounds`` times in turn (the table emptied between them), so
other load on the machine falls on every contender; the best round is reported.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text

from ludex.adapters.bus.memory import MemoryBus
from ludex.adapters.sql import SqlStore, create_store
from ludex.adapters.sql.outbox import add_to_outbox, count_unpublished
from ludex.adapters.sql.tables import outbox
from ludex.bench._common import header, per_second, progress, redacted, resolve, sample_events
from ludex.bench._db import fresh_database
from ludex.errors import StoreError
from ludex.events import Envelope, encode
from ludex.services.outbox_relay import OutboxRelay

BACKENDS = ("sqlite", "postgres", "mysql")


def _peer_rows(envelopes: list[Envelope]) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "event_id": e.id,
            "topic": e.topic,
            "event_type": e.type,
            "partition_key": e.key,
            "payload": encode(e),
            "created_at": now,
            "published_at": None,
        }
        for e in envelopes
    ]


async def _count(store: SqlStore) -> int:
    async with store.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(outbox)) or 0)


async def _empty_outbox(store: SqlStore) -> None:
    async with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            await conn.execute(outbox.delete())
        else:
            await conn.execute(text("TRUNCATE TABLE outbox"))


async def _ours_add(store: SqlStore, envelopes: list[Envelope], txn_size: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(envelopes), txn_size):
        async with store.transaction() as session:
            await add_to_outbox(session, *envelopes[i : i + txn_size])
    return time.perf_counter() - started


async def _ours_relay(store: SqlStore, relay_batch: int) -> tuple[int, float]:
    bus = MemoryBus()
    await bus.start()
    relay = OutboxRelay(store, bus, batch_size=relay_batch)
    started = time.perf_counter()
    relayed = 0
    while published := await relay.run_once():
        relayed += published
    elapsed = time.perf_counter() - started
    await bus.close()
    return relayed, elapsed


async def _peer_executemany(store: SqlStore, rows: list[dict[str, Any]], txn_size: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(rows), txn_size):
        async with store.engine.begin() as conn:
            await conn.execute(insert(outbox), rows[i : i + txn_size])
    return time.perf_counter() - started


async def _peer_per_row(store: SqlStore, rows: list[dict[str, Any]], txn_size: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(rows), txn_size):
        async with store.engine.begin() as conn:
            for row in rows[i : i + txn_size]:
                await conn.execute(insert(outbox), row)
    return time.perf_counter() - started


async def _measure(
    label: str,
    url: str,
    envelopes: list[Envelope],
    txn_size: int,
    relay_batch: int,
    rounds: int,
) -> dict[str, Any]:
    rows = len(envelopes)
    peer_rows = _peer_rows(envelopes)
    best = {
        name: float("inf")
        for name in ("add_to_outbox", "relay", "insert_executemany", "insert_per_row")
    }

    def check(what: str, got: int) -> None:
        if got != rows:
            raise StoreError(f"bench: {label}: {what} handled {got} rows, expected {rows}")

    store = create_store(url, pool_size=5)
    await store.start()
    try:
        await store.migrate()
        for round_ in range(1, rounds + 1):
            step = f"outbox/{label} (round {round_}/{rounds})"
            progress(f"{step}: add_to_outbox {rows} rows in transactions of {txn_size}")
            best["add_to_outbox"] = min(
                best["add_to_outbox"], await _ours_add(store, envelopes, txn_size)
            )
            check("add_to_outbox", await _count(store))

            progress(f"{step}: OutboxRelay.run_once (batch {relay_batch}) to a memory bus")
            relayed, seconds = await _ours_relay(store, relay_batch)
            best["relay"] = min(best["relay"], seconds)
            check("the relay", relayed)
            async with store.transaction() as session:
                if left := await count_unpublished(session):
                    raise StoreError(f"bench: {label}: {left} rows left unpublished")
            await _empty_outbox(store)

            progress(f"{step}: bare SQLAlchemy insert executemany, {rows} rows")
            best["insert_executemany"] = min(
                best["insert_executemany"], await _peer_executemany(store, peer_rows, txn_size)
            )
            check("insert executemany", await _count(store))
            await _empty_outbox(store)

            progress(f"{step}: bare SQLAlchemy insert, one statement per row, {rows} rows")
            best["insert_per_row"] = min(
                best["insert_per_row"], await _peer_per_row(store, peer_rows, txn_size)
            )
            check("insert per row", await _count(store))
            await _empty_outbox(store)
    finally:
        await store.close()

    ours = {
        "add_to_outbox": {"rows": rows, "rows_per_s": per_second(rows, best["add_to_outbox"])},
        "relay_to_memory_bus": {"rows": rows, "rows_per_s": per_second(rows, best["relay"])},
    }
    peer = {
        name: {"rows": rows, "rows_per_s": per_second(rows, best[name])}
        for name in ("insert_executemany", "insert_per_row")
    }
    return {
        "ludex": ours,
        "peer_sqlalchemy": peer,
        "add_vs_peer": {
            name: round(ours["add_to_outbox"]["rows_per_s"] / figures["rows_per_s"], 2)
            for name, figures in peer.items()
        },
    }


async def run(
    rows: int = 5_000,
    *,
    rounds: int = 2,
    txn_size: int = 100,
    relay_batch: int = 500,
    keys: int = 1_000,
    postgres: str | None = None,
    mysql: str | None = None,
) -> dict[str, Any]:
    """Run the outbox benchmark; a URL of None means the local service, "" skips it."""
    envelopes = sample_events(rows, keys)
    backends: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ludex-bench-") as folder:
        for kind in BACKENDS:
            if kind == "sqlite":
                base, reason = None, None
            else:
                base, reason = resolve(kind, postgres if kind == "postgres" else mysql)
                if base is None:
                    backends[kind] = {"skipped": reason}
                    continue
            entry: dict[str, Any] = {"url": redacted(base) if base else "sqlite (temporary file)"}
            try:
                async with fresh_database(kind, base, Path(folder)) as url:
                    entry["database"] = redacted(url).rpartition("/")[2]
                    entry.update(
                        await _measure(kind, url, envelopes, txn_size, relay_batch, rounds)
                    )
            except Exception as exc:  # ludex or driver errors: report them in the JSON
                entry["failed"] = f"{type(exc).__name__}: {exc}"
            backends[kind] = entry

    return header(
        "outbox",
        input={
            "rows": rows,
            "rounds": rounds,
            "event_type": envelopes[0].type,
            "transaction_size": txn_size,
            "relay_batch": relay_batch,
        },
        backends=backends,
        note=(
            "ludex add_to_outbox: encode + validate each envelope, then one INSERT per "
            "row (ids keep argument order), one transaction per transaction_size rows. "
            "relay_to_memory_bus: OutboxRelay.run_once until empty: select unpublished "
            "rows, decode them, publish_many to an in-process bus, mark them published "
            "(no KeyValue lease). peer_sqlalchemy insert_executemany: the same rows "
            "(event ids, pre-encoded payload bytes) into the same emptied outbox table "
            "with a bare SQLAlchemy Core insert(outbox) executemany, same transaction "
            "size; insert_per_row: the same with one Core execute per row (what "
            "add_to_outbox does, minus encoding, validation and the ORM session). "
            "add_vs_peer is ours / peer (1.0 = no overhead). Each backend "
            "runs in a fresh database dropped afterwards."
        ),
    )
