"""PostgreSQL ceilings for the ledger benchmark: what this machine allows at best.

Two phases, measured in the same run as the service and ledger figures, with the
same workers, on a fresh database migrated to head:

``driver_round_trips``
    The ``round_trips_only`` transaction (BEGIN, 4 x ``SELECT 1``, COMMIT) on bare
    asyncpg connections instead of SQLAlchemy sessions: what the database driver
    allows, against what the SQLAlchemy async layer allows.

``batched_writes``
    The rows one accepted bet or win writes (its ledger transfer, its provider
    transaction, its round, its outbox event and the player's counters), group
    committed: ``workers`` closed-loop clients hand requests to one writer task that
    drains the queue and writes the whole batch in ONE statement (data-modifying
    CTEs over ``unnest`` arrays, autocommit). No idempotency lookup, no lock, no
    rule is checked: it is the floor cost of storing a transfer with this schema on
    this machine, i.e. an upper bound for any design of the service layer.

This module must never touch a database it did not create (it only runs on the
URL :func:`ludex.bench._db.fresh_database` yields).
"""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from typing import Any, Final

import asyncpg
from sqlalchemy.engine import make_url

from ludex.adapters.sql import create_store
from ludex.bench._common import latency_ms, per_second, progress

STATEMENTS: Final = 4
PROVIDER: Final = "bench-studio"
FUNDING: Final = 1_000_000

_WRITE_BATCH: Final = """
WITH
t AS (
  INSERT INTO ledger_transfers
    (id, debit, credit, amount, ledger, code, metadata, pending, state, created_at)
  SELECT id, debit, credit, amount, 'CHIPS', code, '{}', false, 'posted', $26
  FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[])
    AS v(id, debit, credit, amount, code)
),
a AS (
  UPDATE ledger_accounts SET posted_debits = v.d, posted_credits = v.c
  FROM unnest($6::text[], $7::bigint[], $8::bigint[]) AS v(id, d, c)
  WHERE ledger_accounts.id = v.id
),
p AS (
  INSERT INTO provider_transactions
    (provider_id, transaction_id, kind, player_id, game_id, round_id, amount, currency,
     request_hash, status, response, transfer_id, created_at)
  SELECT $27, tx, kind, player, 'bench-game', round, amount, 'CHIPS', hash, 'OK',
         response, transfer, $26
  FROM unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[],
              $14::text[], $15::bytea[], $16::text[])
    AS v(tx, kind, player, round, amount, hash, response, transfer)
),
r AS (
  INSERT INTO provider_rounds
    (provider_id, round_id, player_id, game_id, status, open_stakes, open_bets,
     total_bet, total_win, created_at, updated_at)
  SELECT $27, round, player, 'bench-game', status, stakes, 1, stakes, win, $26, $26
  FROM unnest($17::text[], $18::text[], $19::text[], $20::bigint[], $21::bigint[])
    AS v(round, player, status, stakes, win)
  ON CONFLICT (provider_id, round_id) DO UPDATE
    SET status = excluded.status, total_win = excluded.total_win,
        updated_at = excluded.updated_at
)
INSERT INTO outbox (event_id, topic, event_type, partition_key, payload, created_at)
SELECT event_id, 'ludex.wallet', event_type, key, payload, $26
FROM unnest($22::text[], $23::text[], $24::text[], $25::bytea[])
  AS v(event_id, event_type, key, payload)
"""


