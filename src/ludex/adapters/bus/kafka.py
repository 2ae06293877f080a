"""The production EventBus (``kafka://HOST:PORT[,HOST:PORT]``) on aiokafka.

One idempotent producer (``acks="all"``) per bus: key = the envelope's key,
value = the encoded envelope, timestamp = ``occurred_at``, headers carry the
event type and id. Consumers are aiokafka group members with auto-commit off and
``read_committed`` isolation; ``commit`` commits explicit offsets (one past the
records given), so anything not committed is delivered again.

Topics are created explicitly (the catalog's on ``start``, any other one before
it is first used) with the bus's partition count. A ``namespace`` prefixes every
topic and group name so test runs sharing a broker never collide; callers only
see logical names.

Failure modes, in ludex terms: an unreachable broker raises
:class:`~ludex.errors.BackendUnavailable` within ``connect_timeout`` on start and
ping. A publish while the broker is down waits up to ``publish_timeout`` for it
to return, then raises ``BackendUnavailable``; the idempotent producer keeps the
records queued and writes them (once each) if the broker comes back, so such a
publish may still land: publishers retry with the same event id and consumers
dedupe by id. Transient (retriable) aiokafka errors also become
``BackendUnavailable``; the others become :class:`~ludex.errors.BackendError`.

This module must never log or raise a URL with a password in it, never commit
offsets of records it did not return, and never skip a record that does not decode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
    TopicAlreadyExistsError,
    for_code,
)

from ludex.adapters.bus._common import Namespace, decode_record, to_ms
from ludex.config import redact_url
from ludex.errors import BackendError, BackendUnavailable, ConfigError, MalformedEvent
from ludex.events import Envelope, encode, topics
from ludex.ports.bus import Published, Record, StartFrom

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_UNAVAILABLE: Final = (
    KafkaConnectionError,
    NodeNotReadyError,
    KafkaTimeoutError,
    RequestTimedOutError,
    TimeoutError,
)


def bootstrap_servers(url: str) -> list[str]:
    """``kafka://h1:9092,h2:9092`` → ``["h1:9092", "h2:9092"]``; bad URLs raise ConfigError."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "kafka":
        raise ConfigError(f"{redact_url(url)!r} is not a kafka:// URL")
    netloc = parts.netloc.rpartition("@")[2]
    servers = []
    for hostport in netloc.split(","):
        host, _, port = hostport.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                f"{redact_url(url)!r}: {hostport!r} is not HOST:PORT; "
                "use kafka://HOST:PORT[,HOST:PORT]"
            )
        servers.append(hostport)
    return servers


