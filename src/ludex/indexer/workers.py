"""Scale-out of the indexer: leased backfill ranges, an elected follower, the service.

* **Backfill ranges.** ``[first, last]`` is cut into ranges of ``range_blocks``
  (:func:`plan_ranges`). A :class:`BackfillWorker` takes the next range that is neither
  done nor leased through the KeyValue port (lock ``indexer:<chain>:<name>:range:<start>``,
  a lease with a fencing token), renews the lease while it works, and indexes the range
  with the pipeline's idempotent range write. A range's progress and completion is its own
  checkpoint (``idx_checkpoints`` name ``<name>:range:<start>``), written in the same
  transaction as its rows, so a range is done exactly when that checkpoint reaches its
  last block; a range another worker abandoned resumes after its checkpoint.
* **Fencing.** Inside every range transaction, after the rows are written and before the
  commit, the worker renews its lease: a stale token (the lease expired and another worker
  took the range) raises :class:`~ludex.errors.LockLost` and rolls the transaction back.
  The window left between that check and the commit is harmless: writes are idempotent
  and hash-checked, so two workers committing the same blocks store them once.
* **A killed worker** (its task cancelled, its process gone) releases nothing: its lease
  lapses after ``lease_seconds`` and the next worker resumes the range after its
  checkpoint. No gap, no duplicate.
* **One follower.** :class:`ElectedFollower` holds the lock ``indexer:<chain>:<name>:follower``
  while it follows the head (its writes fenced the same way); the others wait and retry.
  :class:`IndexerService` (``ludex serve indexer``) runs one of each per process, so
  several processes share the backfill and exactly one follows.

Metrics (``ludex.indexer.metrics``) are recorded after commits only. This module never
parses node answers (``parse``) and never builds SQL itself (``store``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, TypeVar

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ludex.adapters.sql.store import SqlStore
from ludex.adapters.sql.tables import idx_checkpoints
from ludex.config import Settings
from ludex.errors import BackendUnavailable, ChainError, ConfigError, LockLost
from ludex.indexer import analytics as olap_rows
from ludex.indexer import metrics
from ludex.indexer.abi_registry import AbiRegistry
from ludex.indexer.bus_events import ALL_EVENTS
from ludex.indexer.mempool import MempoolWatcher
from ludex.indexer.model import Block, BlockBundle
from ludex.indexer.pipeline import NO_OUTPUTS, BlockSource, Indexer, Outputs, Progress
from ludex.indexer.source import RpcSource, watch_new_heads
from ludex.indexer.store import IndexStore, RowCounts, Written
from ludex.ports.kv import KeyValue, Lease
from ludex.ports.olap import AnalyticsStore
from ludex.ports.store import OperationalStore

log = structlog.get_logger(__name__)

T = TypeVar("T")

Guard = Callable[[], Awaitable[None]]
"""Called inside a range's transaction before its commit; raises to roll it back."""


def plan_ranges(first: int, last: int, size: int) -> list[tuple[int, int]]:
    """``[first, last]`` cut into consecutive ranges of at most ``size`` blocks (pure)."""
    if size < 1:
        raise ConfigError(f"range size must be >= 1, got {size}")
    return [(start, min(start + size - 1, last)) for start in range(first, last + 1, size)]


def range_lock(chain_id: int, name: str, start: int) -> str:
    return f"indexer:{chain_id}:{name}:range:{start}"


def follower_lock(chain_id: int, name: str) -> str:
    return f"indexer:{chain_id}:{name}:follower"


def range_checkpoint(name: str, start: int) -> str:
    """The checkpoint name that records a range's progress (its done marker)."""
    return f"{name}:range:{start}"


