"""The reads and writes of a wallet batch on PostgreSQL, in few round trips.

The portable path (:mod:`ludex.wagering.repository` and :mod:`ludex.ledger.repository`
through SQLAlchemy Core) works on every backend, but each of its statements costs a
SQLAlchemy execution, and the ``IN (...)`` lists and multi-row ``VALUES`` it renders
change their SQL text with the batch size, so PostgreSQL parses and plans them again
and again. Here the same rows move as arrays (``= ANY($1)``, ``unnest``) through SQL
that never changes, prepared once per connection by asyncpg, on the driver connection
of the caller's SQLAlchemy transaction (same connection, same transaction):

* three reads, in the lock order every writer follows: the rounds ``FOR UPDATE``
  (sorted), the tracked accounts ``FOR UPDATE`` (sorted; untracked ones read without
  a lock, as :func:`ludex.ledger.repository.lock_accounts` does), then, after the
  locks, the provider transactions (the caller reads the players through its session
  first: SQLAlchemy begins the transaction only at its first statement, and a lock
  taken outside a transaction would be released at once, so both functions refuse
  to run outside one);
* ONE write: data-modifying CTEs insert the transfers, the new rounds, the provider
  transactions and the outbox rows and update the accounts' counters and the
  changed rounds.

Driver errors come out as :class:`~ludex.errors.StoreError`, as from the store, so the
service retries a batch that lost a race exactly as on the portable path.

This module must stay a faithful twin of the portable path: the wallet's tests run
on both (PostgreSQL takes this one, SQLite and MySQL the other).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final

import asyncpg

from ludex.adapters.sql.outbox import outbox_row
from ludex.errors import StoreError
from ludex.ledger.model import encode_metadata
from ludex.ledger.repository import account_of
from ludex.wagering.batch import Key, View, Writes
from ludex.wagering.repository import round_of, transaction_of

_LOCK_ROUNDS: Final = """
SELECT * FROM provider_rounds
WHERE provider_id = $1 AND round_id = ANY($2::text[])
ORDER BY round_id
FOR UPDATE
"""
_LOCK_ACCOUNTS: Final = """
WITH locked AS (
  SELECT * FROM ledger_accounts WHERE id = ANY($1::text[]) AND track_balance
  ORDER BY id FOR UPDATE
)
SELECT * FROM locked
UNION ALL
SELECT * FROM ledger_accounts WHERE id = ANY($1::text[]) AND NOT track_balance
"""
_TRANSACTIONS: Final = """
SELECT * FROM provider_transactions
WHERE provider_id = $1 AND transaction_id = ANY($2::text[])
"""


def _write_statement() -> str:
    """The batch's one write; parameters are column arrays in this order, then ``now``."""
    counter = iter(range(1, 100))

    def unnest(*columns: str) -> str:
        arrays = ", ".join(f"${next(counter)}::{c.split()[1]}[]" for c in columns)
        names = ", ".join(c.split()[0] for c in columns)
        return f"unnest({arrays}) AS v({names})"

    transfers = unnest(
        "id text",
        "debit text",
        "credit text",
        "amount bigint",
        "ledger text",
        "code text",
        "metadata text",
    )
    accounts = unnest(
        "id text",
        "posted_debits bigint",
        "posted_credits bigint",
        "pending_debits bigint",
        "pending_credits bigint",
    )
    round_figures = ("status text", "open_stakes bigint", "open_bets int", "total_bet bigint")
    new_rounds = unnest(
        "provider_id text",
        "round_id text",
        "player_id text",
        "game_id text",
        *round_figures,
        "total_win bigint",
    )
    changed_rounds = unnest("provider_id text", "round_id text", *round_figures, "total_win bigint")
    transactions = unnest(*(f"{name} {kind}" for name, kind in _TRANSACTION_COLUMNS))
    events = unnest(
        "event_id text",
        "topic text",
        "event_type text",
        "partition_key text",
        "payload bytea",
    )
    now = f"${next(counter)}::timestamptz"
    transaction_names = ", ".join(name for name, _ in _TRANSACTION_COLUMNS)
    sql = f"""
WITH
transfers AS (
  INSERT INTO ledger_transfers
    (id, debit, credit, amount, ledger, code, metadata, pending, state, created_at)
  SELECT id, debit, credit, amount, ledger, code, metadata, false, 'posted', {now}
  FROM {transfers}
),
accounts AS (
  UPDATE ledger_accounts
  SET posted_debits = v.posted_debits, posted_credits = v.posted_credits,
      pending_debits = v.pending_debits, pending_credits = v.pending_credits
  FROM {accounts}
  WHERE ledger_accounts.id = v.id
),
new_rounds AS (
  INSERT INTO provider_rounds
    (provider_id, round_id, player_id, game_id, status, open_stakes, open_bets,
     total_bet, total_win, created_at, updated_at)
  SELECT provider_id, round_id, player_id, game_id, status, open_stakes, open_bets,
         total_bet, total_win, {now}, {now}
  FROM {new_rounds}
),
changed_rounds AS (
  UPDATE provider_rounds
  SET status = v.status, open_stakes = v.open_stakes, open_bets = v.open_bets,
      total_bet = v.total_bet, total_win = v.total_win, updated_at = {now}
  FROM {changed_rounds}
  WHERE provider_rounds.provider_id = v.provider_id AND provider_rounds.round_id = v.round_id
),
transactions AS (
  INSERT INTO provider_transactions ({transaction_names}, created_at)
  SELECT {transaction_names}, {now}
  FROM {transactions}
)
INSERT INTO outbox (event_id, topic, event_type, partition_key, payload, created_at)
SELECT event_id, topic, event_type, partition_key, payload, {now}
FROM {events}
"""  # noqa: S608 - built from the constants above, no input
    return sql


