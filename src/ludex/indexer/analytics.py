"""The indexer's rows in ClickHouse (chDB or a server): write bundles, tombstone a reorg.

The ``chain_*`` tables (``ludex/adapters/olap/schema.sql``) are ReplacingMergeTree
tables with a ``version`` and an ``is_deleted`` column, keyed by ``(chain_id,
block_number, block_hash, ...)``. Nothing is ever updated or deleted in place:

* :func:`write_bundles` inserts every row of the bundles with ``version``; writing the
  same blocks again (a retry, a resume after a crash between the operational commit
  and this write) inserts the same keys again, and FINAL still shows each row once;
* :func:`revert_above` inserts a tombstone (same key and columns, a higher
  ``version``, ``is_deleted = 1``) for every visible row above a block, read from
  ClickHouse itself (``INSERT ... SELECT ... FINAL``), so no orphaned row stays
  visible under FINAL even when ClickHouse holds rows the operational store no longer
  knows about. The new branch's rows have other keys (another block hash).

Queries that need the canonical chain read with ``FINAL`` (or ``argMax(..., version)``
and ``is_deleted = 0``). :func:`next_version` gives increasing versions (nanoseconds
since the epoch, strictly increasing within the process): a tombstone must carry a
higher version than the row it hides, and a block that comes back on a later reorg
must carry a higher version than its tombstone.

This module only talks through the AnalyticsStore it is given; it never reads the
chain node or the operational store.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from ludex.indexer.model import BlockBundle
from ludex.ports.olap import AnalyticsStore

BLOCKS: Final = "chain_blocks"
TRANSACTIONS: Final = "chain_transactions"
LOGS: Final = "chain_logs"
TRANSFERS: Final = "chain_token_transfers"
BALANCES: Final = "chain_balance_changes"

META_COLUMNS: Final = ("version", "is_deleted")
COLUMNS: Final[Mapping[str, tuple[str, ...]]] = {
    BLOCKS: (
        "chain_id",
        "number",
        "hash",
        "parent_hash",
        "timestamp",
        "miner",
        "gas_used",
        "gas_limit",
        "base_fee_per_gas",
        "transaction_count",
    ),
    TRANSACTIONS: (
        "chain_id",
        "block_number",
        "block_hash",
        "block_timestamp",
        "tx_index",
        "hash",
        "sender",
        "recipient",
        "value",
        "nonce",
        "gas",
        "gas_price",
        "max_fee_per_gas",
        "max_priority_fee_per_gas",
        "tx_type",
        "input",
        "status",
        "gas_used",
        "effective_gas_price",
        "contract_address",
    ),
    LOGS: (
        "chain_id",
        "block_number",
        "block_hash",
        "block_timestamp",
        "log_index",
        "tx_hash",
        "tx_index",
        "address",
        "topic0",
        "topic1",
        "topic2",
        "topic3",
        "data",
    ),
    TRANSFERS: (
        "chain_id",
        "block_number",
        "block_hash",
        "block_timestamp",
        "log_index",
        "batch_index",
        "tx_hash",
        "standard",
        "token",
        "sender",
        "recipient",
        "token_id",
        "amount",
        "operator",
    ),
    BALANCES: (
        "chain_id",
        "block_number",
        "block_hash",
        "block_timestamp",
        "address",
        "token",
        "token_id",
        "delta",
    ),
}
"""The data columns of each table, without ``version`` and ``is_deleted``."""

_NUMBER_COLUMN: Final = {BLOCKS: "number"}  # the other tables: block_number


def _number(table: str) -> str:
    return _NUMBER_COLUMN.get(table, "block_number")


# Table and column names are the constants above, never input; values are bound.
_TOMBSTONE_SQL: Final = {
    name: f"INSERT INTO {name} ({', '.join((*columns, *META_COLUMNS))}) "  # noqa: S608
    f"SELECT {', '.join(columns)}, {{version:UInt64}}, 1 FROM {name} FINAL "
    f"WHERE chain_id = {{chain_id:UInt64}} AND {_number(name)} > {{number:Int64}}"
    for name, columns in COLUMNS.items()
}
_COUNT_SQL: Final = {
    name: f"SELECT count() AS n FROM {name} FINAL "  # noqa: S608
    f"WHERE chain_id = {{chain_id:UInt64}} AND {_number(name)} > {{above:Int64}}"
    for name in COLUMNS
}

_last_version = 0


def next_version() -> int:
    """A version higher than any this process gave before (nanoseconds since the epoch)."""
    global _last_version
    _last_version = max(time.time_ns(), _last_version + 1)
    return _last_version


@dataclass(frozen=True, slots=True)
class AnalyticsCounts:
    """Rows of each kind visible under FINAL (or written by one call)."""

    blocks: int = 0
    transactions: int = 0
    logs: int = 0
    transfers: int = 0
    balance_changes: int = 0


def _rows(bundle: BlockBundle) -> dict[str, list[dict[str, Any]]]:
    b = bundle.block
    at = datetime.fromtimestamp(b.timestamp, UTC)
    receipts = {r.transaction_hash: r for r in bundle.receipts}
    txs = []
    for tx in bundle.transactions:
        receipt = receipts.get(tx.hash)
        txs.append(
            {
                "chain_id": tx.chain_id,
                "block_number": tx.block_number,
                "block_hash": tx.block_hash,
                "block_timestamp": at,
                "tx_index": tx.index,
                "hash": tx.hash,
                "sender": tx.sender,
                "recipient": tx.to,
                "value": tx.value,
                "nonce": tx.nonce,
                "gas": tx.gas,
                "gas_price": tx.gas_price,
                "max_fee_per_gas": tx.max_fee_per_gas,
                "max_priority_fee_per_gas": tx.max_priority_fee_per_gas,
                "tx_type": tx.type,
                "input": "0x" + tx.input.hex(),
                "status": receipt.status if receipt else None,
                "gas_used": receipt.gas_used if receipt else None,
                "effective_gas_price": receipt.effective_gas_price if receipt else None,
                "contract_address": receipt.contract_address if receipt else None,
            }
        )
    logs = []
    for lg in bundle.logs:
        topics = [*lg.topics, None, None, None, None][:4]
        logs.append(
            {
                "chain_id": lg.chain_id,
                "block_number": lg.block_number,
                "block_hash": lg.block_hash,
                "block_timestamp": at,
                "log_index": lg.log_index,
                "tx_hash": lg.transaction_hash,
                "tx_index": lg.transaction_index,
                "address": lg.address,
                "topic0": topics[0],
                "topic1": topics[1],
                "topic2": topics[2],
                "topic3": topics[3],
                "data": "0x" + lg.data.hex(),
            }
        )
    transfers = [
        {
            "chain_id": t.chain_id,
            "block_number": t.block_number,
            "block_hash": t.block_hash,
            "block_timestamp": at,
            "log_index": t.log_index,
            "batch_index": t.batch_index,
            "tx_hash": t.transaction_hash,
            "standard": t.standard.value,
            "token": t.token,
            "sender": t.sender,
            "recipient": t.recipient,
            "token_id": t.token_id,
            "amount": t.amount,
            "operator": t.operator,
        }
        for t in bundle.transfers
    ]
    balances = [
        {
            "chain_id": c.chain_id,
            "block_number": c.block_number,
            "block_hash": c.block_hash,
            "block_timestamp": at,
            "address": c.address,
            "token": c.token,
            "token_id": "" if c.token_id is None else str(c.token_id),
            "delta": c.delta,
        }
        for c in bundle.balance_changes
    ]
    block = {
        "chain_id": b.chain_id,
        "number": b.number,
        "hash": b.hash,
        "parent_hash": b.parent_hash,
        "timestamp": at,
        "miner": b.miner,
        "gas_used": b.gas_used,
        "gas_limit": b.gas_limit,
        "base_fee_per_gas": b.base_fee_per_gas,
        "transaction_count": b.transaction_count,
    }
    return {
        BLOCKS: [block],
        TRANSACTIONS: txs,
        LOGS: logs,
        TRANSFERS: transfers,
        BALANCES: balances,
    }


async def write_bundles(
    olap: AnalyticsStore, bundles: Sequence[BlockBundle], version: int | None = None
) -> AnalyticsCounts:
    """Insert every row of ``bundles`` with ``version`` (default: :func:`next_version`);
    returns the rows inserted. Idempotent under FINAL: the same block twice is one row."""
    if not bundles:
        return AnalyticsCounts()
    v = next_version() if version is None else version
    tables: dict[str, list[dict[str, Any]]] = {name: [] for name in COLUMNS}
    for bundle in bundles:
        for name, rows in _rows(bundle).items():
            tables[name].extend({**r, "version": v, "is_deleted": 0} for r in rows)
    # Rows before their block: a reader never sees a block without its rows.
    for name in (TRANSACTIONS, LOGS, TRANSFERS, BALANCES, BLOCKS):
        await olap.insert(name, tables[name], (*COLUMNS[name], *META_COLUMNS))
    return AnalyticsCounts(
        blocks=len(tables[BLOCKS]),
        transactions=len(tables[TRANSACTIONS]),
        logs=len(tables[LOGS]),
        transfers=len(tables[TRANSFERS]),
        balance_changes=len(tables[BALANCES]),
    )


async def revert_above(
    olap: AnalyticsStore, chain_id: int, number: int, version: int | None = None
) -> AnalyticsCounts:
    """Tombstone every row of ``chain_id`` above block ``number`` visible under FINAL;
    returns how many rows were hidden. Running it twice hides nothing more."""
    v = next_version() if version is None else version
    before = await counts(olap, chain_id, above=number)
    # The block first: a reader never sees rows of a block that is already gone.
    for name in (BLOCKS, TRANSACTIONS, LOGS, TRANSFERS, BALANCES):
        await olap.execute(
            _TOMBSTONE_SQL[name], {"version": v, "chain_id": chain_id, "number": number}
        )
    return before


async def counts(olap: AnalyticsStore, chain_id: int, *, above: int = -1) -> AnalyticsCounts:
    """Rows of ``chain_id`` above block ``above`` visible under FINAL (the canonical chain)."""
    found: dict[str, int] = {}
    for name in COLUMNS:
        [row] = await olap.query(_COUNT_SQL[name], {"chain_id": chain_id, "above": above})
        found[name] = int(row["n"])
    return AnalyticsCounts(
        blocks=found[BLOCKS],
        transactions=found[TRANSACTIONS],
        logs=found[LOGS],
        transfers=found[TRANSFERS],
        balance_changes=found[BALANCES],
    )


async def tip(
    olap: AnalyticsStore, chain_id: int, low: int = 0, high: int = 2**63 - 1
) -> int | None:
    """The highest block of ``chain_id`` in ``low..high`` visible under FINAL (None when
    there is none); a backfill range asks for its own blocks only."""
    [row] = await olap.query(
        "SELECT count() AS n, max(number) AS top FROM chain_blocks FINAL "
        "WHERE chain_id = {chain_id:UInt64} "
        "AND number BETWEEN {low:UInt64} AND {high:UInt64}",
        {"chain_id": chain_id, "low": low, "high": high},
    )
    return int(row["top"]) if int(row["n"]) else None


async def range_tips(
    olap: AnalyticsStore, chain_id: int, first: int, last: int, size: int
) -> dict[int, int]:
    """For the backfill ranges of ``size`` blocks from ``first`` to ``last``: each range's
    start mapped to its highest block visible under FINAL (ranges with none are absent)."""
    rows = await olap.query(
        "SELECT intDiv(number - {first:UInt64}, {size:UInt64}) AS r, max(number) AS top "
        "FROM chain_blocks FINAL WHERE chain_id = {chain_id:UInt64} "
        "AND number BETWEEN {first:UInt64} AND {last:UInt64} GROUP BY r",
        {"chain_id": chain_id, "first": first, "last": last, "size": size},
    )
    return {first + int(row["r"]) * size: int(row["top"]) for row in rows}
