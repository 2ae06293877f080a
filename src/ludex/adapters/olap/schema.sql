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
