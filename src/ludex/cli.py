"""The ``ludex`` command. Every command has ``--help``.

Configuration comes from ``LUDEX_*`` environment variables (docs/configuration.md);
a bad value stops the command with one line per field and exit code 2.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ludex import __version__
from ludex.cli_chain import chain_app
from ludex.cli_index import index as index_command
from ludex.cli_poker import poker_app
from ludex.cli_wallet import wallet_app
from ludex.config import Settings, load_settings, redact_url
from ludex.errors import ConfigError, LudexError

T = TypeVar("T")

app = typer.Typer(
    name="ludex",
    help="ludex: backend for real-time on-chain games (poker, wagering, settlement, indexer).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect and check the settings.", no_args_is_help=True)
events_app = typer.Typer(help="The event catalog and event files.", no_args_is_help=True)
app.add_typer(config_app, name="config")
bench_app = typer.Typer(help="Benchmarks: our figures and peers', as JSON.", no_args_is_help=True)
app.add_typer(events_app, name="events")
app.add_typer(bench_app, name="bench")
app.add_typer(poker_app, name="poker")
app.add_typer(wallet_app, name="wallet")
app.add_typer(chain_app, name="chain")
app.command("index")(index_command)


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def _settings(**overrides: Any) -> Settings:
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        raise _fail(f"ludex: configuration error\n{exc}", 2) from None
    from ludex.ops.logging import configure_logging

    configure_logging(settings.log_level, json=settings.log_json, service=settings.service_name)
    return settings


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _run(coro: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine; expected failures (ludex errors, a busy port) print one line each."""
    try:
        return asyncio.run(coro())
    except (LudexError, OSError, BaseExceptionGroup) as exc:
        leaves = _leaves(exc)
        if not all(isinstance(e, LudexError | OSError) for e in leaves):
            raise
        for leaf in leaves:
            prefix = "configuration error: " if isinstance(leaf, ConfigError) else ""
            typer.echo(f"ludex: {prefix}{type(leaf).__name__}: {leaf}", err=True)
        raise typer.Exit(2 if any(isinstance(e, ConfigError) for e in leaves) else 1) from None


@app.callback(invoke_without_command=True)
def main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit(0)


@app.command()
def run(
    demo: Annotated[
        bool | None,
        typer.Option("--demo/--no-demo", help="Also run the demo producer (default: LUDEX_DEMO)."),
    ] = None,
) -> None:
    """Run every service in one process: gateway, outbox relay, analytics sink, deposit
    watcher (idle without LUDEX_CHAIN_CONTRACT), settlement (skipped without a contract and an
    operator keystore), and the demo if asked."""
    from ludex.composition import run_services

    settings = _settings()
    names = ["gateway", "outbox-relay", "analytics-sink", "deposit-watcher", "settlement"]
    if settings.demo if demo is None else demo:
        names += ["demo", "demo-tables"]
    typer.echo(
        f"ludex {__version__}: serving http://{settings.http_host}:{settings.http_port} "
        f"(backends: {settings.backends()})",
        err=True,
    )
    _run(lambda: run_services(settings, names))


@app.command()
def bots(
    tables: Annotated[int, typer.Option("--tables", min=1, max=10_000, help="Tables to open.")] = 2,
    players_per_table: Annotated[
        int, typer.Option("--players-per-table", min=2, max=10, help="Bots per table.")
    ] = 4,
    seconds: Annotated[float, typer.Option(min=1, help="How long they play.")] = 60.0,
    url: Annotated[
        str | None, typer.Option(help="Gateway URL (default: this machine's LUDEX_HTTP_PORT).")
    ] = None,
    table_prefix: Annotated[str, typer.Option(help="Table ids are PREFIX-1, PREFIX-2, ...")] = (
        "bots"
    ),
) -> None:
    """Bots that sign in with a wallet, buy in and play over the gateway's stream; prints a
    JSON summary (hands, actions, action-to-broadcast p50/p99). Needs LUDEX_ADMIN_TOKEN to
    open tables and fund the bots through the admin routes."""
    import httpx

    from ludex.gameserver.bots import AdminApi, BotError, run_bots

    settings = _settings()
    if settings.admin_token is None:
        raise _fail(
            "ludex: bots need LUDEX_ADMIN_TOKEN (tables and chips come from the admin API)", 2
        )
    admin_token = settings.admin_token.get_secret_value()
    base = url or f"http://127.0.0.1:{settings.http_port}"

    async def play() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            admin = AdminApi(http, admin_token)
            run = await run_bots(
                base,
                tables=tables,
                players_per_table=players_per_table,
                seconds=seconds,
                open_table=admin.open_table,
                fund=admin.fund,
                siwe_domain=settings.siwe_domain,
                chain_id=settings.siwe_chain_id,
                table_prefix=table_prefix,
            )
        return run.summary()

    _quiet_logs()
    try:
        summary = asyncio.run(play())
    except (BotError, httpx.HTTPError) as exc:
        raise _fail(f"ludex: bots: {exc}", 1) from None
    typer.echo(json.dumps(summary, indent=2))


