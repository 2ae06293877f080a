"""The indexer pipeline: backfill a range, follow the head, survive reorgs and crashes.

``Indexer`` reads bundles from a source (``RpcSource`` or anything with the same
methods) and writes them through :class:`~ludex.indexer.store.IndexStore`:

* each range of at most ``batch_blocks`` blocks is written in ONE store transaction with
  its ``chain.block`` events (outbox) and the checkpoint, so after a crash a range is
  either fully stored or not at all, and resuming from the checkpoint leaves no gap;
* every block's parent hash is checked against the stored block before it; on a
  mismatch (or when the node no longer has the checkpoint's block) the follower walks
  back to the common ancestor, reverts the orphaned rows and emits one
  ``chain.block_reverted`` per orphaned block in one transaction, then indexes the new
  branch;
* the follower stays ``confirmations`` blocks behind the head, or follows the node's
  ``safe`` / ``finalized`` tag (``follow_tag``) where the node has one.

Events: one ``chain.block``, ``chain.transaction``, ``chain.log`` and
``chain.token_transfer`` per new record (``events`` limits which), in the range's
transaction (:mod:`ludex.indexer.bus_events`); with ``abi`` (an AbiRegistry), also one
``chain.event_decoded`` per log the registry decodes, and the registry's cache hit
rate goes to the metrics after each range. Tokens first seen in a range get their
metadata (name, symbol, decimals by eth_call, :mod:`ludex.indexer.token_metadata`)
written in the range's transaction when the source can eth_call. With ``mempool``, the
stored pending transactions the range includes are marked ``included`` in its
transaction (pending again on a reorg). With ``analytics``
(an AnalyticsStore), each range is also written to ClickHouse after the operational
commit, and a reorg tombstones the orphaned rows there first
(:mod:`ludex.indexer.analytics`); a crash between the two is repaired on resume, which
re-writes from ClickHouse's tip.
This module never talks to the network itself: the source does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import structlog

from ludex.adapters.sql.outbox import add_to_outbox
from ludex.adapters.sql.store import SqlStore
from ludex.errors import BackendUnavailable, ChainError, ConfigError
from ludex.events import BlockReverted, new_event
from ludex.indexer import analytics as olap_rows
from ludex.indexer import mempool, metrics
from ludex.indexer.abi_registry import AbiRegistry
from ludex.indexer.bus_events import (
    ALL_EVENTS,
    EVENT_DECODED,
    check_kinds,
    decoded_events,
    record_events,
)
from ludex.indexer.model import BlockBundle
from ludex.indexer.store import Checkpoint, IndexStore, RowCounts
from ludex.indexer.token_metadata import (
    EthCaller,
    TokenMetadata,
    TokenMetadataReader,
    first_seen,
)
from ludex.ports.olap import AnalyticsStore

log = structlog.get_logger(__name__)

Progress = Callable[[int, RowCounts], None]
"""Called after each stored range with the number of blocks done and the rows written."""


class BlockSource(Protocol):
    async def head(self) -> int: ...

    async def block_hashes(self, first: int, last: int) -> dict[int, str]: ...

    async def tag_number(self, tag: Literal["safe", "finalized"]) -> int | None: ...

    async def fetch_bundles(self, first: int, last: int) -> list[BlockBundle]: ...


@dataclass(frozen=True, slots=True)
class Reorg:
    """A reorg the follower handled: the common ancestor and the orphaned blocks."""

    ancestor: int
    reverted: tuple[tuple[int, str], ...]

    @property
    def depth(self) -> int:
        return len(self.reverted)


@dataclass(frozen=True, slots=True)
class Outputs:
    """Where an indexer writes besides the operational store (``Indexer`` keywords)."""

    analytics: AnalyticsStore | None = None
    events: Collection[str] = ALL_EVENTS
    abi: AbiRegistry | None = None
    token_metadata: bool = True
    mempool: bool = False

    def kwargs(self) -> dict[str, Any]:
        return {
            "analytics": self.analytics,
            "events": self.events,
            "abi": self.abi,
            "token_metadata": self.token_metadata,
            "mempool": self.mempool,
        }


NO_OUTPUTS: Final = Outputs()
"""The operational store and every record event only."""


@dataclass(slots=True)
class Stats:
    rows: RowCounts = field(default_factory=RowCounts)
    decoded: int = 0
    reorgs: list[Reorg] = field(default_factory=list)
    seconds: float = 0.0


class _ParentMismatch(Exception):
    """The first block of a range does not extend the stored chain."""


class Indexer:
    """Backfill and follow one chain into the operational store (see the module docstring)."""

    def __init__(
        self,
        store: SqlStore,
        source: BlockSource,
        *,
        chain_id: int,
        name: str = "default",
        batch_blocks: int = 100,
        confirmations: int = 0,
        follow_tag: Literal["safe", "finalized"] | None = None,
        max_reorg_depth: int = 1024,
        poll_interval: float = 1.0,
        producer: str = "indexer",
        analytics: AnalyticsStore | None = None,
        events: Collection[str] = ALL_EVENTS,
        abi: AbiRegistry | None = None,
        token_metadata: bool = True,
        mempool: bool = False,
    ) -> None:
        if batch_blocks < 1 or confirmations < 0 or max_reorg_depth < 1:
            raise ConfigError(
                "batch_blocks and max_reorg_depth must be >= 1 and confirmations >= 0"
            )
        self.store = store
        self.rows = IndexStore(store)
        self.source = source
        self.chain_id = chain_id
        self.name = name
        self.batch_blocks = batch_blocks
        self.confirmations = confirmations
        self.follow_tag = follow_tag
        self.max_reorg_depth = max_reorg_depth
        self.poll_interval = poll_interval
        self.producer = producer
        self.analytics = analytics
        self.events = check_kinds(events)
        self.abi = abi
        self.mempool = mempool
        """Mark the stored pending transactions (``ludex.indexer.mempool``) included in
        each range's transaction, and pending again when a reorg orphans their block."""
        self.tokens = (
            TokenMetadataReader(source)
            if token_metadata and isinstance(source, EthCaller)
            else None
        )
        """Reads the metadata of new tokens (a source that can eth_call, e.g. RpcSource)."""
        self.stats = Stats()
        self.span: tuple[int, int] | None = None
        """The blocks this indexer owns (a backfill range): its ClickHouse position is
        the highest block of that span in ClickHouse, not the chain's."""
        self._restart_at: int | None = None
        self.wake = asyncio.Event()
        """Set it (a newHeads notification) to poll at once instead of waiting."""

    async def checkpoint(self) -> Checkpoint | None:
        async with self.store.transaction(read_only=True) as session:
            return await self.rows.checkpoint(session, self.chain_id, self.name)

    # --- writing one range ------------------------------------------------------------

    async def _fetch(self, first: int, last: int) -> list[BlockBundle]:
        """The bundles of a range whose blocks link to each other (fetched again when a
        reorg on the node splits the range)."""
        for _ in range(3):
            bundles = await self.source.fetch_bundles(first, last)
            if all(b.block.parent_hash == a.block.hash for a, b in itertools.pairwise(bundles)):
                return bundles
            log.info("indexer.range_split_by_reorg", first=first, last=last)
        raise ChainError(f"blocks {first}..{last} keep changing on the node; try again later")

    async def _store(self, bundles: Sequence[BlockBundle], *, advance: bool) -> RowCounts:
        """Write bundles, their events and (``advance``) the checkpoint in one transaction."""
        first = bundles[0].block
        tokens = await self._token_metadata(bundles)
        async with self.store.transaction() as session:
            parent = await self.rows.stored_hash(self.chain_id, first.number - 1, session=session)
            if parent is not None and parent != first.parent_hash:
                raise _ParentMismatch(first.number)
            written = await self.rows.write(session, bundles)
            await self.rows.write_tokens(session, tokens)
            events = list(record_events(written.blocks, self.events, self.producer))
            if self.abi is not None and EVENT_DECODED in self.events:
                decoded = list(decoded_events(written.blocks, self.abi, self.producer))
                self.stats.decoded += len(decoded)
                events += decoded
            if events:
                await add_to_outbox(session, *events)
            fates = (
                await mempool.mark_included(
                    session,
                    self.chain_id,
                    [(tx.hash, tx.block_number) for b in written.blocks for tx in b.transactions],
                    producer=self.producer,
                )
                if self.mempool
                else None
            )
            if advance:
                last = bundles[-1].block
                current = await self.rows.checkpoint(session, self.chain_id, self.name)
                if current is None or current.block_number < last.number:
                    await self.rows.set_checkpoint(
                        session, self.chain_id, self.name, last.number, last.hash
                    )
        if self.abi is not None:
            metrics.observe_abi_cache(self.abi)
        if fates is not None:
            mempool.observe(self.chain_id, fates)
        if self.analytics is not None:  # every bundle, not only new ones: at-least-once
            await olap_rows.write_bundles(self.analytics, bundles)
        return written.rows

    async def _token_metadata(self, bundles: Sequence[BlockBundle]) -> list[TokenMetadata]:
        """The metadata of the range's tokens not stored yet, read before the range's
        transaction opens (eth_call at the range's last block; never fails on a token)."""
        seen = first_seen(bundles)
        if self.tokens is None or not seen:
            return []
        async with self.store.transaction(read_only=True) as session:
            known = await self.rows.known_tokens(session, self.chain_id, list(seen))
        new = [t for address, t in seen.items() if address not in known]
        return await self.tokens.read(self.chain_id, new, bundles[-1].block.number)

    async def _analytics_start(self, first: int) -> int:
        """Where to start so ClickHouse catches up: a crash between the operational
        commit and the ClickHouse write left blocks in the operational store only."""
        if self.analytics is None:
            return first
        low, high = self.span if self.span is not None else (0, 2**63 - 1)
        top = await olap_rows.tip(self.analytics, self.chain_id, low, high)
        if top is not None:
            return min(first, top + 1)
        if self.span is not None:
            return min(first, low)
        async with self.store.transaction(read_only=True) as session:
            lowest = await self.rows.lowest_block(session, self.chain_id)
        return first if lowest is None else min(first, lowest)

    # --- backfill ---------------------------------------------------------------------

    async def backfill(
        self, first: int, last: int, *, progress: Progress | None = None, resume: bool = True
    ) -> RowCounts:
        """Index blocks ``first..last`` in ranges of ``batch_blocks``; with ``resume``,
        start after the checkpoint when it lies inside the range."""
        started = time.perf_counter()
        start = first
        if resume:
            cp = await self.checkpoint()
            if cp is not None and first - 1 <= cp.block_number:
                start = max(first, await self._analytics_start(cp.block_number + 1))
        total = RowCounts()
        n = start
        if progress is not None and start > first:
            progress(start - first, RowCounts())
        # The next range is fetched (network, parsing) while this one is stored.
        ahead: tuple[int, asyncio.Future[list[BlockBundle]]] | None = None
        try:
            while n <= last:
                end = min(n + self.batch_blocks - 1, last)
                if ahead is not None and ahead[0] == n:
                    bundles = await ahead[1]
                else:
                    bundles = await self._fetch(n, end)
                ahead = None
                if end < last:
                    after = min(end + self.batch_blocks, last)
                    ahead = (end + 1, asyncio.ensure_future(self._fetch(end + 1, after)))
                try:
                    written = await self._store(bundles, advance=True)
                except _ParentMismatch:
                    reorg = await self._handle_reorg(n - 1)
                    n = reorg.ancestor + 1
                    continue
                total += written
                self.stats.rows += written
                if progress is not None:
                    progress(end - n + 1, written)
                n = end + 1
        finally:
            if ahead is not None:
                ahead[1].cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ahead[1]
        self.stats.seconds += time.perf_counter() - started
        return total

    # --- following the head -----------------------------------------------------------

    async def target(self) -> int:
        """The highest block the follower indexes now."""
        head = await self.source.head()
        if self.follow_tag is not None:
            tagged = await self.source.tag_number(self.follow_tag)
            if tagged is not None:
                return min(head, tagged)
        return head - self.confirmations

    async def step(self, *, start: int | None = None) -> RowCounts:
        """One poll: check the stored tip against the node, handle a reorg, index up to
        the target. ``start`` is where to begin when there is no checkpoint yet (default:
        the target itself)."""
        target = await self.target()
        cp = await self.checkpoint()
        if cp is not None:
            node = (await self.source.block_hashes(cp.block_number, cp.block_number)).get(
                cp.block_number
            )
            if node != cp.block_hash:
                reorg = await self._handle_reorg(cp.block_number)
                cp = await self.checkpoint()
                log.info("indexer.reorg", depth=reorg.depth, ancestor=reorg.ancestor)
        if cp is None:
            first = target if start is None else start
            if self._restart_at is not None:  # a reorg reverted every stored block
                first = self._restart_at
        else:
            first = await self._analytics_start(cp.block_number + 1)
        if first > target:
            return RowCounts()
        return await self.backfill(first, target, resume=False)

    async def follow(self, stop: asyncio.Event, *, start: int | None = None) -> None:
        """Poll (or wake on ``self.wake``) until ``stop`` is set; errors of one poll are
        logged and retried at the next."""
        while not stop.is_set():
            try:
                await self.step(start=start)
            except (ChainError, BackendUnavailable) as exc:
                log.warning("indexer.step_failed", error=f"{type(exc).__name__}: {exc}")
            self.wake.clear()
            waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wake.wait())]
            try:
                await asyncio.wait(waits, timeout=self.poll_interval, return_when="FIRST_COMPLETED")
            finally:
                for w in waits:
                    w.cancel()

    # --- reorgs -------------------------------------------------------------------------

    async def _handle_reorg(self, number: int) -> Reorg:
        """The stored block ``number`` is not on the node's chain: find the common
        ancestor, revert everything above it in one transaction with its events."""
        ancestor = await self._common_ancestor(number)
        if self.analytics is not None:  # first: a crash after it repeats the whole revert
            await olap_rows.revert_above(self.analytics, self.chain_id, ancestor)
        async with self.store.transaction() as session:
            reverted = await self.rows.revert_above(session, self.chain_id, ancestor)
            fates = (
                await mempool.unmark_above(session, self.chain_id, ancestor, producer=self.producer)
                if self.mempool
                else None
            )
            if reverted:
                await add_to_outbox(
                    session,
                    *(
                        new_event(
                            BlockReverted(
                                chain_id=self.chain_id, number=n, hash=h, depth=len(reverted)
                            ),
                            key=str(self.chain_id),
                            producer=self.producer,
                        )
                        for n, h in reversed(reverted)
                    ),
                )
        if fates is not None:
            mempool.observe(self.chain_id, fates)
        if self.tokens is not None:  # a token may not exist on the new branch
            self.tokens.forget(self.chain_id)
        reorg = Reorg(ancestor, tuple(reverted))
        self.stats.reorgs.append(reorg)
        self._restart_at = ancestor + 1
        log.warning(
            "indexer.reverted",
            chain_id=self.chain_id,
            ancestor=ancestor,
            depth=reorg.depth,
        )
        return reorg

    async def _common_ancestor(self, number: int) -> int:
        """The highest stored block at or below ``number`` the node agrees with (or one
        below the lowest stored block when it agrees with none)."""
        async with self.store.transaction(read_only=True) as session:
            lowest = await self.rows.lowest_block(session, self.chain_id)
        if lowest is None:
            return number
        window = 32
        high = number
        while high >= lowest:
            low = max(lowest, high - window + 1)
            if number - low >= self.max_reorg_depth:
                raise ChainError(
                    f"chain {self.chain_id}: reorg deeper than {self.max_reorg_depth} blocks "
                    f"below block {number}; re-index from an older block (--from)"
                )
            async with self.store.transaction(read_only=True) as session:
                stored = await self.rows.stored_hashes(session, self.chain_id, low, high)
            node = await self.source.block_hashes(low, high)
            for n in range(high, low - 1, -1):
                if n in stored and node.get(n) == stored[n]:
                    return n
            high = low - 1
        return lowest - 1
