"""The indexer's balance changes per address (native and token, per block) and the
mempool (pending transactions and what became of them, with an index to find the
transaction that replaced another by sender and nonce).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from ludex.adapters.sql.types import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HASH = 66
ADDRESS = 42
QUANTITY_TEXT = 80


def _key(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
    )


def upgrade() -> None:
    op.create_index(  # the mempool finds the transaction that replaced another by these
        "ix_idx_transactions_chain_id_sender_nonce",
        "idx_transactions",
        ["chain_id", "sender", "nonce"],
    )
    op.create_table(
        "idx_balance_changes",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("address", _key(ADDRESS), nullable=False),
        sa.Column("token", _key(ADDRESS), nullable=False),
        sa.Column("token_id", _key(QUANTITY_TEXT), nullable=False),
        sa.Column("block_hash", _key(HASH), nullable=False),
        sa.Column("delta", sa.String(QUANTITY_TEXT), nullable=False),
        sa.PrimaryKeyConstraint(
            "chain_id",
            "block_number",
            "address",
            "token",
            "token_id",
            name="pk_idx_balance_changes",
        ),
        mysql_charset="utf8mb4",
    )
    op.create_index(
        "ix_idx_balance_changes_chain_id_address_block_number",
        "idx_balance_changes",
        ["chain_id", "address", "block_number"],
    )
    op.create_table(
        "idx_pending_transactions",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("hash", _key(HASH), nullable=False),
        sa.Column("sender", _key(ADDRESS), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("recipient", _key(ADDRESS), nullable=True),
        sa.Column("value", sa.String(QUANTITY_TEXT), nullable=False),
        sa.Column("gas", sa.BigInteger(), nullable=False),
        sa.Column("gas_price", sa.String(QUANTITY_TEXT), nullable=True),
        sa.Column("max_fee_per_gas", sa.String(QUANTITY_TEXT), nullable=True),
        sa.Column("max_priority_fee_per_gas", sa.String(QUANTITY_TEXT), nullable=True),
        sa.Column("tx_type", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("replaced_by", _key(HASH), nullable=True),
        sa.PrimaryKeyConstraint("chain_id", "hash", name="pk_idx_pending_transactions"),
        mysql_charset="utf8mb4",
    )
    op.create_index(
        "ix_idx_pending_transactions_chain_id_status",
        "idx_pending_transactions",
        ["chain_id", "status"],
    )
    op.create_index(
        "ix_idx_pending_transactions_chain_id_sender_nonce",
        "idx_pending_transactions",
        ["chain_id", "sender", "nonce"],
    )
    op.create_index(
        "ix_idx_pending_transactions_chain_id_block_number",
        "idx_pending_transactions",
        ["chain_id", "block_number"],
    )


def downgrade() -> None:
    for name in ("status", "sender_nonce", "block_number"):
        op.drop_index(
            f"ix_idx_pending_transactions_chain_id_{name}", table_name="idx_pending_transactions"
        )
    op.drop_table("idx_pending_transactions")
    op.drop_index(
        "ix_idx_balance_changes_chain_id_address_block_number", table_name="idx_balance_changes"
    )
    op.drop_table("idx_balance_changes")
    op.drop_index("ix_idx_transactions_chain_id_sender_nonce", table_name="idx_transactions")