@app.command()
def serve(
    name: Annotated[
        str,
        typer.Argument(
            help="gateway | outbox-relay | analytics-sink | deposit-watcher | settlement | "
            "indexer | demo | demo-tables"
        ),
    ],
    http: Annotated[
        bool, typer.Option("--http/--no-http", help="Serve /healthz, /readyz and /metrics too.")
    ] = True,
) -> None:
    """Run one service alone (to scale it out)."""
    from ludex.composition import SERVICES, run_services

    if name not in SERVICES:
        raise _fail(f"ludex: unknown service {name!r}; choose from {', '.join(SERVICES)}", 2)
    settings = _settings()
    _run(lambda: run_services(settings, [name], with_http=http))


@app.command()
def migrate(
    revision: Annotated[str, typer.Option(help="Alembic revision to upgrade to.")] = "head",
) -> None:
    """Apply the operational store's migrations."""
    from ludex.adapters.sql import create_store

    settings = _settings()

    async def go() -> None:
        store = create_store(settings.store_url)
        await store.start()
        try:
            await store.migrate(revision)
        finally:
            await store.close()

    _run(go)
    typer.echo(f"migrated {redact_url(settings.store_url)} to {revision}")


@app.command()
def health(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each backend.")] = 5.0,
) -> None:
    """Open every backend once, report whether each answers (JSON); exit 1 if one does not."""
    from ludex.composition import open_container
    from ludex.ops.health import check_backends, report

    settings = _settings()

    async def go() -> dict[str, Any]:
        async with open_container(settings, migrate=False) as container:
            return report(await check_backends(container, timeout))

    body = _run(go)
    typer.echo(json.dumps(body, indent=2))
    if not body["ready"]:
        raise typer.Exit(1)


@config_app.command("show")
def config_show() -> None:
    """Print the effective settings as JSON (secrets and URL passwords hidden)."""
    settings = _settings()
    values = json.loads(settings.model_dump_json())
    for field in ("store_url", "analytics_url", "bus_url", "cache_url", "chain_url"):
        values[field] = redact_url(values[field])
    values["indexer_rpc_urls"] = [redact_url(u) for u in values.get("indexer_rpc_urls", [])]
    typer.echo(json.dumps(values, indent=2, sort_keys=True))


@config_app.command("check")
def config_check() -> None:
    """Validate the settings; exit 2 with one line per bad field."""
    settings = _settings()
    typer.echo(f"settings ok: {settings.backends()}")


@events_app.command("list")
def events_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON with schemas.")] = False,
) -> None:
    """List every event type in the catalog with its topic and version."""
    import msgspec

    from ludex.events import catalog

    specs = list(catalog())
    if as_json:
        out = [
            {
                "type": s.type,
                "version": s.version,
                "topic": s.topic,
                "description": s.description,
                "schema": msgspec.json.schema(s.payload),
            }
            for s in specs
        ]
        typer.echo(json.dumps(out, indent=2))
        return
    width = max(len(s.type) for s in specs)
    for s in specs:
        typer.echo(f"{s.type:<{width}}  v{s.version}  {s.topic:<18} {s.description}")


