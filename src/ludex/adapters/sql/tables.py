"""Table definitions of the operational store (SQLAlchemy Core ``MetaData``).

This is the schema the Alembic migrations in ``migrations/versions`` build; the
migrations, not ``metadata.create_all``, are what create it in a real database.
Constraint names follow :data:`NAMING_CONVENTION` so migrations can refer to them
by name on every backend.

Pure: declarations only; this module must never open a connection.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

from ludex.adapters.sql.types import Id, UTCDateTime, blob

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

EVENT_ID_LENGTH: Final = 26  # a ULID
TOPIC_LENGTH: Final = 128
EVENT_TYPE_LENGTH: Final = 128
PARTITION_KEY_LENGTH: Final = 255
CONSUMER_LENGTH: Final = 128

metadata = MetaData(naming_convention=NAMING_CONVENTION)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("event_id", CHAR(EVENT_ID_LENGTH), nullable=False, unique=True),
    Column("topic", String(TOPIC_LENGTH), nullable=False),
    Column("event_type", String(EVENT_TYPE_LENGTH), nullable=False),
    Column("partition_key", String(PARTITION_KEY_LENGTH), nullable=False),
    Column("payload", blob(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("published_at", UTCDateTime(), nullable=True),
    Index(None, "published_at", "id"),
    sqlite_autoincrement=True,
)
"""Events committed with the state change that caused them; the relay publishes them."""

processed_events = Table(
    "processed_events",
    metadata,
    Column("consumer", String(CONSUMER_LENGTH), primary_key=True),
    Column("event_id", CHAR(EVENT_ID_LENGTH), primary_key=True),
    Column("processed_at", UTCDateTime(), nullable=False),
)
"""Which consumer already applied which event (consumer-side deduplication)."""

# --- the double-entry ledger (revision 0002); rules in ludex.ledger.model ---------

LEDGER_ID_LENGTH: Final = 64
"""Account ids and transfer ids (client-supplied)."""
LEDGER_NAME_LENGTH: Final = 96
"""A ledger (currency unit): ``CHIPS`` or ``TOKEN:<chain_id>:<0xaddress>``."""
LEDGER_CODE_LENGTH: Final = 32
LEDGER_KIND_LENGTH: Final = 32
LEDGER_STATE_LENGTH: Final = 24


def _ascii_key(length: int) -> TypeEngine[str]:
    """An identifier column: binary comparison everywhere (MySQL's default is not)."""
    return String(length).with_variant(
        mysql.VARCHAR(length, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
    )


ledger_accounts = Table(
    "ledger_accounts",
    metadata,
    Column("id", _ascii_key(LEDGER_ID_LENGTH), primary_key=True),
    Column("ledger", _ascii_key(LEDGER_NAME_LENGTH), nullable=False, index=True),
    Column("kind", String(LEDGER_KIND_LENGTH), nullable=False),
    Column("allow_negative", Boolean(), nullable=False),
    Column("track_balance", Boolean(), nullable=False),
    Column("posted_debits", BigInteger(), nullable=False),
    Column("posted_credits", BigInteger(), nullable=False),
    Column("pending_debits", BigInteger(), nullable=False),
    Column("pending_credits", BigInteger(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)
"""One row per ledger account: its spec and four balance counters (changed only under
the row lock, in the transaction that inserts the transfer that moves them). An
account with ``track_balance`` false keeps its counters at zero and is never locked;
its balance is summed from ``ledger_transfers`` on read."""

ledger_transfers = Table(
    "ledger_transfers",
    metadata,
    Column("seq", Id, primary_key=True, autoincrement=True),
    Column("id", _ascii_key(LEDGER_ID_LENGTH), nullable=False, unique=True),
    Column("debit", _ascii_key(LEDGER_ID_LENGTH), ForeignKey("ledger_accounts.id"), nullable=False),
    Column(
        "credit", _ascii_key(LEDGER_ID_LENGTH), ForeignKey("ledger_accounts.id"), nullable=False
    ),
    Column("amount", BigInteger(), nullable=False),
    Column("ledger", _ascii_key(LEDGER_NAME_LENGTH), nullable=False),
    Column("code", String(LEDGER_CODE_LENGTH), nullable=False),
    Column("metadata", Text(), nullable=False),
    Column("pending", Boolean(), nullable=False),
    Column("timeout_s", Integer(), nullable=True),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("pending_id", _ascii_key(LEDGER_ID_LENGTH), nullable=True),
    Column("batch", _ascii_key(LEDGER_ID_LENGTH), nullable=True),
    Column("state", String(LEDGER_STATE_LENGTH), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index(None, "debit", "seq"),
    Index(None, "credit", "seq"),
    Index(None, "ledger", "seq"),
    Index(None, "state", "expires_at"),
    # Covering indexes for the balances of untracked accounts (sums by state).
    Index(None, "debit", "state", "amount"),
    Index(None, "credit", "state", "amount"),
    sqlite_autoincrement=True,
)
"""Immutable transfers in commit-serial order (``seq``); only a pending transfer's
``state`` ever changes, and that change is itself recorded as a new transfer."""

# --- wagering: the provider seamless wallet (revision 0003); see ludex.wagering -----

WAGER_ID_LENGTH: Final = 64
"""Provider, player, game, round and transaction ids."""

players = Table(
    "players",
    metadata,
    Column("id", _ascii_key(WAGER_ID_LENGTH), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)
"""Players the wallet knows (``active`` or ``blocked``); money lives in the ledger."""

providers = Table(
    "providers",
    metadata,
    Column("id", _ascii_key(WAGER_ID_LENGTH), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("secret", blob(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)
"""Game providers; ``secret`` is the HMAC secret, AES-GCM encrypted (nonce + ciphertext)."""

provider_transactions = Table(
    "provider_transactions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("provider_id", _ascii_key(WAGER_ID_LENGTH), nullable=False),
    Column("transaction_id", _ascii_key(WAGER_ID_LENGTH), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("player_id", _ascii_key(WAGER_ID_LENGTH), nullable=False),
    Column("game_id", _ascii_key(WAGER_ID_LENGTH), nullable=True),
    Column("round_id", _ascii_key(WAGER_ID_LENGTH), nullable=True),
    Column("amount", BigInteger(), nullable=False),
    Column("currency", String(16), nullable=False),
    Column("request_hash", CHAR(64), nullable=True),
    Column("status", String(32), nullable=False),
    Column("response", blob(), nullable=True),
    Column("transfer_id", _ascii_key(LEDGER_ID_LENGTH), nullable=True),
    Column("ref_transaction_id", _ascii_key(WAGER_ID_LENGTH), nullable=True),
    Column("rolled_back_by", _ascii_key(WAGER_ID_LENGTH), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("provider_id", "transaction_id"),
    Index(None, "player_id", "created_at"),
    sqlite_autoincrement=True,
)
"""One row per accepted provider transaction id (bet, win, rollback) and per rollback
tombstone: the idempotency record (request hash + first response)."""

provider_rounds = Table(
    "provider_rounds",
    metadata,
    Column("provider_id", _ascii_key(WAGER_ID_LENGTH), primary_key=True),
    Column("round_id", _ascii_key(WAGER_ID_LENGTH), primary_key=True),
    Column("player_id", _ascii_key(WAGER_ID_LENGTH), nullable=False),
    Column("game_id", _ascii_key(WAGER_ID_LENGTH), nullable=False),
    Column("status", String(16), nullable=False),
    Column("open_stakes", BigInteger(), nullable=False),
    Column("open_bets", Integer(), nullable=False),
    Column("total_bet", BigInteger(), nullable=False),
    Column("total_win", BigInteger(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index(None, "provider_id", "status"),
)
"""Game rounds: ``open`` → ``closed`` (settled by a win) or ``rolled_back`` (every bet
reversed); ``open_stakes`` are the bets not rolled back."""

risk_limits = Table(
    "risk_limits",
    metadata,
    Column("scope", String(16), primary_key=True),
    Column("key", _ascii_key(WAGER_ID_LENGTH), primary_key=True),
    Column("name", String(32), primary_key=True),
    Column("value", BigInteger(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)
"""Risk limits as data (ludex.wagering.limits)."""

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("old_value", Text(), nullable=True),
    Column("new_value", Text(), nullable=True),
    Index(None, "subject", "at"),
    sqlite_autoincrement=True,
)
"""Who changed what, when (limits, players, providers): old and new values as JSON."""

provider_requests = Table(
    "provider_requests",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("provider_id", String(WAGER_ID_LENGTH), nullable=True),
    Column("endpoint", String(32), nullable=False),
    Column("headers", Text(), nullable=False),
    Column("body", blob(), nullable=False),
    Column("http_status", Integer(), nullable=False),
    Column("status", String(32), nullable=False),
    Column("response", blob(), nullable=False),
    Column("duration_ms", Double(), nullable=False),
    Index(None, "received_at"),
    sqlite_autoincrement=True,
)
"""Every provider request and response, raw, with timing, rejected ones included."""

# --- settlement: the operator's transactions and settled hands (revision 0004) -------
# (owned by ludex.chain.txmanager and ludex.services.settlement)

chain_nonces = Table(
    "chain_nonces",
    metadata,
    Column("chain_id", BigInteger(), primary_key=True),
    Column("address", _ascii_key(42), primary_key=True),
    Column("next_nonce", BigInteger(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)
"""The next nonce of each sending account per chain: survives restarts."""

HASH_LENGTH: Final = 66
"""A 0x-prefixed 32-byte hash (transaction, block, hand record)."""

chain_transactions = Table(
    "chain_transactions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("chain_id", BigInteger(), nullable=False),
    Column("sender", _ascii_key(42), nullable=False),
    Column("nonce", BigInteger(), nullable=False),
    Column("purpose", _ascii_key(128), nullable=False),
    Column("to_address", _ascii_key(42), nullable=True),
    Column("data", blob(), nullable=False),
    Column("value", _ascii_key(80), nullable=False),
    Column("gas", BigInteger(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("tx_hash", _ascii_key(HASH_LENGTH), nullable=True),
    Column("block_number", BigInteger(), nullable=True),
    Column("block_hash", _ascii_key(HASH_LENGTH), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("chain_id", "sender", "nonce"),
    Index(None, "chain_id", "sender", "status"),
    Index(None, "purpose"),
    sqlite_autoincrement=True,
)
"""One row per nonce the operator used: what was sent (to, data, value as a decimal, gas)
and where it stands (``ludex.chain.txmanager``); a nonce is never used for two rows."""

chain_tx_attempts = Table(
    "chain_tx_attempts",
    metadata,
    Column("tx_hash", _ascii_key(HASH_LENGTH), primary_key=True),
    Column("transaction_id", Id, ForeignKey("chain_transactions.id"), nullable=False),
    Column("max_fee", BigInteger(), nullable=False),
    Column("priority_fee", BigInteger(), nullable=False),
    Column("raw", blob(), nullable=False),
    Column("sent_at", UTCDateTime(), nullable=True),
    Column("sent_block", BigInteger(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Index(None, "transaction_id"),
)
"""Every signed version of a transaction (the first and its fee-bumped replacements),
recorded before it is broadcast; ``sent_at`` is the last time a node accepted it."""

settlement_batches = Table(
    "settlement_batches",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("chain_id", BigInteger(), nullable=False),
    Column("contract", _ascii_key(42), nullable=False),
    Column("status", String(16), nullable=False),
    Column("hand_count", Integer(), nullable=False),
    Column("signature", blob(), nullable=True),
    Column("transaction_id", Id, ForeignKey("chain_transactions.id"), nullable=True),
    Column("tx_hash", _ascii_key(HASH_LENGTH), nullable=True),
    Column("block_number", BigInteger(), nullable=True),
    Column("created_block", BigInteger(), nullable=False),
    Column("reason", Text(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index(None, "chain_id", "contract", "status"),
    Index(None, "transaction_id"),
    sqlite_autoincrement=True,
)
"""Settlement batches; ``id`` is the on-chain ``batchId``. Status: ``new`` → ``signed`` →
``sending`` → ``submitted`` → ``confirmed``, or ``failed``."""

settlement_tables = Table(
    "settlement_tables",
    metadata,
    Column("chain_id", BigInteger(), primary_key=True),
    Column("contract", _ascii_key(42), primary_key=True),
    Column("table_key", _ascii_key(128), primary_key=True),
    Column("chain_table_id", BigInteger(), nullable=False),
    Column("last_hand", BigInteger(), nullable=False),
    Column("last_record", _ascii_key(HASH_LENGTH), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("chain_id", "contract", "chain_table_id"),
)
"""Poker table id → the contract's uint64 table id, and the last hand numbered there
(its number and record: the next hand's ``previousRecord``). Status ``open`` or
``halted`` (a hand of the table cannot be settled; later hands are refused)."""

settlement_hands = Table(
    "settlement_hands",
    metadata,
    Column("seq", Id, primary_key=True, autoincrement=True),
    Column("hand_id", _ascii_key(128), nullable=False, unique=True),
    Column("event_id", CHAR(EVENT_ID_LENGTH), nullable=False),
    Column("chain_id", BigInteger(), nullable=False),
    Column("contract", _ascii_key(42), nullable=False),
    Column("table_key", String(255), nullable=False),
    Column("chain_table_id", BigInteger(), nullable=True),
    Column("hand_number", BigInteger(), nullable=True),
    Column("hand", Text(), nullable=True),
    Column("record", _ascii_key(HASH_LENGTH), nullable=True),
    Column("batch_id", Id, ForeignKey("settlement_batches.id"), nullable=True),
    Column("status", String(16), nullable=False),
    Column("reason", Text(), nullable=True),
    Column("mirrored_at", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # Named by hand: the convention's name is longer than PostgreSQL's 63 characters.
    UniqueConstraint(
        "chain_id", "contract", "chain_table_id", "hand_number", name="uq_settlement_hands_number"
    ),
    Index(None, "status", "seq"),
    Index(None, "batch_id"),
    sqlite_autoincrement=True,
)
"""Every completed hand the settlement service received, in arrival order (``seq``):
its on-chain form (``hand``: JSON of ``ludex.chain.settlement.Hand``) and record, and its
status: ``queued`` → ``batched`` → ``settled``, or ``refused`` (never numbered) or
``failed`` (its table halted). ``mirrored_at``: when its deltas and rake were mirrored
into ``chain_vault_balances`` and the ledger (at its batch's first confirmation; never
again, a re-confirmation after a reorg included)."""

# --- end of settlement tables -------------------------------------------------------

# --- vault: deposits and withdrawals seen on chain (revision 0005) --------------------
# (owned by ludex.services.deposit_watcher)

chain_cursors = Table(
    "chain_cursors",
    metadata,
    Column("chain_id", BigInteger(), primary_key=True),
    Column("name", _ascii_key(64), primary_key=True),
    Column("block_number", BigInteger(), nullable=False),
    Column("block_hash", _ascii_key(66), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)
"""How far a chain watcher has read (its last block and that block's hash). The
watcher locks its row first in every write transaction: one writer per contract."""

chain_checkpoints = Table(
    "chain_checkpoints",
    metadata,
    Column("chain_id", BigInteger(), primary_key=True),
    Column("name", _ascii_key(64), primary_key=True),
    Column("block_number", BigInteger(), primary_key=True),
    Column("block_hash", _ascii_key(66), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)
"""Recent cursor positions (block and hash): after a reorg the watcher walks back
through them to the newest one the node still agrees with. Pruned as it goes."""

AMOUNT_TEXT_LENGTH: Final = 80
"""A uint256 (78 digits) or a signed difference of two, as decimal text."""

chain_vault_events = Table(
    "chain_vault_events",
    metadata,
    Column("chain_id", BigInteger(), primary_key=True),
    Column("tx_hash", _ascii_key(66), primary_key=True),
    Column("log_index", BigInteger(), primary_key=True),
    Column("contract", _ascii_key(42), nullable=False),
    Column("block_number", BigInteger(), nullable=False),
    Column("block_hash", _ascii_key(66), nullable=False),
    Column("event", String(16), nullable=False),
    Column("player", _ascii_key(42), nullable=False),
    Column("token", _ascii_key(42), nullable=False),
    Column("amount", String(AMOUNT_TEXT_LENGTH), nullable=False),
    Column("ledger_amount", BigInteger(), nullable=True),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer(), nullable=False),
    Column("transfer_id", _ascii_key(LEDGER_ID_LENGTH), nullable=True),
    Column("detail", String(255), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index(None, "status", "block_number"),
    Index(None, "contract", "token"),
)
"""Every Deposited / Withdrawn / Locked / Released log of the vault, once per (chain id,
tx hash, log index): ``pending`` → ``applied`` (mirrored in the ledger), ``reverted``
(reorged away before confirmation) or ``rejected`` (the ledger refused it). ``amount``
is the exact on-chain amount; ``ledger_amount`` the ledger units it moved (a pending
deposit: the units reserved); ``attempt`` counts sightings on different branches."""

chain_vault_balances = Table(
    "chain_vault_balances",
    metadata,
    Column("chain_id", BigInteger(), primary_key=True),
    Column("contract", _ascii_key(42), primary_key=True),
    Column("token", _ascii_key(42), primary_key=True),
    Column("player", _ascii_key(42), primary_key=True),
    Column("available", String(AMOUNT_TEXT_LENGTH), nullable=False),
    Column("locked", String(AMOUNT_TEXT_LENGTH), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)
"""The exact on-chain amounts (base units, decimal text) behind each mirrored player
and token, from the applied events; the ledger shows their floor in ledger units."""

# --- end of vault tables ------------------------------------------------------------

# --- indexer: blocks, transactions, logs, token transfers (revision 0006) ----------
# (owned by ludex.indexer.store; every row carries its chain id)

ADDRESS_LENGTH: Final = 42
QUANTITY_TEXT_LENGTH: Final = 80
"""A uint256 as decimal text (78 digits at most)."""

idx_blocks = Table(
    "idx_blocks",
    metadata,
    Column("chain_id", BigInteger(), primary_key=True),
    Column("number", BigInteger(), primary_key=True),
    Column("hash", _ascii_key(HASH_LENGTH), nullable=False),
    Column("parent_hash", _ascii_key(HASH_LENGTH), nullable=False),
    Column("timestamp", BigInteger(), nullable=False),
    Column("miner", _ascii_key(ADDRESS_LENGTH), nullable=False),
    Column("gas_used", BigInteger(), nullable=False),
    Column("gas_limit", BigInteger(), nullable=False),
    Column("base_fee", String(QUANTITY_TEXT_LENGTH), nullable=True),
    Column("tx_count", Integer(), nullable=False),
    UniqueConstraint("chain_id", "hash"),
)
"""One row per indexed block of the canonical chain (orphaned blocks are deleted)."""

idx_transactions = Table(
    "idx_transactions",
    metadata,
    Column("chain_id", BigInteger(), primary_key=True),
    Column("hash", _ascii_key(HASH_LENGTH), primary_key=True),
    Column("block_number", BigInteger(), nullable=False),
    Column("block_hash", _ascii_key(HASH_LENGTH), nullable=False),
    Column("tx_index", Integer(), nullable=False),
    Column("sender", _ascii_key(ADDRESS_LENGTH), nullable=False),
    Column("recipient", _ascii_key(ADDRESS_LENGTH), nullable=True),
    Column("value", String(QUANTITY_TEXT_LENGTH), nullable=False),
    Column("nonce", BigInteger(), nullable=False),
    Column("gas", BigInteger(), nullable=False),
    Column("gas_price", String(QUANTITY_TEXT_LENGTH), nullable=True),
    Column("max_fee_per_gas", String(QUANTITY_TEXT_LENGTH), nullable=True),
    Column("max_priority_fee_per_gas", String(QUANTITY_TEXT_LENGTH), nullable=True),
    Column("tx_type", Integer(), nullable=False),
    Column("input", blob(), nullable=False),
    Column("status", Integer(), nullable=True),
    Column("gas_used", BigInteger(), nullable=True),
    Column("effective_gas_price", String(QUANTITY_TEXT_LENGTH), nullable=True),
    Column("contract_address", _ascii_key(ADDRESS_LENGTH), nullable=True),
    Index(None, "chain_id", "block_number"),
    Index(None, "chain_id", "sender", "nonce"),  # revision 0008, for the mempool
)
"""Transactions with their receipt (status, gas used, price paid, contract created)."""

idx_logs = Table(
    "idx_logs",
    metadata,
    Column("chain_id", BigInteger(), primary_key=True),
    Column("block_number", BigInteger(), primary_key=True),
    Column("log_index", Integer(), primary_key=True),
    Column("block_hash", _ascii_key(HASH_LENGTH), nullable=False),
    Column("tx_hash", _ascii_key(HASH_LENGTH), nullable=False),
    Column("tx_index", Integer(), nullable=False),
    Column("address", _ascii_key(ADDRESS_LENGTH), nullable=False),
    Column("topic0", _ascii_key(HASH_LENGTH), nullable=True),
    Column("topic1", _ascii_key(HASH_LENGTH), nullable=True),
    Column("topic2", _ascii_key(HASH_LENGTH), nullable=True),
    Column("topic3", _ascii_key(HASH_LENGTH), nullable=True),
    Column("data", blob(), nullable=False),
    Index(None, "chain_id", "address", "block_number"),
)
"""Every log of every indexed block, topics split into columns for filtering."""

idx_token_transfers = Table(
    "idx_token_transfers",
    metadata,
    Column("chain_id", BigInteger(), primary_key=True),
    Column("block_number", BigInteger(), primary_key=True),
    Column("log_index", Integer(), primary_key=True),
    Column("batch_index", Integer(), primary_key=True),
    Column("block_hash", _ascii_key(HASH_LENGTH), nullable=False),
    Column("tx_hash", _ascii_key(HASH_LENGTH), nullable=False),
    Column("standard", String(16), nullable=False),
    Column("token", _ascii_key(ADDRESS_LENGTH), nullable=False),
    Column("sender", _ascii_key(ADDRESS_LENGTH), nullable=False),
    Column("recipient", _ascii_key(ADDRESS_LENGTH), nullable=False),
    Column("token_id", String(QUANTITY_TEXT_LENGTH), nullable=True),
    Column("amount", String(QUANTITY_TEXT_LENGTH), nullable=False),
    Column("operator", _ascii_key(ADDRESS_LENGTH), nullable=True),
    Index(None, "chain_id", "token", "block_number"),
    Index(None, "chain_id", "sender"),
    Index(None, "chain_id", "recipient"),
)
"""ERC-20 / ERC-721 / ERC-1155 transfers; an ERC-1155 batch gives one row per id."""

idx_contracts = Table(
    "idx_contracts",
    metadata,
    Column("chain_id", BigInteger(), primary_key=True),
    Column("address", _ascii_key(ADDRESS_LENGTH), primary_key=True),
    Column("block_number", BigInteger(), nullable=False),
    Column("block_hash", _ascii_key(HASH_LENGTH), nullable=False),
    Column("tx_hash", _ascii_key(HASH_LENGTH), nullable=False),
    Column("creator", _ascii_key(ADDRESS_LENGTH), nullable=False),
    Column("via", String(16), nullable=False),
    Index(None, "chain_id", "block_number"),
)
"""Contracts created (``via`` = ``receipt`` or ``trace``)."""

idx_checkpoints = Table(
    "idx_checkpoints",
    metadata,
    Column("chain_id", BigInteger(), primary_key=True),
    Column("name", _ascii_key(64), primary_key=True),
    Column("block_number", BigInteger(), nullable=False),
    Column("block_hash", _ascii_key(HASH_LENGTH), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)
"""The last block an indexer (by name) stored, written in the same transaction as it."""

# --- end of indexer tables ----------------------------------------------------------

# --- token metadata: name, symbol, decimals by eth_call (revision 0007) -------------
# (owned by ludex.indexer.token_metadata and ludex.indexer.store)

TOKEN_NAME_LENGTH: Final = 256
TOKEN_SYMBOL_LENGTH: Final = 128

idx_tokens = Table(
    "idx_tokens",
    metadata,
    Column("chain_id", BigInteger(), primary_key=True),
    Column("address", _ascii_key(ADDRESS_LENGTH), primary_key=True),
    Column("standard", String(16), nullable=False),
    Column("name", String(TOKEN_NAME_LENGTH), nullable=True),
    Column("symbol", String(TOKEN_SYMBOL_LENGTH), nullable=True),
    Column("decimals", Integer(), nullable=True),
    Column("first_block", BigInteger(), nullable=False),
    Index(None, "chain_id", "first_block"),
)
"""Every token seen in a transfer; a field the token did not answer is NULL. Deleted on
a reorg when ``first_block`` is orphaned (read again when seen again)."""

# --- end of token metadata tables ---------------------------------------------------

# --- balance changes and the mempool (revision 0008) --------------------------------
# (idx_balance_changes owned by ludex.indexer.balances and ludex.indexer.store;
#  idx_pending_transactions owned by ludex.indexer.mempool)

NATIVE_TOKEN: Final = "native"  # noqa: S105 (a token name, not a password)
"""``idx_balance_changes.token`` for the chain's own currency (ether), not a contract."""

idx_balance_changes = Table(
    "idx_balance_changes",
    metadata,
    Column("chain_id", BigInteger(), primary_key=True),
    Column("block_number", BigInteger(), primary_key=True),
    Column("address", _ascii_key(ADDRESS_LENGTH), primary_key=True),
    Column("token", _ascii_key(ADDRESS_LENGTH), primary_key=True),
    Column("token_id", _ascii_key(QUANTITY_TEXT_LENGTH), primary_key=True),
    Column("block_hash", _ascii_key(HASH_LENGTH), nullable=False),
    Column("delta", String(QUANTITY_TEXT_LENGTH), nullable=False),
    Index(None, "chain_id", "address", "block_number"),
)
"""The net change of one address's balance of one asset in one block (signed decimal
text; never zero): ``token`` is ``native`` or the token contract, ``token_id`` the
ERC-721 / ERC-1155 id as decimal text or '' for fungible assets."""

PENDING_STATUSES: Final = ("pending", "included", "replaced", "dropped")

idx_pending_transactions = Table(
    "idx_pending_transactions",
    metadata,
    Column("chain_id", BigInteger(), primary_key=True),
    Column("hash", _ascii_key(HASH_LENGTH), primary_key=True),
    Column("sender", _ascii_key(ADDRESS_LENGTH), nullable=False),
    Column("nonce", BigInteger(), nullable=False),
    Column("recipient", _ascii_key(ADDRESS_LENGTH), nullable=True),
    Column("value", String(QUANTITY_TEXT_LENGTH), nullable=False),
    Column("gas", BigInteger(), nullable=False),
    Column("gas_price", String(QUANTITY_TEXT_LENGTH), nullable=True),
    Column("max_fee_per_gas", String(QUANTITY_TEXT_LENGTH), nullable=True),
    Column("max_priority_fee_per_gas", String(QUANTITY_TEXT_LENGTH), nullable=True),
    Column("tx_type", Integer(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("first_seen", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("block_number", BigInteger(), nullable=True),
    Column("replaced_by", _ascii_key(HASH_LENGTH), nullable=True),
    Index(None, "chain_id", "status"),
    Index(None, "chain_id", "sender", "nonce"),
    Index(None, "chain_id", "block_number"),
)
"""Transactions seen in the mempool and their fate (``PENDING_STATUSES``): ``included``
in ``block_number``, ``replaced`` by another transaction of the same sender and nonce
(``replaced_by``, when known), or ``dropped`` from the pool without being included."""

# --- end of balance changes and mempool tables --------------------------------------

# -- game server: tables, finished hands, effects carried out ---------------------------

TABLE_ID_LENGTH: Final = 32
EFFECT_ID_LENGTH: Final = 80

poker_tables = Table(
    "poker_tables",
    metadata,
    Column("table_id", _ascii_key(TABLE_ID_LENGTH), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("config", Text(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Index(None, "status", "table_id"),
)
"""The tables the game server runs: their fixed settings (``TableConfig`` as JSON) and
whether they are ``open`` (owned and dealt) or ``closed``."""

poker_hands = Table(
    "poker_hands",
    metadata,
    Column("hand_id", _ascii_key(EVENT_ID_LENGTH), primary_key=True),
    Column("table_id", _ascii_key(TABLE_ID_LENGTH), nullable=False),
    Column("number", BigInteger(), nullable=False),
    Column("record", Text(), nullable=False),
    Column("history_phh", Text(), nullable=False),
    Column("deltas", Text(), nullable=False),
    Column("rake", BigInteger(), nullable=False),
    Column("completed_at", UTCDateTime(), nullable=False),
    UniqueConstraint("table_id", "number"),
)
"""Every finished hand: its sealed record (hash-chained per table), its PHH history, the
players' chip deltas (JSON) and the rake."""

gameserver_effects = Table(
    "gameserver_effects",
    metadata,
    Column("effect_id", _ascii_key(EFFECT_ID_LENGTH), primary_key=True),
    Column("table_id", _ascii_key(TABLE_ID_LENGTH), nullable=False),
    Column("outcome", String(200), nullable=False),
    Column("done_at", UTCDateTime(), nullable=False),
    Index(None, "done_at"),
)
"""Which of a table's effects (buy-ins, cash-outs, events, finished hands) were carried
out, and how (``ok`` or why a buy-in was refused): an owner that took a table over
after a crash repeats none of them."""
