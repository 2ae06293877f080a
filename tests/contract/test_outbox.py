"""Contract suite of the transactional outbox, the relay and idempotent consumers.

Runs unchanged on SQLite, PostgreSQL and MySQL, with the in-memory bus and KeyValue.
The one case SQLite cannot express (a lower id committing after a higher one) is
skipped there with the reason: every SQLite transaction begins IMMEDIATE, so a
second writer waits for the first and commit order always equals id order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import CHAR, BigInteger, Column, MetaData, String, Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from ludex.adapters.bus import create_bus
from ludex.adapters.kv import create_key_value
from ludex.adapters.sql import SqlStore
from ludex.adapters.sql.outbox import add_to_outbox, count_unpublished
from ludex.adapters.sql.tables import outbox, processed_events
from ludex.errors import MalformedEvent, StoreError
from ludex.events import BetPlaced, Envelope, WinSettled, new_event
from ludex.ports.bus import EventBus, Record
from ludex.ports.kv import KeyValue
from ludex.services.idempotent import IdempotentConsumer, process_once
from ludex.services.outbox_relay import OutboxRelay
from tests.contract.sql_backends import BACKENDS, fresh_database, started_store

TOPIC = "ludex.wallet"


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with fresh_database(request.param, tmp_path) as url, started_store(url) as s:
        yield s


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    b = create_bus("memory://")
    await b.start()
    yield b
    await b.close()


@pytest.fixture
async def kv() -> AsyncIterator[KeyValue]:
    k = create_key_value("memory://")
    await k.start()
    yield k
    await k.close()


def bet(player: str, amount: int) -> Envelope:
    payload = BetPlaced(
        player_id=player,
        provider="studio",
        game_id="slots",
        round_id=f"round-{amount}",
        transaction_id=f"tx-{uuid.uuid4().hex}",
        amount=amount,
        currency="CHIPS",
        balance_after=0,
    )
    return new_event(payload, key=player, producer="test")


async def drain(bus: EventBus, group: str | None = None) -> list[Record]:
    """Every record on the wallet topic, read by a fresh consumer group."""
    out: list[Record] = []
    async with bus.consumer([TOPIC], group or f"observer-{uuid.uuid4().hex}") as consumer:
        while batch := await consumer.poll(max_records=1000, timeout=0.05):
            out.extend(batch)
    return out


async def unpublished(store: SqlStore) -> int:
    async with store.transaction() as session:
        return await count_unpublished(session)


async def outbox_ids(store: SqlStore) -> dict[str, int]:
    async with store.transaction() as session:
        rows = await session.execute(select(outbox.c.event_id, outbox.c.id))
        return {event_id: row_id for event_id, row_id in rows}


async def publish_all(relay: OutboxRelay) -> list[int]:
    rounds = []
    while published := await relay.run_once():
        rounds.append(published)
    return rounds


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.01)


# --- writing ----------------------------------------------------------------------


async def test_rolled_back_write_leaves_no_row_and_publishes_nothing(
    store: SqlStore, bus: EventBus
) -> None:
    class Abort(Exception):
        pass

    async def write_then_abort() -> None:
        async with store.transaction() as session:
            await add_to_outbox(session, bet("alice", 1), bet("alice", 2))
            raise Abort

    with pytest.raises(Abort):
        await write_then_abort()
    assert await outbox_ids(store) == {}
    assert await OutboxRelay(store, bus).run_once() == 0
    assert await drain(bus) == []


async def test_invalid_envelopes_are_refused_before_anything_is_written(store: SqlStore) -> None:
    good = bet("alice", 1)
    wrong_payload = Envelope(
        id=good.id,
        type="wallet.bet_placed",
        key="alice",
        occurred_at=good.occurred_at,
        producer="test",
        version=1,
        payload=WinSettled(
            player_id="alice",
            provider="studio",
            game_id="slots",
            round_id="r",
            transaction_id="t",
            amount=1,
            currency="CHIPS",
            balance_after=0,
        ),
    )
    not_a_ulid = new_event(good.payload, key="alice", producer="test", event_id="short")
    for bad in (wrong_payload, not_a_ulid):
        with pytest.raises(MalformedEvent):
            async with store.transaction() as session:
                await add_to_outbox(session, good, bad)
    assert await outbox_ids(store) == {}


async def test_add_to_outbox_needs_an_open_transaction(store: SqlStore) -> None:
    async with AsyncSession(store.engine) as session:
        with pytest.raises(StoreError, match="transaction"):
            await add_to_outbox(session, bet("alice", 1))


async def test_duplicate_event_id_fails_the_transaction(store: SqlStore) -> None:
    event = bet("alice", 1)
    async with store.transaction() as session:
        await add_to_outbox(session, event)
    with pytest.raises(StoreError, match="integrity"):
        async with store.transaction() as session:
            await add_to_outbox(session, bet("bob", 2), event)
    assert list(await outbox_ids(store)) == [event.id]


# --- relaying ---------------------------------------------------------------------


async def test_committed_rows_are_published_in_id_order_and_marked(
    store: SqlStore, bus: EventBus
) -> None:
    events = [bet("alice", n) for n in range(7)]
    for chunk in (events[:3], events[3:4], events[4:]):
        async with store.transaction() as session:
            await add_to_outbox(session, *chunk)
    before = REGISTRY.get_sample_value("ludex_outbox_published_total") or 0.0

    relay = OutboxRelay(store, bus, batch_size=3)
    assert await publish_all(relay) == [3, 3, 1]

    records = await drain(bus)
    assert [r.envelope.id for r in records] == [e.id for e in events]  # one key, one partition
    assert [r.envelope for r in records] == events  # payloads survive the round trip
    ids = await outbox_ids(store)
    assert [ids[r.envelope.id] for r in records] == sorted(ids.values())
    assert await unpublished(store) == 0
    async with store.transaction() as session:
        marks = list(await session.scalars(select(outbox.c.published_at)))
    assert all(mark is not None for mark in marks)
    assert await relay.run_once() == 0  # nothing is published twice
    assert len(await drain(bus)) == len(events)
    after = REGISTRY.get_sample_value("ludex_outbox_published_total") or 0.0
    assert after - before == len(events)


async def test_per_key_order_is_preserved_on_the_bus(store: SqlStore, bus: EventBus) -> None:
    players = ["alice", "bob", "carol", "dave"]
    written: dict[str, list[str]] = defaultdict(list)
    for n in range(40):
        event = bet(players[(n * 7) % len(players)], n)
        written[event.key].append(event.id)
        async with store.transaction() as session:
            await add_to_outbox(session, event)
    await publish_all(OutboxRelay(store, bus, batch_size=6))

    records = await drain(bus)
    seen: dict[str, list[str]] = defaultdict(list)
    for record in records:
        seen[record.envelope.key].append(record.envelope.id)
    assert seen == written
    ids = await outbox_ids(store)
    for partition in {r.partition for r in records}:
        in_partition = [ids[r.envelope.id] for r in records if r.partition == partition]
        assert in_partition == sorted(in_partition)


async def test_undecodable_row_stops_the_relay_and_is_never_skipped(
    store: SqlStore, bus: EventBus
) -> None:
    async with store.transaction() as session:
        await session.execute(
            insert(outbox).values(
                event_id="01JBADBADBADBADBADBADBADBA",
                topic=TOPIC,
                event_type="wallet.bet_placed",
                partition_key="alice",
                payload=b"{not json",
                created_at=bet("x", 0).occurred_at,
            )
        )
        await add_to_outbox(session, bet("alice", 1))
    bad_id = min((await outbox_ids(store)).values())

    relay = OutboxRelay(store, bus)
    for _ in range(2):
        with pytest.raises(StoreError, match=f"outbox row {bad_id} "):
            await relay.run_once()
    assert await drain(bus) == []
    assert await unpublished(store) == 2


async def test_late_committing_lower_id_is_still_published(store: SqlStore, bus: EventBus) -> None:
    relay = OutboxRelay(store, bus)
    early, late = bet("alice", 1), bet("alice", 2)
    if store.dialect == "sqlite":
        # SQLite has one writer (BEGIN IMMEDIATE): B waits for A, so a lower id can
        # never commit after a higher one. Check that B really waits, then that both
        # rows are published in commit order.
        async with store.transaction() as first:
            await add_to_outbox(first, early)

            async def second_writer() -> None:
                async with store.transaction() as second:
                    await add_to_outbox(second, late)

            waiting = asyncio.create_task(second_writer())
            await asyncio.sleep(0.3)
            assert not waiting.done(), "a second SQLite writer did not wait for the first"
        await waiting
        assert await relay.run_once() == 2
        assert [r.envelope.id for r in await drain(bus)] == [early.id, late.id]
        assert await unpublished(store) == 0
        return
    async with store.transaction() as first:
        await add_to_outbox(first, early)  # gets the lower id, commits last
        async with store.transaction() as second:
            await add_to_outbox(second, late)
        assert await relay.run_once() == 1
        assert [r.envelope.id for r in await drain(bus)] == [late.id]
    assert await relay.run_once() == 1
    ids = await outbox_ids(store)
    assert ids[early.id] < ids[late.id]
    assert [r.envelope.id for r in await drain(bus)] == [late.id, early.id]
    assert await unpublished(store) == 0


async def test_purge_deletes_only_published_rows(store: SqlStore, bus: EventBus) -> None:
    relay = OutboxRelay(store, bus)
    async with store.transaction() as session:
        await add_to_outbox(session, *(bet("alice", n) for n in range(3)))
    await publish_all(relay)
    waiting = [bet("bob", n) for n in range(2)]
    async with store.transaction() as session:
        await add_to_outbox(session, *waiting)

    assert await relay.purge_published(timedelta(hours=1)) == 0
    await asyncio.sleep(0.01)
    assert await relay.purge_published(timedelta(0)) == 3
    assert sorted(await outbox_ids(store)) == sorted(e.id for e in waiting)
    assert await unpublished(store) == 2


# --- crashes and idempotent consumers ---------------------------------------------

effects_metadata = MetaData()
effects = Table(
    "t_effects",
    effects_metadata,
    Column("event_id", CHAR(26), primary_key=True),
    Column("player", String(64), nullable=False),
)
balances = Table(
    "t_balances",
    effects_metadata,
    Column("player", String(64), primary_key=True),
    Column("total", BigInteger, nullable=False),
)
PLAYERS = ["alice", "bob", "carol"]


async def create_effect_tables(store: SqlStore) -> None:
    async with store.engine.begin() as conn:
        await conn.run_sync(effects_metadata.create_all)
    async with store.transaction() as session:
        await session.execute(insert(balances), [{"player": p, "total": 0} for p in PLAYERS])


async def apply_bet(session: AsyncSession, envelope: Envelope) -> None:
    """A deliberately non-idempotent effect: an increment."""
    await session.execute(
        insert(effects).values(event_id=envelope.id, player=envelope.payload.player_id)
    )
    await session.execute(
        balances.update()
        .where(balances.c.player == envelope.payload.player_id)
        .values(total=balances.c.total + envelope.payload.amount)
    )


async def totals(store: SqlStore) -> dict[str, int]:
    async with store.transaction() as session:
        return {p: t for p, t in await session.execute(select(balances.c.player, balances.c.total))}


async def consume_all(consumer: IdempotentConsumer, bus: EventBus) -> int:
    applied = 0
    async with bus.consumer([TOPIC], consumer.name) as member:
        while records := await member.poll(max_records=7, timeout=0.05):
            applied += await consumer.handle_records(member, records)
    return applied


@pytest.mark.parametrize("crash", ["raise", "cancel"])
async def test_crash_after_publish_republishes_and_consumer_applies_once(
    store: SqlStore, bus: EventBus, crash: str
) -> None:
    await create_effect_tables(store)
    events = [bet(PLAYERS[n % 3], n + 1) for n in range(10)]
    async with store.transaction() as session:
        await add_to_outbox(session, *events)

    # The first relay publishes a batch of 4 and dies before marking it.
    crashed: list[int] = []
    published = asyncio.Event()

    class Crash(Exception):
        pass

    async def die(ids: list[int]) -> None:
        crashed.extend(ids)
        published.set()
        if crash == "raise":
            raise Crash
        await asyncio.Event().wait()  # hangs until cancelled

    dying = OutboxRelay(store, bus, batch_size=4, after_publish=die)
    if crash == "raise":
        with pytest.raises(Crash):
            await dying.run_once()
    else:
        task = asyncio.create_task(dying.run(asyncio.Event()))
        await asyncio.wait_for(published.wait(), 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    ids = await outbox_ids(store)
    assert crashed == sorted(ids.values())[:4]
    assert await unpublished(store) == 10  # published, never marked
    assert sorted(r.envelope.id for r in await drain(bus)) == sorted(e.id for e in events[:4])

    # A new relay publishes everything, the first batch for the second time.
    assert await publish_all(OutboxRelay(store, bus, batch_size=4)) == [4, 4, 2]
    assert await unpublished(store) == 0
    delivered = [r.envelope.id for r in await drain(bus)]
    assert sorted(delivered) == sorted([e.id for e in events] + [e.id for e in events[:4]])

    # The idempotent consumer applies each event exactly once and loses none.
    consumer = IdempotentConsumer(store, "wallet-projection", apply_bet)
    assert await consume_all(consumer, bus) == 10
    expected = {p: sum(e.payload.amount for e in events if e.key == p) for p in PLAYERS}
    assert await totals(store) == expected
    async with store.transaction() as session:
        applied = set(await session.scalars(select(effects.c.event_id)))
        processed = await session.scalar(select(func.count()).select_from(processed_events))
    assert applied == {e.id for e in events}
    assert processed == 10


async def test_consumer_crash_before_offset_commit_does_not_double_apply(
    store: SqlStore, bus: EventBus
) -> None:
    await create_effect_tables(store)
    events = [bet(PLAYERS[n % 3], 10 * (n + 1)) for n in range(9)]
    async with store.transaction() as session:
        await add_to_outbox(session, *events)
    await publish_all(OutboxRelay(store, bus))

    consumer = IdempotentConsumer(store, "wallet-projection", apply_bet)
    async with bus.consumer([TOPIC], consumer.name) as member:
        first = await member.poll(max_records=5, timeout=1)
        assert len(first) == 5
        for record in first:
            assert await consumer.handle(record.envelope)
        # dies here: effects committed, offsets not
    assert await consume_all(consumer, bus) == 4  # the 5 re-delivered are skipped
    expected = {p: sum(e.payload.amount for e in events if e.key == p) for p in PLAYERS}
    assert await totals(store) == expected
    assert await consume_all(consumer, bus) == 0  # offsets now committed


async def test_failing_handler_leaves_the_event_unprocessed(store: SqlStore) -> None:
    await create_effect_tables(store)
    event = bet("alice", 5)
    calls = 0

    async def flaky(session: AsyncSession, envelope: Envelope) -> None:
        nonlocal calls
        calls += 1
        await apply_bet(session, envelope)
        if calls == 1:
            raise RuntimeError("handler failed after writing")

    consumer = IdempotentConsumer(store, "flaky", flaky)
    with pytest.raises(RuntimeError):
        await consumer.handle(event)
    assert await totals(store) == {"alice": 0, "bob": 0, "carol": 0}
    assert await consumer.handle(event) is True
    assert await consumer.handle(event) is False
    assert await totals(store) == {"alice": 5, "bob": 0, "carol": 0}


async def test_process_once(store: SqlStore) -> None:
    event_id = bet("alice", 1).id
    async with store.transaction() as session:
        assert await process_once(session, "c1", event_id) is True
        assert await process_once(session, "c1", event_id) is False  # transaction still usable
        assert await process_once(session, "c2", event_id) is True  # per consumer

    class Abort(Exception):
        pass

    other = bet("alice", 2).id

    async def record_then_abort() -> None:
        async with store.transaction() as session:
            assert await process_once(session, "c1", other) is True
            raise Abort

    with pytest.raises(Abort):
        await record_then_abort()
    async with store.transaction() as session:
        assert await process_once(session, "c1", event_id) is False
        assert await process_once(session, "c1", other) is True  # the rollback forgot it
    with pytest.raises(StoreError):
        async with store.transaction() as session:
            await process_once(session, "c1", "not-a-ulid")


async def test_concurrent_duplicate_waits_for_the_first_and_is_refused(store: SqlStore) -> None:
    event_id = bet("alice", 1).id
    first_done = asyncio.Event()

    async def second() -> bool:
        async with store.transaction() as session:
            return await process_once(session, "c", event_id)

    async with store.transaction() as session:
        assert await process_once(session, "c", event_id) is True
        task = asyncio.create_task(second())
        await asyncio.sleep(0.3)
        assert not task.done()  # blocked on the uncommitted first insert
        first_done.set()
    assert await asyncio.wait_for(task, 20) is False


# --- leadership -------------------------------------------------------------------


async def test_two_relays_with_a_lease_publish_each_event_once(
    store: SqlStore, bus: EventBus, kv: KeyValue
) -> None:
    published_by: dict[str, list[int]] = {"relay-1": [], "relay-2": []}

    def recorder(name: str) -> Callable[[list[int]], Awaitable[None]]:
        async def record(ids: list[int]) -> None:
            published_by[name].extend(ids)

        return record

    stops = {name: asyncio.Event() for name in published_by}
    relays = {
        name: OutboxRelay(
            store,
            bus,
            kv,
            owner=name,
            batch_size=5,
            poll_interval=0.01,
            lease_seconds=5,
            after_publish=recorder(name),
        )
        for name in published_by
    }
    tasks = {name: asyncio.create_task(relays[name].run(stops[name])) for name in relays}

    async def nothing_waits() -> bool:
        return await unpublished(store) == 0

    try:
        events = [bet(PLAYERS[n % 3], n) for n in range(30)]
        for n in range(0, 30, 3):
            async with store.transaction() as session:
                await add_to_outbox(session, *events[n : n + 3])
            await asyncio.sleep(0.005)
        await wait_until(nothing_waits)
        leaders = [name for name, ids in published_by.items() if ids]
        assert len(leaders) == 1, published_by
        leader = leaders[0]
        follower = next(name for name in published_by if name != leader)
        assert relays[leader].is_leader
        assert not relays[follower].is_leader

        # The leader stops (and releases the lease): the other relay takes over.
        stops[leader].set()
        await asyncio.wait_for(tasks[leader], 10)
        more = [bet("alice", 100 + n) for n in range(6)]
        async with store.transaction() as session:
            await add_to_outbox(session, *more)
        await wait_until(nothing_waits)
        ids = await outbox_ids(store)
        assert sorted(published_by[follower]) == sorted(ids[e.id] for e in more)
    finally:
        for stop in stops.values():
            stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks.values()), 10)

    delivered = [r.envelope.id for r in await drain(bus)]
    assert len(delivered) == len(set(delivered)) == 36
