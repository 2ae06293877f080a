"""The game server: its tables (settings and status), every finished hand (sealed record,
PHH history, deltas, rake) and the effects of each table that were carried out.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from ludex.adapters.sql.types import UTCDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE_ID = 32
HAND_ID = 26
EFFECT_ID = 80


def _key(length: int) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
    )


def upgrade() -> None:
    op.create_table(
        "poker_tables",
        sa.Column("table_id", _key(TABLE_ID), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("table_id", name="pk_poker_tables"),
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_poker_tables_status_table_id", "poker_tables", ["status", "table_id"])
    op.create_table(
        "poker_hands",
        sa.Column("hand_id", _key(HAND_ID), nullable=False),
        sa.Column("table_id", _key(TABLE_ID), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("history_phh", sa.Text(), nullable=False),
        sa.Column("deltas", sa.Text(), nullable=False),
        sa.Column("rake", sa.BigInteger(), nullable=False),
        sa.Column("completed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("hand_id", name="pk_poker_hands"),
        sa.UniqueConstraint("table_id", "number", name="uq_poker_hands_table_id_number"),
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "gameserver_effects",
        sa.Column("effect_id", _key(EFFECT_ID), nullable=False),
        sa.Column("table_id", _key(TABLE_ID), nullable=False),
        sa.Column("outcome", sa.String(200), nullable=False),
        sa.Column("done_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("effect_id", name="pk_gameserver_effects"),
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_gameserver_effects_done_at", "gameserver_effects", ["done_at"])


def downgrade() -> None:
    op.drop_index("ix_gameserver_effects_done_at", table_name="gameserver_effects")
    op.drop_table("gameserver_effects")
    op.drop_table("poker_hands")
    op.drop_index("ix_poker_tables_status_table_id", table_name="poker_tables")
    op.drop_table("poker_tables")
