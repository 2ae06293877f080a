"""Deposits and withdrawals: the vault watcher's cursor, checkpoints, events and the
exact on-chain amounts behind the ledger mirror (ludex.services.deposit_watcher).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from ludex.adapters.sql.types import UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AMOUNT_TEXT_LENGTH = 80


def _key(length: int = 64) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
    )


def upgrade() -> None:
    op.create_table(
        "chain_cursors",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("name", _key(64), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", _key(66), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "name", name="pk_chain_cursors"),
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "chain_checkpoints",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("name", _key(64), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", _key(66), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "name", "block_number", name="pk_chain_checkpoints"),
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "chain_vault_events",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("tx_hash", _key(66), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=False),
        sa.Column("contract", _key(42), nullable=False),
        sa.Column("block_number", sa.BigInteger(), nullable=False),
        sa.Column("block_hash", _key(66), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("player", _key(42), nullable=False),
        sa.Column("token", _key(42), nullable=False),
        sa.Column("amount", sa.String(AMOUNT_TEXT_LENGTH), nullable=False),
        sa.Column("ledger_amount", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("transfer_id", _key(64), nullable=True),
        sa.Column("detail", sa.String(255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "tx_hash", "log_index", name="pk_chain_vault_events"),
        mysql_charset="utf8mb4",
    )
    op.create_index(
        "ix_chain_vault_events_status_block_number",
        "chain_vault_events",
        ["status", "block_number"],
    )
    op.create_index(
        "ix_chain_vault_events_contract_token", "chain_vault_events", ["contract", "token"]
    )
    op.create_table(
        "chain_vault_balances",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("contract", _key(42), nullable=False),
        sa.Column("token", _key(42), nullable=False),
        sa.Column("player", _key(42), nullable=False),
        sa.Column("available", sa.String(AMOUNT_TEXT_LENGTH), nullable=False),
        sa.Column("locked", sa.String(AMOUNT_TEXT_LENGTH), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "chain_id", "contract", "token", "player", name="pk_chain_vault_balances"
        ),
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    op.drop_table("chain_vault_balances")
    op.drop_index("ix_chain_vault_events_contract_token", table_name="chain_vault_events")
    op.drop_index("ix_chain_vault_events_status_block_number", table_name="chain_vault_events")
    op.drop_table("chain_vault_events")
    op.drop_table("chain_checkpoints")
    op.drop_table("chain_cursors")
