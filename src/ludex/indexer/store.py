"""The indexer's rows in the operational store: write, revert, checkpoint.

``IndexStore`` turns :class:`~ludex.indexer.model.BlockBundle` records into rows of the
``idx_*`` tables (``ludex.adapters.sql.tables``, revisions 0006, 0007 for ``idx_tokens``
and 0008 for ``idx_balance_changes``). Every method that
writes takes the caller's session: the pipeline writes a range of blocks, its events
(outbox) and its checkpoint in ONE transaction, so a crash leaves either all of it or
none of it.

Writes are idempotent: a block already stored with the same hash is skipped with all
its rows, so a range written twice (a retry, a worker that resumes a range another
worker had already written) stores nothing twice. A block stored with a *different*
hash at the same height is refused (StoreError): the pipeline must revert it first
(:meth:`IndexStore.revert_above`), never overwrite silently.

This module never talks to a chain node and never commits: the caller owns the
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from ludex.adapters.sql.store import SqlStore, insert_ignore
from ludex.adapters.sql.tables import (
    idx_balance_changes,
    idx_blocks,
    idx_checkpoints,
    idx_contracts,
    idx_logs,
    idx_token_transfers,
    idx_tokens,
    idx_transactions,
)
from ludex.errors import StoreError
from ludex.indexer.model import BlockBundle
from ludex.indexer.token_metadata import TokenMetadata

ROW_TABLES: tuple[Table, ...] = (
    idx_balance_changes,
    idx_token_transfers,
    idx_logs,
    idx_contracts,
    idx_transactions,
)
"""Every table holding rows of a block (besides ``idx_blocks``), keyed by block_number."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The last block an indexer stored (with every block before it down to its start)."""

    block_number: int
    block_hash: str


@dataclass(frozen=True, slots=True)
class RowCounts:
    blocks: int = 0
    transactions: int = 0
    logs: int = 0
    transfers: int = 0
    contracts: int = 0
    balance_changes: int = 0

    def __add__(self, other: RowCounts) -> RowCounts:
        return RowCounts(
            self.blocks + other.blocks,
            self.transactions + other.transactions,
            self.logs + other.logs,
            self.transfers + other.transfers,
            self.contracts + other.contracts,
            self.balance_changes + other.balance_changes,
        )


def _text(value: int | None) -> str | None:
    return None if value is None else str(value)


def _block_rows(bundle: BlockBundle) -> dict[str, Any]:
    b = bundle.block
    return {
        "chain_id": b.chain_id,
        "number": b.number,
        "hash": b.hash,
        "parent_hash": b.parent_hash,
        "timestamp": b.timestamp,
        "miner": b.miner,
        "gas_used": b.gas_used,
        "gas_limit": b.gas_limit,
        "base_fee": _text(b.base_fee_per_gas),
        "tx_count": b.transaction_count,
    }


def _transaction_rows(bundle: BlockBundle) -> list[dict[str, Any]]:
    receipts = {r.transaction_hash: r for r in bundle.receipts}
    rows = []
    for tx in bundle.transactions:
        receipt = receipts.get(tx.hash)
        rows.append(
            {
                "chain_id": tx.chain_id,
                "hash": tx.hash,
                "block_number": tx.block_number,
                "block_hash": tx.block_hash,
                "tx_index": tx.index,
                "sender": tx.sender,
                "recipient": tx.to,
                "value": str(tx.value),
                "nonce": tx.nonce,
                "gas": tx.gas,
                "gas_price": _text(tx.gas_price),
                "max_fee_per_gas": _text(tx.max_fee_per_gas),
                "max_priority_fee_per_gas": _text(tx.max_priority_fee_per_gas),
                "tx_type": tx.type,
                "input": tx.input,
                "status": receipt.status if receipt else None,
                "gas_used": receipt.gas_used if receipt else None,
                "effective_gas_price": _text(receipt.effective_gas_price) if receipt else None,
                "contract_address": receipt.contract_address if receipt else None,
            }
        )
    return rows


def _log_rows(bundle: BlockBundle) -> list[dict[str, Any]]:
    rows = []
    for log in bundle.logs:
        if len(log.topics) > 4:
            raise StoreError(
                f"log {log.log_index} of block {log.block_number} has {len(log.topics)} "
                "topics; the EVM emits at most 4 (the parser should have refused it)"
            )
        topics = list(log.topics) + [None] * (4 - len(log.topics))
        rows.append(
            {
                "chain_id": log.chain_id,
                "block_number": log.block_number,
                "log_index": log.log_index,
                "block_hash": log.block_hash,
                "tx_hash": log.transaction_hash,
                "tx_index": log.transaction_index,
                "address": log.address,
                "topic0": topics[0],
                "topic1": topics[1],
                "topic2": topics[2],
                "topic3": topics[3],
                "data": log.data,
            }
        )
    return rows


