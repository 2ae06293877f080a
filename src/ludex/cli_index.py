"""``ludex index``: backfill a block range (and optionally follow the head) into the
operational store named by ``LUDEX_STORE_URL`` (migrated first).

A progress bar (rich, on stderr) runs during the backfill; a JSON summary (blocks,
transactions, logs, transfers, seconds, blocks/s) goes to stdout at the end. This is an
I/O edge: the work is in ``ludex.indexer.pipeline``; URLs are shown redacted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def index(
    rpc: Annotated[
        list[str],
        typer.Option(
            "--rpc",
            metavar="URL",
            help="JSON-RPC URL of the node; repeat for fail-over URLs (the first is preferred).",
        ),
    ],
    ws: Annotated[
        str | None,
        typer.Option(
            "--ws", metavar="URL", help="WebSocket URL for newHeads (wakes --follow; optional)."
        ),
    ] = None,
    first: Annotated[
        int | None,
        typer.Option(
            "--from", help="First block (default: after the checkpoint, else block 0).", min=0
        ),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option("--to", help="Last block (default: the head at start).", min=0),
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", help="After the backfill, follow the head until Ctrl-C."),
    ] = False,
    batch_blocks: Annotated[
        int,
        typer.Option("--batch-blocks", help="Blocks per range (one store transaction).", min=1),
    ] = 100,
    confirmations: Annotated[
        int,
        typer.Option("--confirmations", help="Stay this many blocks behind the head.", min=0),
    ] = 0,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate", help="At most this many JSON-RPC calls per second (default: no limit)."
        ),
    ] = None,
    name: Annotated[
        str, typer.Option("--name", help="Checkpoint name (one per independent indexer).")
    ] = "default",
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")
    ] = True,
    traces: Annotated[
        bool,
        typer.Option(
            "--traces/--no-traces",
            help="Read call traces (debug_traceBlockByNumber) where the node has them: "
            "internal contract creations and native balance changes. --no-traces is "
            "faster (no native balance changes).",
        ),
    ] = True,
    mempool_on: Annotated[
        bool,
        typer.Option(
            "--mempool",
            help="With --follow: also watch pending transactions (txpool_content or a "
            "pending filter, and newPendingTransactions with --ws) and record their "
            "inclusion, replacement or drop.",
        ),
    ] = False,
    drop_after: Annotated[
        float,
        typer.Option(
            "--drop-after",
            min=0.0,
            metavar="SECONDS",
            help="A pending transaction gone from the node this long, its nonce unused, "
            "is dropped.",
        ),
    ] = 600.0,
    abi_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--abi",
            metavar="FILE",
            help="ABI JSON file (bare list or Hardhat/Foundry artifact) to decode events "
            "with, named after the file stem; repeatable. Enables chain.event_decoded.",
        ),
    ] = None,
    abi_addresses: Annotated[
        list[str] | None,
        typer.Option(
            "--abi-address",
            metavar="NAME=0xADDR",
            help="Bind a known ABI (a file stem, a project contract or erc20/erc721/erc1155) "
            "to a contract address; repeatable.",
        ),
    ] = None,
) -> None:
    """Index blocks, transactions, receipts, logs, token transfers and contracts into the store."""
    import asyncio
    import json
    import signal
    import time

    from ludex.adapters.sql import create_store
    from ludex.config import load_settings
    from ludex.errors import ConfigError, LudexError
    from ludex.indexer.abi_registry import AbiRegistry
    from ludex.indexer.mempool import MempoolWatcher
    from ludex.indexer.pipeline import Indexer
    from ludex.indexer.source import RpcSource, watch_new_heads
    from ludex.indexer.store import RowCounts

    if follow and last is not None:
        typer.echo("ludex: --to and --follow exclude each other", err=True)
        raise typer.Exit(2)
    if mempool_on and not follow:
        typer.echo("ludex: --mempool watches the live pool: use it with --follow", err=True)
        raise typer.Exit(2)
    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(f"ludex: configuration error\n{exc}", err=True)
        raise typer.Exit(2) from None
    registry: AbiRegistry | None = None
    if abi_files or abi_addresses:
        try:
            registry = AbiRegistry.from_options(abi_files or [], abi_addresses or [])
        except LudexError as exc:
            typer.echo(f"ludex: {exc}", err=True)
            raise typer.Exit(2) from None

    async def main() -> dict[str, Any]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        store = create_store(settings.store_url, pool_size=4)
        source = RpcSource(rpc, rate_per_s=rate, traces=traces)
        await store.start()
        await source.start()
        started = time.perf_counter()
        try:
            await store.migrate()
            chain_id = await source.chain_id()
            indexer = Indexer(
                store,
                source,
                chain_id=chain_id,
                name=name,
                batch_blocks=batch_blocks,
                confirmations=confirmations,
                abi=registry,
                mempool=mempool_on,
            )
            pool: MempoolWatcher | None = None
            top = last if last is not None else await indexer.target()
            begin = first
            if begin is None:
                cp = await indexer.checkpoint()
                begin = 0 if cp is None else cp.block_number + 1
            if begin <= top:
                from rich.console import Console

                with Progress(
                    TextColumn("blocks"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    console=Console(stderr=True),
                    disable=not progress,
                ) as bar:
                    task = bar.add_task("backfill", total=top - begin + 1)

                    def advance(blocks: int, _rows: RowCounts) -> None:
                        bar.advance(task, blocks)

                    await indexer.backfill(begin, top, progress=advance)
            if follow:
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                watcher = None
                if ws is not None:
                    watcher = asyncio.create_task(
                        watch_new_heads(ws, lambda _n: indexer.wake.set(), stop)
                    )
                pooling = None
                if mempool_on:
                    pool = MempoolWatcher(
                        store,
                        source,
                        chain_id,
                        ws_url=ws,
                        drop_after=drop_after,
                        producer="indexer",
                    )
                    pooling = asyncio.create_task(pool.run(stop))
                await indexer.follow(stop, start=top + 1)
                if watcher is not None:
                    await watcher
                if pooling is not None:
                    await pooling
            rows = indexer.stats.rows
            seconds = time.perf_counter() - started
            summary: dict[str, Any] = {
                "chain_id": chain_id,
                "blocks": rows.blocks,
                "transactions": rows.transactions,
                "logs": rows.logs,
                "transfers": rows.transfers,
                "contracts": rows.contracts,
                "balance_changes": rows.balance_changes,
                "reorgs": len(indexer.stats.reorgs),
                "decoded_events": indexer.stats.decoded,
                "abi_cache_hit_rate": round(registry.hit_rate, 4) if registry else 0.0,
                "seconds": round(seconds, 3),
                "blocks_per_s": round(rows.blocks / seconds, 1) if seconds > 0 else 0.0,
            }
            if pool is not None:
                fates = pool.stats.changes
                summary["mempool"] = {
                    "seen": fates.seen,
                    "included": fates.included,
                    "replaced": fates.replaced,
                    "dropped": fates.dropped,
                }
            return summary
        finally:
            await source.close()
            await store.close()

    try:
        summary = asyncio.run(main())
    except LudexError as exc:
        typer.echo(f"ludex: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(summary))
