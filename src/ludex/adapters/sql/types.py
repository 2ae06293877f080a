"""Portable column types for the operational store (SQLite, PostgreSQL, MySQL/MariaDB).

The same Alembic migrations run on every backend, so the differences between them
are absorbed here, once:

* :data:`Id`: ``BIGINT`` primary keys, ``INTEGER`` on SQLite (only an ``INTEGER
  PRIMARY KEY`` is an alias of the rowid there, which is what makes it autoincrement).
* :class:`UTCDateTime`: timezone-aware datetimes stored as UTC. PostgreSQL keeps
  ``TIMESTAMPTZ``; MySQL (``DATETIME(6)``) and SQLite have no zone, so values are
  converted to naive UTC on the way in and marked UTC on the way out. A naive
  datetime is refused rather than guessed at.
* :func:`blob`: binary payloads, ``LONGBLOB`` on MySQL (its ``BLOB`` stops at 64 KiB).

Pure: no I/O, no engine, no session.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer, LargeBinary
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

Id: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")
"""Surrogate primary keys: BIGINT, INTEGER on SQLite so it autoincrements."""


def blob() -> TypeEngine[bytes]:
    """Binary payload column: BYTEA / BLOB / LONGBLOB."""
    return LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored as UTC with microseconds on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in {"mysql", "mariadb"}:
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} refused; pass a timezone-aware "
                "datetime (for example datetime.now(UTC))"
            )
        as_utc = value.astimezone(UTC)
        return as_utc if dialect.name == "postgresql" else as_utc.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
