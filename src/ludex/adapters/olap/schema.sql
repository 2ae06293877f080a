-- ludex analytics DDL: one file, applied by every AnalyticsStore backend at start.
-- Statements are separated by a line ending in ';'. Every statement must be
-- idempotent (IF NOT EXISTS): start() runs them all on every boot.
-- Table names are unqualified: the backend selects the database first.

-- Every bus event, one row each. Re-delivered events (at-least-once) share the
-- sorting key, so ReplacingMergeTree keeps one row per event, the one ingested
-- last. Merges are eventual: queries that need exact counts use FINAL (or
-- argMax(..., ingested_at) grouped by event_id).
CREATE TABLE IF NOT EXISTS events
(
    event_id    String,
    type        LowCardinality(String),
    topic       LowCardinality(String),
    key         String,
    occurred_at DateTime64(6, 'UTC'),
    producer    LowCardinality(String),
    version     UInt16,
    payload     String,
    ingested_at DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (type, occurred_at, event_id);

-- The chain indexer's rows (ludex.indexer.analytics), one table per record kind,
-- every row with its chain_id. Sorted by (chain_id, block_number, block_hash, ...):
-- the block hash is part of the key, so a reorg's new branch never shares a key with
-- the orphaned rows. Corrections without mutations: ReplacingMergeTree(version,
-- is_deleted) keeps, per key, the row of the highest version, and FINAL hides a key
-- whose last row is a tombstone (is_deleted = 1). A reorg inserts tombstones (same
-- key, higher version); re-writing a block inserts the same key again (harmless).
-- Queries that need the canonical chain read with FINAL. Quantities that may pass
-- 64 bits are UInt256; input and data are 0x hex. Partitioned by month of the block
-- timestamp (every row carries it), so a block's rows, re-writes and tombstones
-- always land in the same partition.
CREATE TABLE IF NOT EXISTS chain_blocks
(
    chain_id          UInt64,
    number            UInt64,
    hash              String,
    parent_hash       String,
    timestamp         DateTime('UTC'),
    miner             String,
    gas_used          UInt64,
    gas_limit         UInt64,
    base_fee_per_gas  Nullable(UInt256),
    transaction_count UInt32,
    version           UInt64,
    is_deleted        UInt8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (chain_id, number, hash);

CREATE TABLE IF NOT EXISTS chain_transactions
(
    chain_id                 UInt64,
    block_number             UInt64,
    block_hash               String,
    block_timestamp          DateTime('UTC'),
    tx_index                 UInt32,
    hash                     String,
    sender                   String,
    recipient                Nullable(String),
    value                    UInt256,
    nonce                    UInt64,
    gas                      UInt64,
    gas_price                Nullable(UInt256),
    max_fee_per_gas          Nullable(UInt256),
    max_priority_fee_per_gas Nullable(UInt256),
    tx_type                  UInt16,
    input                    String,
    status                   Nullable(UInt8),
    gas_used                 Nullable(UInt64),
    effective_gas_price      Nullable(UInt256),
    contract_address         Nullable(String),
    version                  UInt64,
    is_deleted               UInt8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(block_timestamp)
ORDER BY (chain_id, block_number, block_hash, tx_index);

CREATE TABLE IF NOT EXISTS chain_logs
(
    chain_id        UInt64,
    block_number    UInt64,
    block_hash      String,
    block_timestamp DateTime('UTC'),
    log_index       UInt32,
    tx_hash         String,
    tx_index        UInt32,
    address         String,
    topic0          Nullable(String),
    topic1          Nullable(String),
    topic2          Nullable(String),
    topic3          Nullable(String),
    data            String,
    version         UInt64,
    is_deleted      UInt8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(block_timestamp)
ORDER BY (chain_id, block_number, block_hash, log_index);

CREATE TABLE IF NOT EXISTS chain_token_transfers
(
    chain_id        UInt64,
    block_number    UInt64,
    block_hash      String,
    block_timestamp DateTime('UTC'),
    log_index       UInt32,
    batch_index     UInt32,
    tx_hash         String,
    standard        LowCardinality(String),
    token           String,
    sender          String,
    recipient       String,
    token_id        Nullable(UInt256),
    amount          UInt256,
    operator        Nullable(String),
    version         UInt64,
    is_deleted      UInt8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(block_timestamp)
ORDER BY (chain_id, block_number, block_hash, log_index, batch_index);

-- Net balance change per (address, asset) per block (ludex.indexer.balances): token is
-- 'native' or the token contract, token_id the ERC-721 / ERC-1155 id as decimal text or
-- '' for fungible assets (as idx_balance_changes), delta signed and never 0.
CREATE TABLE IF NOT EXISTS chain_balance_changes
(
    chain_id        UInt64,
    block_number    UInt64,
    block_hash      String,
    block_timestamp DateTime('UTC'),
    address         String,
    token           String,
    token_id        String,
    delta           Int256,
    version         UInt64,
    is_deleted      UInt8
)
ENGINE = ReplacingMergeTree(version, is_deleted)
PARTITION BY toYYYYMM(block_timestamp)
ORDER BY (chain_id, block_number, block_hash, address, token, token_id);
