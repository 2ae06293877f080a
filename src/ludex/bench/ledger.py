"""Raw ledger throughput: ``ludex.ledger.transfer`` one transfer per transaction.

For each store backend, in a fresh database migrated to head: ``accounts`` player
accounts funded from one external account, then ``workers`` concurrent tasks each
running single transfers between two random players (random amounts, each in its
own ``store.transaction()``) until ``transfers`` are done or ``seconds`` have
passed. Reported: transfers/s, per-transfer latency (p50/p99/max, the whole
transaction including waiting for a pooled connection) and refusals.

Where the time goes: a transfer is 4 statements (lock both accounts with one
``SELECT ... ORDER BY id FOR UPDATE``, look up the id, INSERT the transfer,
one UPDATE with CASE for both accounts) plus BEGIN and COMMIT. The ``round_trips``
phase runs the same number of round trips per transaction with ``SELECT 1`` only,
same workers, same pool: the ceiling of this shape of transaction on this machine
and driver, whatever the SQL does. The check at the end verifies that every
ledger's balances still sum to zero and the log has one row per success.

This module must never touch a database it did not create (see ``_db``).
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from sqlalchemy import func, select, text

from ludex import ledger
from ludex.adapters.sql import SqlStore, create_store
from ludex.adapters.sql.tables import ledger_transfers
from ludex.bench._common import header, latency_ms, per_second, progress, redacted, resolve
from ludex.bench._db import fresh_database
from ludex.bench.ledger_ceiling import run_ceilings
from ludex.errors import InsufficientFunds, StoreError
from ludex.ledger import AccountKind, AccountSpec, TransferSpec

BACKENDS: Final = ("sqlite", "postgres", "mysql")
STATEMENTS_PER_TRANSFER: Final = 4
FUNDING: Final = 1_000_000
FUND_BATCH: Final = 200


async def _open_accounts(store: SqlStore, accounts: int) -> list[str]:
    players = [f"bench-p{i:06d}" for i in range(accounts)]
    async with store.transaction() as session:
        await ledger.create_accounts(
            session,
            [AccountSpec("bench-world", ledger.CHIPS, AccountKind.EXTERNAL, allow_negative=True)]
            + [AccountSpec(p, ledger.CHIPS, AccountKind.PLAYER) for p in players],
        )
    for i in range(0, accounts, FUND_BATCH):
        async with store.transaction() as session:
            await ledger.transfer(
                session,
                [
                    TransferSpec(f"fund-{p}", "bench-world", p, FUNDING, ledger.CHIPS, "deposit")
                    for p in players[i : i + FUND_BATCH]
                ],
            )
    return players


async def _drive(
    workers: int,
    transfers: int,
    seconds: float | None,
    one: Callable[[random.Random, str], Awaitable[bool]],
    phase: str,
) -> tuple[int, int, float, list[float]]:
    """Run ``one`` from ``workers`` tasks; return (done, refused, elapsed, latencies)."""
    latencies: list[float] = []
    counter = iter(range(transfers))
    refused = 0
    started = time.perf_counter()
    deadline = started + seconds if seconds else None

    async def worker(n: int) -> None:
        nonlocal refused
        rng = random.Random(n)
        for i in counter:
            if deadline is not None and time.perf_counter() >= deadline:
                return
            t0 = time.perf_counter()
            ok = await one(rng, f"{phase}{i}")
            latencies.append(time.perf_counter() - t0)
            refused += not ok

    await asyncio.gather(*(worker(n) for n in range(workers)))
    elapsed = time.perf_counter() - started
    return len(latencies), refused, elapsed, latencies


async def run_transfers(
    url: str,
    *,
    accounts: int = 1_000,
    workers: int = 16,
    transfers: int = 20_000,
    seconds: float | None = None,
    warmup: int = 500,
) -> dict[str, Any]:
    """Measure raw ledger transfers on ``url`` (a fresh database; it is migrated)."""
    store = create_store(url, pool_size=workers)
    await store.start()
    try:
        await store.migrate()
        progress(f"ledger/{store.dialect}: opening and funding {accounts} accounts")
        players = await _open_accounts(store, accounts)

        async def one_transfer(rng: random.Random, transfer_id: str) -> bool:
            debit, credit = rng.sample(players, 2)
            spec = TransferSpec(
                transfer_id,
                debit,
                credit,
                rng.randint(1, 1_000),
                ledger.CHIPS,
                "bench",
            )
            try:
                async with store.transaction() as session:
                    await ledger.transfer(session, [spec])
            except InsufficientFunds:
                return False
            return True

        async def same_round_trips(rng: random.Random, transfer_id: str) -> bool:
            async with store.transaction() as session:
                for _ in range(STATEMENTS_PER_TRANSFER):
                    await session.execute(text("SELECT 1"))
            return True

        progress(f"ledger/{store.dialect}: warm-up, {warmup} transfers")
        warm_done, warm_refused, _, _ = await _drive(workers, warmup, None, one_transfer, "w")
        progress(f"ledger/{store.dialect}: {transfers} transfers, {workers} workers")
        done, refused, elapsed, latencies = await _drive(
            workers, transfers, seconds, one_transfer, "t"
        )
        progress(f"ledger/{store.dialect}: round-trip ceiling, {transfers} empty transactions")
        rt_done, _, rt_elapsed, rt_latencies = await _drive(
            workers, transfers, seconds, same_round_trips, "r"
        )

        async with store.transaction() as session:
            all_balances = await ledger.ledger_balances(session, ledger.CHIPS)
            rows = int(
                await session.scalar(select(func.count()).select_from(ledger_transfers)) or 0
            )
        if sum(b.balance for b in all_balances.values()) != 0:
            raise StoreError(f"bench: ledger on {store.dialect}: balances do not sum to zero")
        applied = done - refused
        expected_rows = accounts + (warm_done - warm_refused) + applied
        if rows != expected_rows:
            raise StoreError(
                f"bench: ledger on {store.dialect}: {rows} transfer rows, expected {expected_rows}"
            )
        return {
            "transfers": {
                "attempted": done,
                "applied": applied,
                "refused_insufficient_funds": refused,
                "seconds": round(elapsed, 3),
                "transfers_per_s": per_second(applied, elapsed),
                "latency": latency_ms(latencies),
            },
            "round_trips_only": {
                "transactions": rt_done,
                "statements_per_transaction": STATEMENTS_PER_TRANSFER,
                "transactions_per_s": per_second(rt_done, rt_elapsed),
                "latency": latency_ms(rt_latencies),
            },
            "check": {"balances_sum_to_zero": True, "transfer_rows": rows},
        }
    finally:
        await store.close()


async def run(
    *,
    accounts: int = 1_000,
    workers: int = 16,
    transfers: int = 20_000,
    seconds: float | None = None,
    postgres: str | None = None,
    mysql: str | None = "",
    ceiling_pairs: int = 10_000,
) -> dict[str, Any]:
    """The ledger phase on SQLite and PostgreSQL (MySQL when given a URL or None), and
    on PostgreSQL the ceilings of :mod:`ludex.bench.ledger_ceiling` (0 pairs: skip them)."""
    backends: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ludex-bench-") as folder:
        for kind in BACKENDS:
            if kind == "sqlite":
                base, reason = None, None
            else:
                base, reason = resolve(kind, postgres if kind == "postgres" else mysql)
                if base is None:
                    backends[kind] = {"skipped": reason}
                    continue
            entry: dict[str, Any] = {"url": redacted(base) if base else "sqlite (temporary file)"}
            try:
                async with fresh_database(kind, base, Path(folder)) as url:
                    entry.update(
                        await run_transfers(
                            url,
                            accounts=accounts,
                            workers=workers,
                            transfers=transfers,
                            seconds=seconds,
                        )
                    )
                if kind == "postgres" and ceiling_pairs:
                    async with fresh_database(kind, base, Path(folder)) as url:
                        entry["ceilings"] = await run_ceilings(
                            url, players=accounts, workers=workers, pairs=ceiling_pairs
                        )
            except Exception as exc:  # ludex or driver errors: report them in the JSON
                entry["failed"] = f"{type(exc).__name__}: {exc}"
            backends[kind] = entry
    return header(
        "ledger",
        input={
            "accounts": accounts,
            "workers": workers,
            "transfers": transfers,
            "ceiling_pairs": ceiling_pairs,
        },
        backends=backends,
        note=(
            "ledger.transfer: one single transfer per transaction between two random "
            f"funded players; {STATEMENTS_PER_TRANSFER} statements + BEGIN/COMMIT each. "
            "round_trips_only: the same workers running transactions of "
            f"{STATEMENTS_PER_TRANSFER} x SELECT 1, the ceiling of that transaction "
            "shape on this machine and driver. Latency is per transaction, pool wait "
            "included. postgres.ceilings: the same transaction shape on bare asyncpg, "
            "and the rows of a bet or win written in group-committed batches with no "
            "read, lock or rule (see ludex.bench.ledger_ceiling): upper bounds for any "
            "design of the service on this machine."
        ),
    )
