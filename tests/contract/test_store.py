"""Contract suite of the operational store, run unchanged on SQLite, PostgreSQL and MySQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, insert, inspect, select, text
from sqlalchemy.engine import Connection

from ludex.adapters.sql import SqlStore, create_store, head_revision
from ludex.adapters.sql.tables import outbox, processed_events
from ludex.errors import BackendUnavailable, ConfigError, StoreError
from tests.contract.sql_backends import BACKENDS, fresh_database, started_store

EVENT_ID = "01JAAAAAAAAAAAAAAAAAAAAAAA"


@pytest.fixture(params=BACKENDS)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    async with started_store(store_url) as s:
        yield s


def _table_names(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


async def tables(store: SqlStore) -> set[str]:
    async with store.engine.connect() as conn:
        return await conn.run_sync(_table_names)


async def count(store: SqlStore, table: str) -> int:
    async with store.transaction() as session:
        return int(await session.scalar(text(f"SELECT COUNT(*) FROM {table}")) or 0)


# --- migrations -------------------------------------------------------------------


async def test_migrate_from_empty_to_head_twice(store_url: str) -> None:
    async with started_store(store_url, migrate=False) as store:
        assert await store.current_revision() is None
        assert "outbox" not in await tables(store)
        await store.migrate()
        await store.migrate()
        assert await store.current_revision() == head_revision()
        assert {"outbox", "processed_events", "alembic_version"} <= await tables(store)


async def test_downgrade_to_base_and_up_again(store: SqlStore) -> None:
    await store.downgrade("base")
    assert await store.current_revision() is None
    assert not {"outbox", "processed_events"} & await tables(store)
    await store.migrate()
    assert await store.current_revision() == head_revision()
    assert {"outbox", "processed_events"} <= await tables(store)


async def test_schema_has_named_constraints_and_relay_index(store: SqlStore) -> None:
    def describe(
        conn: Connection,
    ) -> tuple[list[str], dict[str | None, list[str | None]], list[str]]:
        insp = inspect(conn)
        return (
            insp.get_pk_constraint("outbox")["constrained_columns"],
            {ix["name"]: ix["column_names"] for ix in insp.get_indexes("outbox")},
            insp.get_pk_constraint("processed_events")["constrained_columns"],
        )

    async with store.engine.connect() as conn:
        outbox_pk, indexes, processed_pk = await conn.run_sync(describe)
    assert outbox_pk == ["id"]
    assert indexes.get("ix_outbox_published_at_id") == ["published_at", "id"]
    assert processed_pk == ["consumer", "event_id"]


async def test_concurrent_migrate_does_not_fail(store_url: str) -> None:
    # Two stores (two engines, as two processes would have) and two tasks on one store.
    async with (
        started_store(store_url, migrate=False) as first,
        started_store(store_url, migrate=False) as second,
    ):
        await asyncio.gather(first.migrate(), second.migrate(), first.migrate())
        assert await first.current_revision() == head_revision()
        assert await second.current_revision() == head_revision()


async def test_unknown_revision_is_a_store_error(store: SqlStore) -> None:
    with pytest.raises(StoreError, match="no-such-revision"):
        await store.migrate("no-such-revision")


# --- transactions -----------------------------------------------------------------


async def test_rollback_leaves_nothing(store: SqlStore) -> None:
    class Boom(Exception):
        pass

    async def write_then_fail() -> None:
        async with store.transaction() as session:
            await session.execute(
                insert(processed_events).values(
                    consumer="c", event_id=EVENT_ID, processed_at=datetime.now(UTC)
                )
            )
            raise Boom

    with pytest.raises(Boom):
        await write_then_fail()
    assert await count(store, "processed_events") == 0


async def test_commit_is_visible_to_the_next_transaction(store: SqlStore) -> None:
    async with store.transaction() as session:
        await session.execute(
            insert(processed_events).values(
                consumer="c", event_id=EVENT_ID, processed_at=datetime.now(UTC)
            )
        )
    assert await count(store, "processed_events") == 1


async def test_unique_violation_is_a_store_error(store: SqlStore) -> None:
    row = {"consumer": "c", "event_id": EVENT_ID, "processed_at": datetime.now(UTC)}
    async with store.transaction() as session:
        await session.execute(insert(processed_events).values(**row))
    with pytest.raises(StoreError, match="integrity"):
        async with store.transaction() as session:
            await session.execute(insert(processed_events).values(**row))
    assert await count(store, "processed_events") == 1


async def test_timezone_aware_datetimes_round_trip_as_utc(store: SqlStore) -> None:
    kolkata = timezone(timedelta(hours=5, minutes=30))
    written = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=kolkata)
    async with store.transaction() as session:
        await session.execute(
            insert(processed_events).values(consumer="c", event_id=EVENT_ID, processed_at=written)
        )
    async with store.transaction() as session:
        read = await session.scalar(select(processed_events.c.processed_at))
        # Comparisons against aware values work in SQL too.
        later = await session.scalar(
            select(func.count())
            .select_from(processed_events)
            .where(processed_events.c.processed_at > written - timedelta(microseconds=1))
        )
    assert read == written
    assert read is not None
    assert read.utcoffset() == timedelta(0)
    assert read.isoformat() == "2024-02-29T18:29:58.123456+00:00"
    assert later == 1


async def test_naive_datetime_is_refused(store: SqlStore) -> None:
    with pytest.raises(StoreError, match="naive datetime"):
        async with store.transaction() as session:
            await session.execute(
                insert(processed_events).values(
                    consumer="c", event_id=EVENT_ID, processed_at=datetime(2024, 1, 1)
                )
            )
    assert await count(store, "processed_events") == 0


async def test_large_payload_round_trips(store: SqlStore) -> None:
    payload = bytes(range(256)) * 1024  # 256 KiB: beyond MySQL's plain BLOB
    async with store.transaction() as session:
        await session.execute(
            insert(outbox).values(
                event_id=EVENT_ID,
                topic="ludex.wallet",
                event_type="wallet.bet_placed",
                partition_key="p",
                payload=payload,
                created_at=datetime.now(UTC),
            )
        )
    async with store.transaction() as session:
        assert await session.scalar(select(outbox.c.payload)) == payload


# --- connectivity -----------------------------------------------------------------


async def test_ping(store: SqlStore) -> None:
    await store.ping()


def _unreachable_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        (tmp_path / "a-directory.db").mkdir()
        return f"sqlite:///{tmp_path}/a-directory.db"
    if backend == "postgres":
        return "postgresql://ludex:s3cret-pw@127.0.0.1:1/ludex"
    return "mysql://ludex:s3cret-pw@127.0.0.1:1/ludex"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_unreachable_backend_raises_backend_unavailable(backend: str, tmp_path: Path) -> None:
    store = create_store(_unreachable_url(backend, tmp_path))
    await store.start()
    try:
        with pytest.raises(BackendUnavailable) as ping_error:
            await store.ping()
        assert "s3cret-pw" not in str(ping_error.value)
        with pytest.raises(BackendUnavailable) as tx_error:
            async with store.transaction():
                pass
        assert "s3cret-pw" not in str(tx_error.value)
    finally:
        await store.close()


async def test_sqlite_creates_its_folder_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "ludex.db"
    async with started_store(f"sqlite:///{path}") as store:
        assert path.exists()
        async with store.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert ((await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() or 0) > 0


async def test_sqlite_read_only_transactions_do_not_wait_for_the_writer(tmp_path: Path) -> None:
    async with started_store(f"sqlite:///{tmp_path}/ro.db") as store:
        await store.migrate()
        writing, release = asyncio.Event(), asyncio.Event()

        async def writer() -> None:
            async with store.transaction() as session:
                await session.execute(
                    insert(processed_events).values(
                        consumer="c", event_id=EVENT_ID, processed_at=datetime.now(UTC)
                    )
                )
                writing.set()
                await release.wait()

        task = asyncio.create_task(writer())
        await writing.wait()
        # The writer holds the write lock: a read-only transaction reads the last
        # committed snapshot at once; a plain one waits for the lock.
        async with asyncio.timeout(1):
            async with store.transaction(read_only=True) as session:
                seen = await session.scalar(select(func.count()).select_from(processed_events))
        assert seen == 0
        plain = asyncio.create_task(count(store, "processed_events"))
        await asyncio.sleep(0.2)
        assert not plain.done()
        release.set()
        await task
        assert await plain == 1
        async with store.transaction(read_only=True) as session:
            assert await session.scalar(select(func.count()).select_from(processed_events)) == 1


@pytest.mark.parametrize(
    ("url", "dialect"),
    [
        ("sqlite:///var/x.db", "sqlite"),
        ("postgresql://u:p@h/db", "postgresql"),
        ("postgres://u:p@h/db", "postgresql"),
        ("mysql://u:p@h/db", "mysql"),
        ("mariadb://u:p@h/db", "mysql"),
    ],
)
def test_create_store_picks_the_driver_from_the_scheme(url: str, dialect: str) -> None:
    store = create_store(url)
    assert store.dialect == dialect
    assert ":p@" not in store.url
    assert ":p@" not in repr(store)


@pytest.mark.parametrize("url", ["redis://h/0", "oracle://u:pw@h/db", "nonsense"])
def test_unknown_scheme_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as error:
        create_store(url)
    assert ":pw@" not in str(error.value)


async def test_engine_before_start_is_a_store_error() -> None:
    store = create_store("sqlite:///:memory:")
    with pytest.raises(StoreError, match="not started"):
        _ = store.engine