_TRANSACTION_COLUMNS: Final = (
    ("provider_id", "text"),
    ("transaction_id", "text"),
    ("kind", "text"),
    ("player_id", "text"),
    ("game_id", "text"),
    ("round_id", "text"),
    ("amount", "bigint"),
    ("currency", "text"),
    ("request_hash", "text"),
    ("status", "text"),
    ("response", "bytea"),
    ("transfer_id", "text"),
    ("ref_transaction_id", "text"),
)
_WRITE: Final = _write_statement()


class _Attributes:
    """An asyncpg record read by attribute, as the row mappers expect."""

    __slots__ = ("_record",)

    def __init__(self, record: asyncpg.Record) -> None:
        self._record = record

    def __getattr__(self, name: str) -> Any:
        return self._record[name]


@contextmanager
def _as_store_errors() -> Iterator[None]:
    try:
        yield
    except asyncpg.PostgresError as exc:
        raise StoreError(f"wallet batch: {type(exc).__name__}: {exc}") from exc


def _require_transaction(conn: Any) -> None:
    if not conn.is_in_transaction():
        raise StoreError(
            "wallet batch: the driver connection is not in a transaction; run a statement "
            "through the session first (SQLAlchemy opens the transaction lazily)"
        )


def _by_provider(keys: Collection[Key]) -> list[tuple[str, list[str]]]:
    """(provider, sorted ids) per provider, in provider order: one index lookup each
    (a batch nearly always has one provider)."""
    grouped: dict[str, set[str]] = {}
    for provider, key in keys:
        grouped.setdefault(provider, set()).add(key)
    return [(provider, sorted(grouped[provider])) for provider in sorted(grouped)]


async def load(
    conn: Any,
    rounds: Collection[Key],
    accounts: Collection[str],
    transactions: Collection[Key],
) -> View:
    """Lock and read a batch's rounds, accounts and transactions on ``conn``, the
    asyncpg connection of the caller's transaction (which must be open: locks taken
    outside a transaction would be released at once)."""
    _require_transaction(conn)
    view = View()
    with _as_store_errors():
        for provider, ids in _by_provider(rounds):  # sorted: the lock order
            for row in await conn.fetch(_LOCK_ROUNDS, provider, ids):
                found = round_of(_Attributes(row))
                view.rounds[(found.provider_id, found.round_id)] = found
        for row in await conn.fetch(_LOCK_ACCOUNTS, sorted(set(accounts))):
            account = account_of(_Attributes(row))
            view.accounts[account.id] = account
        for provider, ids in _by_provider(transactions):
            for row in await conn.fetch(_TRANSACTIONS, provider, ids):
                stored = transaction_of(_Attributes(row))
                view.transactions[(stored.provider_id, stored.transaction_id)] = stored
    return view


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


async def write(conn: Any, writes: Writes, now: datetime) -> None:
    """Write a batch's changes on ``conn`` in one statement."""
    transfers = _columns(
        [
            (t.id, t.debit, t.credit, t.amount, t.ledger, t.code, encode_metadata(t.metadata))
            for t in writes.transfers
        ],
        7,
    )
    accounts = _columns(
        [
            (
                a.id,
                a.balance.posted_debits,
                a.balance.posted_credits,
                a.balance.pending_debits,
                a.balance.pending_credits,
            )
            for a in sorted(writes.accounts.values(), key=lambda a: a.id)
            if a.spec.track_balance
        ],
        5,
    )
    new_rounds = _columns(
        [
            (
                r.provider_id,
                r.round_id,
                r.player_id,
                r.game_id,
                r.status,
                r.open_stakes,
                r.open_bets,
                r.total_bet,
                r.total_win,
            )
            for r, new in writes.rounds.values()
            if new
        ],
        9,
    )
    changed_rounds = _columns(
        [
            (
                r.provider_id,
                r.round_id,
                r.status,
                r.open_stakes,
                r.open_bets,
                r.total_bet,
                r.total_win,
            )
            for r, new in writes.rounds.values()
            if not new
        ],
        7,
    )
    transactions = _columns(
        [
            tuple(values.get(name) for name, _ in _TRANSACTION_COLUMNS)
            for values in writes.transactions
        ],
        len(_TRANSACTION_COLUMNS),
    )
    events = _columns(
        [
            (row["event_id"], row["topic"], row["event_type"], row["partition_key"], row["payload"])
            for row in (outbox_row(e, now) for e in writes.events)
        ],
        5,
    )
    _require_transaction(conn)
    with _as_store_errors():
        await conn.execute(
            _WRITE,
            *transfers,
            *accounts,
            *new_rounds,
            *changed_rounds,
            *transactions,
            *events,
            now,
        )
