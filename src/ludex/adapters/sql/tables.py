"""Table definitions of the operational store (SQLAlchemy Core ``MetaData``).

This is the schema the Alembic migrations in ``migrations/versions`` build; the
migrations, not ``metadata.create_all``, are what create it in a real database.
Constraint names follow :data:`NAMING_CONVENTION` so migrations can refer to them
by name on every backend.

Pure: declarations only; this module must never open a connection.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import CHAR, Column, Index, MetaData, String, Table

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
