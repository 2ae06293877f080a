"""SQL of the wagering service: players, providers, provider transactions and rounds,
risk limits, the audit log and the raw provider request log.

Every function takes the caller's ``AsyncSession`` and runs inside the caller's
transaction (``store.transaction()``), so a bet's ledger transfer, its provider
transaction row, its round update, its outbox event and its audit row commit
together. ``for_update=True`` takes a row lock on PostgreSQL and MySQL (SQLite
already runs one writer at a time).

The statements of the bet/win/rollback path are built once at import and run with
Core on the session's connection: building a ``select()``/``insert()`` per call,
its cache key and the ORM execution path cost more CPU than the database spent on
the statement.

This module must never commit, roll back or open a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

from sqlalchemy import (
    CursorResult,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from ludex.adapters.sql.tables import (
    audit_log,
    players,
    provider_requests,
    provider_rounds,
    provider_transactions,
    providers,
    risk_limits,
)
from ludex.wagering.limits import Limit


@dataclass(frozen=True, slots=True)
class ProviderRow:
    id: str
    name: str
    secret: bytes
    status: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TransactionRow:
    """One stored provider transaction (or rollback tombstone)."""

    id: int
    provider_id: str
    transaction_id: str
    kind: str
    player_id: str
    game_id: str | None
    round_id: str | None
    amount: int
    currency: str
    request_hash: str | None
    status: str
    response: bytes | None
    transfer_id: str | None
    ref_transaction_id: str | None
    rolled_back_by: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RoundRow:
    provider_id: str
    round_id: str
    player_id: str
    game_id: str
    status: str
    open_stakes: int
    open_bets: int
    total_bet: int
    total_win: int


_PT = provider_transactions.c
_R = provider_rounds.c

_PLAYER_STATUS: Final = select(players.c.status).where(players.c.id == bindparam("player_id"))
_TRANSACTION_WHERE: Final = (
    _PT.provider_id == bindparam("provider_id"),
    _PT.transaction_id == bindparam("transaction_id"),
)
_TRANSACTION: Final = select(provider_transactions).where(*_TRANSACTION_WHERE)
_TRANSACTION_FOR_UPDATE: Final = _TRANSACTION.with_for_update()
_ONE_ROW: Final = select(literal(1).label("one")).subquery("one_row")
_TRANSACTION_AND_PLAYER: Final = select(
    _PLAYER_STATUS.scalar_subquery().label("player_status_"), provider_transactions
).select_from(_ONE_ROW.outerjoin(provider_transactions, and_(*_TRANSACTION_WHERE)))
"""One row always: the player's status (NULL: no such player) and the transaction's
columns (all NULL: no such transaction), in one round trip."""
_INSERT_TRANSACTION: Final = insert(provider_transactions)
_ROUND: Final = select(provider_rounds).where(
    _R.provider_id == bindparam("provider_id"), _R.round_id == bindparam("round_id")
)
_ROUND_FOR_UPDATE: Final = _ROUND.with_for_update()
_INSERT_ROUND: Final = insert(provider_rounds)
_UPDATE_ROUND: Final = update(provider_rounds).where(
    _R.provider_id == bindparam("where_provider_id"), _R.round_id == bindparam("where_round_id")
)
"""SET takes the columns named by the parameters (compiled once per set of names)."""


# players ---------------------------------------------------------------------------


async def player_status(session: AsyncSession, player_id: str) -> str | None:
    conn = await session.connection()
    value = (await conn.execute(_PLAYER_STATUS, {"player_id": player_id})).scalar()
    return None if value is None else str(value)


async def insert_player(session: AsyncSession, player_id: str, status: str, now: datetime) -> None:
    await session.execute(insert(players).values(id=player_id, status=status, created_at=now))


async def set_player_status(session: AsyncSession, player_id: str, status: str) -> bool:
    result = cast(
        CursorResult[Any],
        await session.execute(
            update(players).where(players.c.id == player_id).values(status=status)
        ),
    )
    return bool(result.rowcount)


# providers -------------------------------------------------------------------------


async def get_provider(session: AsyncSession, provider_id: str) -> ProviderRow | None:
    row = (
        await session.execute(select(providers).where(providers.c.id == provider_id))
    ).one_or_none()
    if row is None:
        return None
    return ProviderRow(row.id, row.name, bytes(row.secret), row.status, row.created_at)


async def list_providers(session: AsyncSession) -> list[ProviderRow]:
    rows = await session.execute(select(providers).order_by(providers.c.id))
    return [ProviderRow(r.id, r.name, bytes(r.secret), r.status, r.created_at) for r in rows]


async def insert_provider(
    session: AsyncSession, provider_id: str, name: str, secret: bytes, now: datetime
) -> None:
    await session.execute(
        insert(providers).values(
            id=provider_id, name=name, secret=secret, status="active", created_at=now
        )
    )


async def update_provider(session: AsyncSession, provider_id: str, **values: Any) -> bool:
    result = cast(
        CursorResult[Any],
        await session.execute(
            update(providers).where(providers.c.id == provider_id).values(**values)
        ),
    )
    return bool(result.rowcount)


# provider transactions -------------------------------------------------------------


def transaction_of(row: Any) -> TransactionRow:
    return TransactionRow(
        id=row.id,
        provider_id=row.provider_id,
        transaction_id=row.transaction_id,
        kind=row.kind,
        player_id=row.player_id,
        game_id=row.game_id,
        round_id=row.round_id,
        amount=int(row.amount),
        currency=row.currency,
        request_hash=row.request_hash,
        status=row.status,
        response=None if row.response is None else bytes(row.response),
        transfer_id=row.transfer_id,
        ref_transaction_id=row.ref_transaction_id,
        rolled_back_by=row.rolled_back_by,
        created_at=row.created_at,
    )


async def get_transaction(
    session: AsyncSession, provider_id: str, transaction_id: str, *, for_update: bool = False
) -> TransactionRow | None:
    conn = await session.connection()
    row = (
        await conn.execute(
            _TRANSACTION_FOR_UPDATE if for_update else _TRANSACTION,
            {"provider_id": provider_id, "transaction_id": transaction_id},
        )
    ).one_or_none()
    return None if row is None else transaction_of(row)


async def get_transaction_and_player(
    session: AsyncSession, provider_id: str, transaction_id: str, player_id: str
) -> tuple[TransactionRow | None, str | None]:
    """:func:`get_transaction` and :func:`player_status` in one statement (unlocked)."""
    conn = await session.connection()
    row = (
        await conn.execute(
            _TRANSACTION_AND_PLAYER,
            {"provider_id": provider_id, "transaction_id": transaction_id, "player_id": player_id},
        )
    ).one()
    status = None if row.player_status_ is None else str(row.player_status_)
    return (None if row.id is None else transaction_of(row)), status


async def insert_transaction(session: AsyncSession, **values: Any) -> None:
    """Insert one row; a second row for the same (provider, transaction id) fails the
    caller's transaction with StoreError (the service then answers from the first)."""
    conn = await session.connection()
    await conn.execute(_INSERT_TRANSACTION, values)


