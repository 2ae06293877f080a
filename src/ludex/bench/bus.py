"""EventBus throughput and latency: ludex's bus against the bare aiokafka client.

For every backend (``memory://`` always, Kafka when a URL is known):

1. publish ``count`` ``wallet.bet_placed`` envelopes over ``keys`` distinct keys with
   ``publish_many`` in batches of ``batch`` (each batch durable before the next),
   ``rounds`` times; the best round is reported (the first round on a new topic
   and a new producer is the slowest);
2. consume all ``rounds * count`` records in one pass with one consumer-group
   member (``poll`` + ``commit`` per batch);
3. with ``latency_samples`` > 0, publish single envelopes and poll until each one
   is received: end-to-end latency p50/p99.

On Kafka the peer does the same with raw aiokafka: an ``AIOKafkaProducer`` with the
same settings (idempotent, ``acks="all"``) sending the same pre-encoded bytes and
keys (``send`` per record, gather per batch), and an ``AIOKafkaConsumer`` reading the
same count with ``getmany`` + ``commit`` per batch, decoding nothing. The ratio is
ludex's overhead (encoding, validation, decoding, offset bookkeeping) over the bare
client. The two run side by side, phase by phase (ludex's round, then aiokafka's
round, ...), so that other load on the machine falls on both. Every run uses a
fresh namespace, so topics and groups are new; the
namespace's topics are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from typing import Any

from ludex.adapters.bus import create_bus
from ludex.bench._common import (
    header,
    latency_ms,
    per_second,
    progress,
    redacted,
    resolve,
    sample_events,
)
from ludex.errors import BackendError
from ludex.events import Envelope, encode
from ludex.ports.bus import EventBus

STALL_SECONDS = 30.0
POLL_MAX = 500


async def _drain(
    bus: EventBus, topic: str, group: str, count: int
) -> tuple[float, float, int, int]:
    """Consume ``count`` records with one member.

    Returns (join seconds, consume seconds, records received, distinct event ids).
    """
    joined_at = time.perf_counter()
    async with bus.consumer([topic], group) as consumer:
        started = time.perf_counter()
        seen: set[str] = set()
        received = 0
        last_progress = started
        while received < count:
            records = await consumer.poll(max_records=POLL_MAX, timeout=1.0)
            now = time.perf_counter()
            if not records:
                if now - last_progress > STALL_SECONDS:
                    raise BackendError(
                        f"bench: consumed {received} of {count} records, then nothing for "
                        f"{STALL_SECONDS:g}s"
                    )
                continue
            last_progress = now
            await consumer.commit()
            received += len(records)
            seen.update(r.envelope.id for r in records)
        elapsed = time.perf_counter() - started
    return started - joined_at, elapsed, received, len(seen)


async def _bus_latency(bus: EventBus, envelopes: Sequence[Envelope], group: str) -> list[float]:
    topic = envelopes[0].topic
    samples: list[float] = []
    async with bus.consumer([topic], group, start="latest") as consumer:
        for envelope in envelopes:
            started = time.perf_counter()
            await bus.publish(envelope)
            deadline = started + STALL_SECONDS
            found = False
            while not found:
                records = await consumer.poll(max_records=POLL_MAX, timeout=1.0)
                found = any(r.envelope.id == envelope.id for r in records)
                if not found and time.perf_counter() > deadline:
                    raise BackendError(
                        f"bench: a single publish did not arrive in {STALL_SECONDS}s"
                    )
            samples.append(time.perf_counter() - started)
            await consumer.commit()
    return samples


async def _wait_for_leaders(url: str, topic: str, partitions: int) -> None:
    """Wait until every partition of a new Kafka topic has a leader.

    A freshly created topic answers ``NotLeaderForPartition`` for a moment; timing
    the producer's retries through that would measure the broker's start-up, not
    the client.
    """
    from aiokafka.admin import AIOKafkaAdminClient

    from ludex.adapters.bus.kafka import bootstrap_servers

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers(url), client_id="ludex-bench-admin"
    )
    await admin.start()
    try:
        deadline = time.monotonic() + STALL_SECONDS
        while True:
            described = await admin.describe_topics([topic])
            ready = [
                p
                for t in described
                if t["error_code"] == 0
                for p in t["partitions"]
                if p["error_code"] == 0 and p["leader"] >= 0
            ]
            if len(ready) >= partitions:
                return
            if time.monotonic() > deadline:
                raise BackendError(f"bench: topic {topic} has no leaders after {STALL_SECONDS}s")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


class _Ludex:
    """ludex's EventBus, phase by phase."""

    def __init__(self, url: str, *, partitions: int, namespace: str, label: str) -> None:
        self.url = url
        self.label = label
        self.partitions = partitions
        self.namespace = namespace
        self.bus = create_bus(url, partitions=partitions, namespace=namespace)
        self.published = 0
        self.best_publish_s = float("inf")

    async def start(self, topic: str) -> None:
        await self.bus.start()
        if self.url.startswith("kafka://"):
            await _wait_for_leaders(self.url, f"{self.namespace}.{topic}", self.partitions)

    async def close(self) -> None:
        await self.bus.close()

    async def publish_round(self, envelopes: list[Envelope], batch: int) -> None:
        progress(f"bus/{self.label}: ludex publish_many {len(envelopes)} in batches of {batch}")
        started = time.perf_counter()
        for i in range(0, len(envelopes), batch):
            self.published += len(await self.bus.publish_many(envelopes[i : i + batch]))
        self.best_publish_s = min(self.best_publish_s, time.perf_counter() - started)

    async def consume(self, envelopes: list[Envelope]) -> dict[str, Any]:
        progress(f"bus/{self.label}: ludex consume {self.published} (poll + commit)")
        topic = envelopes[0].topic
        join_s, consume_s, received, distinct = await _drain(
            self.bus, topic, "bench-drain", self.published
        )
        if distinct != len(envelopes):
            raise BackendError(
                f"bench: consumed {distinct} distinct events, expected {len(envelopes)}"
            )
        return {
            "published": self.published,
            "consumed": received,
            "publish_per_s": per_second(len(envelopes), self.best_publish_s),
            "consume_per_s": per_second(received, consume_s),
            "consumer_join_s": round(join_s, 3),
        }

    async def latency(self, events: list[Envelope]) -> dict[str, float]:
        progress(f"bus/{self.label}: ludex single-publish latency x{len(events)}")
        return latency_ms(await _bus_latency(self.bus, events, "bench-latency"))