class KafkaBus:
    """EventBus on a Kafka cluster."""

    def __init__(
        self,
        url: str,
        *,
        partitions: int = 8,
        namespace: str = "",
        replication_factor: int = 1,
        client_id: str = "ludex",
        connect_timeout: float = 10.0,
        request_timeout_ms: int = 30_000,
        publish_timeout: float = 30.0,
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 3_000,
        rebalance_timeout_ms: int | None = None,
        max_poll_interval_ms: int = 300_000,
        join_timeout: float = 60.0,
        close_timeout: float = 10.0,
    ) -> None:
        if partitions < 1:
            raise ConfigError(f"partitions must be at least 1, got {partitions}")
        self.url = url
        self.servers = bootstrap_servers(url)
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.client_id = client_id
        self.connect_timeout = connect_timeout
        self.request_timeout_ms = request_timeout_ms
        self.publish_timeout = publish_timeout
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.rebalance_timeout_ms = rebalance_timeout_ms
        self.max_poll_interval_ms = max_poll_interval_ms
        self.join_timeout = join_timeout
        self.close_timeout = close_timeout
        self.ns = Namespace(namespace)
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._known_topics: set[str] = set()
        self._topic_lock = asyncio.Lock()

    @property
    def where(self) -> str:
        return redact_url(self.url)

    @contextlib.contextmanager
    def translated(self, action: str) -> Iterator[None]:
        """Turn aiokafka failures into the ludex error tree."""
        try:
            yield
        except _UNAVAILABLE as exc:
            raise BackendUnavailable(
                f"Kafka at {self.where} is unavailable ({action}: {type(exc).__name__}: {exc}); "
                "check that the broker is running and LUDEX_BUS_URL is right"
            ) from exc
        except KafkaError as exc:
            if exc.retriable:  # leadership moving, coordinator loading, broker restarting
                raise BackendUnavailable(
                    f"Kafka at {self.where} is not ready ({action}: {type(exc).__name__}: "
                    f"{exc}); this is transient, retry later"
                ) from exc
            raise BackendError(
                f"Kafka at {self.where} failed ({action}: {type(exc).__name__}: {exc})"
            ) from exc

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            bootstrap_servers=self.servers,
            client_id=self.client_id,
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=self.request_timeout_ms,
        )
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self.servers,
            client_id=f"{self.client_id}-admin",
            request_timeout_ms=self.request_timeout_ms,
        )
        try:
            with self.translated("start"):
                await asyncio.wait_for(producer.start(), self.connect_timeout)
                await asyncio.wait_for(admin.start(), self.connect_timeout)
            self._producer, self._admin = producer, admin
            await self.ensure_topics(self.ns.topic(t) for t in topics())
        except BaseException:
            self._producer = self._admin = None
            await self._quietly("stop the producer", producer.stop())
            await self._quietly("close the admin client", admin.close())
            raise

    async def close(self) -> None:
        producer, admin = self._producer, self._admin
        self._producer = self._admin = None
        if producer is not None:
            await self._quietly("stop the producer", producer.stop())
        if admin is not None:
            await self._quietly("close the admin client", admin.close())

    async def _quietly(self, action: str, closing: Any) -> None:
        """Close something within ``close_timeout``; a failure to close is logged, not raised."""
        try:
            await asyncio.wait_for(closing, self.close_timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning("kafka: could not %s at %s: %s", action, self.where, exc)

    async def ping(self) -> None:
        client = AIOKafkaClient(
            bootstrap_servers=self.servers,
            client_id=f"{self.client_id}-ping",
            request_timeout_ms=int(self.connect_timeout * 1000),
        )
        try:
            with self.translated("ping"):
                await asyncio.wait_for(client.bootstrap(), self.connect_timeout)
        finally:
            await self._quietly("close the ping client", client.close())

    # -- topics ---------------------------------------------------------------------

    async def ensure_topics(self, physical: Iterable[str]) -> None:
        """Create the topics that do not exist yet (an existing topic is left as it is)."""
        missing = sorted(set(physical) - self._known_topics)
        if not missing:
            return
        admin = self._require(self._admin)
        async with self._topic_lock:
            missing = [t for t in missing if t not in self._known_topics]
            if not missing:
                return
            new = [NewTopic(t, self.partitions, self.replication_factor) for t in missing]
            with self.translated("create topics"):
                response = await admin.create_topics(new)
            for item in response.topic_errors:
                name, code = item[0], item[1]
                if code not in (0, TopicAlreadyExistsError.errno):
                    error = for_code(code)
                    raise BackendError(
                        f"Kafka at {self.where} refused to create topic {name!r}: "
                        f"{error.__name__} {item[2] if len(item) > 2 else ''}".rstrip()
                    )
            self._known_topics.update(missing)

    # -- publishing -------------------------------------------------------------------

    async def publish(self, envelope: Envelope) -> Published:
        return (await self.publish_many([envelope]))[0]

    async def publish_many(self, envelopes: Sequence[Envelope]) -> list[Published]:
        producer = self._require(self._producer)
        if not envelopes:
            return []
        # Encode everything first: a bad envelope publishes nothing.
        encoded = [(self.ns.topic(e.topic), e, encode(e)) for e in envelopes]
        await self.ensure_topics(t for t, _, _ in encoded)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        futures: list[asyncio.Future[Any]] = []
        # One deadline for the whole batch: a wait_for per record would start a task
        # per send and cost most of the producer's throughput.
        with self.translated("publish"):
            async with asyncio.timeout_at(deadline):
                for topic, envelope, value in encoded:
                    queued = await producer.send(
                        topic,
                        value=value,
                        key=envelope.key.encode(),
                        timestamp_ms=to_ms(envelope.occurred_at),
                        headers=[
                            ("ludex-event-type", envelope.type.encode()),
                            ("ludex-event-id", envelope.id.encode()),
                        ],
                    )
                    queued.add_done_callback(_observe)
                    futures.append(queued)
        _, pending = await asyncio.wait(futures, timeout=max(deadline - loop.time(), 0.001))
        if pending:
            # The idempotent producer keeps retrying queued records until the broker is
            # back, so they may still be written (once each) after this error.
            raise BackendUnavailable(
                f"Kafka at {self.where} did not acknowledge {len(pending)} of {len(futures)} "
                f"records within {self.publish_timeout:g}s; they stay queued and are written "
                "if the broker comes back; retrying with the same event ids is safe "
                "(consumers dedupe by id)"
            )
        results = [f.exception() or f.result() for f in futures]
        published = []
        for result in results:
            if isinstance(result, BaseException):
                with self.translated("publish"):
                    raise result
            published.append(
                Published(
                    topic=self.ns.logical_topic(result.topic),
                    partition=result.partition,
                    offset=result.offset,
                )
            )
        return published

    # -- consuming --------------------------------------------------------------------

    def consumer(
        self,
        topics: Sequence[str],
        group: str,
        *,
        start: StartFrom = "earliest",
    ) -> KafkaConsumer:
        if not topics:
            raise BackendError("a consumer needs at least one topic")
        return KafkaConsumer(self, [self.ns.topic(t) for t in topics], self.ns.group(group), start)

    def _require(self, client: _T | None) -> _T:
        if client is None:
            raise BackendError(f"the Kafka bus at {self.where} is not started; call start()")
        return client


async def _stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop an aiokafka consumer, even when its fetcher is retrying a dead broker.

    aiokafka 0.14's ``Fetcher.close`` cancels its retry tasks and awaits them
    unguarded, so their ``CancelledError`` escapes ``stop()`` before the client's
    connections are closed. That cancellation is not ours: finish the job instead.
    """
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        fetcher = consumer._fetcher
        for pending in list(getattr(fetcher, "_pending_tasks", ())):
            pending.cancel()
        await consumer._client.close()


def _observe(future: asyncio.Future[Any]) -> None:
    """Retrieve a send's outcome so a late failure is never reported as unobserved."""
    if not future.cancelled():
        future.exception()


class _Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forget consumed positions of partitions taken away by a rebalance."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        for tp in revoked:
            self._consumer.consumed.pop(tp, None)

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        return None


class KafkaConsumer:
    """A consumer-group member on a :class:`KafkaBus`."""

    def __init__(self, bus: KafkaBus, topics: list[str], group: str, start: StartFrom) -> None:
        self._bus = bus
        self._topics = topics
        self._group = group
        self._start = start
        self._consumer: AIOKafkaConsumer | None = None
        self.consumed: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> KafkaConsumer:
        bus = self._bus
        if bus._admin is not None:
            await bus.ensure_topics(self._topics)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bus.servers,
            client_id=f"{bus.client_id}-consumer",
            group_id=self._group,
            enable_auto_commit=False,
            auto_offset_reset=self._start,
            isolation_level="read_committed",
            request_timeout_ms=bus.request_timeout_ms,
            session_timeout_ms=bus.session_timeout_ms,
            heartbeat_interval_ms=bus.heartbeat_interval_ms,
            rebalance_timeout_ms=bus.rebalance_timeout_ms,
            max_poll_interval_ms=bus.max_poll_interval_ms,
        )
        consumer.subscribe(self._topics, listener=_Revocations(self))
        try:
            with bus.translated("join the consumer group"):
                await asyncio.wait_for(consumer.start(), bus.join_timeout)
                # Resolve start positions now, so "latest" means "after this member joined".
                for tp in consumer.assignment():
                    await asyncio.wait_for(consumer.position(tp), bus.request_timeout_ms / 1000)
        except BaseException:
            await bus._quietly("stop the consumer", _stop_consumer(consumer))
            raise
        self._consumer = consumer
        return self

    async def __aexit__(self, *exc: object) -> None:
        consumer, self._consumer = self._consumer, None
        self.consumed = {}
        if consumer is not None:
            await self._bus._quietly("stop the consumer", _stop_consumer(consumer))

    def _require(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise BackendError("the consumer is not open; use `async with bus.consumer(...)`")
        return self._consumer

    async def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        consumer = self._require()
        if max_records < 1:
            raise BackendError(f"max_records must be at least 1, got {max_records}")
        with self._bus.translated("poll"):
            batch = await consumer.getmany(
                timeout_ms=max(int(timeout * 1000), 0), max_records=max_records
            )
        out: list[Record] = []
        items = list(batch.items())
        for index, (tp, messages) in enumerate(items):
            logical = self._bus.ns.logical_topic(tp.topic)
            for message in messages:
                try:
                    record = decode_record(
                        logical, tp.partition, message.offset, message.timestamp, message.value
                    )
                except MalformedEvent:
                    # Rewind so the bad record (and anything fetched but not returned)
                    # comes back on the next poll: nothing is skipped.
                    consumer.seek(tp, message.offset)
                    for later_tp, later in items[index + 1 :]:
                        consumer.seek(later_tp, later[0].offset)
                    if out:
                        return out
                    raise
                out.append(record)
                self.consumed[tp] = message.offset + 1
        return out

    async def commit(self, records: Sequence[Record] | None = None) -> None:
        consumer = self._require()
        if records is None:
            offsets = dict(self.consumed)
        else:
            offsets = {}
            for r in records:
                tp = TopicPartition(self._bus.ns.topic(r.topic), r.partition)
                offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        if not offsets:
            return
        lost = sorted(offsets.keys() - consumer.assignment())
        if lost:
            raise BackendError(
                f"cannot commit {[(t.topic, t.partition) for t in lost]}: the group rebalanced "
                "and this member no longer owns them; their records will be delivered again"
            )
        try:
            with self._bus.translated("commit"):
                await consumer.commit(offsets)
        except BackendError as exc:
            if isinstance(exc.__cause__, CommitFailedError | IllegalStateError):
                raise BackendError(
                    f"commit to Kafka at {self._bus.where} was refused because the group "
                    "rebalanced; the uncommitted records will be delivered again"
                ) from exc.__cause__
            raise

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        consumer = self._require()
        tp = TopicPartition(self._bus.ns.topic(topic), partition)
        if tp not in consumer.assignment():
            raise BackendError(f"cannot seek {topic}[{partition}]: not assigned to this member")
        if offset < 0:
            raise BackendError(f"cannot seek {topic}[{partition}] to negative offset {offset}")
        consumer.seek(tp, offset)
        self.consumed.pop(tp, None)

    async def seek_to_time(self, when: datetime) -> None:
        consumer = self._require()
        assigned = consumer.assignment()
        if not assigned:
            return
        target = max(to_ms(when), 0)
        with self._bus.translated("seek to time"):
            found = await consumer.offsets_for_times(dict.fromkeys(assigned, target))
            for tp in assigned:
                hit = found.get(tp)
                if hit is None:
                    await consumer.seek_to_end(tp)
                else:
                    consumer.seek(tp, hit.offset)
                self.consumed.pop(tp, None)

    def assignment(self) -> set[tuple[str, int]]:
        consumer = self._require()
        return {
            (self._bus.ns.logical_topic(tp.topic), tp.partition) for tp in consumer.assignment()
        }
