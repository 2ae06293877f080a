"""The indexer into ClickHouse (chDB, embedded) and the per-record bus events, on a
dedicated anvil: counts equal to the operational store, reorgs leave no orphaned row
visible under FINAL, re-writes are idempotent, a crash between the two stores is
repaired on resume, and every transaction, log and transfer has its event and key."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import select

from ludex.adapters.chain.jsonrpc import JsonRpcChain
from ludex.adapters.olap import create_analytics
from ludex.adapters.sql import SqlStore
from ludex.adapters.sql.outbox import fetch_unpublished
from ludex.adapters.sql.tables import (
    idx_balance_changes,
    idx_logs,
    idx_token_transfers,
    idx_transactions,
)
from ludex.errors import ConfigError
from ludex.events import decode
from ludex.indexer import analytics
from ludex.indexer.pipeline import Indexer
from ludex.indexer.source import RpcSource
from ludex.indexer.store import IndexStore
from ludex.ports.olap import AnalyticsStore
from tests.indexer.test_pipeline import CHAIN_ID, generate, node_hashes, rpc, send_native


@pytest.fixture
async def olap(tmp_path: Path) -> AsyncIterator[AnalyticsStore]:
    store = create_analytics(f"chdb://{tmp_path / 'olap'}")
    await store.start()
    try:
        yield store
    finally:
        await store.close()


async def outbox(store: SqlStore) -> list[tuple[str, str, Any]]:
    """(type, key, payload) of every unpublished event, in outbox order."""
    async with store.transaction() as session:
        rows = await fetch_unpublished(session, 100_000)
    return [(r.event_type, r.partition_key, decode(r.payload).payload) for r in rows]


async def visible(olap: AnalyticsStore, sql: str) -> set[tuple[Any, ...]]:
    return {tuple(r.values()) for r in await olap.query(sql, {"chain_id": CHAIN_ID})}


BLOCKS_SQL = "SELECT number, hash FROM chain_blocks FINAL WHERE chain_id = {chain_id:UInt64}"
TXS_SQL = "SELECT hash, block_hash FROM chain_transactions FINAL WHERE chain_id = {chain_id:UInt64}"


async def assert_olap_equals_store(olap: AnalyticsStore, store: SqlStore) -> None:
    """ClickHouse under FINAL holds exactly the operational store's rows."""
    ops = await IndexStore(store).counts(CHAIN_ID)
    got = await analytics.counts(olap, CHAIN_ID)
    assert got == analytics.AnalyticsCounts(
        ops.blocks, ops.transactions, ops.logs, ops.transfers, ops.balance_changes
    )
    async with store.transaction() as session:
        txs = set(
            (
                await session.execute(
                    select(idx_transactions.c.hash, idx_transactions.c.block_hash)
                )
            ).all()
        )
        logs = set(
            (await session.execute(select(idx_logs.c.log_index, idx_logs.c.block_hash))).all()
        )
    assert await visible(olap, TXS_SQL) == txs
    assert (
        await visible(
            olap,
            "SELECT log_index, block_hash FROM chain_logs FINAL WHERE chain_id = {chain_id:UInt64}",
        )
        == logs
    )


async def test_backfill_lands_in_clickhouse_with_the_same_rows_and_events(
    store: SqlStore, source: RpcSource, chain: JsonRpcChain, olap: AnalyticsStore
) -> None:
    await generate(chain)
    head = await source.head()
    indexer = Indexer(store, source, chain_id=CHAIN_ID, batch_blocks=4, analytics=olap)
    rows = await indexer.backfill(0, head)
    assert rows.blocks == head + 1
    assert rows.transfers == 2
    await assert_olap_equals_store(olap, store)
    assert await visible(olap, BLOCKS_SQL) == set((await node_hashes(chain, head)).items())
    [transfer] = await olap.query(
        "SELECT standard, amount, token_id FROM chain_token_transfers FINAL "
        "WHERE sender != {zero:String}",
        {"zero": "0x" + "00" * 20},
    )
    assert transfer == {"standard": "erc20", "amount": 250, "token_id": None}
    assert await analytics.tip(olap, CHAIN_ID) == head

    events = await outbox(store)
    kinds = Counter(kind for kind, _, _ in events)
    assert kinds == {
        "chain.block": head + 1,
        "chain.transaction": rows.transactions,
        "chain.log": rows.logs,
        "chain.token_transfer": 2,
    }
    async with store.transaction() as session:
        senders = dict(
            (
                await session.execute(select(idx_transactions.c.hash, idx_transactions.c.sender))
            ).all()
        )
        emitters = set((await session.execute(select(idx_logs.c.address))).all())
        tokens = set((await session.execute(select(idx_token_transfers.c.token))).all())
    for kind, key, payload in events:
        if kind == "chain.transaction":
            assert key == payload.from_address == senders[payload.hash]
        elif kind == "chain.log":
            assert key == payload.address
            assert (key,) in emitters
        elif kind == "chain.token_transfer":
            assert key == payload.token
            assert (key,) in tokens
            assert payload.value in (1000, 250)

    # Indexing the range again stores and emits nothing twice, in either store.
    await indexer.backfill(0, head, resume=False)
    await assert_olap_equals_store(olap, store)
    assert len(await outbox(store)) == len(events)


