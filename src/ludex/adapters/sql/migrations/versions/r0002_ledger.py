"""The double-entry ledger: accounts with their four balance counters, and transfers.

Identifiers (account ids, transfer ids, ledger names) are ASCII with a binary
collation on MySQL/MariaDB, whose default utf8mb4 collations compare case- and
accent-insensitively: ``"Tx1"`` and ``"tx1"`` must be two transfers on every store.

An account with ``track_balance`` false (a shared counterparty) is never locked and
its counters stay zero; its balance is summed from its transfers by state, which the
``(debit|credit, state, amount)`` indexes cover.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from ludex.adapters.sql.types import Id, UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
    )


def upgrade() -> None:
    op.create_table(
        "ledger_accounts",
        sa.Column("id", _key(64), nullable=False),
        sa.Column("ledger", _key(96), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("allow_negative", sa.Boolean(), nullable=False),
        sa.Column("track_balance", sa.Boolean(), nullable=False),
        sa.Column("posted_debits", sa.BigInteger(), nullable=False),
        sa.Column("posted_credits", sa.BigInteger(), nullable=False),
        sa.Column("pending_debits", sa.BigInteger(), nullable=False),
        sa.Column("pending_credits", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_accounts"),
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_ledger_accounts_ledger", "ledger_accounts", ["ledger"])
    op.create_table(
        "ledger_transfers",
        sa.Column("seq", Id, autoincrement=True, nullable=False),
        sa.Column("id", _key(64), nullable=False),
        sa.Column("debit", _key(64), nullable=False),
        sa.Column("credit", _key(64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("ledger", _key(96), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("timeout_s", sa.Integer(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("pending_id", _key(64), nullable=True),
        sa.Column("batch", _key(64), nullable=True),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_ledger_transfers"),
        sa.UniqueConstraint("id", name="uq_ledger_transfers_id"),
        sa.ForeignKeyConstraint(
            ["debit"],
            ["ledger_accounts.id"],
            name="fk_ledger_transfers_debit_ledger_accounts",
        ),
        sa.ForeignKeyConstraint(
            ["credit"],
            ["ledger_accounts.id"],
            name="fk_ledger_transfers_credit_ledger_accounts",
        ),
        sqlite_autoincrement=True,
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_ledger_transfers_debit_seq", "ledger_transfers", ["debit", "seq"])
    op.create_index("ix_ledger_transfers_credit_seq", "ledger_transfers", ["credit", "seq"])
    op.create_index("ix_ledger_transfers_ledger_seq", "ledger_transfers", ["ledger", "seq"])
    op.create_index(
        "ix_ledger_transfers_state_expires_at", "ledger_transfers", ["state", "expires_at"]
    )
    # The balance of an untracked account is a sum over its transfers by state.
    op.create_index(
        "ix_ledger_transfers_debit_state_amount", "ledger_transfers", ["debit", "state", "amount"]
    )
    op.create_index(
        "ix_ledger_transfers_credit_state_amount",
        "ledger_transfers",
        ["credit", "state", "amount"],
    )


def downgrade() -> None:
    # Dropping a table drops its indexes; MySQL refuses to drop an index that backs a
    # foreign key on its own, so the indexes are not dropped one by one first.
    op.drop_table("ledger_transfers")
    op.drop_table("ledger_accounts")