def new_owner() -> str:
    """A lease owner id unique to this worker (host, process, random suffix)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class _FencedRows(IndexStore):
    """The pipeline's row writer plus a fencing check before the transaction commits, and
    a note of the blocks written (for the metrics, read after the commit)."""

    def __init__(self, store: SqlStore, guard: Guard | None) -> None:
        super().__init__(store)
        self.guard = guard
        self.written: tuple[BlockBundle, ...] = ()

    async def write(self, session: AsyncSession, bundles: Sequence[BlockBundle]) -> Written:
        self.written = ()
        written = await super().write(session, bundles)
        if self.guard is not None:
            await self.guard()
        self.written = written.blocks
        return written

    def take_written(self) -> list[Block]:
        blocks = [b.block for b in self.written]
        self.written = ()
        return blocks


class MeteredSource:
    """A block source that counts its failed reads (``RPC_ERRORS``) by method."""

    def __init__(self, inner: BlockSource) -> None:
        self.inner = inner

    async def _counted(self, method: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except (ChainError, BackendUnavailable):
            metrics.RPC_ERRORS.labels(method).inc()
            raise

    async def head(self) -> int:
        return await self._counted("head", self.inner.head())

    async def block_hashes(self, first: int, last: int) -> dict[int, str]:
        return await self._counted("block_hashes", self.inner.block_hashes(first, last))

    async def tag_number(self, tag: Literal["safe", "finalized"]) -> int | None:
        return await self._counted("tag_number", self.inner.tag_number(tag))

    async def fetch_bundles(self, first: int, last: int) -> list[BlockBundle]:
        return await self._counted("fetch_bundles", self.inner.fetch_bundles(first, last))


class FencedIndexer(Indexer):
    """The pipeline with a fencing guard in every range transaction, and metrics."""

    def __init__(
        self,
        store: SqlStore,
        source: BlockSource,
        *,
        chain_id: int,
        guard: Guard | None = None,
        name: str = "default",
        batch_blocks: int = 100,
        confirmations: int = 0,
        poll_interval: float = 1.0,
        producer: str = "indexer",
        outputs: Outputs = NO_OUTPUTS,
    ) -> None:
        super().__init__(
            store,
            source,
            chain_id=chain_id,
            name=name,
            batch_blocks=batch_blocks,
            confirmations=confirmations,
            poll_interval=poll_interval,
            producer=producer,
            **outputs.kwargs(),
        )
        self.fenced = _FencedRows(store, guard)
        self.rows = self.fenced
        self._reorgs_seen = 0

    def _observe_reorgs(self) -> None:
        for reorg in self.stats.reorgs[self._reorgs_seen :]:
            metrics.observe_reorg(self.chain_id, reorg.depth)
        self._reorgs_seen = len(self.stats.reorgs)

    async def backfill(
        self, first: int, last: int, *, progress: Progress | None = None, resume: bool = True
    ) -> RowCounts:
        self.fenced.written = ()

        def committed(blocks: int, rows: RowCounts) -> None:
            metrics.observe_committed(self.chain_id, rows, self.fenced.take_written())
            if progress is not None:
                progress(blocks, rows)

        try:
            return await super().backfill(first, last, progress=committed, resume=resume)
        finally:
            self._observe_reorgs()

    async def step(self, *, start: int | None = None) -> RowCounts:
        try:
            rows = await super().step(start=start)
        finally:
            self._observe_reorgs()
        cp = await self.checkpoint()
        metrics.observe_head(
            self.chain_id, await self.source.head(), None if cp is None else cp.block_number
        )
        return rows


class _LeaseKeeper:
    """Renews a lease every third of its duration; on loss sets ``lost`` and cancels the
    work it protects. ``guard`` is the fencing check run before each commit."""

    def __init__(self, kv: KeyValue, lease: Lease, lease_seconds: float) -> None:
        self.kv = kv
        self.lease = lease
        self.lease_seconds = lease_seconds
        self.lost = asyncio.Event()

    async def guard(self) -> None:
        try:
            self.lease = await self.kv.renew_lock(self.lease, self.lease_seconds)
        except LockLost:
            self.lost.set()
            raise

    async def keep(
        self, work: asyncio.Future[RowCounts] | None, stop: asyncio.Event | None
    ) -> None:
        while not self.lost.is_set():
            if stop is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.lease_seconds / 3)
                if stop.is_set():
                    return
            else:
                await asyncio.sleep(self.lease_seconds / 3)
            try:
                self.lease = await self.kv.renew_lock(self.lease, self.lease_seconds)
            except LockLost:
                self.lost.set()
            except BackendUnavailable as exc:  # keep trying until the lease lapses
                log.warning("indexer.lease_renew_failed", lock=self.lease.name, error=str(exc))
        if work is not None:
            work.cancel()


async def _sleep(stop: asyncio.Event | None, seconds: float) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def run_leased(
    kv: KeyValue,
    name: str,
    owner: str,
    lease_seconds: float,
    stop: asyncio.Event,
    work: Callable[[_LeaseKeeper, asyncio.Event], Awaitable[None]],
) -> None:
    """Until ``stop``: take the lease ``name`` when it is free and run ``work(keeper,
    inner)`` while holding it. ``inner`` is set when ``stop`` is set or the lease is lost
    (renewed every third of ``lease_seconds``); the lease is released after, unless lost.
    Others retry every third of the lease, so one takes over about a lease after a holder
    dies."""
    while not stop.is_set():
        lease = await kv.acquire_lock(name, owner, lease_seconds)
        if lease is None:
            await _sleep(stop, lease_seconds / 3)
            continue
        keeper = _LeaseKeeper(kv, lease, lease_seconds)
        inner = asyncio.Event()

        async def watch(keeper: _LeaseKeeper = keeper, inner: asyncio.Event = inner) -> None:
            await keeper.keep(None, stop)
            inner.set()

        watching = asyncio.ensure_future(watch())
        try:
            await work(keeper, inner)
        except LockLost:
            pass
        finally:
            watching.cancel()
        if not keeper.lost.is_set():
            await kv.release_lock(keeper.lease)


class BackfillWorker:
    """A stateless backfill worker: takes free ranges of ``[first, last]`` through leases
    until every range is done (see the module docstring)."""

    def __init__(
        self,
        store: SqlStore,
        source: BlockSource,
        kv: KeyValue,
        *,
        chain_id: int,
        first: int,
        last: int,
        name: str = "default",
        range_blocks: int = 1000,
        batch_blocks: int = 100,
        lease_seconds: float = 30.0,
        poll_interval: float | None = None,
        owner: str | None = None,
        producer: str = "indexer",
        outputs: Outputs = NO_OUTPUTS,
    ) -> None:
        if batch_blocks < 1 or lease_seconds <= 0:
            raise ConfigError("batch_blocks must be >= 1 and lease_seconds > 0")
        self.store = store
        self.source = source
        self.kv = kv
        self.chain_id = chain_id
        self.name = name
        self.ranges = plan_ranges(first, last, range_blocks)
        self.batch_blocks = batch_blocks
        self.lease_seconds = lease_seconds
        self.poll_interval = lease_seconds / 3 if poll_interval is None else poll_interval
        self.owner = owner or new_owner()
        self.producer = producer
        self.outputs = outputs
        self.completed: list[tuple[int, int]] = []
        """The ranges this worker finished."""

    async def pending(self) -> list[tuple[int, int]]:
        """The ranges whose checkpoint has not reached their last block."""
        prefix = range_checkpoint(self.name, 0)[:-1]
        async with self.store.transaction(read_only=True) as session:
            rows = await session.execute(
                select(idx_checkpoints.c.name, idx_checkpoints.c.block_number).where(
                    idx_checkpoints.c.chain_id == self.chain_id,
                    idx_checkpoints.c.name.startswith(prefix, autoescape=True),
                )
            )
            reached = {str(n): int(b) for n, b in rows.all()}
        pending = [
            (start, end)
            for start, end in self.ranges
            if reached.get(range_checkpoint(self.name, start), start - 1) < end
        ]
        analytics = self.outputs.analytics
        if analytics is None or not self.ranges:
            return pending
        # A worker that died between a range's last commit and its ClickHouse write
        # left the range done in the operational store only: ClickHouse decides too.
        first, last = self.ranges[0][0], self.ranges[-1][1]
        size = self.ranges[0][1] - first + 1
        tops = await olap_rows.range_tips(analytics, self.chain_id, first, last, size)
        behind = [(a, b) for a, b in self.ranges if tops.get(a, a - 1) < b]
        return sorted(set(pending) | set(behind))

    async def run(self, stop: asyncio.Event | None = None) -> int:
        """Work until every range is done (or ``stop``); the number of ranges this worker
        finished. Ranges leased by others are waited for: a dead worker's lease lapses."""
        finished = 0
        while stop is None or not stop.is_set():
            pending = await self.pending()
            if not pending:
                break
            took = False
            for start, end in pending:
                lease = await self.kv.acquire_lock(
                    range_lock(self.chain_id, self.name, start), self.owner, self.lease_seconds
                )
                if lease is None:
                    continue
                took = True
                if await self.index_range(start, end, lease, stop):
                    finished += 1
                break
            if not took:
                await _sleep(stop, self.poll_interval)
        return finished

    async def index_range(
        self, start: int, end: int, lease: Lease, stop: asyncio.Event | None = None
    ) -> bool:
        """Index one leased range; True when it is done. Cancelled (killed), it releases
        nothing: the lease lapses and another worker resumes the range."""
        keeper = _LeaseKeeper(self.kv, lease, self.lease_seconds)
        indexer = FencedIndexer(
            self.store,
            self.source,
            chain_id=self.chain_id,
            guard=keeper.guard,
            name=range_checkpoint(self.name, start),
            batch_blocks=min(self.batch_blocks, end - start + 1),
            producer=self.producer,
            outputs=self.outputs,
        )
        indexer.span = (start, end)
        work = asyncio.ensure_future(indexer.backfill(start, end))
        keeping = asyncio.ensure_future(keeper.keep(work, None))
        label = str(self.chain_id)
        try:
            await work
        except (LockLost, asyncio.CancelledError):
            current = asyncio.current_task()
            if not keeper.lost.is_set() or (current is not None and current.cancelling()):
                raise
            metrics.RANGES.labels(label, "lost").inc()
            log.warning("indexer.range_lost", start=start, end=end, owner=self.owner)
            return False
        except (ChainError, BackendUnavailable) as exc:
            log.warning("indexer.range_failed", start=start, end=end, error=str(exc))
            await self.kv.release_lock(keeper.lease)
            await _sleep(stop, self.poll_interval)
            return False
        finally:
            keeping.cancel()
        await self.kv.release_lock(keeper.lease)
        self.completed.append((start, end))
        metrics.RANGES.labels(label, "done").inc()
        log.info("indexer.range_done", start=start, end=end, owner=self.owner)
        return True


