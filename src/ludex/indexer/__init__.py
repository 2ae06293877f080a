"""The chain indexer: blocks, transactions, receipts, logs and token transfers into the
stores and the bus, reorg-safe (docs/indexer.md)."""
