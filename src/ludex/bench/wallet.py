"""Wallet benchmark: bet + win pairs per second through ``WalletService`` (not HTTP).

Each pair is a provider bet followed by its win (which settles the round), for one
of ``players`` players, from ``workers`` concurrent tasks, idempotency on (every
request looks up and stores its provider transaction row, moves money through the
ledger, updates its round and writes its outbox event, in one transaction). HMAC
signature checks are NOT in the timed path (they happen at the HTTP edge); their
cost per request is measured separately and reported as ``hmac_verify_us``.

At the end the books must balance: the players' balances plus the provider float
equal what the house funded, and every pair left exactly two ledger transfers. A
run that does not balance raises instead of reporting a figure.

``run(url)`` expects an empty database (the caller creates it, e.g. with
:func:`ludex.bench._db.fresh_database`); ``run_backends`` does that for SQLite and
PostgreSQL. This module must never run against a database it did not get empty.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from ludex import ledger
from ludex.adapters.kv import create_key_value
from ludex.adapters.sql import create_store
from ludex.adapters.sql.tables import ledger_transfers
from ludex.bench._common import (
    cpu_per_item,
    cpu_seconds,
    header,
    latency_ms,
    per_second,
    progress,
    redacted,
    resolve,
)
from ludex.bench._db import fresh_database
from ludex.wagering.models import BetRequest, Status, WinRequest
from ludex.wagering.service import WalletService, player_account, provider_account
from ludex.wagering.signing import AuthHeaders, check_request, sign

FUNDING = 1_000_000
PROVIDER = "bench-studio"


def _hmac_verify_us(samples: int = 20_000) -> float:
    body = b'{"player_id":"p-1","game_id":"g","round_id":"r","transaction_id":"t","amount":1}'
    signature = sign("whsec_bench", "1700000000", "nonce-bench", body)
    auth = AuthHeaders("bench", 1700000000, "1700000000", "nonce-bench", signature)
    started = time.perf_counter()
    for _ in range(samples):
        check_request(auth, "whsec_bench", body, now=1700000000, window=30)
    return round((time.perf_counter() - started) / samples * 1e6, 2)


async def run(
    url: str, *, players: int = 1000, workers: int = 16, pairs: int = 2000, warmup: int = 200
) -> dict[str, Any]:
    """Measure bet+win pairs/s and per-request latency on the store at ``url``."""
    store = create_store(url, pool_size=workers + 2)
    kv = create_key_value("memory://")
    await store.start()
    await kv.start()
    try:
        await store.migrate()
        service = WalletService(store, kv, cache_seconds=5.0, producer="bench")
        await service.add_provider(PROVIDER, "bench", actor="bench")
        gate = asyncio.Semaphore(workers)

        async def add(i: int) -> None:
            async with gate:
                await service.add_player(f"bp-{i}", balance=FUNDING, actor="bench")

        progress(f"wallet: {players} players on {redacted(url)}")
        await asyncio.gather(*(add(i) for i in range(players)))

        bet_latency: list[float] = []
        win_latency: list[float] = []
        failures: list[str] = []

        async def pair(n: int, record: bool) -> None:
            player = f"bp-{n % players}"
            round_id = f"r-{n}"
            started = time.perf_counter()
            bet = await service.bet(
                PROVIDER,
                BetRequest(
                    player_id=player,
                    game_id="bench",
                    round_id=round_id,
                    transaction_id=f"b-{n}",
                    amount=10,
                    currency="CHIPS",
                ),
            )
            middle = time.perf_counter()
            win = await service.win(
                PROVIDER,
                WinRequest(
                    player_id=player,
                    game_id="bench",
                    round_id=round_id,
                    transaction_id=f"w-{n}",
                    amount=7,
                    currency="CHIPS",
                ),
            )
            ended = time.perf_counter()
            if bet.status is not Status.OK or win.status is not Status.OK:
                failures.append(f"pair {n}: {bet.status} / {win.status}")
            if record:
                bet_latency.append(middle - started)
                win_latency.append(ended - middle)

        async def drive(first: int, count: int, record: bool) -> float:
            queue = iter(range(first, first + count))

            async def worker() -> None:
                for n in queue:
                    await pair(n, record)

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(workers)))
            return time.perf_counter() - started

        await drive(0, warmup, record=False)
        progress(f"wallet: {pairs} bet+win pairs, {workers} workers")
        batches_before, items_before = service.batch_counts
        cpu_before = cpu_seconds()
        seconds = await drive(warmup, pairs, record=True)
        cpu_after = cpu_seconds()
        batches = service.batch_counts[0] - batches_before
        batched = service.batch_counts[1] - items_before
        if failures:
            raise RuntimeError(f"{len(failures)} pairs failed, first: {failures[0]}")

        total = warmup + pairs
        async with store.transaction() as session:
            balances = await ledger.balances(
                session,
                [player_account(f"bp-{i}") for i in range(players)] + [provider_account(PROVIDER)],
            )
            moved = await session.scalar(
                select(func.count())
                .select_from(ledger_transfers)
                .where(ledger_transfers.c.code.in_(["bet", "win"]))
            )
        if sum(b.balance for b in balances.values()) != players * FUNDING:
            raise RuntimeError("wallet bench: balances do not add up to the funding")
        if int(moved or 0) != 2 * total:
            raise RuntimeError(f"wallet bench: {moved} transfers for {total} pairs")
        samples = bet_latency + win_latency
        return {
            "store": store.dialect,
            "players": players,
            "workers": workers,
            "pairs": pairs,
            "seconds": round(seconds, 3),
            "pairs_per_s": per_second(pairs, seconds),
            "transfers_per_s": per_second(2 * pairs, seconds),
            "requests": latency_ms(samples),
            "mean_batch": round(batched / batches, 2) if batches else 0,
            "cpu_us_per_request": cpu_per_item(cpu_before, cpu_after, 2 * pairs),
            "bet": latency_ms(bet_latency),
            "win": latency_ms(win_latency),
            "signature_checks": "not in the timed path (see hmac_verify_us)",
        }
    finally:
        await kv.close()
        await store.close()


async def run_backends(
    *,
    postgres: str | None = None,
    players: int = 1000,
    workers: int = 16,
    pairs: int = 2000,
) -> dict[str, Any]:
    """``run`` on a fresh SQLite file and a fresh PostgreSQL database (skipped if unknown)."""
    result = header(
        "wallet",
        idempotency=True,
        path="WalletService.bet + WalletService.win (no HTTP, no HMAC)",
        hmac_verify_us=_hmac_verify_us(),
    )
    backends: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ludex-bench-wallet-") as folder:
        async with fresh_database("sqlite", None, Path(folder)) as url:
            backends["sqlite"] = await run(url, players=players, workers=workers, pairs=pairs)
    pg_url, reason = resolve("postgres", postgres)
    if pg_url is None:
        backends["postgres"] = {"skipped": reason}
    else:
        async with fresh_database("postgres", pg_url, Path(".")) as url:
            backends["postgres"] = await run(url, players=players, workers=workers, pairs=pairs)
    result["backends"] = backends
    return result