def _dsn(url: str) -> str:
    """A libpq DSN for asyncpg from a ludex/SQLAlchemy PostgreSQL URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _setup(url: str, players: int) -> list[str]:
    store = create_store(url)
    await store.start()
    try:
        await store.migrate()
    finally:
        await store.close()
    ids = [f"bench-p{i:06d}" for i in range(players)]
    now = datetime.now(UTC)
    conn = await asyncpg.connect(_dsn(url))
    try:
        await conn.executemany(
            "INSERT INTO ledger_accounts (id, ledger, kind, allow_negative, track_balance,"
            " posted_debits, posted_credits, pending_debits, pending_credits, created_at)"
            " VALUES ($1, 'CHIPS', $2, $3, $4, 0, $5, 0, 0, $6)",
            [(f"player:{p}", "player", False, True, FUNDING, now) for p in ids]
            + [(f"provider:{PROVIDER}", "provider_float", True, False, 0, now)],
        )
    finally:
        await conn.close()
    return ids


async def _driver_round_trips(
    dsn: str, workers: int, transactions: int
) -> tuple[int, float, list[float]]:
    pool = await asyncpg.create_pool(dsn, min_size=workers, max_size=workers)
    latencies: list[float] = []
    counter = iter(range(transactions))
    try:

        async def worker() -> None:
            async with pool.acquire() as conn:
                for _ in counter:
                    t0 = time.perf_counter()
                    async with conn.transaction():
                        for _ in range(STATEMENTS):
                            await conn.fetchval("SELECT 1")
                    latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return len(latencies), time.perf_counter() - started, latencies
    finally:
        await pool.close()


class _Batch:
    """Column arrays for one batched write, filled request by request."""

    def __init__(self) -> None:
        self.transfers: tuple[list[Any], ...] = ([], [], [], [], [])
        self.accounts: dict[str, list[int]] = {}
        self.transactions: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [])
        self.rounds: tuple[list[Any], ...] = ([], [], [], [], [])
        self.events: tuple[list[Any], ...] = ([], [], [], [])

    def add(self, kind: str, player: str, n: int, amount: int, balances: list[int]) -> None:
        account = f"player:{player}"
        tid = f"w{kind[0]}:{PROVIDER}:{kind}-{n}"
        if kind == "bet":
            balances[0] += amount
            debit, credit = account, f"provider:{PROVIDER}"
        else:
            balances[1] += amount
            debit, credit = f"provider:{PROVIDER}", account
        self.accounts[account] = balances
        response = (
            f'{{"status":"OK","balance":{balances[1] - balances[0]},"currency":"CHIPS",'
            f'"transaction_id":"{kind}-{n}"}}'
        ).encode()
        for column, value in zip(self.transfers, (tid, debit, credit, amount, kind), strict=True):
            column.append(value)
        for column, value in zip(
            self.transactions,
            (f"{kind}-{n}", kind, player, f"round-{n}", amount, f"{n:064x}", response, tid),
            strict=True,
        ):
            column.append(value)
        closed = kind == "win"
        for column, value in zip(
            self.rounds,
            (f"round-{n}", player, "closed" if closed else "open", amount, amount if closed else 0),
            strict=True,
        ):
            column.append(value)
        for column, value in zip(
            self.events,
            (f"{n:025d}{kind[0]}", f"wallet.{kind}", player, response + b" " * 120),
            strict=True,
        ):
            column.append(value)

    def arguments(self) -> list[Any]:
        ids = sorted(self.accounts)
        return [
            *self.transfers,
            ids,
            [self.accounts[a][0] for a in ids],
            [self.accounts[a][1] for a in ids],
            *self.transactions,
            *self.rounds,
            *self.events,
            datetime.now(UTC),
            PROVIDER,
        ]


async def _batched_writes(
    dsn: str, players: list[str], workers: int, pairs: int
) -> tuple[int, float, list[float], list[int]]:
    """Closed-loop bet-then-win pairs through one group-committing writer task."""
    queue: asyncio.Queue[tuple[str, str, int, asyncio.Future[None]]] = asyncio.Queue()
    balances = {p: [0, FUNDING] for p in players}
    batch_sizes: list[int] = []
    conn = await asyncpg.connect(dsn)
    try:
        statement = await conn.prepare(_WRITE_BATCH)

        async def writer() -> None:
            while True:
                items = [await queue.get()]
                while not queue.empty():
                    items.append(queue.get_nowait())
                batch = _Batch()
                for kind, player, n, _ in items:
                    batch.add(kind, player, n, 5, balances[player])
                try:
                    await statement.fetch(*batch.arguments())
                except Exception as exc:  # hand the failure to every waiting client
                    for *_, done in items:
                        done.set_exception(exc)
                    continue
                batch_sizes.append(len(items))
                for *_, done in items:
                    done.set_result(None)

        latencies: list[float] = []
        counter = iter(range(pairs))
        loop = asyncio.get_running_loop()

        async def client(seed: int) -> None:
            rng = random.Random(seed)
            for n in counter:
                player = rng.choice(players)
                for kind in ("bet", "win"):
                    t0 = time.perf_counter()
                    done: asyncio.Future[None] = loop.create_future()
                    queue.put_nowait((kind, player, n, done))
                    await done
                    latencies.append(time.perf_counter() - t0)

        task = asyncio.create_task(writer())
        try:
            started = time.perf_counter()
            await asyncio.gather(*(client(w) for w in range(workers)))
            elapsed = time.perf_counter() - started
        finally:
            task.cancel()
        rows = await conn.fetchval("SELECT count(*) FROM ledger_transfers")
        if rows != 2 * pairs:
            raise RuntimeError(
                f"bench: batched writes stored {rows} transfers, expected {2 * pairs}"
            )
        return len(latencies), elapsed, latencies, batch_sizes
    finally:
        await conn.close()


async def run_ceilings(
    url: str, *, players: int = 1_000, workers: int = 16, pairs: int = 10_000
) -> dict[str, Any]:
    """Both ceilings on the fresh PostgreSQL database at ``url``."""
    progress(f"ceilings/postgres: migrating, {players} players")
    ids = await _setup(url, players)
    dsn = _dsn(url)
    progress(f"ceilings/postgres: driver round trips, {2 * pairs} transactions")
    rt_done, rt_elapsed, rt_latencies = await _driver_round_trips(dsn, workers, 2 * pairs)
    progress(f"ceilings/postgres: batched writes, {pairs} bet+win pairs")
    done, elapsed, latencies, sizes = await _batched_writes(dsn, ids, workers, pairs)
    return {
        "driver_round_trips": {
            "transactions": rt_done,
            "statements_per_transaction": STATEMENTS,
            "transactions_per_s": per_second(rt_done, rt_elapsed),
            "latency": latency_ms(rt_latencies),
        },
        "batched_writes": {
            "transfers": done,
            "transfers_per_s": per_second(done, elapsed),
            "latency": latency_ms(latencies),
            "mean_batch": round(sum(sizes) / len(sizes), 2) if sizes else 0,
            "batches": len(sizes),
        },
    }
