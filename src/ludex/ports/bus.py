"""EventBus port: ordered, replayable event streams with consumer groups.

Semantics every backend honours (the contract suite in tests/contract checks them):

* ``publish`` routes an envelope to its topic (``envelope.topic``) and to a
  partition chosen by a stable hash of ``envelope.key``; records with the same
  key keep their publish order.
* A consumer belongs to a group; the partitions of a topic are shared among the
  live members of a group, and every group sees every record.
* Offsets are committed explicitly after processing (``commit``); a new member of
  the group resumes after the last committed offset, so a record whose effect was
  not committed is delivered again (at-least-once). Consumers stay idempotent by
  remembering processed event ids.
* ``seek`` replays from an offset; ``seek_to_time`` from the first record at or
  after a time.
* A record that does not decode is never skipped: ``poll`` returns the good
  records before it, then raises :class:`MalformedRecord` (naming its position)
  on every poll until the caller seeks past it (after dead-lettering it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from ludex.errors import MalformedEvent
from ludex.events import Envelope

StartFrom = Literal["earliest", "latest"]


@dataclass(frozen=True, slots=True)
class Published:
    """Where a published record landed."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed record with its position."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    envelope: Envelope


class MalformedRecord(MalformedEvent):
    """A consumed record does not decode; says where it is so it can be dead-lettered."""

    def __init__(self, message: str, *, topic: str, partition: int, offset: int, raw: bytes):
        super().__init__(message)
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.raw = raw


class Consumer(Protocol):
    """A member of a consumer group. Use as ``async with bus.consumer(...) as c``."""

    async def __aenter__(self) -> Consumer: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        """Up to ``max_records`` records; waits at most ``timeout`` seconds for the first."""
        ...

    async def commit(self, records: Sequence[Record] | None = None) -> None:
        """Commit past the given records (default: everything polled so far)."""
        ...

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        """Next poll of that partition starts at ``offset``."""
        ...

    async def seek_to_time(self, when: datetime) -> None:
        """Next poll of every assigned partition starts at the first record at or after ``when``."""
        ...

    def assignment(self) -> set[tuple[str, int]]:
        """The (topic, partition) pairs this member reads now."""
        ...


class EventBus(Protocol):
    """Publish envelopes; open consumers."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, envelope: Envelope) -> Published:
        """Publish durably (acknowledged by every in-sync replica on Kafka)."""
        ...

    async def publish_many(self, envelopes: Sequence[Envelope]) -> list[Published]:
        """Publish in order; returns once all are durable."""
        ...

    def consumer(
        self,
        topics: Sequence[str],
        group: str,
        *,
        start: StartFrom = "earliest",
    ) -> Consumer:
        """A member of ``group`` reading ``topics``; ``start`` applies when nothing is committed."""
        ...

    async def ping(self) -> None:
        """Raise :class:`~ludex.errors.BackendUnavailable` if the bus cannot be reached."""
        ...