async def test_rewriting_a_range_is_idempotent_under_final(
    store: SqlStore, source: RpcSource, chain: JsonRpcChain, olap: AnalyticsStore
) -> None:
    await generate(chain)
    head = await source.head()
    bundles = await source.fetch_bundles(0, head)
    first = await analytics.write_bundles(olap, bundles)
    assert first.blocks == head + 1
    assert first.transactions >= 7
    for _ in range(2):
        assert await analytics.write_bundles(olap, bundles) == first
    assert await analytics.counts(olap, CHAIN_ID) == first
    [raw] = await olap.query("SELECT count() AS n FROM chain_transactions")
    assert raw["n"] == 3 * first.transactions  # three copies on disk, one visible

    # A tombstone hides; a later write of the same block (a reorg back) revives it.
    assert await analytics.revert_above(olap, CHAIN_ID, head - 1) != analytics.AnalyticsCounts()
    assert (await analytics.counts(olap, CHAIN_ID)).blocks == head
    assert await analytics.revert_above(olap, CHAIN_ID, head - 1) == analytics.AnalyticsCounts()
    await analytics.write_bundles(olap, bundles[-1:])
    assert await analytics.counts(olap, CHAIN_ID) == first
    await olap.execute("OPTIMIZE TABLE chain_blocks FINAL")
    assert await analytics.counts(olap, CHAIN_ID) == first


@pytest.mark.parametrize("depth", [1, 8])
async def test_a_reorg_leaves_no_orphaned_row_visible_in_clickhouse(
    depth: int, store: SqlStore, source: RpcSource, chain: JsonRpcChain, olap: AnalyticsStore
) -> None:
    await generate(chain)
    indexer = Indexer(store, source, chain_id=CHAIN_ID, batch_blocks=16, analytics=olap)
    await indexer.step(start=0)
    base = await source.head()
    assert await analytics.tip(olap, CHAIN_ID) == base
    snapshot = await rpc(chain, "evm_snapshot")
    await send_native(chain, Account.create().address)
    if depth > 1:
        await rpc(chain, "anvil_mine", hex(depth - 1))
    await indexer.step()
    old_txs = await visible(olap, TXS_SQL)

    assert await rpc(chain, "evm_revert", snapshot) is True
    await send_native(chain, Account.create().address)
    await rpc(chain, "anvil_mine", hex(depth))
    await indexer.step()

    assert [r.depth for r in indexer.stats.reorgs] == [depth]
    head = await source.head()
    node = await node_hashes(chain, head)
    assert await visible(olap, BLOCKS_SQL) == set(node.items())
    now_txs = await visible(olap, TXS_SQL)
    assert {block_hash for _, block_hash in now_txs} <= set(node.values())
    assert len(old_txs - now_txs) == 1  # the old branch's transaction is hidden
    assert len(now_txs - old_txs) == 1  # the new branch's transaction is there
    await assert_olap_equals_store(olap, store)
    [deleted] = await olap.query("SELECT count() AS n FROM chain_blocks WHERE is_deleted = 1")
    assert deleted["n"] == depth


