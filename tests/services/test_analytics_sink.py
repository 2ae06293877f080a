"""The analytics sink, on a real MemoryBus and a real chDB store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from ludex.adapters.bus import create_bus
from ludex.adapters.bus.memory import MemoryBus
from ludex.adapters.olap import create_analytics
from ludex.adapters.olap.schema import EVENTS_COLUMNS, event_count, events_per_type
from ludex.errors import BackendError, MalformedEvent
from ludex.events import (
    BetPlaced,
    ChainTransaction,
    Envelope,
    PlayerActed,
    WinSettled,
    new_event,
    spec_for,
)
from ludex.ports.olap import AnalyticsStore
from ludex.services.analytics_sink import EVENT_COLUMNS, GROUP, AnalyticsSink, event_row

T0 = datetime(2025, 1, 31, 23, 59, 59, 987654, tzinfo=UTC)


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    memory = create_bus("memory://")
    assert isinstance(memory, MemoryBus)
    await memory.start()
    yield memory
    await memory.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[AnalyticsStore]:
    analytics = create_analytics(f"chdb://{tmp_path / 'olap'}")
    await analytics.start()
    yield analytics
    await analytics.close()


def sample_events() -> list[Envelope]:
    events = []
    for i in range(3):
        events.append(
            new_event(
                BetPlaced(
                    player_id=f"p{i}",
                    provider="studio 'x'",
                    game_id="g1",
                    round_id=f"r{i}",
                    transaction_id=f"t{i}",
                    amount=100 + i,
                    currency="CHIP",
                    balance_after=1_000 - i,
                ),
                key=f"p{i}",
                producer="wagering",
                occurred_at=T0 + timedelta(seconds=i),
            )
        )
    events.append(
        new_event(
            WinSettled(
                player_id="p0",
                provider="studio",
                game_id="g1",
                round_id="r0",
                transaction_id="w0",
                amount=250,
                currency="CHIP",
                balance_after=1_150,
            ),
            key="p0",
            producer="wagering",
            occurred_at=T0,
        )
    )
    for seq in range(2):
        events.append(
            new_event(
                PlayerActed(
                    table_id="t1", hand_id="h1", sequence=seq, seat=seq, action="bet", amount=5
                ),
                key="t1",
                producer="gameserver",
                occurred_at=T0,
            )
        )
    events.append(
        new_event(
            ChainTransaction(
                chain_id=1,
                block_number=19_000_000,
                hash="0x" + "ab" * 32,
                from_address="0x" + "11" * 20,
                to_address=None,
                value=2**255 + 12345,  # wei amounts exceed 64 bits
                status=1,
            ),
            key="0x" + "11" * 20,
            producer="indexer",
            occurred_at=T0,
        )
    )
    return events


EXPECTED_COUNTS = {
    "chain.transaction": 1,
    "poker.action": 2,
    "wallet.bet_placed": 3,
    "wallet.win_settled": 1,
}


async def drain(sink: AnalyticsSink) -> int:
    total = 0
    while written := await sink.run_once():
        total += written
    return total


def rows_metric(event_type: str) -> float:
    value = REGISTRY.get_sample_value("ludex_analytics_rows_total", {"type": event_type})
    return value or 0.0


def test_sink_columns_match_the_events_table() -> None:
    assert EVENT_COLUMNS == EVENTS_COLUMNS


async def test_events_land_with_their_types_and_counts(
    bus: MemoryBus, store: AnalyticsStore
) -> None:
    events = sample_events()
    await bus.publish_many(events)
    bets_before = rows_metric("wallet.bet_placed")
    sink = AnalyticsSink(bus, store, poll_timeout=0.05, batch_size=3)

    assert await drain(sink) == len(events)
    await sink.close()

    assert await events_per_type(store, T0) == EXPECTED_COUNTS
    assert rows_metric("wallet.bet_placed") - bets_before == 3
    rows = await store.query(
        "SELECT * FROM events WHERE event_id = {id:String}", {"id": events[-1].id}
    )
    [row] = rows
    tx = events[-1]
    assert row["type"] == "chain.transaction"
    assert row["topic"] == "ludex.chain"
    assert row["key"] == tx.key
    assert row["producer"] == "indexer"
    assert row["version"] == spec_for("chain.transaction").version
    assert row["occurred_at"] == T0
    decoded = msgspec.json.decode(row["payload"], type=ChainTransaction)
    assert decoded == tx.payload
    assert decoded.value == 2**255 + 12345


async def test_committed_events_are_not_delivered_again(
    bus: MemoryBus, store: AnalyticsStore
) -> None:
    await bus.publish_many(sample_events())
    first = AnalyticsSink(bus, store, poll_timeout=0.05)
    assert await drain(first) == 7
    await first.close()

    second = AnalyticsSink(bus, store, poll_timeout=0.05)
    assert await second.run_once() == 0
    await second.close()


async def test_redelivery_after_a_crash_before_commit_does_not_double_count(
    bus: MemoryBus, store: AnalyticsStore
) -> None:
    events = sample_events()
    await bus.publish_many(events)
    # A sink that crashed between its insert and its commit left this behind:
    async with bus.consumer(["ludex.wallet", "ludex.poker", "ludex.chain"], GROUP) as crashed:
        polled = await crashed.poll(100, timeout=0.05)
        assert len(polled) == len(events)
        await store.insert("events", [event_row(r) for r in polled], EVENT_COLUMNS)
        # ... and no commit.

    sink = AnalyticsSink(bus, store, poll_timeout=0.05)
    assert await drain(sink) == len(events)  # the same events, delivered again
    await sink.close()

    raw = await store.query("SELECT count() AS n FROM events")
    assert raw == [{"n": 2 * len(events)}]  # both copies stored until a merge
    assert await event_count(store) == len(events)
    assert await events_per_type(store, T0) == EXPECTED_COUNTS


async def test_failed_insert_commits_nothing(
    bus: MemoryBus, store: AnalyticsStore, tmp_path: Path
) -> None:
    events = sample_events()
    await bus.publish_many(events)
    sink = AnalyticsSink(bus, store, poll_timeout=0.05)
    await store.close()

    with pytest.raises(BackendError):
        await sink.run_once()
    await sink.close()

    await store.start()
    assert await event_count(store) == 0
    fresh = AnalyticsSink(bus, store, poll_timeout=0.05)
    assert await drain(fresh) == len(events)
    await fresh.close()
    assert await events_per_type(store, T0) == EXPECTED_COUNTS


async def test_the_same_sink_retries_its_pending_batch(
    bus: MemoryBus, store: AnalyticsStore
) -> None:
    events = sample_events()
    await bus.publish_many(events)
    sink = AnalyticsSink(bus, store, poll_timeout=0.05, batch_size=100)
    await store.close()
    with pytest.raises(BackendError):
        await sink.run_once()

    await store.start()
    assert await sink.run_once() == len(events)  # the kept batch, not a new poll
    assert await sink.run_once() == 0
    await sink.close()
    assert await event_count(store) == len(events)


async def test_malformed_record_is_logged_and_stops_the_sink(
    bus: MemoryBus, store: AnalyticsStore
) -> None:
    good = sample_events()[:1]
    await bus.publish_many(good)
    bad = bus.inject_raw("ludex.wallet", b'{"not": "an envelope"}', key=good[0].key.encode())
    sink = AnalyticsSink(bus, store, poll_timeout=0.05)

    with capture_logs() as logs, pytest.raises(MalformedEvent):
        await sink.run(asyncio.Event())

    errors = [e for e in logs if e["event"] == "analytics_sink.malformed_record"]
    assert len(errors) == 1
    assert errors[0]["log_level"] == "error"
    assert (errors[0]["topic"], errors[0]["partition"], errors[0]["offset"]) == (
        "ludex.wallet",
        bad.partition,
        bad.offset,
    )
    # The good record before it was written and committed; the bad one was not skipped.
    assert await event_count(store) == 1
    again = AnalyticsSink(bus, store, poll_timeout=0.05)
    with pytest.raises(MalformedEvent):
        await again.run_once()
    await again.close()


async def test_run_until_stopped(bus: MemoryBus, store: AnalyticsStore) -> None:
    stop = asyncio.Event()
    sink = AnalyticsSink(bus, store, poll_timeout=0.05)
    task = asyncio.create_task(sink.run(stop))
    events = sample_events()
    await bus.publish_many(events)
    for _ in range(200):
        if await event_count(store) == len(events):
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, timeout=5)

    assert await events_per_type(store, T0) == EXPECTED_COUNTS
    after = AnalyticsSink(bus, store, poll_timeout=0.05)
    assert await after.run_once() == 0  # everything was committed before stopping
    await after.close()


async def test_run_retries_while_the_store_is_down(bus: MemoryBus, store: AnalyticsStore) -> None:
    events = sample_events()
    await bus.publish_many(events)
    await store.close()
    stop = asyncio.Event()
    sink = AnalyticsSink(bus, store, poll_timeout=0.05, retry_initial=0.02, retry_max=0.05)
    with capture_logs() as logs:
        task = asyncio.create_task(sink.run(stop))
        await asyncio.sleep(0.2)
        assert not task.done()
        await store.start()
        for _ in range(200):
            if await event_count(store) == len(events):
                break
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, timeout=5)
    assert any(e["event"] == "analytics_sink.retrying" for e in logs)
    assert await event_count(store) == len(events)
