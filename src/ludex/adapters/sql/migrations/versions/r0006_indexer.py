"""The chain indexer: blocks, transactions (with their receipts), logs, token transfers,
contracts created and the indexer checkpoints (ludex.indexer.store).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from ludex.adapters.sql.types import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HASH = 66
ADDRESS = 42
QUANTITY_TEXT = 80


def _key(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
    )


def _blob() -> sa.types.TypeEngine[bytes]:
    return sa.LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "idx_blocks",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("hash", _key(HASH), nullable=False),
        sa.Column("parent_hash", _key(HASH), nullable=False),
        sa.Column("timestamp", sa.BigInteger(), nullable=False),
        sa.Column("miner", _key(ADDRESS), nullable=False),
        sa.Column("gas_used", sa.BigInteger(), nullable=False),
        sa.Column("gas_limit", sa.BigInteger(), nullable=False),
        sa.Column("base_fee", sa.String(QUANTITY_TEXT), nullable=True),
        sa.Column("tx_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "number", name="pk_idx_blocks"),
        sa.UniqueConstraint("chain_id", "hash", name="uq_idx_blocks_chain_id_hash"),
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "idx_transactions",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("hash", _key(HASH), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", _key(HASH), nullable=False),
        sa.Column("tx_index", sa.Integer(), nullable=False),
        sa.Column("sender", _key(ADDRESS), nullable=False),
        sa.Column("recipient", _key(ADDRESS), nullable=True),
        sa.Column("value", sa.String(QUANTITY_TEXT), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("gas", sa.BigInteger(), nullable=False),
        sa.Column("gas_price", sa.String(QUANTITY_TEXT), nullable=True),
        sa.Column("max_fee_per_gas", sa.String(QUANTITY_TEXT), nullable=True),
        sa.Column("max_priority_fee_per_gas", sa.String(QUANTITY_TEXT), nullable=True),
        sa.Column("tx_type", sa.Integer(), nullable=False),
        sa.Column("input", _blob(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("gas_used", sa.BigInteger(), nullable=True),
        sa.Column("effective_gas_price", sa.String(QUANTITY_TEXT), nullable=True),
        sa.Column("contract_address", _key(ADDRESS), nullable=True),
        sa.PrimaryKeyConstraint("chain_id", "hash", name="pk_idx_transactions"),
        mysql_charset="utf8mb4",
    )
    op.create_index(
        "ix_idx_transactions_chain_id_block_number",
        "idx_transactions",
        ["chain_id", "block_number"],
    )
    op.create_table(
        "idx_logs",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("block_hash", _key(HASH), nullable=False),
        sa.Column("tx_hash", _key(HASH), nullable=False),
        sa.Column("tx_index", sa.Integer(), nullable=False),
        sa.Column("address", _key(ADDRESS), nullable=False),
        sa.Column("topic0", _key(HASH), nullable=True),
        sa.Column("topic1", _key(HASH), nullable=True),
        sa.Column("topic2", _key(HASH), nullable=True),
        sa.Column("topic3", _key(HASH), nullable=True),
        sa.Column("data", _blob(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "block_number", "log_index", name="pk_idx_logs"),
        mysql_charset="utf8mb4",
    )
    op.create_index(
        "ix_idx_logs_chain_id_address_block_number",
        "idx_logs",
        ["chain_id", "address", "block_number"],
    )
    op.create_table(
        "idx_token_transfers",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("log_index", sa.Integer(), nullable=False),
        sa.Column("batch_index", sa.Integer(), nullable=False),
        sa.Column("block_hash", _key(HASH), nullable=False),
        sa.Column("tx_hash", _key(HASH), nullable=False),
        sa.Column("standard", sa.String(16), nullable=False),
        sa.Column("token", _key(ADDRESS), nullable=False),
        sa.Column("sender", _key(ADDRESS), nullable=False),
        sa.Column("recipient", _key(ADDRESS), nullable=False),
        sa.Column("token_id", sa.String(QUANTITY_TEXT), nullable=True),
        sa.Column("amount", sa.String(QUANTITY_TEXT), nullable=False),
        sa.Column("operator", _key(ADDRESS), nullable=True),
        sa.PrimaryKeyConstraint(
            "chain_id", "block_number", "log_index", "batch_index", name="pk_idx_token_transfers"
        ),
        mysql_charset="utf8mb4",
    )
    op.create_index(
        "ix_idx_token_transfers_chain_id_token_block_number",
        "idx_token_transfers",
        ["chain_id", "token", "block_number"],
    )
    op.create_index(
        "ix_idx_token_transfers_chain_id_sender", "idx_token_transfers", ["chain_id", "sender"]
    )
    op.create_index(
        "ix_idx_token_transfers_chain_id_recipient",
        "idx_token_transfers",
        ["chain_id", "recipient"],
    )
    op.create_table(
        "idx_contracts",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("address", _key(ADDRESS), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", _key(HASH), nullable=False),
        sa.Column("tx_hash", _key(HASH), nullable=False),
        sa.Column("creator", _key(ADDRESS), nullable=False),
        sa.Column("via", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "address", name="pk_idx_contracts"),
        mysql_charset="utf8mb4",
    )
    op.create_index(
        "ix_idx_contracts_chain_id_block_number", "idx_contracts", ["chain_id", "block_number"]
    )
    op.create_table(
        "idx_checkpoints",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("name", _key(64), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", _key(HASH), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "name", name="pk_idx_checkpoints"),
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    op.drop_table("idx_checkpoints")
    op.drop_index("ix_idx_contracts_chain_id_block_number", table_name="idx_contracts")
    op.drop_table("idx_contracts")
    for name in (
        "ix_idx_token_transfers_chain_id_recipient",
        "ix_idx_token_transfers_chain_id_sender",
        "ix_idx_token_transfers_chain_id_token_block_number",
    ):
        op.drop_index(name, table_name="idx_token_transfers")
    op.drop_table("idx_token_transfers")
    op.drop_index("ix_idx_logs_chain_id_address_block_number", table_name="idx_logs")
    op.drop_table("idx_logs")
    op.drop_index("ix_idx_transactions_chain_id_block_number", table_name="idx_transactions")
    op.drop_table("idx_transactions")
    op.drop_table("idx_blocks")