@events_app.command("validate")
def events_validate(
    path: Annotated[
        Path,
        typer.Argument(
            help="A file of JSON envelopes, one per line.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
) -> None:
    """Check every envelope in a JSON-lines file; print each bad line's error; exit 1 if any."""
    from ludex.events import decode

    bad = 0
    total = 0
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            total += 1
            try:
                decode(line.strip())
            except LudexError as exc:
                bad += 1
                typer.echo(f"{path}:{number}: {exc}", err=True)
    typer.echo(f"{total - bad} valid, {bad} invalid")
    if bad:
        raise typer.Exit(1)


@bench_app.command("events")
def bench_events(
    count: Annotated[int, typer.Option(min=100, help="Envelopes per round.")] = 20_000,
    repeat: Annotated[int, typer.Option(min=1, help="Rounds; the best is reported.")] = 5,
) -> None:
    """Envelope encode/decode rates: ludex (msgspec) against pydantic v2 and stdlib json."""
    from ludex.bench.events import run as run_bench

    typer.echo(json.dumps(run_bench(count, repeat), indent=2))


def _bench_output(result: dict[str, Any]) -> None:
    """Print a backend benchmark's JSON; exit 1 when a backend failed (it says which)."""
    typer.echo(json.dumps(result, indent=2))
    failed = [name for name, entry in result["backends"].items() if "failed" in entry]
    if failed:
        typer.echo(f"ludex: bench: failed on {', '.join(failed)} (see the JSON)", err=True)
        raise typer.Exit(1)


def _quiet_logs() -> None:
    """Library warnings go to stderr as JSON; stdout carries only the figures."""
    from ludex.ops.logging import configure_logging

    configure_logging("WARNING", json=True, service="ludex-bench")


_SERVICE_HELP = "(default: {var} from the environment or .services/env; '' skips it)"


@bench_app.command("poker")
def bench_poker(
    evaluations: Annotated[
        int, typer.Option(min=1_000, help="Random 7-card hands evaluated one at a time.")
    ] = 200_000,
    batch: Annotated[
        int, typer.Option(min=1_000, help="Random 7-card hands evaluated in one batch.")
    ] = 10_000_000,
    hands: Annotated[int, typer.Option(min=10, help="Random 6-max NLHE hands for ludex.")] = 5_000,
    peer_hands: Annotated[
        int, typer.Option(min=10, help="Of those, how many pokerkit plays too.")
    ] = 500,
    repeat: Annotated[int, typer.Option(min=1, help="Rounds; the best is reported.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the random hands.")] = 0,
) -> None:
    """Evaluator rates (against phevaluator and treys) and hands/s (against pokerkit)."""
    from ludex.bench import poker_eval, poker_hands

    result = {
        "benchmark": "poker",
        "evaluator": poker_eval.run(count=evaluations, repeat=repeat, batch_count=batch),
        "hands": poker_hands.run(hands=hands, seed=seed, peer_hands=min(peer_hands, hands)),
    }
    typer.echo(json.dumps(result, indent=2))


@bench_app.command("ledger")
def bench_ledger(
    players: Annotated[int, typer.Option(min=2, help="Players (and ledger accounts).")] = 1_000,
    workers: Annotated[int, typer.Option(min=1, help="Concurrent workers.")] = 16,
    pairs: Annotated[int, typer.Option(min=10, help="Bet+win pairs through the service.")] = 2_000,
    transfers: Annotated[
        int, typer.Option(min=10, help="Raw ledger transfers between random players.")
    ] = 5_000,
    ceiling_pairs: Annotated[
        int,
        typer.Option(
            min=0, help="Bet+win pairs for the PostgreSQL batched-write ceiling (0: skip)."
        ),
    ] = 10_000,
    postgres: Annotated[
        str | None, typer.Option(help="PostgreSQL URL (default: LUDEX_TEST_POSTGRES_URL).")
    ] = None,
) -> None:
    """Bet+win pairs/s and p50/p99 through the wallet service, raw ledger transfers/s, and
    the PostgreSQL ceilings of this machine (bare driver; batched writes, no logic)."""
    from ludex.bench import ledger, wallet

    async def go() -> dict[str, Any]:
        return {
            "benchmark": "ledger",
            "service": await wallet.run_backends(
                postgres=postgres, players=players, workers=workers, pairs=pairs
            ),
            "ledger": await ledger.run(
                accounts=players,
                workers=workers,
                transfers=transfers,
                postgres=postgres,
                mysql="",
                ceiling_pairs=ceiling_pairs,
            ),
        }

    typer.echo(json.dumps(asyncio.run(go()), indent=2))


@bench_app.command("settlement")
def bench_settlement(
    seats: Annotated[int, typer.Option(min=2, max=10, help="Players at each table.")] = 6,
    tables: Annotated[
        int, typer.Option(min=1, help="Fresh tables a batch is spread over (worst case).")
    ] = 10,
    rounds: Annotated[
        int, typer.Option(min=1, help="Batches of 100 hands for the throughput figure.")
    ] = 5,
    anvil: Annotated[
        str | None,
        typer.Option(help="anvil RPC URL (default: LUDEX_TEST_ANVIL_URL; empty: start one here)."),
    ] = None,
) -> None:
    """Gas per settled hand at batch sizes 1, 10 and 100, and hands settled per second."""
    from ludex.bench import settlement

    typer.echo(
        json.dumps(
            asyncio.run(settlement.run(anvil=anvil, seats=seats, tables=tables, rounds=rounds)),
            indent=2,
        )
    )


@bench_app.command("indexer")
def bench_indexer(
    blocks: Annotated[int, typer.Option(min=1, help="Blocks of generated workload.")] = 500,
    txs_per_block: Annotated[int, typer.Option(min=1, help="Transactions in each block.")] = 8,
    live_seconds: Annotated[
        float, typer.Option(min=0.0, help="Seconds of live mining per store (0: no live phase).")
    ] = 5.0,
    live_rate: Annotated[float, typer.Option(min=0.1, help="Blocks mined per second live.")] = 12.0,
    postgres: Annotated[
        str | None,
        typer.Option(help="PostgreSQL URL " + _SERVICE_HELP.format(var="LUDEX_TEST_POSTGRES_URL")),
    ] = None,
    analytics: Annotated[
        bool, typer.Option("--analytics/--no-analytics", help="Also backfill SQLite + chDB.")
    ] = True,
    peer: Annotated[
        str,
        typer.Option(
            help="Peer to compare with: 'ethereum-etl' (installed on demand into "
            ".tools/ethereum-etl) or '' to skip it."
        ),
    ] = "ethereum-etl",
) -> None:
    """Indexer backfill blocks/s, transactions/s and logs/s per store, live latency and head
    lag at a fixed block rate, against ethereum-etl on the same anvil chain."""
    from ludex.bench import indexer

    if peer not in ("", "ethereum-etl"):
        typer.echo(f"ludex: --peer {peer!r}: use 'ethereum-etl' or ''", err=True)
        raise typer.Exit(2)
    _quiet_logs()
    _bench_output(
        asyncio.run(
            indexer.run(
                blocks=blocks,
                txs_per_block=txs_per_block,
                live_seconds=live_seconds,
                live_rate=live_rate,
                postgres=postgres,
                analytics=analytics,
                peer=peer == "ethereum-etl",
            )
        )
    )


@bench_app.command("bus")
def bench_bus(
    count: Annotated[int, typer.Option(min=1, help="Envelopes per publish round.")] = 20_000,
    keys: Annotated[int, typer.Option(min=1, help="Distinct partition keys.")] = 1_000,
    batch: Annotated[int, typer.Option(min=1, help="Envelopes per publish_many call.")] = 500,
    rounds: Annotated[int, typer.Option(min=1, help="Publish rounds; the best is reported.")] = 3,
    latency_samples: Annotated[
        int, typer.Option(min=0, help="Single publishes timed end to end (0: none).")
    ] = 200,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions per topic.")] = 8,
    kafka: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Kafka URL " + _SERVICE_HELP.format(var="LUDEX_TEST_KAFKA_URL"),
        ),
    ] = None,
) -> None:
    """Event bus publish/consume rates and latency: ludex (memory, Kafka) against bare aiokafka."""
    from ludex.bench.bus import run as run_bench

    _quiet_logs()
    _bench_output(
        asyncio.run(
            run_bench(
                count,
                keys=keys,
                batch=batch,
                rounds=rounds,
                latency_samples=latency_samples,
                partitions=partitions,
                kafka=kafka,
            )
        )
    )


