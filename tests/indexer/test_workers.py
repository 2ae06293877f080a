"""Scale-out of the indexer on a dedicated anvil: leased backfill ranges shared by several
workers (no gap, no duplicate), a killed worker's range taken over, a stale fencing token
refused, follower election, the service and its metrics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from ludex.adapters.chain.jsonrpc import JsonRpcChain
from ludex.adapters.kv import create_key_value
from ludex.adapters.kv.memory import MemoryKeyValue
from ludex.adapters.olap import create_analytics
from ludex.adapters.sql import SqlStore
from ludex.adapters.sql.outbox import fetch_unpublished
from ludex.adapters.sql.tables import idx_blocks
from ludex.config import load_settings
from ludex.errors import ChainError
from ludex.indexer import analytics as olap_rows
from ludex.indexer.model import BlockBundle
from ludex.indexer.pipeline import NO_OUTPUTS, BlockSource, Outputs
from ludex.indexer.source import RpcSource
from ludex.indexer.store import IndexStore, RowCounts
from ludex.indexer.workers import (
    BackfillWorker,
    ElectedFollower,
    IdleIndexer,
    IndexerService,
    indexer_service,
    plan_ranges,
    range_lock,
)
from ludex.ports.kv import KeyValue
from ludex.ports.olap import AnalyticsStore
from tests.conftest import service_url
from tests.indexer.test_pipeline import assert_store_equals_node, events, generate, rpc

CHAIN_ID = 31337


@pytest.fixture
async def source(node_url: str) -> AsyncIterator[RpcSource]:
    async with RpcSource([node_url], max_batch=16) as s:
        yield s


async def generated_chain(chain: JsonRpcChain, extra_blocks: int = 12) -> int:
    """Transactions (native, ERC-20 deploy, mint, transfer) plus empty blocks; the head."""
    await generate(chain)
    await rpc(chain, "anvil_mine", hex(extra_blocks))
    return int(await rpc(chain, "eth_blockNumber"), 16)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def assert_complete_once(store: SqlStore, chain: JsonRpcChain, head: int) -> None:
    """Every block of the node is stored once, with its rows, and announced once."""
    await assert_store_equals_node(store, chain)
    async with store.transaction() as session:
        stored = await session.scalar(select(func.count()).select_from(idx_blocks))
    assert stored == head + 1
    numbers = [e.number for e in await events(store, "chain.block")]
    assert sorted(numbers) == list(range(head + 1))  # no gap, no duplicate
    counts = await IndexStore(store).counts(CHAIN_ID)
    assert counts.transfers == 2
    assert counts.contracts == 1


class GatedSource:
    """A source whose ``fetch_bundles`` call number ``hold_at`` (0-based) waits until
    ``gate`` is set (forever, unless the test opens it)."""

    def __init__(self, inner: BlockSource, hold_at: int) -> None:
        self.inner = inner
        self.hold_at = hold_at
        self.calls = 0
        self.held = asyncio.Event()
        self.gate = asyncio.Event()

    async def head(self) -> int:
        return await self.inner.head()

    async def block_hashes(self, first: int, last: int) -> dict[int, str]:
        return await self.inner.block_hashes(first, last)

    async def tag_number(self, tag: str) -> int | None:  # type: ignore[override]
        return None

    async def fetch_bundles(self, first: int, last: int) -> list[BlockBundle]:
        call = self.calls
        self.calls += 1
        bundles = await self.inner.fetch_bundles(first, last)
        if call == self.hold_at:
            self.held.set()
            await self.gate.wait()
        return bundles


def test_plan_ranges_covers_the_interval_without_overlap() -> None:
    assert plan_ranges(3, 12, 4) == [(3, 6), (7, 10), (11, 12)]
    assert plan_ranges(5, 5, 10) == [(5, 5)]
    assert plan_ranges(6, 5, 10) == []
    for first, last, size in [(0, 99, 7), (10, 10, 1), (1, 1000, 1000)]:
        blocks = [n for a, b in plan_ranges(first, last, size) for n in range(a, b + 1)]
        assert blocks == list(range(first, last + 1))


def small_ranges(
    store: SqlStore,
    source: BlockSource,
    kv: KeyValue,
    head: int,
    owner: str,
    outputs: Outputs = NO_OUTPUTS,
) -> BackfillWorker:
    """A worker on ranges of 6 blocks written 3 at a time, with a 0.6 s lease (a killed
    worker's range is taken over quickly)."""
    return BackfillWorker(
        store,
        source,
        kv,
        chain_id=CHAIN_ID,
        first=0,
        last=head,
        range_blocks=6,
        batch_blocks=3,
        lease_seconds=0.6,
        poll_interval=0.05,
        owner=owner,
        outputs=outputs,
    )


async def three_workers(
    store: SqlStore, source: BlockSource, kv: KeyValue, head: int
) -> list[BackfillWorker]:
    workers = [
        BackfillWorker(
            store,
            source,
            kv,
            chain_id=CHAIN_ID,
            first=0,
            last=head,
            range_blocks=4,
            batch_blocks=2,
            lease_seconds=2.0,
            poll_interval=0.05,
            owner=f"w{i}",
        )
        for i in range(3)
    ]
    await asyncio.wait_for(asyncio.gather(*(w.run() for w in workers)), 30)
    return workers


async def test_three_workers_backfill_every_range_once_and_metrics_move(
    store: SqlStore, source: RpcSource, chain: JsonRpcChain
) -> None:
    head = await generated_chain(chain)
    label = str(CHAIN_ID)
    blocks_before = sample("ludex_indexer_blocks_total", chain_id=label)
    txs_before = sample("ludex_indexer_rows_total", chain_id=label, kind="transactions")
    latency_before = sample("ludex_indexer_latency_seconds_count", chain_id=label)

    workers = await three_workers(store, source, MemoryKeyValue(), head)

    done = sorted(r for w in workers for r in w.completed)
    assert done == plan_ranges(0, head, 4)  # each range completed by exactly one worker
    assert sum(1 for w in workers if w.completed) >= 2  # the work was shared
    await assert_complete_once(store, chain, head)
    counts = await IndexStore(store).counts(CHAIN_ID)
    assert sample("ludex_indexer_blocks_total", chain_id=label) - blocks_before == head + 1
    assert (
        sample("ludex_indexer_rows_total", chain_id=label, kind="transactions") - txs_before
        == counts.transactions
    )
    assert sample("ludex_indexer_latency_seconds_count", chain_id=label) - latency_before == (
        head + 1
    )

    # Run again: every range is done, nothing is written twice.
    again = await three_workers(store, source, MemoryKeyValue(), head)
    assert all(not w.completed for w in again)
    assert sample("ludex_indexer_blocks_total", chain_id=label) - blocks_before == head + 1


async def test_three_workers_on_redis(
    store: SqlStore, source: RpcSource, chain: JsonRpcChain
) -> None:
    head = await generated_chain(chain, extra_blocks=4)
    kv = create_key_value(service_url("redis"), namespace=f"t-{uuid.uuid4().hex[:8]}:")
    await kv.start()
    try:
        workers = await three_workers(store, source, kv, head)
    finally:
        await kv.close()
    assert sorted(r for w in workers for r in w.completed) == plan_ranges(0, head, 4)
    await assert_complete_once(store, chain, head)


async def test_a_killed_worker_range_is_taken_over_once_after_its_lease_lapses(
    store: SqlStore, source: RpcSource, chain: JsonRpcChain
) -> None:
    head = await generated_chain(chain)
    kv = MemoryKeyValue()
    gated = GatedSource(source, hold_at=1)  # the second batch of its first range

    def worker(src: BlockSource, owner: str) -> BackfillWorker:
        return small_ranges(store, src, kv, head, owner)

    victim = worker(gated, "victim")
    task = asyncio.create_task(victim.run())
    await asyncio.wait_for(gated.held.wait(), 10)

    async def stored() -> list[int]:
        async with store.transaction() as session:
            rows = await session.execute(select(idx_blocks.c.number))
        return sorted(n for (n,) in rows.all())

    async def first_batch_committed() -> bool:  # 3..5 are fetched ahead, and held
        return await stored() == [0, 1, 2]

    await wait_for(first_batch_committed)
    # The victim holds range 0 (its keeper renews the lease while it lives) ...
    assert await kv.acquire_lock(range_lock(CHAIN_ID, "default", 0), "probe", 1) is None
    task.cancel()  # ... and is killed there: blocks 0..2 committed, 3..5 not
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await stored() == [0, 1, 2]

    others = [worker(source, "a"), worker(source, "b")]
    await asyncio.wait_for(asyncio.gather(*(w.run() for w in others)), 30)
    assert victim.completed == []
    taken = [r for w in others for r in w.completed]
    assert sorted(taken) == plan_ranges(0, head, 6)
    assert taken.count((0, 5)) == 1
    await assert_complete_once(store, chain, head)


async def test_a_worker_with_a_stale_fencing_token_does_not_commit(
    store: SqlStore, source: RpcSource, chain: JsonRpcChain
) -> None:
    head = await generated_chain(chain, extra_blocks=2)
    now = [1000.0]
    kv = MemoryKeyValue(clock=lambda: now[0])
    gated = GatedSource(source, hold_at=0)
    a = BackfillWorker(
        store,
        gated,
        kv,
        chain_id=CHAIN_ID,
        first=0,
        last=head,
        range_blocks=head + 1,
        lease_seconds=30,
        owner="a",
    )
    lease = await kv.acquire_lock(range_lock(CHAIN_ID, "default", 0), "a", 30)
    assert lease is not None
    task = asyncio.create_task(a.index_range(0, head, lease))
    await asyncio.wait_for(gated.held.wait(), 10)
    now[0] += 31  # a's lease lapses (a paused process, a long GC) ...
    taken = await kv.acquire_lock(range_lock(CHAIN_ID, "default", 0), "b", 30)
    assert taken is not None
    assert taken.token > lease.token  # ... and b holds the range with a newer token
    gated.gate.set()
    assert await asyncio.wait_for(task, 10) is False
    assert a.completed == []
    assert await IndexStore(store).counts(CHAIN_ID) == RowCounts()
    assert await events(store, "chain.block") == []

    b = BackfillWorker(
        store,
        source,
        kv,
        chain_id=CHAIN_ID,
        first=0,
        last=head,
        range_blocks=head + 1,
        lease_seconds=30,
        owner="b",
    )
    assert await asyncio.wait_for(b.run(), 10) == 1
    await assert_complete_once(store, chain, head)


async def wait_for(condition: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.05)


async def test_one_follower_is_elected_and_another_takes_over_when_it_stops(
    store: SqlStore, source: RpcSource, chain: JsonRpcChain
) -> None:
    head = await generated_chain(chain, extra_blocks=2)
    kv = MemoryKeyValue()
    stops = [asyncio.Event(), asyncio.Event()]
    followers = [
        ElectedFollower(
            store,
            source,
            kv,
            chain_id=CHAIN_ID,
            start=0,
            lease_seconds=0.6,
            poll_interval=0.05,
            owner=f"f{i}",
        )
        for i in range(2)
    ]
    tasks = [asyncio.create_task(f.run(s)) for f, s in zip(followers, stops, strict=True)]
    indexer = IndexStore(store)

    async def tip() -> int:
        async with store.transaction() as session:
            cp = await indexer.checkpoint(session, CHAIN_ID, "default")
        return -1 if cp is None else cp.block_number

    async def caught_up(target: int) -> bool:
        return await tip() >= target

    await wait_for(lambda: caught_up(head))
    for _ in range(5):
        assert [f.leading for f in followers].count(True) == 1
        await asyncio.sleep(0.1)
    leader = next(i for i, f in enumerate(followers) if f.leading)
    other = 1 - leader

    stops[leader].set()
    await asyncio.wait_for(tasks[leader], 5)

    async def other_leads() -> bool:
        return followers[other].leading

    await wait_for(other_leads, 5)
    await rpc(chain, "anvil_mine", hex(3))
    await wait_for(lambda: caught_up(head + 3))
    assert not followers[leader].leading
    stops[other].set()
    await asyncio.wait_for(tasks[other], 5)
    assert sample("ludex_indexer_follower", chain_id=str(CHAIN_ID)) == 0
    await assert_complete_once(store, chain, head + 3)


async def test_the_service_backfills_and_follows_and_idles_unconfigured(
    store: SqlStore, chain: JsonRpcChain, node_url: str
) -> None:
    assert isinstance(indexer_service(store, MemoryKeyValue(), load_settings()), IdleIndexer)
    head = await generated_chain(chain, extra_blocks=6)
    settings = load_settings(
        indexer_rpc_urls=node_url,
        indexer_from_block="0",
        indexer_range_blocks=4,
        indexer_batch_blocks=2,
        indexer_confirmations=0,
        indexer_lease_seconds=1,
        indexer_poll_interval=0.05,
    )
    assert settings.indexer_rpc_urls == [node_url]
    service = indexer_service(store, MemoryKeyValue(), settings)
    assert isinstance(service, IndexerService)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    await asyncio.sleep(0.3)
    await rpc(chain, "anvil_mine", hex(2))

    async def indexed() -> bool:
        async with store.transaction() as session:
            n = await session.scalar(select(func.count()).select_from(idx_blocks))
        return n == head + 3

    await wait_for(indexed, 15)
    stop.set()
    await asyncio.wait_for(task, 10)
    await assert_complete_once(store, chain, head + 2)


def test_indexer_rpc_urls_accept_a_comma_separated_list_and_refuse_other_schemes() -> None:
    from ludex.errors import ConfigError

    settings = load_settings(indexer_rpc_urls=" http://a:1 , https://b/key ,")
    assert settings.indexer_rpc_urls == ["http://a:1", "https://b/key"]
    assert load_settings(indexer_rpc_urls='["http://a:1"]').indexer_rpc_urls == ["http://a:1"]
    assert load_settings().indexer_rpc_urls == []
    with pytest.raises(ConfigError, match="LUDEX_INDEXER_RPC_URLS"):
        load_settings(indexer_rpc_urls="ws://a:1")


class StuckAnalytics:
    """An AnalyticsStore whose ``insert`` number ``hold_at`` (0-based) never returns: the
    worker dies between its operational commit and its ClickHouse write."""

    def __init__(self, inner: AnalyticsStore, hold_at: int) -> None:
        self.inner = inner
        self.hold_at = hold_at
        self.inserts = 0
        self.held = asyncio.Event()

    async def insert(self, *args: Any, **kwargs: Any) -> None:
        call = self.inserts
        self.inserts += 1
        if call == self.hold_at:
            self.held.set()
            await asyncio.Event().wait()
        await self.inner.insert(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_range_workers_write_clickhouse_and_a_worker_killed_between_the_stores_leaves_no_gap(
    store: SqlStore, source: RpcSource, chain: JsonRpcChain, tmp_path: Path
) -> None:
    head = await generated_chain(chain)
    olap = create_analytics(f"chdb://{tmp_path / 'olap'}")
    await olap.start()
    kv = MemoryKeyValue()
    try:
        # Range 0..5 in batches of 3: the first batch's blocks reach ClickHouse (one
        # insert per table with rows: blocks, transactions, logs...), then the victim
        # dies inside the second batch's ClickHouse write, after its operational commit.
        stuck = StuckAnalytics(olap, hold_at=5)

        def worker(outputs: Outputs, owner: str) -> BackfillWorker:
            return small_ranges(store, source, kv, head, owner, outputs)

        victim = worker(Outputs(analytics=cast(AnalyticsStore, stuck)), "victim")
        task = asyncio.create_task(victim.run())
        await asyncio.wait_for(stuck.held.wait(), 20)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with store.transaction() as session:
            ops = await session.scalar(select(func.count()).select_from(idx_blocks))
        assert ops is not None
        assert ops >= 6
        behind = await olap_rows.counts(olap, CHAIN_ID)
        assert behind.blocks < ops  # ClickHouse is behind the operational store

        others = [worker(Outputs(analytics=olap), o) for o in ("a", "b")]
        await asyncio.wait_for(asyncio.gather(*(w.run() for w in others)), 30)
        await assert_complete_once(store, chain, head)
        ops_counts = await IndexStore(store).counts(CHAIN_ID)
        assert await olap_rows.counts(olap, CHAIN_ID) == olap_rows.AnalyticsCounts(
            ops_counts.blocks,
            ops_counts.transactions,
            ops_counts.logs,
            ops_counts.transfers,
            ops_counts.balance_changes,
        )
        numbers = [
            int(r["number"])
            for r in await olap.query(
                "SELECT number FROM chain_blocks FINAL WHERE chain_id = {c:UInt64} ORDER BY number",
                {"c": CHAIN_ID},
            )
        ]
        assert numbers == list(range(head + 1))
    finally:
        await olap.close()


async def test_the_service_passes_clickhouse_events_and_abis_to_its_workers(
    store: SqlStore, chain: JsonRpcChain, node_url: str, tmp_path: Path
) -> None:
    head = await generated_chain(chain, extra_blocks=2)
    olap = create_analytics(f"chdb://{tmp_path / 'olap'}")
    await olap.start()
    settings = load_settings(
        indexer_rpc_urls=node_url,
        indexer_from_block="0",
        indexer_range_blocks=4,
        indexer_batch_blocks=2,
        indexer_confirmations=0,
        indexer_lease_seconds=1,
        indexer_poll_interval=0.05,
        indexer_analytics="true",
        indexer_events="chain.block,chain.event_decoded",
        indexer_abi_addresses="",
        indexer_abi_files="",
        indexer_mempool="true",
    )
    assert settings.indexer_events == ["chain.block", "chain.event_decoded"]
    kv = MemoryKeyValue()
    service = indexer_service(store, kv, settings, olap)
    assert isinstance(service, IndexerService)
    assert service.outputs.analytics is olap
    assert service.outputs.abi is None
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    try:

        async def indexed() -> bool:
            return (await olap_rows.counts(olap, CHAIN_ID)).blocks == head + 1

        await wait_for(indexed, 20)
        # One process watches the mempool, under its lease.
        mempool_lock = f"indexer:{CHAIN_ID}:default:mempool"
        assert await kv.acquire_lock(mempool_lock, "probe", 1) is None
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await olap.close()
    assert await kv.acquire_lock(mempool_lock, "probe", 1) is not None  # released
    async with store.transaction() as session:
        kinds = {r.event_type for r in await fetch_unpublished(session, 100_000)}
    assert kinds == {"chain.block"}  # no transaction, log or transfer events; no ABI


def test_indexer_event_and_abi_settings_are_checked() -> None:
    from ludex.errors import ConfigError

    with pytest.raises(ConfigError, match="LUDEX_INDEXER_EVENTS"):
        load_settings(indexer_events="chain.block,chain.nonsense")
    assert load_settings().indexer_events is None
    settings = load_settings(indexer_abi_addresses="erc20=0x" + "11" * 20)
    service = IndexerService(
        cast(SqlStore, None), MemoryKeyValue(), settings.model_copy(update={"indexer_rpc_urls": []})
    )
    assert service.outputs.abi is not None
    assert "erc20" in service.outputs.abi.names
    with pytest.raises(ChainError, match="NAME=0xADDRESS"):
        IndexerService(
            cast(SqlStore, None),
            MemoryKeyValue(),
            load_settings(indexer_abi_addresses="erc20"),
        )