def _transfer_rows(bundle: BlockBundle) -> list[dict[str, Any]]:
    return [
        {
            "chain_id": t.chain_id,
            "block_number": t.block_number,
            "log_index": t.log_index,
            "batch_index": t.batch_index,
            "block_hash": t.block_hash,
            "tx_hash": t.transaction_hash,
            "standard": t.standard.value,
            "token": t.token,
            "sender": t.sender,
            "recipient": t.recipient,
            "token_id": _text(t.token_id),
            "amount": str(t.amount),
            "operator": t.operator,
        }
        for t in bundle.transfers
    ]


def _contract_rows(bundle: BlockBundle) -> list[dict[str, Any]]:
    return [
        {
            "chain_id": c.chain_id,
            "address": c.address,
            "block_number": c.block_number,
            "block_hash": c.block_hash,
            "tx_hash": c.transaction_hash,
            "creator": c.creator,
            "via": c.via,
        }
        for c in bundle.contracts
    ]


def _balance_rows(bundle: BlockBundle) -> list[dict[str, Any]]:
    return [
        {
            "chain_id": c.chain_id,
            "block_number": c.block_number,
            "address": c.address,
            "token": c.token,
            "token_id": "" if c.token_id is None else str(c.token_id),
            "block_hash": c.block_hash,
            "delta": str(c.delta),
        }
        for c in bundle.balance_changes
    ]


@dataclass(frozen=True, slots=True)
class Written:
    """What one :meth:`IndexStore.write` stored: row counts and the blocks that were new."""

    rows: RowCounts
    blocks: tuple[BlockBundle, ...]


