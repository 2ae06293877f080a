"""Contract tests for the AnalyticsStore port, run unchanged against every backend.

chDB always runs (a fresh directory per test). A ClickHouse server runs too when
``LUDEX_TEST_CLICKHOUSE_URL`` is set (e.g. ``clickhouse://default:@127.0.0.1:8123``);
each test then gets its own database, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest

from ludex.adapters.olap import create_analytics
from ludex.adapters.olap.chdb import ChdbStore
from ludex.adapters.olap.clickhouse import ClickHouseStore
from ludex.adapters.olap.schema import (
    EVENTS_COLUMNS,
    event_count,
    events_per_type,
)
from ludex.errors import BackendError, BackendUnavailable, ConfigError
from ludex.ports.olap import AnalyticsStore

CLICKHOUSE_URL = os.environ.get("LUDEX_TEST_CLICKHOUSE_URL", "")
BACKENDS = ["chdb"] + (["clickhouse"] if CLICKHOUSE_URL else [])

HOSTILE = "'); DROP TABLE events; --"
NASTY_STRINGS = [
    HOSTILE,
    "",
    "plain",
    'it\'s "quoted" `backticked`',
    "back\\slash \\N \\t \\' \\\\",
    "new\nline\r\ncarriage\ttab",
    "nul\x00byte and \x01\x1f controls",
    "ünïcödé — 漢字 — 🂡🂮 — \u202e",
    "\\",
    "'",
    "{x:String}",
]

T0 = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC)


def _url_for(backend: str, tmp_path: Path) -> str:
    if backend == "chdb":
        return f"chdb://{tmp_path / 'olap'}"
    parts = urlsplit(CLICKHOUSE_URL)
    return parts._replace(path=f"/ludex_test_{uuid.uuid4().hex[:12]}").geturl()


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return _url_for(request.param, tmp_path)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[AnalyticsStore]:
    analytics = create_analytics(store_url)
    await analytics.start()
    try:
        yield analytics
    finally:
        if isinstance(analytics, ClickHouseStore):
            await analytics.start()  # a test may have closed it
            await analytics.execute(f"DROP DATABASE IF EXISTS `{analytics.database}`")
        await analytics.close()


def event_row(
    n: int,
    *,
    type_: str = "wallet.bet_placed",
    key: str = "player-1",
    payload: str = '{"amount": 5}',
    occurred_at: datetime = T0,
) -> dict[str, Any]:
    return {
        "event_id": f"01HZZZZZZZZZZZZZZZZZZZ{n:04d}",
        "type": type_,
        "topic": "ludex." + type_.split(".")[0],
        "key": key,
        "occurred_at": occurred_at,
        "producer": "tests",
        "version": 1,
        "payload": payload,
    }


# --- DDL ---------------------------------------------------------------------------


async def test_start_is_idempotent_and_keeps_rows(store: AnalyticsStore) -> None:
    await store.insert("events", [event_row(1)], EVENTS_COLUMNS)
    await store.start()
    await store.start()
    assert await event_count(store) == 1
    tables = await store.query(
        "SELECT engine, partition_key, sorting_key FROM system.tables "
        "WHERE database = currentDatabase() AND name = 'events'"
    )
    assert tables == [
        {
            "engine": "ReplacingMergeTree",
            "partition_key": "toYYYYMM(occurred_at)",
            "sorting_key": "type, occurred_at, event_id",
        }
    ]


async def test_events_table_has_the_documented_columns(store: AnalyticsStore) -> None:
    columns = await store.query(
        "SELECT name, type FROM system.columns "
        "WHERE database = currentDatabase() AND table = 'events' ORDER BY position"
    )
    assert [(c["name"], c["type"]) for c in columns] == [
        ("event_id", "String"),
        ("type", "LowCardinality(String)"),
        ("topic", "LowCardinality(String)"),
        ("key", "String"),
        ("occurred_at", "DateTime64(6, 'UTC')"),
        ("producer", "LowCardinality(String)"),
        ("version", "UInt16"),
        ("payload", "String"),
        ("ingested_at", "DateTime64(6, 'UTC')"),
    ]
    assert [c["name"] for c in columns][:-1] == list(EVENTS_COLUMNS)


# --- round trips -----------------------------------------------------------------------


async def test_event_row_round_trips_with_exact_types(store: AnalyticsStore) -> None:
    payload = '{"note": "a \\"quoted\\" \\\\ back\\nslash", "emoji": "🂡"}'
    row = event_row(1, key="ключ 'k'\\\n\t", payload=payload)
    before = datetime.now(UTC) - timedelta(seconds=5)
    assert await store.insert("events", [row], EVENTS_COLUMNS) == 1

    [got] = await store.query("SELECT * FROM events")

    ingested = got.pop("ingested_at")
    assert got == row
    assert got["occurred_at"].tzinfo is not None
    assert got["occurred_at"].utcoffset() == timedelta(0)
    assert got["occurred_at"].microsecond == 123456
    assert type(got["version"]) is int
    assert isinstance(ingested, datetime)
    assert ingested.tzinfo is not None
    assert before <= ingested <= datetime.now(UTC) + timedelta(seconds=5)


async def test_naive_and_offset_datetimes_are_stored_as_utc(store: AnalyticsStore) -> None:
    kolkata = T0.astimezone(ZoneInfo("Asia/Kolkata"))
    naive = T0.replace(tzinfo=None)
    await store.insert(
        "events",
        [event_row(1, occurred_at=kolkata), event_row(2, occurred_at=naive)],
        EVENTS_COLUMNS,
    )
    rows = await store.query("SELECT occurred_at FROM events ORDER BY event_id")
    assert [r["occurred_at"] for r in rows] == [T0, T0]
    assert {r["occurred_at"].utcoffset() for r in rows} == {timedelta(0)}


async def test_wide_integers_and_every_common_type_round_trip(store: AnalyticsStore) -> None:
    await store.execute(
        """
        CREATE TABLE IF NOT EXISTS amounts (
            id String,
            credit UInt256,
            debit Int256,
            small Int64,
            unsigned UInt64,
            price Decimal(76, 18),
            ratio Float64,
            ok Bool,
            day Date,
            at DateTime64(6, 'UTC'),
            ref UUID,
            tags Array(String),
            balances Map(String, UInt256),
            note Nullable(String)
        ) ENGINE = MergeTree ORDER BY id
        """
    )
    rows = [
        {
            "id": "max",
            "credit": 2**256 - 1,
            "debit": -(2**255),
            "small": -(2**63),
            "unsigned": 2**64 - 1,
            "price": Decimal("123456789012345678901234567890.123456789012345678"),
            "ratio": 0.1,
            "ok": True,
            "day": date(2024, 2, 29),
            "at": T0,
            "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "tags": NASTY_STRINGS,
            "balances": {"wei": 10**30, HOSTILE: 0},
            "note": None,
        },
        {
            "id": "min",
            "credit": 0,
            "debit": 2**255 - 1,
            "small": 2**63 - 1,
            "unsigned": 0,
            "price": Decimal("-0.000000000000000001"),
            "ratio": -1.5e300,
            "ok": False,
            "day": date(1970, 1, 1),
            "at": datetime(1970, 1, 1, tzinfo=UTC),
            "ref": uuid.UUID(int=0),
            "tags": [],
            "balances": {},
            "note": "x",
        },
    ]
    assert await store.insert("amounts", rows, list(rows[0])) == 2

    got = await store.query("SELECT * FROM amounts ORDER BY id")

    assert got == sorted(rows, key=lambda r: r["id"])
    for row in got:
        assert {type(row[c]) for c in ("credit", "debit", "small", "unsigned")} == {int}
        assert type(row["price"]) is Decimal
        assert type(row["ok"]) is bool
        assert type(row["ref"]) is uuid.UUID
    by_param = await store.query(
        "SELECT id FROM amounts WHERE credit = {credit:UInt256} AND debit = {debit:Int256}",
        {"credit": 2**256 - 1, "debit": -(2**255)},
    )
    assert by_param == [{"id": "max"}]


async def test_parameters_of_every_common_type_round_trip(store: AnalyticsStore) -> None:
    params: dict[str, Any] = {
        "s": HOSTILE,
        "arr": NASTY_STRINGS,
        "m": {"a'b": 2**200, "c\\d": 0},
        "t": T0,
        "n": None,
        "big": 2**256 - 1,
        "neg": -(2**255),
        "f": 2.5,
        "d": Decimal("-1234567890.0123456789"),
        "b": True,
        "u": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "day": date(2024, 2, 29),
        "nested": [[1, 2], [], [3]],
        "times": [T0, datetime(2000, 1, 1, tzinfo=UTC)],
    }
    [got] = await store.query(
        "SELECT {s:String} AS s, {arr:Array(String)} AS arr, {m:Map(String, UInt256)} AS m, "
        "{t:DateTime64(6, 'UTC')} AS t, {n:Nullable(String)} AS n, {big:UInt256} AS big, "
        "{neg:Int256} AS neg, {f:Float64} AS f, {d:Decimal(38, 10)} AS d, {b:Bool} AS b, "
        "{u:UUID} AS u, {day:Date} AS day, {nested:Array(Array(UInt8))} AS nested, "
        "{times:Array(DateTime64(6, 'UTC'))} AS times",
        params,
    )
    assert got == params


async def test_result_values_are_normalized_by_column_type(store: AnalyticsStore) -> None:
    [got] = await store.query(
        "SELECT toDateTime64('2024-01-02 03:04:05.123456789', 9, 'Asia/Tokyo') AS nanos, "
        "toDateTime('2024-01-02 03:04:05', 'UTC') AS seconds, "
        "toDateTime64('2024-01-02 03:04:05.5', 1) AS bare, "
        "toIPv4('10.0.0.1') AS ip4, toIPv6('::1') AS ip6, "
        "tuple(1, 'a', [toInt128(-1)]) AS tup, CAST(NULL AS Nullable(Int64)) AS null_int, "
        "toLowCardinality(toNullable('x')) AS lc, toFloat64('nan') AS nan, "
        "toFloat64('-inf') AS neg_inf, toFloat32(0.5) AS f32, "
        "CAST('b' AS Enum8('a' = 1, 'b' = 2)) AS enum, toFixedString('ab', 2) AS fixed, "
        "toDate32('1900-01-01') AS old_day, map(1, [true, false]) AS flags"
    )
    tokyo = ZoneInfo("Asia/Tokyo")
    nan = got.pop("nan")
    assert isinstance(nan, float)
    assert math.isnan(nan)
    assert got == {
        "nanos": datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=tokyo),
        "seconds": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "bare": datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC),
        "ip4": ipaddress.IPv4Address("10.0.0.1"),
        "ip6": ipaddress.IPv6Address("::1"),
        "tup": (1, "a", [-1]),
        "null_int": None,
        "lc": "x",
        "neg_inf": float("-inf"),
        "f32": 0.5,
        "enum": "b",
        "fixed": "ab",
        "old_day": date(1900, 1, 1),
        "flags": {1: [True, False]},
    }
    assert got["nanos"].utcoffset() == timedelta(hours=9)
    assert got["bare"].tzinfo is not None


@pytest.mark.parametrize("text", NASTY_STRINGS)
async def test_string_parameters_are_bound_verbatim(store: AnalyticsStore, text: str) -> None:
    assert await store.query("SELECT {text:String} AS text", {"text": text}) == [{"text": text}]


async def test_hostile_parameter_selects_the_right_rows_and_drops_nothing(
    store: AnalyticsStore,
) -> None:
    rows = [event_row(i, key=k) for i, k in enumerate([HOSTILE, "player-1", "player-2"])]
    await store.insert("events", rows, EVENTS_COLUMNS)

    got = await store.query(
        "SELECT event_id, key FROM events WHERE key = {key:String}", {"key": HOSTILE}
    )
    assert got == [{"event_id": rows[0]["event_id"], "key": HOSTILE}]
    await store.execute("DELETE FROM events WHERE key = {key:String}", {"key": HOSTILE})
    in_list = await store.query(
        "SELECT key FROM events WHERE key IN {keys:Array(String)} ORDER BY key",
        {"keys": [HOSTILE, "player-2", "nobody"]},
    )
    assert in_list == [{"key": "player-2"}]
    assert await event_count(store) == 2


# --- engine behaviour --------------------------------------------------------------------


async def test_redelivered_events_collapse_with_final(store: AnalyticsStore) -> None:
    first = [event_row(1), event_row(2, type_="poker.action"), event_row(3)]
    await store.insert("events", first, EVENTS_COLUMNS)
    await store.insert("events", first[:2], EVENTS_COLUMNS)  # re-delivery
    await store.insert("events", [event_row(4, type_="chain.block")], EVENTS_COLUMNS)

    assert await event_count(store) == 4
    assert await event_count(store, "wallet.bet_placed") == 2
    assert await events_per_type(store, T0) == {
        "chain.block": 1,
        "poker.action": 1,
        "wallet.bet_placed": 2,
    }
    assert await events_per_type(store, T0 + timedelta(microseconds=1)) == {}
    await store.execute("OPTIMIZE TABLE events FINAL")
    raw = await store.query("SELECT count() AS n FROM events")
    assert raw == [{"n": 4}]


async def test_rows_survive_close_and_reopen(store_url: str) -> None:
    first = create_analytics(store_url)
    await first.start()
    await first.insert("events", [event_row(1), event_row(2)], EVENTS_COLUMNS)
    await first.close()

    second = create_analytics(store_url)
    await second.start()
    try:
        rows = await second.query("SELECT event_id FROM events ORDER BY event_id")
        assert [r["event_id"] for r in rows] == [event_row(1)["event_id"], event_row(2)["event_id"]]
    finally:
        if isinstance(second, ClickHouseStore):
            await second.execute(f"DROP DATABASE IF EXISTS `{second.database}`")
        await second.close()


async def test_concurrent_queries_each_get_their_own_parameters(store: AnalyticsStore) -> None:
    await store.insert("events", [event_row(i) for i in range(50)], EVENTS_COLUMNS)
    results = await asyncio.gather(
        *(
            store.query(
                "SELECT count() AS n, {i:UInt32} AS i FROM events WHERE version = {v:UInt16}",
                {"i": i, "v": 1},
            )
            for i in range(20)
        )
    )
    assert results == [[{"n": 50, "i": i}] for i in range(20)]


# --- errors ------------------------------------------------------------------------------


async def test_bad_sql_raises_backend_error_with_the_server_message(store: AnalyticsStore) -> None:
    with pytest.raises(BackendError, match="Syntax error") as syntax:
        await store.query("SELEC 1")
    assert not isinstance(syntax.value, BackendUnavailable)
    with pytest.raises(BackendError, match="no_such_table"):
        await store.query("SELECT * FROM no_such_table")
    with pytest.raises(BackendError, match="missing"):
        await store.query("SELECT {missing:String}")
    with pytest.raises(BackendError):
        await store.query("SELECT {n:UInt8}", {"n": "not a number"})
    await store.ping()  # the store still works after errors


async def test_caller_mistakes_raise_before_reaching_the_engine(store: AnalyticsStore) -> None:
    assert await store.insert("events", [], EVENTS_COLUMNS) == 0
    with pytest.raises(ValueError, match="row 0 has no value for column 'type'"):
        await store.insert("events", [{"event_id": "x"}], EVENTS_COLUMNS)
    with pytest.raises(ValueError, match="identifier"):
        await store.insert("events; DROP TABLE events", [event_row(1)], EVENTS_COLUMNS)
    with pytest.raises(TypeError, match="object"):
        await store.query("SELECT {x:String}", {"x": object()})
    assert await event_count(store) == 0


async def test_ping_and_closed_store(store_url: str) -> None:
    analytics = create_analytics(store_url)
    await analytics.start()
    await analytics.ping()
    if isinstance(analytics, ClickHouseStore):
        await analytics.execute(f"DROP DATABASE IF EXISTS `{analytics.database}`")
    await analytics.close()
    await analytics.close()  # closing twice is fine
    with pytest.raises(BackendUnavailable):
        await analytics.query("SELECT 1")
    with pytest.raises(BackendUnavailable):
        await analytics.ping()


# --- backend-independent -------------------------------------------------------------------


def test_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="nosuch"):
        create_analytics("nosuch://x")
    with pytest.raises(ConfigError, match="no host"):
        create_analytics("clickhouse:///db")
    with pytest.raises(ConfigError, match="no path"):
        create_analytics("chdb://")


def test_backends_are_chosen_by_scheme(tmp_path: Path) -> None:
    assert isinstance(create_analytics(f"chdb://{tmp_path}"), ChdbStore)
    assert isinstance(create_analytics("chdb://:memory:"), ChdbStore)
    server = create_analytics("clickhouses://u:secret@db.example:9440/stats")
    assert isinstance(server, ClickHouseStore)
    assert server.database == "stats"
    assert "secret" not in repr(server)


async def test_unreachable_clickhouse_is_backend_unavailable() -> None:
    unreachable = create_analytics("clickhouse://ludex:s3cret-pw@127.0.0.1:1/ludex")
    with pytest.raises(BackendUnavailable, match="unreachable") as pinged:
        await unreachable.ping()
    with pytest.raises(BackendUnavailable) as started:
        await unreachable.start()
    for exc in (pinged.value, started.value):
        assert "s3cret-pw" not in str(exc)
        assert "127.0.0.1:1" in str(exc)
    await unreachable.close()


async def test_chdb_holds_one_directory_per_process(tmp_path: Path) -> None:
    first = create_analytics(f"chdb://{tmp_path / 'a'}")
    await first.start()
    try:
        same = create_analytics(f"chdb://{tmp_path / 'a'}/")
        await same.start()  # another spelling of the same directory shares the engine
        await same.close()
        other = create_analytics(f"chdb://{tmp_path / 'b'}")
        with pytest.raises(BackendUnavailable, match="one data directory per process"):
            await other.start()
        await first.ping()
    finally:
        await first.close()
