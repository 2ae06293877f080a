"""On-chain settlement: the operator's nonces and transactions, settled hands and batches.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from ludex.adapters.sql.types import Id, UTCDateTime, blob

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HASH = 66


def _key(length: int = 64) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
    )


def upgrade() -> None:
    op.create_table(
        "chain_nonces",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("address", _key(42), nullable=False),
        sa.Column("next_nonce", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "address", name="pk_chain_nonces"),
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "chain_transactions",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("sender", _key(42), nullable=False),
        sa.Column("nonce", sa.BigInteger(), nullable=False),
        sa.Column("purpose", _key(128), nullable=False),
        sa.Column("to_address", _key(42), nullable=True),
        sa.Column("data", blob(), nullable=False),
        sa.Column("value", _key(80), nullable=False),
        sa.Column("gas", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("tx_hash", _key(HASH), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("block_hash", _key(HASH), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_chain_transactions"),
        sa.UniqueConstraint(
            "chain_id", "sender", "nonce", name="uq_chain_transactions_chain_id_sender_nonce"
        ),
        sqlite_autoincrement=True,
        mysql_charset="utf8mb4",
    )
    op.create_index(
        "ix_chain_transactions_chain_id_sender_status",
        "chain_transactions",
        ["chain_id", "sender", "status"],
    )
    op.create_index("ix_chain_transactions_purpose", "chain_transactions", ["purpose"])
    op.create_table(
        "chain_tx_attempts",
        sa.Column("tx_hash", _key(HASH), nullable=False),
        sa.Column("transaction_id", Id, nullable=False),
        sa.Column("max_fee", sa.BigInteger(), nullable=False),
        sa.Column("priority_fee", sa.BigInteger(), nullable=False),
        sa.Column("raw", blob(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.Column("sent_block", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tx_hash", name="pk_chain_tx_attempts"),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["chain_transactions.id"],
            name="fk_chain_tx_attempts_transaction_id_chain_transactions",
        ),
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_chain_tx_attempts_transaction_id", "chain_tx_attempts", ["transaction_id"])
    op.create_table(
        "settlement_batches",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("contract", _key(42), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("hand_count", sa.Integer(), nullable=False),
        sa.Column("signature", blob(), nullable=True),
        sa.Column("transaction_id", Id, nullable=True),
        sa.Column("tx_hash", _key(HASH), nullable=True),
        sa.Column("block_number", sa.BigInteger(), nullable=True),
        sa.Column("created_block", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_settlement_batches"),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["chain_transactions.id"],
            name="fk_settlement_batches_transaction_id_chain_transactions",
        ),
        sqlite_autoincrement=True,
        mysql_charset="utf8mb4",
    )
    op.create_index(
        "ix_settlement_batches_chain_id_contract_status",
        "settlement_batches",
        ["chain_id", "contract", "status"],
    )
    op.create_index(
        "ix_settlement_batches_transaction_id", "settlement_batches", ["transaction_id"]
    )
    op.create_table(
        "settlement_tables",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("contract", _key(42), nullable=False),
        sa.Column("table_key", _key(128), nullable=False),
        sa.Column("chain_table_id", sa.BigInteger(), nullable=False),
        sa.Column("last_hand", sa.BigInteger(), nullable=False),
        sa.Column("last_record", _key(HASH), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "contract", "table_key", name="pk_settlement_tables"),
        sa.UniqueConstraint(
            "chain_id",
            "contract",
            "chain_table_id",
            name="uq_settlement_tables_chain_id_contract_chain_table_id",
        ),
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "settlement_hands",
        sa.Column("seq", Id, autoincrement=True, nullable=False),
        sa.Column("hand_id", _key(128), nullable=False),
        sa.Column("event_id", sa.CHAR(26), nullable=False),
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("contract", _key(42), nullable=False),
        sa.Column("table_key", sa.String(255), nullable=False),
        sa.Column("chain_table_id", sa.BigInteger(), nullable=True),
        sa.Column("hand_number", sa.BigInteger(), nullable=True),
        sa.Column("hand", sa.Text(), nullable=True),
        sa.Column("record", _key(HASH), nullable=True),
        sa.Column("batch_id", Id, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("mirrored_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_settlement_hands"),
        sa.UniqueConstraint("hand_id", name="uq_settlement_hands_hand_id"),
        sa.UniqueConstraint(
            "chain_id",
            "contract",
            "chain_table_id",
            "hand_number",
            name="uq_settlement_hands_number",
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["settlement_batches.id"],
            name="fk_settlement_hands_batch_id_settlement_batches",
        ),
        sqlite_autoincrement=True,
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_settlement_hands_status_seq", "settlement_hands", ["status", "seq"])
    op.create_index("ix_settlement_hands_batch_id", "settlement_hands", ["batch_id"])


def downgrade() -> None:
    op.drop_table("settlement_hands")
    op.drop_table("settlement_tables")
    op.drop_table("settlement_batches")
    op.drop_table("chain_tx_attempts")
    op.drop_table("chain_transactions")
    op.drop_table("chain_nonces")
