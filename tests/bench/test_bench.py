"""The ``ludex bench`` benchmarks run end to end on tiny inputs (memory and SQLite; the
PostgreSQL-only ceilings on the local server).

No timing is asserted: speed is measured by the benchmarks themselves. These tests
check the JSON each one prints: its shape, that every operation requested was
carried out, that the figures are positive, and that a backend without a URL is
reported as skipped rather than left out.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from ludex.bench import bus, kv, outbox
from ludex.cli import app


def _positive_numbers(value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        assert value > 0
    elif isinstance(value, dict):
        for item in value.values():
            _positive_numbers(item)


def _common(result: dict[str, Any], name: str) -> None:
    assert result["benchmark"] == name
    assert result["python"].count(".") == 2
    assert result["note"]
    json.dumps(result)  # printable as it is


async def test_bus_bench_on_memory() -> None:
    result = await bus.run(60, keys=7, batch=25, rounds=2, latency_samples=5, kafka="")
    _common(result, "bus")
    assert result["input"]["events"] == 60
    assert result["backends"]["kafka"] == {"skipped": "kafka disabled on the command line"}
    figures = result["backends"]["memory"]["ludex"]
    assert figures["published"] == figures["consumed"] == 120  # 2 rounds of 60
    for name in ("publish_per_s", "consume_per_s"):
        assert figures[name] > 0
    assert figures["end_to_end_latency"]["samples"] == 5
    assert 0 < figures["end_to_end_latency"]["p50_ms"] <= figures["end_to_end_latency"]["p99_ms"]


async def test_kv_bench_on_memory() -> None:
    result = await kv.run(40, concurrency=4, keys=5, redis="")
    _common(result, "kv")
    assert result["backends"]["redis"] == {"skipped": "redis disabled on the command line"}
    figures = result["backends"]["memory"]["ludex"]
    assert set(figures) == set(kv.KINDS)
    for kind in kv.KINDS:
        assert figures[kind]["ops"] == 40
        assert figures[kind]["ops_per_s"] > 0


async def test_outbox_bench_on_sqlite() -> None:
    result = await outbox.run(30, txn_size=7, relay_batch=11, postgres="", mysql="")
    _common(result, "outbox")
    assert result["backends"]["postgres"] == {"skipped": "postgres disabled on the command line"}
    assert result["backends"]["mysql"] == {"skipped": "mysql disabled on the command line"}
    sqlite = result["backends"]["sqlite"]
    assert "failed" not in sqlite
    for figures in (*sqlite["ludex"].values(), *sqlite["peer_sqlalchemy"].values()):
        assert figures["rows"] == 30
        assert figures["rows_per_s"] > 0
    _positive_numbers(sqlite["add_vs_peer"])


def test_missing_service_url_is_reported_as_skipped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from ludex.bench import _common as common

    monkeypatch.delenv("LUDEX_TEST_KAFKA_URL", raising=False)
    monkeypatch.setattr(common, "_env_files", lambda: [tmp_path / "absent"])
    url, reason = common.resolve("kafka", None)
    assert url is None
    assert reason is not None
    assert "scripts/services up" in reason
    assert "--kafka" in reason


def test_env_file_supplies_the_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from ludex.bench import _common as common

    env = tmp_path / "env"
    env.write_text("# services\nLUDEX_TEST_REDIS_URL=redis://example:1/0\n")
    monkeypatch.delenv("LUDEX_TEST_REDIS_URL", raising=False)
    monkeypatch.setattr(common, "_env_files", lambda: [env])
    assert common.resolve("redis", None) == ("redis://example:1/0", None)
    assert common.resolve("redis", "redis://given:2/0") == ("redis://given:2/0", None)


@pytest.mark.usefixtures("logging_restored")
@pytest.mark.parametrize(
    ("args", "skipped"),
    [
        (
            ["bus", "--count", "20", "--rounds", "1", "--latency-samples", "2", "--kafka", ""],
            "kafka",
        ),
        (["kv", "--ops", "10", "--concurrency", "2", "--redis", ""], "redis"),
        (["outbox", "--rows", "10", "--postgres", "", "--mysql", ""], "postgres"),
    ],
    ids=["bus", "kv", "outbox"],
)
def test_cli_prints_json(args: list[str], skipped: str) -> None:
    result = CliRunner().invoke(app, ["bench", *args])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["benchmark"] == args[0]
    assert "skipped" in printed["backends"][skipped]


async def test_ledger_bench_on_sqlite(tmp_path: Any) -> None:
    from ludex.bench import ledger

    result = await ledger.run_transfers(
        f"sqlite:///{tmp_path}/ledger.db", accounts=20, workers=4, transfers=200, warmup=10
    )
    transfers = result["transfers"]
    assert transfers["attempted"] == 200
    assert transfers["applied"] + transfers["refused_insufficient_funds"] == 200
    assert result["check"]["balances_sum_to_zero"] is True
    _positive_numbers(transfers["latency"])


async def test_wallet_bench_on_sqlite(tmp_path: Any) -> None:
    from ludex.bench import wallet

    result = await wallet.run(
        f"sqlite:///{tmp_path}/wallet.db", players=10, workers=4, pairs=50, warmup=10
    )
    assert result["store"] == "sqlite"
    assert result["pairs"] == 50
    assert result["pairs_per_s"] > 0
    assert 1 <= result["mean_batch"] <= 4  # 4 workers: at most 4 requests in flight
    assert result["cpu_us_per_request"]["this_process"] > 0
    _positive_numbers(result["bet"])
    _positive_numbers(result["win"])


async def test_ledger_ceilings_on_postgres(tmp_path: Any) -> None:
    from pathlib import Path

    from ludex.bench._db import fresh_database
    from ludex.bench.ledger_ceiling import run_ceilings
    from tests.conftest import service_url

    base = service_url("postgres")
    async with fresh_database("postgres", base, Path(tmp_path)) as url:
        result = await run_ceilings(url, players=10, workers=4, pairs=60)
    trips = result["driver_round_trips"]
    assert trips["transactions"] == 120
    assert trips["statements_per_transaction"] == 4
    writes = result["batched_writes"]
    assert writes["transfers"] == 120  # the run also checks the stored row count
    assert 1 <= writes["mean_batch"] <= 4
    assert writes["batches"] * writes["mean_batch"] == pytest.approx(120)
    _positive_numbers(trips["latency"])
    _positive_numbers(writes["latency"])


async def test_settlement_bench_on_anvil() -> None:
    from ludex.bench import settlement
    from tests.conftest import service_url

    result = await settlement.run(anvil=service_url("anvil"), seats=3, tables=2, rounds=1)
    assert result["benchmark"] == "settlement"
    gas = result["gas_per_hand"]
    assert sorted(gas, key=int) == ["1", "10", "100"]
    running = [gas[size]["one_running_table"]["per_hand"] for size in ("1", "10", "100")]
    assert running == sorted(running, reverse=True)  # batching amortizes the fixed costs
    assert gas["100"]["fresh_tables"]["tables"] == 2
    assert result["throughput"]["batch_size"] == 100
    assert result["throughput"]["hands_per_s"] > 0
    assert isinstance(result["goal"]["met_at_one_running_table"], bool)


async def test_indexer_bench_counts_the_generated_workload() -> None:
    from ludex.bench import indexer

    result = await indexer.run(
        blocks=6, txs_per_block=6, senders=3, live_seconds=0.5, analytics=False, peer=False
    )
    assert result["benchmark"] == "indexer"
    work = result["workload"]
    assert set(work["by_kind"]) == set(indexer.KINDS)
    assert sum(work["by_kind"].values()) == 6 * 6
    for name in ("sqlite", "postgres"):
        entry = result["backends"][name]
        if "skipped" in entry:
            continue
        assert "failed" not in entry, entry
        assert entry["blocks"] == work["blocks"]
        assert entry["transactions"] == work["transactions"]
        assert entry["logs"] == work["logs"]
        assert entry["token_transfers"] >= work["by_kind"]["erc20"] + 3  # a batch moves 3 ids
        _positive_numbers({k: entry[k] for k in ("blocks_per_s", "logs_per_s")})
        live = entry["live"]
        assert live["blocks"] == 6
        assert live["latency"]["samples"] == 6
        assert live["head_lag_blocks_50ms_after_last"] >= 0
    assert result["peer"] == {"skipped": "peer disabled on the command line"}
    assert result["ratio_backfill_ours_over_peer"] == {}
    assert result["ratio_node_floor_over_peer"] is None
    _positive_numbers({"floor": result["node_floor"]["blocks_per_s"]})