async def mark_rolled_back(
    session: AsyncSession, provider_id: str, transaction_id: str, by: str
) -> None:
    await session.execute(
        update(provider_transactions)
        .where(
            provider_transactions.c.provider_id == provider_id,
            provider_transactions.c.transaction_id == transaction_id,
        )
        .values(rolled_back_by=by)
    )


async def all_transactions(session: AsyncSession) -> list[TransactionRow]:
    rows = await session.execute(select(provider_transactions).order_by(provider_transactions.c.id))
    return [transaction_of(r) for r in rows]


# rounds ----------------------------------------------------------------------------


async def get_round(
    session: AsyncSession, provider_id: str, round_id: str, *, for_update: bool = False
) -> RoundRow | None:
    conn = await session.connection()
    row = (
        await conn.execute(
            _ROUND_FOR_UPDATE if for_update else _ROUND,
            {"provider_id": provider_id, "round_id": round_id},
        )
    ).one_or_none()
    return None if row is None else round_of(row)


async def update_round(
    session: AsyncSession, provider_id: str, round_id: str, *, now: datetime, **values: Any
) -> None:
    conn = await session.connection()
    await conn.execute(
        _UPDATE_ROUND,
        {"where_provider_id": provider_id, "where_round_id": round_id, "updated_at": now, **values},
    )


