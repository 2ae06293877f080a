"""The indexer pipeline on real anvil nodes: backfill compared with the node, idempotency,
a crash in the middle of a range, reorgs of several depths, PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from sqlalchemy import Table, select

from ludex.adapters.chain.jsonrpc import JsonRpcChain, parse_quantity
from ludex.adapters.sql import SqlStore
from ludex.adapters.sql.outbox import fetch_unpublished
from ludex.adapters.sql.tables import (
    idx_blocks,
    idx_contracts,
    idx_logs,
    idx_token_transfers,
    idx_transactions,
)
from ludex.chain.artifacts import load_artifact
from ludex.chain.contracts import deploy
from ludex.events import decode
from ludex.indexer.pipeline import Indexer
from ludex.indexer.source import RpcSource
from ludex.indexer.store import IndexStore
from tests.chain.vault_env import ETHER, funded
from tests.contract.sql_backends import fresh_database, started_store

CHAIN_ID = 31337
ROW_TABLES: list[Table] = [idx_transactions, idx_logs, idx_token_transfers, idx_contracts]


async def generate(chain: JsonRpcChain) -> None:
    """Native transfers, a TestToken deployment, a mint and a transfer."""
    alice, bob = await funded(chain), await funded(chain)
    for n in range(3):
        await alice.send(Account.create().address, b"", value=(n + 1) * ETHER)
    token, _ = await deploy(alice, load_artifact("TestToken"), "Test", "TST")
    await token.transact(alice, "mint", alice.address, 1000)
    await token.transact(alice, "transfer", bob.address, 250)
    await bob.send(alice.address, b"", value=ETHER)


async def rpc(chain: JsonRpcChain, method: str, *params: Any) -> Any:
    return await chain.call(method, list(params))


async def node_hashes(chain: JsonRpcChain, head: int) -> dict[int, str]:
    return {
        n: (await rpc(chain, "eth_getBlockByNumber", hex(n), False))["hash"]
        for n in range(head + 1)
    }


async def events(store: SqlStore, kind: str) -> list[Any]:
    async with store.transaction() as session:
        rows = await fetch_unpublished(session, 100_000)
    return [decode(r.payload).payload for r in rows if r.event_type == kind]


async def assert_store_equals_node(store: SqlStore, chain: JsonRpcChain) -> None:
    """Every stored block is the node's, and no row of any table belongs to another block."""
    head = parse_quantity(await rpc(chain, "eth_blockNumber"), "head")
    node = await node_hashes(chain, head)
    async with store.transaction() as session:
        blocks = dict((await session.execute(select(idx_blocks.c.number, idx_blocks.c.hash))).all())
        assert blocks == node
        for table in ROW_TABLES:
            for number, block_hash in (
                await session.execute(select(table.c.block_number, table.c.block_hash))
            ).all():
                assert node[number] == block_hash, f"orphaned row in {table.name} at {number}"


async def test_backfill_matches_the_node_and_is_idempotent(
    store: SqlStore, source: RpcSource, chain: JsonRpcChain
) -> None:
    await generate(chain)
    head = await source.head()
    indexer = Indexer(store, source, chain_id=CHAIN_ID, batch_blocks=4)
    done: list[int] = []
    rows = await indexer.backfill(0, head, progress=lambda n, _r: done.append(n))
    assert sum(done) == head + 1
    counts = await IndexStore(store).counts(CHAIN_ID)
    assert counts == rows
    assert counts.blocks == head + 1
    node_txs = 0
    for n in range(head + 1):
        node_txs += len((await rpc(chain, "eth_getBlockByNumber", hex(n), False))["transactions"])
    node_logs = await rpc(chain, "eth_getLogs", {"fromBlock": "0x0", "toBlock": hex(head)})
    assert counts.transactions == node_txs >= 7
    assert counts.logs == len(node_logs) >= 2
    assert counts.transfers == 2  # the mint and the transfer
    assert counts.contracts == 1
    await assert_store_equals_node(store, chain)
    assert [e.number for e in await events(store, "chain.block")] == list(range(head + 1))
    cp = await indexer.checkpoint()
    assert cp is not None
    assert cp.block_number == head

    # Twice: nothing stored twice, no event twice (with and without the checkpoint).
    assert (await indexer.backfill(0, head)).blocks == 0
    assert (await indexer.backfill(0, head, resume=False)).blocks == 0
    assert await IndexStore(store).counts(CHAIN_ID) == counts
    assert len(await events(store, "chain.block")) == head + 1