@bench_app.command("kv")
def bench_kv(
    ops: Annotated[int, typer.Option(min=1, help="Operations per kind and run.")] = 10_000,
    concurrency: Annotated[int, typer.Option(min=1, help="Concurrent tasks.")] = 50,
    repeat: Annotated[int, typer.Option(min=1, help="Runs; the best is reported.")] = 2,
    keys: Annotated[int, typer.Option(min=1, help="Distinct keys for get/set.")] = 1_000,
    redis: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Redis URL " + _SERVICE_HELP.format(var="LUDEX_TEST_REDIS_URL"),
        ),
    ] = None,
) -> None:
    """KeyValue op rates (get, set, CAS, rate limit, remember, lock): ludex against redis-py."""
    from ludex.bench.kv import run as run_bench

    _quiet_logs()
    _bench_output(
        asyncio.run(run_bench(ops, concurrency=concurrency, repeat=repeat, keys=keys, redis=redis))
    )


@bench_app.command("outbox")
def bench_outbox(
    rows: Annotated[int, typer.Option(min=1, help="Outbox rows per phase and round.")] = 5_000,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds; the best is reported.")] = 2,
    txn_size: Annotated[int, typer.Option(min=1, help="Rows per write transaction.")] = 100,
    relay_batch: Annotated[int, typer.Option(min=1, help="Relay batch size.")] = 500,
    postgres: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="PostgreSQL URL " + _SERVICE_HELP.format(var="LUDEX_TEST_POSTGRES_URL"),
        ),
    ] = None,
    mysql: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="MariaDB/MySQL URL " + _SERVICE_HELP.format(var="LUDEX_TEST_MYSQL_URL"),
        ),
    ] = None,
) -> None:
    """Outbox write and relay rates (SQLite, PostgreSQL, MariaDB) against bare SQLAlchemy inserts.

    Server backends run in a fresh database the run creates and drops (needs CREATE DATABASE).
    """
    from ludex.bench.outbox import run as run_bench

    _quiet_logs()
    _bench_output(
        asyncio.run(
            run_bench(
                rows,
                rounds=rounds,
                txn_size=txn_size,
                relay_batch=relay_batch,
                postgres=postgres,
                mysql=mysql,
            )
        )
    )