# batches (group commit of bets and wins) ------------------------------------------------

_ROUNDS_FOR_UPDATE: Final = (
    select(provider_rounds)
    .where(tuple_(_R.provider_id, _R.round_id).in_(bindparam("keys", expanding=True)))
    .order_by(_R.provider_id, _R.round_id)
    .with_for_update()
)
_TRANSACTIONS: Final = select(provider_transactions).where(
    tuple_(_PT.provider_id, _PT.transaction_id).in_(bindparam("keys", expanding=True))
)
_PLAYER_STATUSES: Final = select(players.c.id, players.c.status).where(
    players.c.id.in_(bindparam("ids", expanding=True))
)
_UPDATE_ROUND_FIGURES: Final = (
    update(provider_rounds)
    .where(_R.provider_id == bindparam("p"), _R.round_id == bindparam("r"))
    .values(
        status=bindparam("new_status"),
        open_stakes=bindparam("new_open_stakes"),
        open_bets=bindparam("new_open_bets"),
        total_bet=bindparam("new_total_bet"),
        total_win=bindparam("new_total_win"),
        updated_at=bindparam("new_updated_at"),
    )
)


def round_of(row: Any) -> RoundRow:
    return RoundRow(
        provider_id=row.provider_id,
        round_id=row.round_id,
        player_id=row.player_id,
        game_id=row.game_id,
        status=row.status,
        open_stakes=int(row.open_stakes),
        open_bets=int(row.open_bets),
        total_bet=int(row.total_bet),
        total_win=int(row.total_win),
    )


async def lock_rounds(
    session: AsyncSession, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], RoundRow]:
    """Lock and read the rounds among ``keys`` (provider, round id) in sorted order."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    conn = await session.connection()
    rows = await conn.execute(_ROUNDS_FOR_UPDATE, {"keys": wanted})
    return {(row.provider_id, row.round_id): round_of(row) for row in rows}


async def get_transactions(
    session: AsyncSession, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], TransactionRow]:
    """The stored transactions among ``keys`` (provider, transaction id), unlocked."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    conn = await session.connection()
    rows = await conn.execute(_TRANSACTIONS, {"keys": wanted})
    return {(row.provider_id, row.transaction_id): transaction_of(row) for row in rows}


async def player_statuses(session: AsyncSession, player_ids: Iterable[str]) -> dict[str, str]:
    wanted = sorted(set(player_ids))
    if not wanted:
        return {}
    conn = await session.connection()
    rows = await conn.execute(_PLAYER_STATUSES, {"ids": wanted})
    return {row.id: row.status for row in rows}


