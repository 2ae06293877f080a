"""Pieces every EventBus backend shares: partitioning, namespacing, record decoding.

Both backends place a key on the same partition (Kafka's murmur2 rule), map topic
and group names through the same namespace, and decode records through the same
function, so a difference between them is a bug the contract suite can catch.
This module must never do I/O.
"""

from __future__ import annotations

from datetime import datetime

from aiokafka.partitioner import murmur2

from ludex.errors import EventError
from ludex.events import Envelope, decode
from ludex.ports.bus import MalformedRecord, Record


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of ``key`` among ``partitions``: Kafka's default (murmur2) rule."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


def to_ms(when: datetime) -> int:
    """Milliseconds since the epoch, as Kafka stores record timestamps."""
    return int(when.timestamp() * 1000)


class Namespace:
    """Prefixes topic and group names so independent runs share a broker safely.

    With namespace ``test-1``, the logical topic ``ludex.wallet`` is stored as
    ``test-1.ludex.wallet``; callers only ever see logical names.
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def topic(self, logical: str) -> str:
        return f"{self.prefix}.{logical}" if self.prefix else logical

    def group(self, logical: str) -> str:
        return f"{self.prefix}.{logical}" if self.prefix else logical

    def logical_topic(self, physical: str) -> str:
        if self.prefix and physical.startswith(self.prefix + "."):
            return physical[len(self.prefix) + 1 :]
        return physical


def decode_record(
    topic: str, partition: int, offset: int, timestamp_ms: int, value: bytes | None
) -> Record:
    """Decode one stored record; a record that does not decode raises :class:`MalformedRecord`."""
    where = f"{topic}[{partition}]@{offset}"
    if value is None:
        raise MalformedRecord(
            f"record {where} has no value; seek past it after dead-lettering it",
            topic=topic,
            partition=partition,
            offset=offset,
            raw=b"",
        )
    try:
        envelope: Envelope = decode(value)
    except EventError as exc:
        raise MalformedRecord(
            f"record {where} does not decode ({exc}); seek past it after dead-lettering it",
            topic=topic,
            partition=partition,
            offset=offset,
            raw=value,
        ) from exc
    return Record(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp_ms=timestamp_ms,
        envelope=envelope,
    )