class ElectedFollower:
    """Follows the head while it holds the follower lease; otherwise waits its turn."""

    def __init__(
        self,
        store: SqlStore,
        source: BlockSource,
        kv: KeyValue,
        *,
        chain_id: int,
        name: str = "default",
        start: int | None = None,
        batch_blocks: int = 100,
        confirmations: int = 0,
        lease_seconds: float = 30.0,
        poll_interval: float = 1.0,
        owner: str | None = None,
        producer: str = "indexer",
        outputs: Outputs = NO_OUTPUTS,
    ) -> None:
        self.store = store
        self.source = source
        self.kv = kv
        self.chain_id = chain_id
        self.name = name
        self.start = start
        self.outputs = outputs
        self.batch_blocks = batch_blocks
        self.confirmations = confirmations
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.owner = owner or new_owner()
        self.producer = producer
        self.leading = False
        self.indexer: FencedIndexer | None = None
        """The pipeline while leading (set ``indexer.wake`` on newHeads)."""

    async def run(self, stop: asyncio.Event) -> None:
        await run_leased(
            self.kv,
            follower_lock(self.chain_id, self.name),
            self.owner,
            self.lease_seconds,
            stop,
            self._lead,
        )

    async def _lead(self, keeper: _LeaseKeeper, inner: asyncio.Event) -> None:
        indexer = FencedIndexer(
            self.store,
            self.source,
            chain_id=self.chain_id,
            guard=keeper.guard,
            name=self.name,
            batch_blocks=self.batch_blocks,
            confirmations=self.confirmations,
            poll_interval=self.poll_interval,
            producer=self.producer,
            outputs=self.outputs,
        )
        label = str(self.chain_id)
        self.leading, self.indexer = True, indexer
        metrics.FOLLOWER.labels(label).set(1)
        log.info("indexer.follower_elected", owner=self.owner, token=keeper.lease.token)
        try:
            await indexer.follow(inner, start=self.start)
        finally:
            self.leading, self.indexer = False, None
            metrics.FOLLOWER.labels(label).set(0)
            if keeper.lost.is_set():
                log.warning("indexer.follower_lost", owner=self.owner)