class _Aiokafka:
    """The bare aiokafka client doing the same phases."""

    def __init__(self, url: str, *, partitions: int, namespace: str) -> None:
        from ludex.adapters.bus.kafka import bootstrap_servers

        self.url = url
        self.servers = bootstrap_servers(url)
        self.partitions = partitions
        self.namespace = namespace
        self.producer: Any = None
        self.consumer: Any = None
        self.published = 0
        self.best_publish_s = float("inf")
        self.topic = ""

    async def start(self, topic: str) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        self.topic = f"{self.namespace}.peer.{topic}"
        admin = AIOKafkaAdminClient(bootstrap_servers=self.servers, client_id="ludex-bench-admin")
        await admin.start()
        try:
            await admin.create_topics([NewTopic(self.topic, self.partitions, 1)])
        finally:
            await admin.close()
        await _wait_for_leaders(self.url, self.topic, self.partitions)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.servers,
            client_id="ludex-bench",
            enable_idempotence=True,
            acks="all",
        )
        await self.producer.start()

    async def close(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def publish_round(self, values: list[bytes], keys: list[bytes], batch: int) -> None:
        progress(f"bus/kafka: aiokafka send+gather {len(values)} in batches of {batch}")
        started = time.perf_counter()
        for i in range(0, len(values), batch):
            futures = [
                await self.producer.send(self.topic, value=v, key=k)
                for v, k in zip(values[i : i + batch], keys[i : i + batch], strict=True)
            ]
            self.published += len(await asyncio.gather(*futures))
        self.best_publish_s = min(self.best_publish_s, time.perf_counter() - started)

    async def consume(self, count: int) -> dict[str, Any]:
        from aiokafka import AIOKafkaConsumer

        progress(f"bus/kafka: aiokafka getmany {self.published} (+ commit)")
        joined_at = time.perf_counter()
        self.consumer = consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.servers,
            client_id="ludex-bench-consumer",
            group_id=f"{self.namespace}.peer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await consumer.start()
        for tp in consumer.assignment():
            await consumer.position(tp)
        started = time.perf_counter()
        received = 0
        last_progress = started
        while received < self.published:
            got = await consumer.getmany(timeout_ms=1000, max_records=POLL_MAX)
            now = time.perf_counter()
            n = sum(len(messages) for messages in got.values())
            if not n:
                if now - last_progress > STALL_SECONDS:
                    raise BackendError(
                        f"bench: aiokafka consumed {received} of {self.published}, then stalled"
                    )
                continue
            last_progress = now
            await consumer.commit()
            received += n
        return {
            "published": self.published,
            "consumed": received,
            "publish_per_s": per_second(count, self.best_publish_s),
            "consume_per_s": per_second(received, time.perf_counter() - started),
            "consumer_join_s": round(started - joined_at, 3),
        }

    async def latency(self, events: list[Envelope]) -> dict[str, float]:
        progress(f"bus/kafka: aiokafka single-send latency x{len(events)}")
        samples = []
        for envelope in events:
            value, key = encode(envelope), envelope.key.encode()
            started = time.perf_counter()
            sent = await self.producer.send_and_wait(self.topic, value=value, key=key)
            found = False
            while not found:
                got = await self.consumer.getmany(timeout_ms=1000, max_records=POLL_MAX)
                found = any(
                    m.offset == sent.offset
                    for tp, messages in got.items()
                    if tp.partition == sent.partition
                    for m in messages
                )
                if not found and time.perf_counter() - started > STALL_SECONDS:
                    raise BackendError("bench: a single aiokafka send did not arrive")
            samples.append(time.perf_counter() - started)
            await self.consumer.commit()
        return latency_ms(samples)


async def _memory(
    envelopes: list[Envelope], latency_events: list[Envelope], *, batch: int, rounds: int
) -> dict[str, Any]:
    ours = _Ludex("memory://", partitions=8, namespace="bench", label="memory")
    await ours.start(envelopes[0].topic)
    try:
        for _ in range(rounds):
            await ours.publish_round(envelopes, batch)
        figures = await ours.consume(envelopes)
        if latency_events:
            figures["end_to_end_latency"] = await ours.latency(latency_events)
        return figures
    finally:
        await ours.close()


async def _kafka(
    url: str,
    envelopes: list[Envelope],
    latency_events: list[Envelope],
    *,
    batch: int,
    rounds: int,
    partitions: int,
    namespace: str,
) -> dict[str, Any]:
    """ludex and aiokafka side by side, phase by phase, so load on the machine hits both."""
    topic = envelopes[0].topic
    values = [encode(e) for e in envelopes]
    keys = [e.key.encode() for e in envelopes]
    ours = _Ludex(url, partitions=partitions, namespace=namespace, label="kafka")
    peer = _Aiokafka(url, partitions=partitions, namespace=namespace)
    try:
        await ours.start(topic)
        await peer.start(topic)
        for round_ in range(1, rounds + 1):
            progress(f"bus/kafka: publish round {round_}/{rounds}")
            await ours.publish_round(envelopes, batch)
            await peer.publish_round(values, keys, batch)
        ours_figures = await ours.consume(envelopes)
        peer_figures = await peer.consume(len(envelopes))
        if latency_events:
            ours_figures["end_to_end_latency"] = await ours.latency(latency_events)
            peer_figures["end_to_end_latency"] = await peer.latency(latency_events)
    finally:
        await peer.close()
        await ours.close()
    return {
        "ludex": ours_figures,
        "peer_aiokafka": peer_figures,
        "ludex_vs_peer": {
            name: round(ours_figures[name] / peer_figures[name], 2)
            for name in ("publish_per_s", "consume_per_s")
        },
    }


async def _drop_namespace(url: str, namespace: str) -> None:
    """Best effort: delete the run's topics so repeated runs leave nothing behind."""
    from aiokafka.admin import AIOKafkaAdminClient

    from ludex.adapters.bus.kafka import bootstrap_servers

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers(url), client_id="ludex-bench-admin"
    )
    try:
        await admin.start()
        names = [t for t in await admin.list_topics() if t.startswith(namespace + ".")]
        if names:
            await admin.delete_topics(names)
    except Exception as exc:  # cleanup must not hide the figures
        progress(f"bus/kafka: could not delete the bench topics ({type(exc).__name__}: {exc})")
    finally:
        await admin.close()


