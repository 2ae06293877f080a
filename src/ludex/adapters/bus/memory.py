"""The embedded EventBus (``memory://``): Kafka's semantics inside one process.

Each (topic, partition) is an append-only list of encoded records with offsets
and timestamps; keys are placed with Kafka's murmur2 rule, so a key lands on the
same partition number here and on a broker with the same partition count.
Consumer groups share partitions among live members (range assignment, redone
when a member joins or leaves, positions reset to the committed offsets as in
Kafka's eager rebalance) and keep committed offsets per partition.

Records are stored as the bytes ``ludex.events.encode`` produced and decoded on
poll, so this backend exercises the same serialization as Kafka. It must never
drop a record silently, never block the event loop, and never be shared across
processes (it is not durable: everything is lost when the process exits).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from ludex.adapters.bus._common import Namespace, decode_record, partition_for, to_ms
from ludex.errors import BackendError, MalformedEvent
from ludex.events import Envelope, encode
from ludex.ports.bus import Published, Record, StartFrom

_TopicPartition = tuple[str, int]

DEFAULT_PARTITIONS: Final = 8


@dataclass(frozen=True, slots=True)
class _Stored:
    key: bytes
    value: bytes | None
    timestamp_ms: int


@dataclass(slots=True)
class _Group:
    members: list[MemoryConsumer] = field(default_factory=list)
    committed: dict[_TopicPartition, int] = field(default_factory=dict)


class MemoryBus:
    """In-process event bus with partitions, offsets and consumer groups."""

    def __init__(self, partitions: int = DEFAULT_PARTITIONS, *, namespace: str = "") -> None:
        if partitions < 1:
            raise BackendError(f"partitions must be at least 1, got {partitions}")
        self.partitions = partitions
        self._ns = Namespace(namespace)
        self._logs: dict[str, list[list[_Stored]]] = {}
        self._groups: dict[str, _Group] = {}
        self._member_ids = itertools.count(1)
        self._wakeup = asyncio.Event()
        self._closed = False

    # -- EventBus ---------------------------------------------------------------

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        self._notify()

    async def ping(self) -> None:
        return None

    async def publish(self, envelope: Envelope) -> Published:
        return (await self.publish_many([envelope]))[0]

    async def publish_many(self, envelopes: Sequence[Envelope]) -> list[Published]:
        self._check_open()
        # Encode everything first: a bad envelope publishes nothing.
        encoded = [(e.topic, e.key.encode(), encode(e), to_ms(e.occurred_at)) for e in envelopes]
        published = [self._append(t, k, v, ts) for t, k, v, ts in encoded]
        self._notify()
        return published

    def consumer(
        self,
        topics: Sequence[str],
        group: str,
        *,
        start: StartFrom = "earliest",
    ) -> MemoryConsumer:
        if not topics:
            raise BackendError("a consumer needs at least one topic")
        return MemoryConsumer(
            self,
            [self._ns.topic(t) for t in topics],
            self._ns.group(group),
            start,
        )

    # -- test hook ----------------------------------------------------------------

    def inject_raw(
        self, topic: str, value: bytes | None, *, key: bytes = b"", timestamp_ms: int | None = None
    ) -> Published:
        """Append raw bytes to a logical topic, bypassing validation (tests of bad input)."""
        self._check_open()
        when = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
        published = self._append(topic, key, value, when)
        self._notify()
        return published

    # -- internals ----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BackendError("the memory bus is closed")

    def _log(self, physical_topic: str) -> list[list[_Stored]]:
        log = self._logs.get(physical_topic)
        if log is None:
            log = self._logs[physical_topic] = [[] for _ in range(self.partitions)]
        return log

    def _append(self, topic: str, key: bytes, value: bytes | None, ts: int) -> Published:
        partition = partition_for(key, self.partitions)
        records = self._log(self._ns.topic(topic))[partition]
        records.append(_Stored(key=key, value=value, timestamp_ms=ts))
        return Published(topic=topic, partition=partition, offset=len(records) - 1)

    def _notify(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def _join(self, member: MemoryConsumer) -> None:
        group = self._groups.setdefault(member.group, _Group())
        group.members.append(member)
        self._rebalance(group)

    def _leave(self, member: MemoryConsumer) -> None:
        group = self._groups.get(member.group)
        if group is None or member not in group.members:
            return
        group.members.remove(member)
        self._rebalance(group)

    def _rebalance(self, group: _Group) -> None:
        """Range-assign every subscribed topic's partitions among the group's members."""
        assigned: dict[int, set[_TopicPartition]] = {m.member_id: set() for m in group.members}
        for topic in sorted({t for m in group.members for t in m.topics}):
            self._log(topic)
            members = sorted(
                (m for m in group.members if topic in m.topics), key=lambda m: m.member_id
            )
            share, extra = divmod(self.partitions, len(members))
            partition = 0
            for index, member in enumerate(members):
                count = share + (1 if index < extra else 0)
                for p in range(partition, partition + count):
                    assigned[member.member_id].add((topic, p))
                partition += count
        for member in group.members:
            member.reset(assigned[member.member_id], group.committed)
        self._notify()

    def _end_offset(self, tp: _TopicPartition) -> int:
        return len(self._log(tp[0])[tp[1]])


class MemoryConsumer:
    """A member of a consumer group on a :class:`MemoryBus`."""

    def __init__(self, bus: MemoryBus, topics: list[str], group: str, start: StartFrom) -> None:
        self._bus = bus
        self.topics = frozenset(topics)
        self.group = group
        self.start = start
        self.member_id = next(bus._member_ids)
        self._assigned: set[_TopicPartition] = set()
        self._positions: dict[_TopicPartition, int] = {}
        self._consumed: dict[_TopicPartition, int] = {}
        self._active = False
        self._turn = 0

    async def __aenter__(self) -> MemoryConsumer:
        self._bus._check_open()
        self._active = True
        self._bus._join(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._active = False
        self._bus._leave(self)
        self._assigned = set()
        self._positions = {}
        self._consumed = {}

    def reset(self, assigned: set[_TopicPartition], committed: dict[_TopicPartition, int]) -> None:
        """Take a new assignment; positions restart from the group's commits (eager rebalance)."""
        self._assigned = assigned
        self._consumed = {}
        self._positions = {}
        for tp in assigned:
            if tp in committed:
                self._positions[tp] = committed[tp]
            elif self.start == "earliest":
                self._positions[tp] = 0
            else:
                self._positions[tp] = self._bus._end_offset(tp)

    async def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        if max_records < 1:
            raise BackendError(f"max_records must be at least 1, got {max_records}")
        deadline = asyncio.get_running_loop().time() + max(timeout, 0.0)
        while True:
            self._check_active()
            wakeup = self._bus._wakeup
            records = self._take(max_records)
            if records:
                return records
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return []
            try:
                await asyncio.wait_for(wakeup.wait(), remaining)
            except TimeoutError:
                return []

    def _take(self, max_records: int) -> list[Record]:
        out: list[Record] = []
        order = sorted(self._assigned)
        if not order:
            return out
        self._turn = (self._turn + 1) % len(order)
        for topic, partition in order[self._turn :] + order[: self._turn]:
            stored = self._bus._log(topic)[partition]
            position = self._positions[(topic, partition)]
            logical = self._bus._ns.logical_topic(topic)
            while position < len(stored) and len(out) < max_records:
                item = stored[position]
                try:
                    record = decode_record(
                        logical, partition, position, item.timestamp_ms, item.value
                    )
                except MalformedEvent:
                    if out:
                        return out
                    raise
                out.append(record)
                position += 1
                self._positions[(topic, partition)] = position
                self._consumed[(topic, partition)] = position
            if len(out) >= max_records:
                break
        return out

    async def commit(self, records: Sequence[Record] | None = None) -> None:
        self._check_active()
        if records is None:
            offsets = dict(self._consumed)
        else:
            offsets = {}
            for r in records:
                tp = (self._bus._ns.topic(r.topic), r.partition)
                offsets[tp] = max(offsets.get(tp, 0), r.offset + 1)
        lost = sorted(tp for tp in offsets if tp not in self._assigned)
        if lost:
            raise BackendError(
                f"cannot commit {lost}: the group rebalanced and this member no longer "
                "owns them; their records will be delivered again to the new owner"
            )
        group = self._bus._groups[self.group]
        group.committed.update(offsets)

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        self._check_active()
        tp = (self._bus._ns.topic(topic), partition)
        if tp not in self._assigned:
            raise BackendError(f"cannot seek {topic}[{partition}]: not assigned to this member")
        if offset < 0:
            raise BackendError(f"cannot seek {topic}[{partition}] to negative offset {offset}")
        self._positions[tp] = min(offset, self._bus._end_offset(tp))
        self._consumed.pop(tp, None)
        self._bus._notify()

    async def seek_to_time(self, when: datetime) -> None:
        self._check_active()
        target = to_ms(when)
        for tp in self._assigned:
            stored = self._bus._log(tp[0])[tp[1]]
            self._positions[tp] = next(
                (i for i, item in enumerate(stored) if item.timestamp_ms >= target), len(stored)
            )
            self._consumed.pop(tp, None)
        self._bus._notify()

    def assignment(self) -> set[tuple[str, int]]:
        return {(self._bus._ns.logical_topic(t), p) for t, p in self._assigned}

    def _check_active(self) -> None:
        if not self._active:
            raise BackendError("the consumer is not open; use `async with bus.consumer(...)`")
        self._bus._check_open()