async def test_a_crash_in_the_middle_of_a_range_leaves_no_gap_and_no_duplicate(
    store: SqlStore, source: RpcSource, chain: JsonRpcChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    await generate(chain)
    head = await source.head()
    assert head >= 7
    indexer = Indexer(store, source, chain_id=CHAIN_ID, batch_blocks=3)
    original = IndexStore.write
    in_second_range = asyncio.Event()

    async def slow_write(self: IndexStore, session: Any, bundles: Any) -> Any:
        written = await original(self, session, bundles)
        if bundles[0].block.number == 3:  # the second range: rows written, not committed
            in_second_range.set()
            await asyncio.sleep(30)
        return written

    monkeypatch.setattr(IndexStore, "write", slow_write)
    task = asyncio.create_task(indexer.backfill(0, head))
    await asyncio.wait_for(in_second_range.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    monkeypatch.setattr(IndexStore, "write", original)

    async with store.transaction() as session:
        stored = sorted(n for (n,) in (await session.execute(select(idx_blocks.c.number))).all())
    assert stored == [0, 1, 2]  # the second range is not there at all
    cp = await indexer.checkpoint()
    assert cp is not None
    assert cp.block_number == 2

    resumed = Indexer(store, source, chain_id=CHAIN_ID, batch_blocks=3)
    assert (await resumed.backfill(0, head)).blocks == head - 2
    await assert_store_equals_node(store, chain)
    numbers = [e.number for e in await events(store, "chain.block")]
    assert sorted(numbers) == list(range(head + 1))  # no gap, no duplicate


async def send_native(chain: JsonRpcChain, to: str) -> None:
    sender = await funded(chain)
    await sender.send(to, b"", value=ETHER)


@pytest.mark.parametrize("depth", [1, 2, 8, 64])
async def test_reorg_reverts_the_orphaned_blocks_and_indexes_the_new_branch(
    depth: int, store: SqlStore, source: RpcSource, chain: JsonRpcChain
) -> None:
    await generate(chain)
    indexer = Indexer(store, source, chain_id=CHAIN_ID, batch_blocks=16)
    await indexer.step(start=0)
    base = await source.head()
    snapshot = await rpc(chain, "evm_snapshot")

    # The old branch: a transaction, then empty blocks, `depth` blocks in all.
    await send_native(chain, Account.create().address)
    if depth > 1:
        await rpc(chain, "anvil_mine", hex(depth - 1))
    await indexer.step()
    old = await node_hashes(chain, base + depth)
    assert (await indexer.checkpoint()).block_number == base + depth  # type: ignore[union-attr]
    async with store.transaction() as session:
        old_txs = {h for (h,) in (await session.execute(select(idx_transactions.c.hash))).all()}

    # The new branch: another transaction, one block longer.
    assert await rpc(chain, "evm_revert", snapshot) is True
    await send_native(chain, Account.create().address)
    await rpc(chain, "anvil_mine", hex(depth))
    await indexer.step()

    assert [r.depth for r in indexer.stats.reorgs] == [depth]
    assert indexer.stats.reorgs[0].ancestor == base
    reverted = await events(store, "chain.block_reverted")
    assert sorted((e.number, e.hash) for e in reverted) == [
        (n, old[n]) for n in range(base + 1, base + depth + 1)
    ]
    assert all(e.depth == depth for e in reverted)
    await assert_store_equals_node(store, chain)
    async with store.transaction() as session:
        now_txs = {h for (h,) in (await session.execute(select(idx_transactions.c.hash))).all()}
    assert len(old_txs - now_txs) == 1  # the old branch's transaction is gone
    cp = await indexer.checkpoint()
    assert cp is not None
    assert cp.block_number == base + depth + 1


async def test_a_reorg_to_a_shorter_branch_is_seen_without_a_new_block(
    store: SqlStore, source: RpcSource, chain: JsonRpcChain
) -> None:
    await generate(chain)
    indexer = Indexer(store, source, chain_id=CHAIN_ID)
    await indexer.step(start=0)
    base = await source.head()
    snapshot = await rpc(chain, "evm_snapshot")
    await rpc(chain, "anvil_mine", hex(3))
    await indexer.step()
    await rpc(chain, "evm_revert", snapshot)
    await send_native(chain, Account.create().address)  # one block where there were three
    await indexer.step()
    assert [r.depth for r in indexer.stats.reorgs] == [3]
    await assert_store_equals_node(store, chain)
    cp = await indexer.checkpoint()
    assert cp is not None
    assert cp.block_number == base + 1


async def test_follow_indexes_new_blocks_until_stopped(
    store: SqlStore, source: RpcSource, chain: JsonRpcChain
) -> None:
    indexer = Indexer(store, source, chain_id=CHAIN_ID, poll_interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(indexer.follow(stop, start=0))
    await generate(chain)
    head = await source.head()
    for _ in range(100):
        cp = await indexer.checkpoint()
        if cp is not None and cp.block_number == head:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 5)
    await assert_store_equals_node(store, chain)


@pytest.mark.services
@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_backfill_into_a_server_store(
    backend: str, tmp_path: Path, source: RpcSource, chain: JsonRpcChain
) -> None:
    await generate(chain)
    head = await source.head()
    async with fresh_database(backend, tmp_path) as url, started_store(url) as store:
        indexer = Indexer(store, source, chain_id=CHAIN_ID, batch_blocks=5)
        await indexer.backfill(0, head)
        await indexer.backfill(0, head, resume=False)
        counts = await IndexStore(store).counts(CHAIN_ID)
        assert counts.blocks == head + 1
        assert counts.transfers == 2
        assert counts.contracts == 1
        await assert_store_equals_node(store, chain)


async def test_the_index_command_backfills_and_prints_a_summary(
    tmp_path: Path, node_url: str, chain: JsonRpcChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from ludex.cli import app

    await generate(chain)
    head = parse_quantity(await rpc(chain, "eth_blockNumber"), "head")
    monkeypatch.setenv("LUDEX_STORE_URL", f"sqlite:///{tmp_path}/cli.db")
    args = ["index", "--rpc", node_url, "--from", "0", "--batch-blocks", "3", "--no-progress"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["blocks"] == head + 1
    assert summary["transfers"] == 2
    assert summary["blocks_per_s"] > 0