@bench_app.command("realtime")
def bench_realtime(
    subscribers: Annotated[
        list[int] | None,
        typer.Option(min=1, help="Subscribers on one channel; repeat for several runs."),
    ] = None,
    tables: Annotated[
        int, typer.Option(min=0, help="Table channels the largest run is spread over (0: skip).")
    ] = 500,
    messages: Annotated[
        int | None,
        typer.Option(min=1, help="Messages per channel (default: 200,000 deliveries per run)."),
    ] = None,
    client_processes: Annotated[
        int | None, typer.Option(min=1, help="Client processes (default: CPUs - 1).")
    ] = None,
    peer: Annotated[
        bool, typer.Option("--peer/--no-peer", help="Also run python-socketio on the same load.")
    ] = True,
    bot_tables: Annotated[
        int, typer.Option(min=0, help="Tables of bots for action-to-broadcast (0: skip).")
    ] = 200,
    bot_players: Annotated[int, typer.Option(min=2, max=10, help="Bots per table.")] = 3,
    bot_seconds: Annotated[float, typer.Option(min=1, help="How long the bots play.")] = 20.0,
    bot_think_ms: Annotated[
        list[float] | None,
        typer.Option(
            min=0,
            max=60_000,
            help="Bots' mean think time before acting; repeat for one run each "
            "(default: 500 and 0, the ceiling).",
        ),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option("--quick", help="200 subscribers, 20 tables, 20 messages, 5 bot tables."),
    ] = False,
) -> None:
    """Stream fan-out: deliveries/s and p50/p99 latency of /v1/stream (1,000 and 5,000
    subscribers on one channel, and spread over 500 tables), against python-socketio."""
    from ludex.bench.realtime import BOT_THINK_MS, QUICK, Options
    from ludex.bench.realtime import run as run_bench

    if quick:
        options = Options(
            subscribers=tuple(subscribers or QUICK.subscribers),
            tables=QUICK.tables,
            messages=QUICK.messages,
            client_processes=client_processes,
            peer=peer,
            bot_tables=QUICK.bot_tables,
            bot_players=QUICK.bot_players,
            bot_seconds=QUICK.bot_seconds,
            bot_think_ms=tuple(bot_think_ms or QUICK.bot_think_ms),
        )
    else:
        options = Options(
            subscribers=tuple(subscribers or (1_000, 5_000)),
            tables=tables,
            messages=messages,
            client_processes=client_processes,
            peer=peer,
            bot_tables=bot_tables,
            bot_players=bot_players,
            bot_seconds=bot_seconds,
            bot_think_ms=tuple(bot_think_ms or BOT_THINK_MS),
        )
    _quiet_logs()
    _bench_output(asyncio.run(run_bench(options)))


def entrypoint() -> None:  # pragma: no cover - console script shim
    sys.exit(app())