class IndexStore:
    """The ``idx_*`` tables of one operational store."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    def _insert_ignore(self, table: Table) -> Insert:
        """An INSERT that skips rows whose key exists (a concurrent writer's rows)."""
        return insert_ignore(self.store.dialect, table)

    async def write(self, session: AsyncSession, bundles: Sequence[BlockBundle]) -> Written:
        """Insert every row of ``bundles``; blocks already stored with the same hash are
        skipped. Returns what was written (zero counts for skipped blocks)."""
        if not bundles:
            return Written(RowCounts(), ())
        chain_ids = {b.block.chain_id for b in bundles}
        if len(chain_ids) != 1:
            raise StoreError(f"write: bundles of several chains {sorted(chain_ids)}; one at a time")
        chain_id = chain_ids.pop()
        numbers = [b.block.number for b in bundles]
        stored = await self.stored_hashes(session, chain_id, min(numbers), max(numbers))
        fresh: list[BlockBundle] = []
        for b in bundles:
            known = stored.get(b.block.number)
            if known is None:
                fresh.append(b)
            elif known != b.block.hash:
                raise StoreError(
                    f"chain {chain_id} block {b.block.number}: stored hash {known} differs "
                    f"from {b.block.hash}; revert the stored block first (a reorg)"
                )
        if not fresh:
            return Written(RowCounts(), ())
        tables: list[tuple[Table, list[dict[str, Any]]]] = [
            (idx_blocks, [_block_rows(b) for b in fresh]),
            (idx_transactions, [r for b in fresh for r in _transaction_rows(b)]),
            (idx_logs, [r for b in fresh for r in _log_rows(b)]),
            (idx_token_transfers, [r for b in fresh for r in _transfer_rows(b)]),
            (idx_contracts, [r for b in fresh for r in _contract_rows(b)]),
            (idx_balance_changes, [r for b in fresh for r in _balance_rows(b)]),
        ]
        for table, rows in tables:
            if rows:
                await session.execute(self._insert_ignore(table), rows)
        counts = RowCounts(
            blocks=len(fresh),
            transactions=len(tables[1][1]),
            logs=len(tables[2][1]),
            transfers=len(tables[3][1]),
            contracts=len(tables[4][1]),
            balance_changes=len(tables[5][1]),
        )
        return Written(counts, tuple(fresh))

    async def revert_above(
        self, session: AsyncSession, chain_id: int, number: int
    ) -> list[tuple[int, str]]:
        """Delete every row of the blocks above ``number``; return those blocks' (number,
        hash), lowest first. Lowers every checkpoint of the chain that pointed above."""
        reverted = (
            await session.execute(
                select(idx_blocks.c.number, idx_blocks.c.hash)
                .where(idx_blocks.c.chain_id == chain_id, idx_blocks.c.number > number)
                .order_by(idx_blocks.c.number)
            )
        ).all()
        for table in ROW_TABLES:
            await session.execute(
                delete(table).where(table.c.chain_id == chain_id, table.c.block_number > number)
            )
        await session.execute(
            delete(idx_blocks).where(
                idx_blocks.c.chain_id == chain_id, idx_blocks.c.number > number
            )
        )
        await session.execute(  # read again when seen again on the new branch
            delete(idx_tokens).where(
                idx_tokens.c.chain_id == chain_id, idx_tokens.c.first_block > number
            )
        )
        ancestor = await self._hash_at(session, chain_id, number)
        if ancestor is None:
            await session.execute(
                delete(idx_checkpoints).where(
                    idx_checkpoints.c.chain_id == chain_id,
                    idx_checkpoints.c.block_number > number,
                )
            )
        else:
            await session.execute(
                update(idx_checkpoints)
                .where(
                    idx_checkpoints.c.chain_id == chain_id,
                    idx_checkpoints.c.block_number > number,
                )
                .values(block_number=number, block_hash=ancestor, updated_at=datetime.now(UTC))
            )
        return [(int(n), str(h)) for n, h in reverted]

    async def known_tokens(
        self, session: AsyncSession, chain_id: int, addresses: Sequence[str]
    ) -> set[str]:
        """Which of ``addresses`` already have an ``idx_tokens`` row."""
        known: set[str] = set()
        for i in range(0, len(addresses), 500):
            rows = await session.execute(
                select(idx_tokens.c.address).where(
                    idx_tokens.c.chain_id == chain_id,
                    idx_tokens.c.address.in_(addresses[i : i + 500]),
                )
            )
            known.update(str(a) for (a,) in rows.all())
        return known

    async def write_tokens(self, session: AsyncSession, tokens: Sequence[TokenMetadata]) -> None:
        """Insert token metadata rows; a token already stored keeps its row."""
        if tokens:
            await session.execute(
                self._insert_ignore(idx_tokens),
                [
                    {
                        "chain_id": t.chain_id,
                        "address": t.address,
                        "standard": t.standard.value,
                        "name": t.name,
                        "symbol": t.symbol,
                        "decimals": t.decimals,
                        "first_block": t.first_block,
                    }
                    for t in tokens
                ],
            )

    async def checkpoint(
        self, session: AsyncSession, chain_id: int, name: str
    ) -> Checkpoint | None:
        row = (
            await session.execute(
                select(idx_checkpoints.c.block_number, idx_checkpoints.c.block_hash).where(
                    idx_checkpoints.c.chain_id == chain_id, idx_checkpoints.c.name == name
                )
            )
        ).first()
        return None if row is None else Checkpoint(int(row[0]), str(row[1]))

    async def set_checkpoint(
        self, session: AsyncSession, chain_id: int, name: str, number: int, block_hash: str
    ) -> None:
        values = {"block_number": number, "block_hash": block_hash, "updated_at": datetime.now(UTC)}
        done = await session.execute(
            update(idx_checkpoints)
            .where(idx_checkpoints.c.chain_id == chain_id, idx_checkpoints.c.name == name)
            .values(**values)
        )
        if getattr(done, "rowcount", 0) == 0:
            await session.execute(
                insert(idx_checkpoints).values(chain_id=chain_id, name=name, **values)
            )

    async def stored_hash(
        self, chain_id: int, number: int, *, session: AsyncSession | None = None
    ) -> str | None:
        """The stored hash of block ``number`` (None when it is not stored)."""
        if session is not None:
            return await self._hash_at(session, chain_id, number)
        async with self.store.transaction() as own:
            return await self._hash_at(own, chain_id, number)

    async def _hash_at(self, session: AsyncSession, chain_id: int, number: int) -> str | None:
        value = await session.scalar(
            select(idx_blocks.c.hash).where(
                idx_blocks.c.chain_id == chain_id, idx_blocks.c.number == number
            )
        )
        return None if value is None else str(value)

    async def stored_hashes(
        self, session: AsyncSession, chain_id: int, first: int, last: int
    ) -> dict[int, str]:
        rows = await session.execute(
            select(idx_blocks.c.number, idx_blocks.c.hash).where(
                idx_blocks.c.chain_id == chain_id,
                idx_blocks.c.number >= first,
                idx_blocks.c.number <= last,
            )
        )
        return {int(n): str(h) for n, h in rows.all()}

    async def lowest_block(self, session: AsyncSession, chain_id: int) -> int | None:
        value = await session.scalar(
            select(func.min(idx_blocks.c.number)).where(idx_blocks.c.chain_id == chain_id)
        )
        return None if value is None else int(value)

    async def counts(self, chain_id: int) -> RowCounts:
        """How many rows of each kind the store holds for ``chain_id``."""
        async with self.store.transaction() as session:

            async def count(table: Table) -> int:
                return int(
                    await session.scalar(
                        select(func.count()).select_from(table).where(table.c.chain_id == chain_id)
                    )
                    or 0
                )

            return RowCounts(
                blocks=await count(idx_blocks),
                transactions=await count(idx_transactions),
                logs=await count(idx_logs),
                transfers=await count(idx_token_transfers),
                contracts=await count(idx_contracts),
                balance_changes=await count(idx_balance_changes),
            )
