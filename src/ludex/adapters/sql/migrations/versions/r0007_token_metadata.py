"""Token metadata seen by the indexer: name, symbol and decimals by eth_call
(ludex.indexer.token_metadata).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ADDRESS = 42
NAME = 256
SYMBOL = 128


def _key(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
    )


def upgrade() -> None:
    op.create_table(
        "idx_tokens",
        sa.Column("chain_id", sa.BigInteger(), nullable=False),
        sa.Column("address", _key(ADDRESS), nullable=False),
        sa.Column("standard", sa.String(16), nullable=False),
        sa.Column("name", sa.String(NAME), nullable=True),
        sa.Column("symbol", sa.String(SYMBOL), nullable=True),
        sa.Column("decimals", sa.Integer(), nullable=True),
        sa.Column("first_block", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("chain_id", "address", name="pk_idx_tokens"),
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_idx_tokens_chain_id_first_block", "idx_tokens", ["chain_id", "first_block"])


def downgrade() -> None:
    op.drop_index("ix_idx_tokens_chain_id_first_block", table_name="idx_tokens")
    op.drop_table("idx_tokens")