async def run(
    count: int = 20_000,
    *,
    keys: int = 1_000,
    batch: int = 500,
    rounds: int = 3,
    latency_samples: int = 200,
    partitions: int = 8,
    kafka: str | None = None,
) -> dict[str, Any]:
    """Run the bus benchmark; ``kafka`` None means the local service, "" skips Kafka."""
    envelopes = sample_events(count, keys)
    latency_events = sample_events(latency_samples, keys, producer="bench-latency")
    backends: dict[str, Any] = {}

    progress("bus/memory: start")
    backends["memory"] = {
        "url": "memory://",
        "ludex": await _memory(envelopes, latency_events, batch=batch, rounds=rounds),
        "peer": None,
        "note": "in-process bus; no bare client to compare with, it shows ludex's own cost",
    }

    url, reason = resolve("kafka", kafka)
    if url is None:
        backends["kafka"] = {"skipped": reason}
    else:
        namespace = f"bench-{uuid.uuid4().hex[:10]}"
        entry: dict[str, Any] = {"url": redacted(url), "namespace": namespace}
        try:
            entry.update(
                await _kafka(
                    url,
                    envelopes,
                    latency_events,
                    batch=batch,
                    rounds=rounds,
                    partitions=partitions,
                    namespace=namespace,
                )
            )
        except Exception as exc:  # ludex, network or aiokafka errors: report them in the JSON
            entry["failed"] = f"{type(exc).__name__}: {exc}"
        finally:
            await _drop_namespace(url, namespace)
        backends["kafka"] = entry

    return header(
        "bus",
        input={
            "events": count,
            "event_type": envelopes[0].type,
            "distinct_keys": keys,
            "publish_batch": batch,
            "publish_rounds": rounds,
            "poll_max_records": POLL_MAX,
            "partitions": partitions,
            "latency_samples": latency_samples,
        },
        backends=backends,
        note=(
            "ludex: EventBus.publish_many per batch (encode + validate each envelope, "
            "headers, wait for every ack), best of publish_rounds rounds; then one consumer "
            "reads every record published (poll with decode + validate, commit per batch). "
            "peer_aiokafka: the bare aiokafka client with the same "
            "producer settings (enable_idempotence, acks=all) sending the same "
            "pre-encoded bytes and keys (send per record, gather per batch), and an "
            "AIOKafkaConsumer getmany + commit per batch reading the same count without "
            "decoding. ludex_vs_peer is ours / peer (1.0 = no overhead). Latency: one "
            "publish, then poll until that record arrives."
        ),
    )
