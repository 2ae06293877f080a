"""Prometheus metrics of the indexer (``ludex_indexer_*``, the default registry behind
``/metrics``).

Module-level objects, like every ludex metric (``ludex.ops.metrics``). They are fed by
``ludex.indexer.workers`` after each committed range (never before the commit, so a
rolled-back range counts nothing). Labels are the chain id, a source operation or a row
kind: never a URL (it may hold a key) and never an address (unbounded cardinality).

Hooks for modules this one does not drive: :func:`observe_abi_cache` for an
``AbiRegistry`` (its ``hits`` / ``misses`` / ``hit_rate``) and :data:`RPC_ERRORS` for a
source that counts its own failed JSON-RPC calls by method.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Protocol

from prometheus_client import Counter, Gauge, Histogram

from ludex.indexer.model import Block
from ludex.indexer.store import RowCounts

HEAD_LAG_BLOCKS = Gauge(
    "ludex_indexer_head_lag_blocks",
    "Blocks between the node's head and the follower's checkpoint",
    ["chain_id"],
)
HEAD_LAG_SECONDS = Gauge(
    "ludex_indexer_head_lag_seconds",
    "Seconds between now and the timestamp of the newest committed block",
    ["chain_id"],
)
LATENCY = Histogram(
    "ludex_indexer_latency_seconds",
    "From a block's timestamp to its rows being committed",
    ["chain_id"],
    buckets=(0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
)
BLOCKS = Counter("ludex_indexer_blocks_total", "Blocks committed", ["chain_id"])
ROWS = Counter(
    "ludex_indexer_rows_total",
    "Rows committed, by kind (blocks, transactions, logs, transfers, contracts, balance_changes)",
    ["chain_id", "kind"],
)
RPC_ERRORS = Counter(
    "ludex_indexer_rpc_errors_total",
    "Failed node reads (after the source's own retries), by method",
    ["method"],
)
ABI_CACHE_HIT_RATE = Gauge(
    "ludex_indexer_abi_cache_hit_rate", "Hit rate of the ABI decoding cache (0..1)"
)
REORGS = Histogram(
    "ludex_indexer_reorg_depth",
    "Reorgs handled, by depth in blocks",
    ["chain_id"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
RANGES = Counter(
    "ludex_indexer_ranges_total",
    "Backfill ranges, by outcome (done, lost: the lease went to another worker)",
    ["chain_id", "outcome"],
)
FOLLOWER = Gauge(
    "ludex_indexer_follower", "1 while this process is the elected follower", ["chain_id"]
)


class AbiCache(Protocol):
    @property
    def hit_rate(self) -> float: ...


def observe_abi_cache(cache: AbiCache) -> None:
    """Publish the hit rate of an ``AbiRegistry`` (call it after decoding a range)."""
    ABI_CACHE_HIT_RATE.set(cache.hit_rate)


def observe_committed(
    chain_id: int, rows: RowCounts, blocks: Iterable[Block], *, now: float | None = None
) -> None:
    """Count a committed range: its blocks and rows, and each new block's latency."""
    label = str(chain_id)
    now = time.time() if now is None else now
    BLOCKS.labels(label).inc(rows.blocks)
    for kind in ("blocks", "transactions", "logs", "transfers", "contracts", "balance_changes"):
        value = getattr(rows, kind)
        if value:
            ROWS.labels(label, kind).inc(value)
    newest: int | None = None
    for block in blocks:
        LATENCY.labels(label).observe(max(0.0, now - block.timestamp))
        newest = block.timestamp if newest is None else max(newest, block.timestamp)
    if newest is not None:
        HEAD_LAG_SECONDS.labels(label).set(max(0.0, now - newest))


def observe_head(chain_id: int, head: int, checkpoint: int | None) -> None:
    """The follower's distance to the node's head in blocks."""
    if checkpoint is not None:
        HEAD_LAG_BLOCKS.labels(str(chain_id)).set(max(0, head - checkpoint))


def observe_reorg(chain_id: int, depth: int) -> None:
    REORGS.labels(str(chain_id)).observe(depth)
