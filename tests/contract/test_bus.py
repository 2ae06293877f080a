"""Contract suite of the EventBus port: the same tests run against every backend.

``memory`` runs everywhere; ``kafka`` runs against the broker started by
``scripts/services up`` (skipped when it is not running, failed under
LUDEX_REQUIRE_SERVICES=1). Every test gets its own namespace, so topics and
consumer groups never collide between tests or runs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from ludex.adapters.bus import create_bus
from ludex.adapters.bus.kafka import KafkaBus
from ludex.adapters.bus.memory import MemoryBus
from ludex.errors import BackendUnavailable, ConfigError, MalformedEvent
from ludex.events import (
    BetPlaced,
    Envelope,
    HandStarted,
    PlayerActed,
    SettlementFailed,
    encode,
    new_event,
    topics,
)
from ludex.ports.bus import Consumer, EventBus, MalformedRecord, Record
from tests.conftest import service_url

PARTITIONS = 4
WALLET = "ludex.wallet"
POKER = "ludex.poker"

Inject = Callable[[str, bytes, bytes], Awaitable[None]]


@dataclass
class Harness:
    """A started bus under test plus a way to write raw bytes next to its records."""

    kind: str
    bus: EventBus
    inject: Inject


def kafka_bus(url: str, namespace: str) -> KafkaBus:
    return KafkaBus(
        url,
        partitions=PARTITIONS,
        namespace=namespace,
        connect_timeout=5.0,
        request_timeout_ms=10_000,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
        rebalance_timeout_ms=6_000,
        join_timeout=30.0,
    )


@pytest.fixture(params=["memory", "kafka"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    if request.param == "memory":
        memory = MemoryBus(PARTITIONS, namespace=namespace)

        async def inject_memory(topic: str, key: bytes, value: bytes) -> None:
            memory.inject_raw(topic, value, key=key)

        await memory.start()
        yield Harness("memory", memory, inject_memory)
        await memory.close()
        return

    url = service_url("kafka")
    kafka = kafka_bus(url, namespace)
    await kafka.start()
    raw = AIOKafkaProducer(bootstrap_servers=kafka.servers, acks="all")
    await raw.start()

    async def inject_kafka(topic: str, key: bytes, value: bytes) -> None:
        await raw.send_and_wait(kafka.ns.topic(topic), value=value, key=key)

    try:
        yield Harness("kafka", kafka, inject_kafka)
    finally:
        await raw.stop()
        await kafka.close()


# -- helpers ----------------------------------------------------------------------------


def bet(key: str, seq: int, *, when: datetime | None = None) -> Envelope:
    return new_event(
        BetPlaced(
            player_id=key,
            provider="acme",
            game_id="slots-1",
            round_id=f"r-{seq}",
            transaction_id=f"{key}-{seq}",
            amount=seq,
            currency="USDC",
            balance_after=1_000 - seq,
        ),
        key=key,
        producer="contract-test",
        occurred_at=when,
    )


async def collect(consumer: Consumer, count: int, *, timeout: float = 20.0) -> list[Record]:
    """Poll until ``count`` records arrived (or the time is up), committing nothing."""
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline:
        records.extend(await consumer.poll(timeout=0.5))
    return records


async def quiet(consumer: Consumer, seconds: float = 1.5) -> list[Record]:
    """Whatever arrives within ``seconds`` (expected: nothing more)."""
    records: list[Record] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        records.extend(await consumer.poll(timeout=0.3))
    return records


async def settled(consumers: Sequence[Consumer], topic: str, *, timeout: float = 30.0) -> None:
    """Wait until the members own disjoint, non-empty shares covering every partition."""
    everything = {(topic, p) for p in range(PARTITIONS)}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shares = [c.assignment() for c in consumers]
        union = set().union(*shares)
        if union == everything and all(shares) and sum(map(len, shares)) == len(everything):
            return
        await asyncio.sleep(0.2)
    pytest.fail(f"group did not settle: {[c.assignment() for c in consumers]}")


def ids(records: Sequence[Record]) -> list[str]:
    return [r.envelope.id for r in records]


# -- the contract -----------------------------------------------------------------------


async def test_publish_then_consume_returns_equal_typed_envelopes(harness: Harness) -> None:
    bus = harness.bus
    sent = [
        bet("player-1", 1),
        new_event(
            HandStarted(
                table_id="t1",
                hand_id="h1",
                button_seat=2,
                seats={"1": "0xabc", "2": "0xdef"},
                stacks={"1": 500, "2": 750},
                commitment="0x" + "ab" * 32,
            ),
            key="t1",
            producer="contract-test",
        ),
        new_event(
            PlayerActed(table_id="t1", hand_id="h1", sequence=1, seat=None, action="deal"),
            key="t1",
            producer="contract-test",
        ),
        new_event(
            SettlementFailed(batch_id="b1", chain_id=31337, hand_ids=["h1", "h2"], reason="gas"),
            key="b1",
            producer="contract-test",
        ),
    ]
    published = await bus.publish_many(sent)
    assert [p.topic for p in published] == [e.topic for e in sent]

    async with bus.consumer([WALLET, POKER, "ludex.settlement"], "g-roundtrip") as consumer:
        records = await collect(consumer, len(sent))
        assert sorted(ids(records)) == sorted(e.id for e in sent)
        by_id = {r.envelope.id: r for r in records}
        for envelope, where in zip(sent, published, strict=True):
            record = by_id[envelope.id]
            assert record.envelope == envelope
            assert type(record.envelope.payload) is type(envelope.payload)
            assert (record.topic, record.partition, record.offset) == (
                where.topic,
                where.partition,
                where.offset,
            )
            assert record.timestamp_ms == int(envelope.occurred_at.timestamp() * 1000)
        assert await quiet(consumer, 0.5) == []


async def test_per_key_order_and_stable_partition(harness: Harness) -> None:
    bus = harness.bus
    keys = [f"table-{i}" for i in range(8)]
    sent = [bet(key, seq) for seq in range(12) for key in keys]  # interleaved keys
    published = await bus.publish_many(sent)

    # Same key, same partition; and the same partition a memory bus picks (murmur2).
    reference = MemoryBus(PARTITIONS)
    expected = {key: (await reference.publish(bet(key, 0))).partition for key in keys}
    for envelope, where in zip(sent, published, strict=True):
        assert where.partition == expected[envelope.key], envelope.key
    assert len(set(expected.values())) > 1, "keys should spread over partitions"

    async with bus.consumer([WALLET], "g-order") as consumer:
        records = await collect(consumer, len(sent))
    assert len(records) == len(sent)
    by_key: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_key[record.envelope.key].append(record)
    for key in keys:
        got = by_key[key]
        assert [r.envelope.payload.amount for r in got] == list(range(12)), key
        assert {r.partition for r in got} == {expected[key]}
        offsets = [r.offset for r in got]
        assert offsets == sorted(offsets)


async def test_two_members_of_one_group_split_partitions_and_see_each_record_once(
    harness: Harness,
) -> None:
    bus = harness.bus
    async with (
        bus.consumer([WALLET], "g-split") as first,
        bus.consumer([WALLET], "g-split") as second,
    ):
        await settled([first, second], WALLET)
        assert not first.assignment() & second.assignment()

        sent = [bet(f"player-{i}", i) for i in range(40)]
        await bus.publish_many(sent)

        got: dict[int, list[Record]] = {0: [], 1: []}

        async def drain(index: int, consumer: Consumer) -> None:
            deadline = time.monotonic() + 20
            while sum(map(len, got.values())) < len(sent) and time.monotonic() < deadline:
                batch = await consumer.poll(timeout=0.3)
                got[index].extend(batch)
                await consumer.commit(batch)

        await asyncio.gather(drain(0, first), drain(1, second))

        everything = got[0] + got[1]
        assert sorted(ids(everything)) == sorted(e.id for e in sent)  # each exactly once
        assert got[0], "the first member should have received records"
        assert got[1], "the second member should have received records"
        assert {(r.topic, r.partition) for r in got[0]} <= first.assignment()
        assert {(r.topic, r.partition) for r in got[1]} <= second.assignment()


async def test_every_group_sees_every_record(harness: Harness) -> None:
    bus = harness.bus
    sent = [bet(f"player-{i % 5}", i) for i in range(15)]
    await bus.publish_many(sent)
    for group in ("g-ledger", "g-analytics"):
        async with bus.consumer([WALLET], group) as consumer:
            records = await collect(consumer, len(sent))
            assert sorted(ids(records)) == sorted(e.id for e in sent), group
            await consumer.commit()


async def test_new_member_resumes_after_the_last_commit(harness: Harness) -> None:
    bus = harness.bus
    sent = [bet(f"player-{i % 3}", i) for i in range(12)]
    await bus.publish_many(sent)

    async with bus.consumer([WALLET], "g-resume") as first:
        polled = await collect(first, len(sent))
        assert len(polled) == len(sent)
        by_partition: dict[int, list[Record]] = defaultdict(list)
        for record in polled:
            by_partition[record.partition].append(record)
        # Processed (and committed) only the first two records of each partition.
        done = [r for records in by_partition.values() for r in records[:2]]
        await first.commit(done)
    undone = {e.id for e in sent} - set(ids(done))
    assert undone

    # The commit wins over start="latest": the group has a position.
    async with bus.consumer([WALLET], "g-resume", start="latest") as second:
        again = await collect(second, len(undone))
        again += await quiet(second)
        assert sorted(ids(again)) == sorted(undone)
        await second.commit()

    async with bus.consumer([WALLET], "g-resume") as third:
        assert await quiet(third) == []
        later = bet("player-0", 99)
        await bus.publish(later)
        assert ids(await collect(third, 1)) == [later.id]


async def test_latest_sees_only_records_published_after_joining(harness: Harness) -> None:
    bus = harness.bus
    await bus.publish_many([bet(f"player-{i}", i) for i in range(6)])
    async with bus.consumer([WALLET], "g-latest", start="latest") as consumer:
        assert await quiet(consumer, 1.0) == []
        fresh = [bet(f"player-{i}", 100 + i) for i in range(3)]
        await bus.publish_many(fresh)
        records = await collect(consumer, 3)
        records += await quiet(consumer, 0.5)
        assert sorted(ids(records)) == sorted(e.id for e in fresh)


async def test_replay_by_offset_and_by_time(harness: Harness) -> None:
    bus = harness.bus
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    sent = [bet("table-9", i, when=base + timedelta(seconds=i)) for i in range(6)]
    published = await bus.publish_many(sent)
    partition = published[0].partition
    first_offset = published[0].offset

    async with bus.consumer([WALLET], "g-replay") as consumer:
        records = await collect(consumer, len(sent))
        assert ids(records) == [e.id for e in sent]
        await consumer.commit()

        await consumer.seek(WALLET, partition, first_offset + 2)
        replayed = await collect(consumer, 4)
        assert ids(replayed) == [e.id for e in sent[2:]]
        assert [r.offset for r in replayed] == [first_offset + i for i in range(2, 6)]

        await consumer.seek_to_time(base + timedelta(seconds=3))
        replayed = await collect(consumer, 3)
        assert ids(replayed) == [e.id for e in sent[3:]]

        await consumer.seek_to_time(base + timedelta(seconds=2, milliseconds=1))
        assert ids(await collect(consumer, 3)) == [e.id for e in sent[3:]]

        await consumer.seek_to_time(base + timedelta(hours=1))
        assert await quiet(consumer, 1.0) == []


async def test_malformed_record_raises_and_is_never_skipped(harness: Harness) -> None:
    bus = harness.bus
    good_before, good_after = bet("player-x", 1), bet("player-x", 2)
    bad_payload = msgspec.json.encode(
        {
            "id": "01J00000000000000000000000",
            "type": "wallet.bet_placed",
            "key": "player-x",
            "occurred_at": "2025-01-01T00:00:00Z",
            "producer": "rogue",
            "version": 1,
            "payload": {"player_id": "player-x", "amount": "lots"},
        }
    )
    await bus.publish(good_before)
    await harness.inject(WALLET, b"player-x", b"\x00 not json at all")
    await harness.inject(WALLET, b"player-x", bad_payload)
    await bus.publish(good_after)

    async with bus.consumer([WALLET], "g-malformed") as consumer:
        received: list[Record] = []
        failure: MalformedRecord | None = None
        deadline = time.monotonic() + 20
        while failure is None and time.monotonic() < deadline:
            try:
                received.extend(await consumer.poll(timeout=0.5))
            except MalformedRecord as exc:
                failure = exc
        assert failure is not None, "the malformed record was never reported"
        assert isinstance(failure, MalformedEvent)
        assert ids(received) == [good_before.id]
        assert failure.topic == WALLET
        assert failure.partition == received[0].partition
        assert failure.offset == received[0].offset + 1
        assert failure.raw == b"\x00 not json at all"

        # Not skipped: the same record is reported again until the caller seeks past it.
        with pytest.raises(MalformedRecord) as again:
            await collect(consumer, 1, timeout=5)
        assert again.value.offset == failure.offset

        await consumer.seek(WALLET, failure.partition, failure.offset + 1)
        with pytest.raises(MalformedRecord) as second:
            await collect(consumer, 1, timeout=5)
        assert second.value.offset == failure.offset + 1
        assert second.value.raw == bad_payload

        await consumer.seek(WALLET, failure.partition, failure.offset + 2)
        assert ids(await collect(consumer, 1)) == [good_after.id]


async def test_an_invalid_envelope_publishes_nothing(harness: Harness) -> None:
    bus = harness.bus
    assert await bus.publish_many([]) == []
    good = bet("player-1", 1)
    forged = msgspec.structs.replace(bet("player-1", 2), type="wallet.win_settled")
    with pytest.raises(MalformedEvent):
        await bus.publish_many([good, forged])
    async with bus.consumer([WALLET], "g-invalid") as consumer:
        assert await quiet(consumer, 1.0) == []
        await bus.publish(good)
        assert ids(await collect(consumer, 1)) == [good.id]


async def test_catalog_topics_and_any_other_topic_can_be_consumed(harness: Harness) -> None:
    bus = harness.bus
    await bus.ping()
    envelope = bet("k", 1)
    async with bus.consumer(["custom.audit"], "g-any") as consumer:
        assert {t for t, _ in consumer.assignment()} == {"custom.audit"}
        await harness.inject("custom.audit", b"k", encode(envelope))
        records = await collect(consumer, 1)
        assert [(r.topic, r.envelope) for r in records] == [("custom.audit", envelope)]
    async with bus.consumer(topics(), "g-catalog") as consumer:
        assert {t for t, _ in consumer.assignment()} == set(topics())


# -- backend selection and failure (not parametrized) -------------------------------------


async def test_unreachable_kafka_fails_fast_with_backend_unavailable() -> None:
    bus = KafkaBus("kafka://127.0.0.1:1", connect_timeout=3.0)
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:1"):
        await bus.ping()
    with pytest.raises(BackendUnavailable):
        await bus.start()
    assert time.monotonic() - started < 10


def test_create_bus_picks_the_backend_by_scheme() -> None:
    assert isinstance(create_bus("memory://", partitions=3), MemoryBus)
    kafka = create_bus("kafka://127.0.0.1:1,127.0.0.1:2", namespace="ns")
    assert isinstance(kafka, KafkaBus)
    assert kafka.servers == ["127.0.0.1:1", "127.0.0.1:2"]
    with pytest.raises(ConfigError, match="not supported"):
        create_bus("amqp://user:secret@host/")
    with pytest.raises(ConfigError) as bad:
        create_bus("nats://user:secret@host:4222")
    assert "secret" not in str(bad.value)
