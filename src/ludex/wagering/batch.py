"""Group commit: many wallet requests in one store transaction.

Concurrent bets and wins queue here; whoever holds a free slot takes everything
queued (up to ``max_batch``) and runs it as one batch: one transaction that locks
and reads the rows the whole batch needs (:class:`View`), applies the requests one
after the other in memory (in arrival order; a later request sees what an earlier
one changed), then writes every change with a few multi-row statements
(:class:`Writes`) and commits. Round trips per request fall from about ten to about
one.

Nothing runs in the background: the batch is run by one of the callers waiting for
it (leader/followers), so there is nothing to start or stop. A batch that fails as
a whole (a deadlock, a duplicate key raced in by another process) is run again one
request at a time by the service, so one request's trouble never answers for
another's. A request whose checks need figures that only SQL can sum (daily loss,
bet velocity, provider liability) runs in a batch of its own.

This module must never answer a request before its batch has committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from ludex.events import Envelope
from ludex.ledger import Account, Transfer
from ludex.wagering.repository import RoundRow, TransactionRow

MAX_BATCH: Final = 64
SLOTS: Final = 1
"""One batch at a time per process: on two cores a second slot measured slower, and one
slot applies requests in arrival order."""

Key = tuple[str, str]
"""(provider id, transaction or round id)."""

I = TypeVar("I")  # noqa: E741 - an item of a batch
R = TypeVar("R")  # its result


@dataclass(slots=True)
class View:
    """The rows a batch reads, locked, then changed in memory as its requests apply."""

    players: dict[str, str] = field(default_factory=dict)
    """Player id to status; an absent id is an unknown player."""
    accounts: dict[str, Account] = field(default_factory=dict)
    transactions: dict[Key, TransactionRow] = field(default_factory=dict)
    rounds: dict[Key, RoundRow] = field(default_factory=dict)


@dataclass(slots=True)
class Writes:
    """Everything a batch stores, written after the last request applied."""

    transactions: list[dict[str, object]] = field(default_factory=list)
    rounds: dict[Key, tuple[RoundRow, bool]] = field(default_factory=dict)
    """The latest figures of each round touched, and whether the batch created it."""
    transfers: list[Transfer] = field(default_factory=list)
    accounts: dict[str, Account] = field(default_factory=dict)
    """The accounts the transfers changed, with their final counters."""
    events: list[Envelope] = field(default_factory=list)

    def round(self, row: RoundRow, *, new: bool = False) -> None:
        key = (row.provider_id, row.round_id)
        known = self.rounds.get(key)
        self.rounds[key] = (row, new or (known is not None and known[1]))


@dataclass(slots=True)
class _Waiting(Generic[I, R]):
    item: I
    solo: bool
    done: asyncio.Future[R]
    taken: bool = False


class GroupCommit(Generic[I, R]):
    """Queue items; run them in batches through ``run`` (which returns one outcome per
    item, in order: a result, or an exception to raise to that item's caller)."""

    def __init__(
        self,
        run: Callable[[Sequence[I]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_batch: int = MAX_BATCH,
        slots: int = SLOTS,
    ) -> None:
        if max_batch < 1 or slots < 1:
            raise ValueError("max_batch and slots must be at least 1")
        self._run = run
        self._max = max_batch
        self._slots = slots
        self._free: asyncio.Semaphore | None = None
        self._queue: list[_Waiting[I, R]] = []
        self.batches = 0
        self.items = 0

    async def submit(self, item: I, *, solo: bool = False) -> R:
        """Run ``item`` in the next batch (alone if ``solo``) and return its result."""
        if self._free is None:
            self._free = asyncio.Semaphore(self._slots)
        waiting = _Waiting[I, R](item, solo, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        while not waiting.taken:
            # A free slot takes the head of the queue, which may or may not reach
            # this item; one that another caller took is awaited below instead.
            async with self._free:
                if waiting.taken:
                    break
                batch = self._take()
                # Shielded: a caller cancelled while leading must not strand the others.
                await asyncio.shield(asyncio.ensure_future(self._lead(batch)))
        return await waiting.done

    def _take(self) -> list[_Waiting[I, R]]:
        """The next batch: the first queued item alone if it is solo, else the queued
        items up to the first solo one (at most ``max_batch``)."""
        if self._queue[0].solo:
            head = self._queue.pop(0)
            head.taken = True
            return [head]
        count = 0
        while count < len(self._queue) and count < self._max and not self._queue[count].solo:
            count += 1
        batch, self._queue[:count] = self._queue[:count], []
        for w in batch:
            w.taken = True
        return batch

    async def _lead(self, batch: list[_Waiting[I, R]]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            outcomes = await self._run([w.item for w in batch])
        except asyncio.CancelledError:  # the loop is going away: nobody waits forever
            for w in batch:
                w.done.cancel()
            raise
        except Exception as exc:  # every caller of the batch hears of it
            for w in batch:
                if not w.done.done():
                    w.done.set_exception(exc)
            return
        for w, outcome in zip(batch, outcomes, strict=True):
            if w.done.done():
                continue
            if isinstance(outcome, BaseException):
                w.done.set_exception(outcome)
            else:
                w.done.set_result(outcome)