class IdleIndexer:
    """Stands in for the indexer when it is not configured: logs why, waits."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def run(self, stop: asyncio.Event) -> None:
        log.info("indexer.idle", reason=self.reason)
        await stop.wait()


class IndexerService:
    """``ludex serve indexer``: one elected follower and one backfill worker per process.

    With ``from_block``, the backfill covers ``[from_block, B]`` where ``B`` is the
    follower's target when the first process started (kept in the KeyValue store under
    ``indexer:<chain>:<name>:backfill_to``, so every process agrees) and the follower
    starts at ``B + 1``. Without it, the follower starts at the head.
    """

    def __init__(
        self,
        store: SqlStore,
        kv: KeyValue,
        settings: Settings,
        analytics: AnalyticsStore | None = None,
    ) -> None:
        self.store = store
        self.kv = kv
        self.settings = settings
        s = settings
        self.outputs = Outputs(
            analytics=analytics if s.indexer_analytics else None,
            events=ALL_EVENTS if s.indexer_events is None else frozenset(s.indexer_events),
            abi=(
                AbiRegistry.from_options(s.indexer_abi_files, s.indexer_abi_addresses)
                if s.indexer_abi_files or s.indexer_abi_addresses
                else None
            ),
            mempool=s.indexer_mempool,
        )

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        async with RpcSource(s.indexer_rpc_urls, traces=s.indexer_traces) as rpc:
            source = MeteredSource(rpc)
            chain_id = await rpc.chain_id()
            start: int | None = None
            worker: BackfillWorker | None = None
            if s.indexer_from_block is not None:
                last = await self._backfill_to(chain_id, source)
                start = last + 1
                worker = BackfillWorker(
                    self.store,
                    source,
                    self.kv,
                    chain_id=chain_id,
                    first=s.indexer_from_block,
                    last=last,
                    name=s.indexer_name,
                    range_blocks=s.indexer_range_blocks,
                    batch_blocks=s.indexer_batch_blocks,
                    lease_seconds=s.indexer_lease_seconds,
                    producer=s.service_name,
                    outputs=self.outputs,
                )
            follower = ElectedFollower(
                self.store,
                source,
                self.kv,
                chain_id=chain_id,
                name=s.indexer_name,
                start=start,
                batch_blocks=s.indexer_batch_blocks,
                confirmations=s.indexer_confirmations,
                lease_seconds=s.indexer_lease_seconds,
                poll_interval=s.indexer_poll_interval,
                producer=s.service_name,
                outputs=self.outputs,
            )
            log.info(
                "indexer.started",
                chain_id=chain_id,
                name=s.indexer_name,
                backfill=None if worker is None else [s.indexer_from_block, start],
            )

            def woken(_head: int) -> None:
                if follower.indexer is not None:
                    follower.indexer.wake.set()

            async with asyncio.TaskGroup() as group:
                group.create_task(follower.run(stop))
                if worker is not None:
                    group.create_task(worker.run(stop))
                if s.indexer_mempool:
                    group.create_task(self._mempool(rpc, chain_id, stop))
                if s.indexer_ws_url:
                    group.create_task(watch_new_heads(s.indexer_ws_url, woken, stop))

    async def _mempool(self, rpc: RpcSource, chain_id: int, stop: asyncio.Event) -> None:
        """Watch the mempool while this process holds its lease (one watcher at a time:
        the writes are idempotent, the lease only saves the node from N pool polls)."""
        s = self.settings

        async def watch(_keeper: _LeaseKeeper, inner: asyncio.Event) -> None:
            watcher = MempoolWatcher(
                self.store,
                rpc,
                chain_id,
                ws_url=s.indexer_ws_url,
                poll_interval=s.indexer_poll_interval,
                drop_after=s.indexer_mempool_drop_after,
                producer=s.service_name,
            )
            log.info("indexer.mempool_watching")
            await watcher.run(inner)

        name = f"indexer:{chain_id}:{s.indexer_name}:mempool"
        await run_leased(self.kv, name, new_owner(), s.indexer_lease_seconds, stop, watch)

    async def _backfill_to(self, chain_id: int, source: BlockSource) -> int:
        key = f"indexer:{chain_id}:{self.settings.indexer_name}:backfill_to"
        stored = await self.kv.get(key)
        if stored is None:
            head = await source.head()
            target = max(0, head - self.settings.indexer_confirmations)
            await self.kv.compare_and_set(key, None, str(target).encode())
            stored = await self.kv.get(key)
        if stored is None:
            raise ChainError(f"{key}: the backfill boundary vanished from the KeyValue store")
        return int(stored)


def indexer_service(
    store: OperationalStore,
    kv: KeyValue,
    settings: Settings,
    analytics: AnalyticsStore | None = None,
) -> IndexerService | IdleIndexer:
    """The ``indexer`` service for ``settings`` (idle without an RPC URL); ``analytics``
    is written when ``LUDEX_INDEXER_ANALYTICS`` is on."""
    if not settings.indexer_rpc_urls:
        return IdleIndexer("LUDEX_INDEXER_RPC_URLS is not set: no chain to index")
    if not isinstance(store, SqlStore):
        return IdleIndexer(f"the indexer needs an SQL store, not {type(store).__name__}")
    return IndexerService(store, kv, settings, analytics)