async def test_a_crash_between_the_stores_is_repaired_on_resume(
    store: SqlStore,
    source: RpcSource,
    chain: JsonRpcChain,
    olap: AnalyticsStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await generate(chain)
    head = await source.head()
    original = analytics.write_bundles
    calls = 0

    async def crash_on_second(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("killed between the operational commit and ClickHouse")
        return await original(*args, **kwargs)

    monkeypatch.setattr(analytics, "write_bundles", crash_on_second)
    indexer = Indexer(store, source, chain_id=CHAIN_ID, batch_blocks=3, analytics=olap)
    with pytest.raises(RuntimeError, match="killed"):
        await indexer.backfill(0, head)
    monkeypatch.setattr(analytics, "write_bundles", original)
    assert (await indexer.checkpoint()).block_number == 5  # type: ignore[union-attr]
    assert await analytics.tip(olap, CHAIN_ID) == 2

    resumed = Indexer(store, source, chain_id=CHAIN_ID, batch_blocks=3, analytics=olap)
    await resumed.backfill(0, head)
    await assert_olap_equals_store(olap, store)
    assert await analytics.tip(olap, CHAIN_ID) == head
    numbers = [p.number for kind, _, p in await outbox(store) if kind == "chain.block"]
    assert sorted(numbers) == list(range(head + 1))  # no event twice


async def test_events_option_limits_the_volume(
    store: SqlStore, source: RpcSource, chain: JsonRpcChain
) -> None:
    await generate(chain)
    head = await source.head()
    indexer = Indexer(store, source, chain_id=CHAIN_ID, events={"chain.token_transfer"})
    await indexer.backfill(0, head)
    assert Counter(kind for kind, _, _ in await outbox(store)) == {"chain.token_transfer": 2}
    with pytest.raises(ConfigError, match=r"chain\.nope"):
        Indexer(store, source, chain_id=CHAIN_ID, events={"chain.block", "chain.nope"})


BALANCES_SQL = (
    "SELECT block_number, block_hash, address, token, token_id, toString(delta) AS delta "
    "FROM chain_balance_changes FINAL WHERE chain_id = {chain_id:UInt64}"
)


async def stored_balance_changes(store: SqlStore) -> set[tuple[Any, ...]]:
    t = idx_balance_changes
    async with store.transaction() as session:
        rows = await session.execute(
            select(
                t.c.block_number, t.c.block_hash, t.c.address, t.c.token, t.c.token_id, t.c.delta
            )
        )
        return {tuple(r) for r in rows.all()}


async def test_balance_changes_land_in_clickhouse_and_a_reorg_tombstones_them(
    store: SqlStore, source: RpcSource, chain: JsonRpcChain, olap: AnalyticsStore
) -> None:
    await generate(chain)
    indexer = Indexer(store, source, chain_id=CHAIN_ID, batch_blocks=16, analytics=olap)
    await indexer.step(start=0)
    before = await stored_balance_changes(store)
    assert any(token == "native" for _, _, _, token, _, _ in before)
    assert any(token != "native" and token_id == "" for _, _, _, token, token_id, _ in before)
    assert any(delta.startswith("-") for *_, delta in before)  # Int256: negative deltas
    assert await visible(olap, BALANCES_SQL) == before
    await olap_rows_rewrite(indexer, source)
    assert await visible(olap, BALANCES_SQL) == before  # a re-write is idempotent

    snapshot = await rpc(chain, "evm_snapshot")
    await send_native(chain, Account.create().address)
    await indexer.step()
    orphaned = await visible(olap, BALANCES_SQL) - before
    assert orphaned  # the sender's fee, the recipient's value, the miner's tip
    assert await rpc(chain, "evm_revert", snapshot) is True
    await rpc(chain, "anvil_mine", "0x2")
    await indexer.step()
    now = await visible(olap, BALANCES_SQL)
    assert now == await stored_balance_changes(store)
    assert not now & orphaned
    counts = await analytics.counts(olap, CHAIN_ID)
    assert counts.balance_changes == len(now)


async def olap_rows_rewrite(indexer: Indexer, source: RpcSource) -> None:
    """Write every stored block to ClickHouse once more (an at-least-once retry)."""
    assert indexer.analytics is not None
    await analytics.write_bundles(
        indexer.analytics, await source.fetch_bundles(0, await source.head())
    )
