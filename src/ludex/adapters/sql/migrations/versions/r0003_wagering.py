"""Wagering: players, providers, provider transactions and rounds, risk limits, audit.

``provider_transactions`` is the idempotency record of the seamless wallet (unique
per provider and transaction id); ``provider_requests`` keeps every request and
response raw; ``audit_log`` records who changed a limit, a player or a provider.
Identifiers are ASCII with a binary collation on MySQL/MariaDB (as in 0002).

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from ludex.adapters.sql.types import Id, UTCDateTime, blob

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(length: int = 64) -> sa.types.TypeEngine[str]:
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
    )


def upgrade() -> None:
    op.create_table(
        "players",
        sa.Column("id", _key(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_players"),
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "providers",
        sa.Column("id", _key(), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("secret", blob(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_providers"),
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "provider_transactions",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("provider_id", _key(), nullable=False),
        sa.Column("transaction_id", _key(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("player_id", _key(), nullable=False),
        sa.Column("game_id", _key(), nullable=True),
        sa.Column("round_id", _key(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(16), nullable=False),
        sa.Column("request_hash", sa.CHAR(64), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("response", blob(), nullable=True),
        sa.Column("transfer_id", _key(), nullable=True),
        sa.Column("ref_transaction_id", _key(), nullable=True),
        sa.Column("rolled_back_by", _key(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_provider_transactions"),
        sa.UniqueConstraint(
            "provider_id",
            "transaction_id",
            name="uq_provider_transactions_provider_id_transaction_id",
        ),
        sqlite_autoincrement=True,
        mysql_charset="utf8mb4",
    )
    op.create_index(
        "ix_provider_transactions_player_id_created_at",
        "provider_transactions",
        ["player_id", "created_at"],
    )
    op.create_table(
        "provider_rounds",
        sa.Column("provider_id", _key(), nullable=False),
        sa.Column("round_id", _key(), nullable=False),
        sa.Column("player_id", _key(), nullable=False),
        sa.Column("game_id", _key(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("open_stakes", sa.BigInteger(), nullable=False),
        sa.Column("open_bets", sa.Integer(), nullable=False),
        sa.Column("total_bet", sa.BigInteger(), nullable=False),
        sa.Column("total_win", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("provider_id", "round_id", name="pk_provider_rounds"),
        mysql_charset="utf8mb4",
    )
    op.create_index(
        "ix_provider_rounds_provider_id_status", "provider_rounds", ["provider_id", "status"]
    )
    op.create_table(
        "risk_limits",
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key", _key(), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", "name", name="pk_risk_limits"),
        mysql_charset="utf8mb4",
    )
    op.create_table(
        "audit_log",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        sqlite_autoincrement=True,
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_audit_log_subject_at", "audit_log", ["subject", "at"])
    op.create_table(
        "provider_requests",
        sa.Column("id", Id, autoincrement=True, nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("provider_id", sa.String(64), nullable=True),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("headers", sa.Text(), nullable=False),
        sa.Column("body", blob(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("response", blob(), nullable=False),
        sa.Column("duration_ms", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_provider_requests"),
        sqlite_autoincrement=True,
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_provider_requests_received_at", "provider_requests", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_provider_requests_received_at", table_name="provider_requests")
    op.drop_table("provider_requests")
    op.drop_index("ix_audit_log_subject_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("risk_limits")
    op.drop_index("ix_provider_rounds_provider_id_status", table_name="provider_rounds")
    op.drop_table("provider_rounds")
    op.drop_index(
        "ix_provider_transactions_player_id_created_at", table_name="provider_transactions"
    )
    op.drop_table("provider_transactions")
    op.drop_table("providers")
    op.drop_table("players")