async def insert_transactions(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> None:
    if rows:
        conn = await session.connection()
        await conn.execute(_INSERT_TRANSACTION, rows[0] if len(rows) == 1 else list(rows))


async def write_rounds(
    session: AsyncSession, rounds: Sequence[tuple[RoundRow, bool]], now: datetime
) -> None:
    """Insert the new rounds and write the figures of the changed ones ((row, is_new))."""
    conn = await session.connection()
    new = [
        {**_round_values(r), "created_at": now, "updated_at": now} for r, is_new in rounds if is_new
    ]
    changed = [
        {
            "p": r.provider_id,
            "r": r.round_id,
            "new_status": r.status,
            "new_open_stakes": r.open_stakes,
            "new_open_bets": r.open_bets,
            "new_total_bet": r.total_bet,
            "new_total_win": r.total_win,
            "new_updated_at": now,
        }
        for r, is_new in rounds
        if not is_new
    ]
    if new:
        await conn.execute(_INSERT_ROUND, new[0] if len(new) == 1 else new)
    if changed:
        await conn.execute(_UPDATE_ROUND_FIGURES, changed[0] if len(changed) == 1 else changed)


def _round_values(r: RoundRow) -> dict[str, Any]:
    return {
        "provider_id": r.provider_id,
        "round_id": r.round_id,
        "player_id": r.player_id,
        "game_id": r.game_id,
        "status": r.status,
        "open_stakes": r.open_stakes,
        "open_bets": r.open_bets,
        "total_bet": r.total_bet,
        "total_win": r.total_win,
    }


# usage figures for the risk limits ----------------------------------------------------


def _player_game(player_id: str, game_id: str | None) -> Any:
    condition = provider_transactions.c.player_id == player_id
    if game_id is not None:
        condition = and_(condition, provider_transactions.c.game_id == game_id)
    return condition


async def daily_loss(
    session: AsyncSession, player_id: str, game_id: str | None, since: datetime
) -> int:
    """Accepted bets (not rolled back) minus wins since ``since`` (a UTC midnight)."""
    t = provider_transactions
    base = and_(_player_game(player_id, game_id), t.c.created_at >= since, t.c.status == "OK")
    bets = await session.scalar(
        select(func.coalesce(func.sum(t.c.amount), 0)).where(
            base, t.c.kind == "bet", t.c.rolled_back_by.is_(None)
        )
    )
    wins = await session.scalar(
        select(func.coalesce(func.sum(t.c.amount), 0)).where(base, t.c.kind == "win")
    )
    return int(bets or 0) - int(wins or 0)


async def bets_since(
    session: AsyncSession, player_id: str, game_id: str | None, since: datetime
) -> int:
    t = provider_transactions
    count = await session.scalar(
        select(func.count()).where(
            _player_game(player_id, game_id), t.c.created_at >= since, t.c.kind == "bet"
        )
    )
    return int(count or 0)


async def provider_open_stakes(session: AsyncSession, provider_id: str) -> int:
    r = provider_rounds
    total = await session.scalar(
        select(func.coalesce(func.sum(r.c.open_stakes), 0)).where(
            r.c.provider_id == provider_id, r.c.status == "open"
        )
    )
    return int(total or 0)


# limits ----------------------------------------------------------------------------


async def list_limits(session: AsyncSession) -> list[Limit]:
    rows = await session.execute(
        select(risk_limits).order_by(risk_limits.c.scope, risk_limits.c.key, risk_limits.c.name)
    )
    return [Limit(r.scope, r.key, r.name, int(r.value)) for r in rows]


async def get_limit(
    session: AsyncSession, scope: str, key: str, name: str, *, for_update: bool = False
) -> int | None:
    query = select(risk_limits.c.value).where(
        risk_limits.c.scope == scope, risk_limits.c.key == key, risk_limits.c.name == name
    )
    if for_update:
        query = query.with_for_update()
    value = await session.scalar(query)
    return None if value is None else int(value)


async def put_limit(
    session: AsyncSession,
    scope: str,
    key: str,
    name: str,
    value: int | None,
    *,
    exists: bool,
    now: datetime,
) -> None:
    """Insert, update (``exists``) or delete (``value`` None) one limit row."""
    where = (risk_limits.c.scope == scope, risk_limits.c.key == key, risk_limits.c.name == name)
    if value is None:
        await session.execute(delete(risk_limits).where(*where))
    elif exists:
        await session.execute(update(risk_limits).where(*where).values(value=value, updated_at=now))
    else:
        await session.execute(
            insert(risk_limits).values(scope=scope, key=key, name=name, value=value, updated_at=now)
        )


# audit -----------------------------------------------------------------------------


async def insert_audit(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    subject: str,
    old_value: str | None,
    new_value: str | None,
    now: datetime,
) -> None:
    await session.execute(
        insert(audit_log).values(
            at=now,
            actor=actor,
            action=action,
            subject=subject,
            old_value=old_value,
            new_value=new_value,
        )
    )


async def insert_request_log(
    session: AsyncSession,
    *,
    received_at: datetime,
    provider_id: str | None,
    endpoint: str,
    headers: str,
    body: bytes,
    http_status: int,
    status: str,
    response: bytes,
    duration_ms: float,
) -> None:
    await session.execute(
        insert(provider_requests).values(
            received_at=received_at,
            provider_id=provider_id,
            endpoint=endpoint,
            headers=headers,
            body=body,
            http_status=http_status,
            status=status,
            response=response,
            duration_ms=duration_ms,
        )
    )
