"""Kafka survives a broker kill: committed offsets hold, nothing is lost or repeated.

The only test allowed to stop the shared Kafka broker. It SIGKILLs the broker
while a consumer group is mid-stream and always starts it again (try/finally),
so the broker is left running even when the test fails.

What a publish does while the broker is down (documented behaviour of KafkaBus):
it waits up to ``publish_timeout`` for the broker to come back, then raises
``BackendUnavailable``. The idempotent producer keeps the record queued and
writes it once the broker is back, and the publisher also retries it with the
same event id (as the outbox relay does), so that id may arrive twice; consumers
dedupe by id. It is the only id allowed to appear more than once.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections import Counter, defaultdict

import pytest

from ludex.adapters.bus.kafka import KafkaBus
from ludex.errors import BackendUnavailable
from ludex.events import BetPlaced, Envelope, new_event
from ludex.ports.bus import Consumer, Record
from tests.conftest import ROOT, service_url

SERVICES = str(ROOT / "scripts" / "services")
WALLET = "ludex.wallet"
PUBLISH_TIMEOUT = 8.0


def bet(key: str, seq: int) -> Envelope:
    return new_event(
        BetPlaced(
            player_id=key,
            provider="acme",
            game_id="slots-1",
            round_id=f"r-{seq}",
            transaction_id=f"{key}-{seq}",
            amount=seq,
            currency="USDC",
            balance_after=0,
        ),
        key=key,
        producer="restart-test",
    )


async def services(*args: str) -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [SERVICES, *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, f"scripts/services {' '.join(args)}: {result.stderr[-2000:]}"


async def collect(consumer: Consumer, count: int, *, timeout: float = 60.0) -> list[Record]:
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(records) < count and time.monotonic() < deadline:
        records.extend(await consumer.poll(timeout=0.5))
    return records


async def publish_until_accepted(bus: KafkaBus, envelope: Envelope, *, within: float) -> int:
    """Publish, retrying on BackendUnavailable; returns the attempt that succeeded."""
    deadline = time.monotonic() + within
    attempt = 0
    while True:
        attempt += 1
        try:
            await bus.publish(envelope)
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)
        else:
            return attempt


@pytest.mark.services
@pytest.mark.timeout(600)
async def test_consumer_group_survives_a_broker_kill() -> None:
    url = service_url("kafka")
    bus = KafkaBus(
        url,
        partitions=4,
        namespace=f"restart-{uuid.uuid4().hex[:12]}",
        connect_timeout=5.0,
        request_timeout_ms=10_000,
        publish_timeout=PUBLISH_TIMEOUT,
        session_timeout_ms=6_000,
        heartbeat_interval_ms=500,
        rebalance_timeout_ms=6_000,
        join_timeout=90.0,
        close_timeout=5.0,
    )
    await bus.start()
    try:
        before = [bet(f"player-{i % 10}", i) for i in range(40)]
        await bus.publish_many(before)

        killed = False
        try:
            # A hang anywhere below still reaches the `finally` that restarts the broker.
            async with asyncio.timeout(180), bus.consumer([WALLET], "g-restart") as first:
                polled = await collect(first, len(before))
                assert sorted(r.envelope.id for r in polled) == sorted(e.id for e in before)
                by_partition: dict[int, list[Record]] = defaultdict(list)
                for record in polled:
                    by_partition[record.partition].append(record)
                done = [r for rs in by_partition.values() for r in rs[: len(rs) // 2]]
                await first.commit(done)

                await services("stop", "--kill", "kafka")
                killed = True

                # While the broker is down a publish fails with a ludex error in bounded time.
                lost = bet("player-lost", 999)
                started = time.monotonic()
                with pytest.raises(BackendUnavailable):
                    await bus.publish(lost)
                waited = time.monotonic() - started
                assert PUBLISH_TIMEOUT - 0.5 < waited < PUBLISH_TIMEOUT + 5
                with pytest.raises(BackendUnavailable):
                    await bus.ping()
            # Leaving the group while the broker is down must not hang (bounded close).
        finally:
            if killed:
                await services("start", "kafka")

        # The broker answers before it leads its partitions again: retry, as the outbox does,
        # with the same event id.
        retries = await publish_until_accepted(bus, lost, within=90)
        after = [bet(f"player-{i % 10}", 100 + i) for i in range(20)]
        await bus.publish_many(after)

        committed_ids = {r.envelope.id for r in done}
        produced_ids = {e.id for e in before} | {lost.id} | {e.id for e in after}
        expected = produced_ids - committed_ids

        async with bus.consumer([WALLET], "g-restart") as second:
            records = await collect(second, len(expected), timeout=90)
            records += await collect(second, 1_000, timeout=2)  # nothing more should come
            await second.commit()

        seen = Counter(r.envelope.id for r in records)
        print(
            f"publish while down failed after {waited:.1f}s; accepted after restart on "
            f"attempt {retries}; second consumer got {len(records)} records, "
            f"{seen[lost.id]} copies of the retried one"
        )
        repeated = {i for i, n in seen.items() if n > 1}
        assert repeated <= {lost.id}, f"repeated deliveries: {repeated}"
        assert seen[lost.id] in (1, 2)
        assert not committed_ids & set(seen), "committed records were delivered again"
        assert committed_ids | set(seen) == produced_ids, "records were lost"
    finally:
        await bus.close()
        # Whatever happened above, leave the broker running for everyone else.
        await services("start", "kafka")
