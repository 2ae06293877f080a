"""The ledger on the operational store: accounts, transfers and balances in SQL.

Every function takes the caller's :class:`~sqlalchemy.ext.asyncio.AsyncSession`, so
a service commits its ledger writes, its own rows and its outbox events in one
transaction (``async with store.transaction() as session``). The rules live in
:mod:`ludex.ledger.model`; this module loads rows, asks the model, writes rows.

Concurrency, on every backend:

* Every write locks the account rows it touches first, in one statement, in a
  fixed order (sorted account id): ``SELECT ... ORDER BY id FOR UPDATE`` on
  PostgreSQL and MySQL/MariaDB. Two transfers that share accounts therefore queue
  on the first shared account instead of each holding one and waiting for the
  other: no deadlock. SQLite ignores ``FOR UPDATE``; the store begins every
  transaction ``IMMEDIATE``, so there is one writer at a time anyway.
* Counters are written as absolute values computed under those locks, and the
  transfer row goes in in the same transaction, so the counters always equal the
  sum of the log (:func:`ludex.ledger.model.replay`).
* Idempotency is checked AFTER the locks, in a statement of its own. Two
  transactions submitting the same transfer id lock the same accounts, so the
  second waits until the first commits or rolls back; under READ COMMITTED (the
  isolation the store uses on PostgreSQL and MySQL) its next statement sees a new
  snapshot, finds the committed row and returns it (or raises TransferIdConflict).
  The UNIQUE index on the id is only the last line of defence: it is never relied
  on, which matters on PostgreSQL, where a unique violation would abort the
  caller's whole transaction. (A check in the same statement as the lock, or before
  it, would read a snapshot taken before the wait and miss the winner's row.)
* A pending transfer's state is changed (posted, voided, expired) only while the
  locks of its tracked accounts are held, and is re-read after taking them; the
  UPDATE that changes it matches ``state = 'pending'`` and must change one row.

Untracked accounts (``AccountSpec.track_balance=False``: provider floats, house,
the outside world, all allowed to go negative) are the exception that keeps shared
counterparties from being one hot row every transfer queues on:

* They are never locked and their counters are never written (they stay zero);
  their balance is summed from the log on read (``state`` ``posted`` and
  ``pending`` rows by debit and by credit, covered by two indexes). They cannot
  refuse a transfer, and an account is immutable apart from its counters, so
  reading their row without a lock is enough to know they exist.
* Only the tracked accounts are locked, in the same sorted order. On PostgreSQL
  and SQLite one ``... WHERE id IN (...) AND track_balance ORDER BY id FOR
  UPDATE`` (a CTE) locks exactly those (PostgreSQL locks only rows the WHERE keeps),
  and a plain SELECT ``UNION ALL``-ed to it reads the untracked ones, in the same
  statement. InnoDB would lock every row its index lookup touches, untracked ones
  included, before the WHERE drops them, and wait on the shared locks the
  foreign-key checks of concurrent inserts hold on them; so on MySQL/MariaDB a
  plain SELECT reads all the accounts first, then the tracked ids alone are locked
  by primary key.
* The foreign keys from ``ledger_transfers`` still take shared (key-share) locks
  on an untracked row; they never conflict with each other, and nothing takes an
  exclusive lock on such a row, so they add no deadlock.
* A batch with no tracked account at all takes no lock, so nothing serializes
  two submissions of its ids: its INSERTs run in a SAVEPOINT and a duplicate
  (the UNIQUE index makes the loser wait for the winner's commit) rolls back to it
  and returns the first result. Two resolutions of one pending transfer between
  untracked accounts are serialized by the pending row's own UPDATE.

This module must never commit, roll back or open a transaction of its own, and
never update a transfer row except a pending transfer's ``state``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final, cast

from sqlalchemy import (
    BigInteger,
    CursorResult,
    Row,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal_column,
    or_,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ludex.adapters.sql.tables import ledger_accounts, ledger_transfers
from ludex.errors import (
    AccountConflict,
    AccountNotFound,
    InvalidTransfer,
    PendingNotFound,
    TransferIdConflict,
)
from ludex.ledger.model import (
    Account,
    AccountKind,
    AccountSpec,
    Balance,
    Transfer,
    TransferSpec,
    TransferState,
    batch_of,
    check_pending,
    content_difference,
    decode_metadata,
    encode_metadata,
    expiry_id,
    plan_resolution,
    plan_transfers,
    record_of,
    resolution_of,
    resolved,
    validate_transfer_id,
)

ACCOUNT_INSERT_CHUNK: Final = 500
EXPIRED_METADATA: Final = {"reason": "expired"}

_A = ledger_accounts.c
_T = ledger_transfers.c


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def account_of(row: Any) -> Account:
    """An account from a ``ledger_accounts`` row (any object with its columns)."""
    spec = AccountSpec(
        row.id,
        row.ledger,
        AccountKind(row.kind),
        allow_negative=bool(row.allow_negative),
        track_balance=bool(row.track_balance),
    )
    return Account(
        spec,
        Balance(
            row.id,
            row.ledger,
            posted_debits=int(row.posted_debits),
            posted_credits=int(row.posted_credits),
            pending_debits=int(row.pending_debits),
            pending_credits=int(row.pending_credits),
        ),
    )


def _transfer(row: Row[Any]) -> Transfer:
    return Transfer(
        seq=int(row.seq),
        id=row.id,
        debit=row.debit,
        credit=row.credit,
        amount=int(row.amount),
        ledger=row.ledger,
        code=row.code,
        metadata=decode_metadata(row.metadata),
        pending=bool(row.pending),
        timeout_s=row.timeout_s,
        expires_at=row.expires_at,
        pending_id=row.pending_id,
        batch=row.batch,
        state=TransferState(row.state),
        created_at=row.created_at,
    )


def _transfer_row(t: Transfer) -> dict[str, Any]:
    return {
        "id": t.id,
        "debit": t.debit,
        "credit": t.credit,
        "amount": t.amount,
        "ledger": t.ledger,
        "code": t.code,
        "metadata": encode_metadata(t.metadata),
        "pending": t.pending,
        "timeout_s": t.timeout_s,
        "expires_at": t.expires_at,
        "pending_id": t.pending_id,
        "batch": t.batch,
        "state": t.state.value,
        "created_at": t.created_at,
    }


# --- accounts ------------------------------------------------------------------------


def _spec_difference(given: AccountSpec, stored: AccountSpec) -> str | None:
    for name in ("ledger", "kind", "allow_negative", "track_balance"):
        if getattr(given, name) != getattr(stored, name):
            return f"{name}: {getattr(stored, name)!r} stored, {getattr(given, name)!r} given"
    return None


def _check_same(given: AccountSpec, stored: AccountSpec) -> None:
    if (difference := _spec_difference(given, stored)) is not None:
        raise AccountConflict(
            f"ledger account {given.id!r} exists with a different spec ({difference}); "
            "an account's ledger, kind, allow_negative and track_balance never change"
        )


async def _stored_accounts(session: AsyncSession, account_ids: Iterable[str]) -> dict[str, Account]:
    """The rows as stored (an untracked account's counters are zeros), unlocked."""
    ids = sorted(set(account_ids))
    if not ids:
        return {}
    conn = await session.connection()
    rows = await conn.execute(_ACCOUNTS_BY_ID, {"ids": ids})
    return {row.id: account_of(row) for row in rows}


async def get_accounts(session: AsyncSession, account_ids: Iterable[str]) -> dict[str, Account]:
    """The accounts that exist among ``account_ids`` (spec and counters), unlocked.

    An untracked account's counters are summed from the transfer log.
    """
    return await _with_derived(session, await _stored_accounts(session, account_ids))


def _insert_ignoring_existing(dialect: str, rows: list[dict[str, Any]]) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(ledger_accounts).values(rows).on_conflict_do_nothing()
    if dialect in {"mysql", "mariadb"}:
        stmt = mysql.insert(ledger_accounts).values(rows)
        return stmt.on_duplicate_key_update(id=stmt.inserted.id)
    return sqlite.insert(ledger_accounts).values(rows).on_conflict_do_nothing()


async def create_accounts(
    session: AsyncSession, specs: Iterable[AccountSpec], *, now: datetime | None = None
) -> None:
    """Open accounts with zero balances; idempotent for identical specs.

    An id that exists (or is given twice) with a different spec raises
    AccountConflict, before anything is written. Two transactions creating the
    same account concurrently both succeed (the insert skips existing ids and
    the stored spec is compared after).
    """
    wanted: dict[str, AccountSpec] = {}
    for spec in specs:
        if spec.id in wanted:
            _check_same(spec, wanted[spec.id])
        wanted[spec.id] = spec
    if not wanted:
        return
    stored = await _stored_accounts(session, wanted)
    for account in stored.values():
        _check_same(wanted[account.id], account.spec)
    missing = [spec for spec in wanted.values() if spec.id not in stored]
    if not missing:
        return
    created_at = _now(now)
    dialect = session.get_bind().dialect.name
    for i in range(0, len(missing), ACCOUNT_INSERT_CHUNK):
        rows = [
            {
                "id": s.id,
                "ledger": s.ledger,
                "kind": s.kind.value,
                "allow_negative": s.allow_negative,
                "track_balance": s.track_balance,
                "posted_debits": 0,
                "posted_credits": 0,
                "pending_debits": 0,
                "pending_credits": 0,
                "created_at": created_at,
            }
            for s in missing[i : i + ACCOUNT_INSERT_CHUNK]
        ]
        await session.execute(_insert_ignoring_existing(dialect, rows))
    # Another transaction may have created some of them first, with another spec.
    for account in (await _stored_accounts(session, (s.id for s in missing))).values():
        _check_same(wanted[account.id], account.spec)


# Hot-path statements, built once: building SQLAlchemy expressions per call cost
# more Python time than the database spent on them.
_ACCOUNTS_BY_ID: Final = select(ledger_accounts).where(_A.id.in_(bindparam("ids", expanding=True)))
_LOCK_ACCOUNTS: Final = (
    select(ledger_accounts)
    .where(_A.id.in_(bindparam("ids", expanding=True)))
    .order_by(_A.id)
    .with_for_update()
)
_LOCKED_TRACKED: Final = (
    select(ledger_accounts)
    .where(_A.id.in_(bindparam("ids", expanding=True)), _A.track_balance.is_(True))
    .order_by(_A.id)
    .with_for_update()
    .cte("locked_tracked")
)
_LOCK_TRACKED_READ_UNTRACKED: Final = union_all(
    select(_LOCKED_TRACKED),
    select(ledger_accounts).where(
        _A.id.in_(bindparam("untracked_ids", expanding=True)), _A.track_balance.is_(False)
    ),
)
"""PostgreSQL and SQLite: lock the tracked rows (sorted) and read the untracked ones in
one statement, one snapshot: the CTE's ``FOR UPDATE`` locks only the rows its WHERE
keeps; the second branch reads the untracked rows without a lock."""
FIXED_ARITY_MAX: Final = 4
"""Up to this many ids, the hot statements use one plain parameter per id instead of an
expanding ``IN`` (whose SQL is re-rendered on every execution)."""


def _ids_params(ids: Sequence[str]) -> dict[str, str]:
    return {f"id{n}": value for n, value in enumerate(ids)}


@cache
def _lock_statement(arity: int) -> Any:
    """:data:`_LOCK_TRACKED_READ_UNTRACKED` for exactly ``arity`` ids ``id0``, ``id1`` ..."""
    ids: list[Any] = [bindparam(f"id{n}") for n in range(arity)]
    locked = (
        select(ledger_accounts)
        .where(_A.id.in_(ids), _A.track_balance.is_(True))
        .order_by(_A.id)
        .with_for_update()
        .cte("locked_tracked")
    )
    return union_all(
        select(locked),
        select(ledger_accounts).where(_A.id.in_(ids), _A.track_balance.is_(False)),
    )


@cache
def _transfers_statement(arity: int) -> Any:
    """:data:`_TRANSFERS_BY_ID` for exactly ``arity`` ids ``id0``, ``id1`` ..."""
    return select(ledger_transfers).where(_T.id.in_([bindparam(f"id{n}") for n in range(arity)]))


_TRANSFERS_BY_ID: Final = select(ledger_transfers).where(
    _T.id.in_(bindparam("ids", expanding=True))
)
_INSERT_TRANSFER: Final = insert(ledger_transfers)
_COUNTERS: Final = ("posted_debits", "posted_credits", "pending_debits", "pending_credits")


def _two_account_case(name: str) -> Any:
    return case(
        (_A.id == bindparam("a0"), bindparam(f"{name}0", type_=BigInteger())),
        (_A.id == bindparam("a1"), bindparam(f"{name}1", type_=BigInteger())),
        else_=_A[name],
    )


_UPDATE_TWO_ACCOUNTS: Final = (
    update(ledger_accounts)
    .where(_A.id.in_([bindparam("a0"), bindparam("a1")]))
    .values({name: _two_account_case(name) for name in _COUNTERS})
)
_UPDATE_ONE_ACCOUNT: Final = (
    update(ledger_accounts)
    .where(_A.id == bindparam("a"))
    .values({name: bindparam(f"new_{name}", type_=BigInteger()) for name in _COUNTERS})
)


async def lock_accounts(session: AsyncSession, account_ids: Collection[str]) -> dict[str, Account]:
    """Lock the tracked rows among ``account_ids`` in sorted-id order and read them;
    read the untracked ones without a lock (their counters: zeros, never written).
    Ids with no account are left out of the result.

    See the module docstring for why the two backends take different routes.
    """
    ids = sorted(set(account_ids))
    if not ids:
        return {}
    conn = await session.connection()
    if conn.dialect.name in {"mysql", "mariadb"}:
        found = await _stored_accounts(session, ids)
        tracked = [a for a in ids if a in found and found[a].spec.track_balance]
        if tracked:
            rows = await conn.execute(_LOCK_ACCOUNTS, {"ids": tracked})
            found.update({row.id: account_of(row) for row in rows})
        return found
    if len(ids) <= FIXED_ARITY_MAX:
        rows = await conn.execute(_lock_statement(len(ids)), _ids_params(ids))
    else:
        rows = await conn.execute(_LOCK_TRACKED_READ_UNTRACKED, {"ids": ids, "untracked_ids": ids})
    return {row.id: account_of(row) for row in rows}


async def _lock_accounts(session: AsyncSession, account_ids: Collection[str]) -> dict[str, Account]:
    """:func:`lock_accounts`; AccountNotFound for the first missing id."""
    found = await lock_accounts(session, account_ids)
    for account_id in sorted(set(account_ids)):
        if account_id not in found:
            raise AccountNotFound(account_id)
    return found


async def write_counters(session: AsyncSession, changed: Mapping[str, Account]) -> None:
    """Write the new counters of the tracked accounts (absolute values computed
    under the locks); untracked ones are skipped.

    The usual two accounts take one UPDATE with CASE, a single one a plain UPDATE,
    more than two (a linked batch, expiry) one executemany.
    """
    conn = await session.connection()
    ids = sorted(a for a, account in changed.items() if account.spec.track_balance)
    if not ids:
        return
    if len(ids) == 2:
        params: dict[str, Any] = {"a0": ids[0], "a1": ids[1]}
        for n, account_id in enumerate(ids):
            b = changed[account_id].balance
            for name in _COUNTERS:
                params[f"{name}{n}"] = getattr(b, name)
        await conn.execute(_UPDATE_TWO_ACCOUNTS, params)
        return
    rows = [
        {"a": account_id}
        | {f"new_{name}": getattr(changed[account_id].balance, name) for name in _COUNTERS}
        for account_id in ids
    ]
    await conn.execute(_UPDATE_ONE_ACCOUNT, rows[0] if len(rows) == 1 else rows)


async def insert_transfers(session: AsyncSession, records: Sequence[Transfer]) -> None:
    """Insert new transfer records in one statement (their ``seq`` is not read back).

    For callers that checked the rules with :func:`ludex.ledger.model.plan_transfers`
    under :func:`lock_accounts` and write the counters with :func:`write_counters` in
    the same transaction; a duplicate id fails the caller's transaction.
    """
    if records:
        conn = await session.connection()
        rows = [_transfer_row(r) for r in records]
        await conn.execute(_INSERT_TRANSFER, rows[0] if len(rows) == 1 else rows)


async def _insert_transfer(session: AsyncSession, record: Transfer) -> Transfer:
    conn = await session.connection()
    result = cast(CursorResult[Any], await conn.execute(_INSERT_TRANSFER, _transfer_row(record)))
    seq = result.inserted_primary_key[0] if result.inserted_primary_key else None
    if seq is None:  # pragma: no cover - every backend reports the new key
        raise RuntimeError("the store did not report the new transfer's sequence number")
    return replace(record, seq=int(seq))


async def _stored(session: AsyncSession, transfer_ids: Collection[str]) -> dict[str, Transfer]:
    conn = await session.connection()
    ids = sorted(transfer_ids)
    if 0 < len(ids) <= FIXED_ARITY_MAX:
        rows = await conn.execute(_transfers_statement(len(ids)), _ids_params(ids))
    else:
        rows = await conn.execute(_TRANSFERS_BY_ID, {"ids": ids})
    return {row.id: _transfer(row) for row in rows}


# --- transfers -----------------------------------------------------------------------


async def transfer(
    session: AsyncSession, specs: Sequence[TransferSpec], *, now: datetime | None = None
) -> list[Transfer]:
    """Apply one transfer, or several linked ones (all or none), exactly once.

    Returns the stored records in the order given. Resubmitting the same ids with
    the same content returns the first result and changes nothing; an id reused
    with different content (including a different linked batch) raises
    TransferIdConflict. Rule violations raise before anything is written:
    InsufficientFunds, LedgerMismatch, AccountNotFound, InvalidTransfer,
    BalanceOverflow.
    """
    return (await transfer_with_balances(session, specs, now=now))[0]


async def transfer_with_balances(
    session: AsyncSession, specs: Sequence[TransferSpec], *, now: datetime | None = None
) -> tuple[list[Transfer], dict[str, Balance]]:
    """:func:`transfer`, plus the balances of its tracked accounts once it is applied.

    The balances are the ones computed under the account locks (the new counters, or
    the current ones when the transfer was already applied), so a caller that needs a
    balance right after a transfer does not read the row again. Untracked accounts
    (counters derived from the log) are left out: ask :func:`balances` for those.
    """
    specs = list(specs)
    if not specs:
        return [], {}
    for spec in specs:
        if not isinstance(spec, TransferSpec):
            raise InvalidTransfer(f"expected TransferSpec, got {type(spec).__name__}")
    batch = batch_of(specs)
    ids = [s.id for s in specs]
    accounts = await _lock_accounts(session, {a for s in specs for a in (s.debit, s.credit)})
    # After the locks, in a statement of its own: see the module docstring.
    if stored := await _stored(session, ids):
        return _first_result(specs, batch, stored), _tracked_balances(accounts)
    changed = plan_transfers(specs, accounts)
    created_at = _now(now)
    new = [record_of(s, batch=batch, now=created_at) for s in specs]
    if any(a.spec.track_balance for a in accounts.values()):
        records = [await _insert_transfer(session, record) for record in new]
    else:
        # No lock serializes two submissions of these ids: the UNIQUE index does,
        # inside a savepoint so that a duplicate does not abort the caller's
        # transaction (the loser's INSERT waits for the winner's commit).
        try:
            async with session.begin_nested():
                records = [await _insert_transfer(session, record) for record in new]
        except IntegrityError:
            if not (stored := await _stored(session, ids)):
                raise
            return _first_result(specs, batch, stored), _tracked_balances(accounts)
    await write_counters(session, changed)
    return records, _tracked_balances({**accounts, **changed})


def _tracked_balances(accounts: Mapping[str, Account]) -> dict[str, Balance]:
    return {a: account.balance for a, account in accounts.items() if account.spec.track_balance}


def _first_result(
    specs: Sequence[TransferSpec], batch: str | None, stored: Mapping[str, Transfer]
) -> list[Transfer]:
    """The stored records of a resubmitted batch, or TransferIdConflict."""
    for spec in specs:
        if spec.id not in stored:
            known = next(iter(stored))
            raise TransferIdConflict(known, f"it was submitted in a batch without {spec.id!r}")
        if (difference := content_difference(spec, batch, stored[spec.id])) is not None:
            raise TransferIdConflict(spec.id, difference)
    return [stored[s.id] for s in specs]


async def _resolve(
    session: AsyncSession,
    pending_id: str,
    *,
    id: str,
    amount: int | None,
    post: bool,
    now: datetime | None,
) -> Transfer:
    validate_transfer_id(id)
    if id == pending_id:
        raise InvalidTransfer(f"the post or void of {pending_id!r} needs an id of its own")
    found = await _stored(session, [pending_id])
    if pending_id not in found:
        raise PendingNotFound(f"no pending transfer with id {pending_id!r}")
    first = found[pending_id]
    accounts = await _lock_accounts(session, {first.debit, first.credit})
    stored = await _stored(session, [pending_id, id])  # re-read under the locks
    if (done := _resolved_by(stored, pending_id, id=id, amount=amount, post=post)) is not None:
        return done
    pending = check_pending(stored[pending_id], pending_id)
    post_amount = (amount if amount is not None else pending.amount) if post else None
    at = _now(now)
    changed = plan_resolution(pending, accounts, post_amount=post_amount, now=at)
    if not await _claim(session, resolved(pending, posted=post)):
        # Only when neither account is tracked (no lock serialized the two): another
        # transaction resolved it first; its UPDATE made ours wait for its commit.
        stored = await _stored(session, [pending_id, id])
        if (done := _resolved_by(stored, pending_id, id=id, amount=amount, post=post)) is not None:
            return done
        check_pending(stored[pending_id], pending_id)  # raises PendingResolved
        raise AssertionError(
            f"pending transfer {pending_id!r} changed under us"
        )  # pragma: no cover
    record = await _insert_transfer(
        session, resolution_of(pending, id=id, post_amount=post_amount, now=at)
    )
    await write_counters(session, changed)
    return record


def _resolved_by(
    stored: Mapping[str, Transfer], pending_id: str, *, id: str, amount: int | None, post: bool
) -> Transfer | None:
    """The record ``id`` if it already is this resolution, None if ``id`` is new;
    TransferIdConflict if ``id`` is something else."""
    if id not in stored:
        return None
    done, pending = stored[id], stored[pending_id]
    wanted_state = TransferState.POSTED if post else TransferState.VOIDED
    wanted_amount = (amount if amount is not None else pending.amount) if post else done.amount
    if done.pending_id != pending_id or done.state is not wanted_state:
        raise TransferIdConflict(id, f"it is not the {wanted_state.value} of {pending_id!r}")
    if done.amount != wanted_amount:
        raise TransferIdConflict(id, f"amount: {done.amount} before, {wanted_amount} now")
    return done


async def _claim(session: AsyncSession, pending: Transfer) -> bool:
    """Set a pending transfer's new state; False if it is no longer pending.

    The one UPDATE a transfer row ever gets; its cause is the record inserted right
    after. It also serializes resolutions of one pending transfer whose accounts are
    both untracked (no account lock does): the second UPDATE waits, then matches
    nothing.
    """
    conn = await session.connection()
    result = cast(
        CursorResult[Any],
        await conn.execute(
            _CLAIM_PENDING, {"pending_seq": pending.seq, "new_state": pending.state.value}
        ),
    )
    return result.rowcount == 1


_CLAIM_PENDING: Final = (
    update(ledger_transfers)
    .where(and_(_T.seq == bindparam("pending_seq"), _T.state == TransferState.PENDING.value))
    .values(state=bindparam("new_state"))
)


async def post_pending(
    session: AsyncSession,
    pending_id: str,
    *,
    id: str,
    amount: int | None = None,
    now: datetime | None = None,
) -> Transfer:
    """Post a pending transfer (all of it, or ``amount`` ≤ the reserved amount).

    The rest of the reservation is released. Returns the new POSTED record (``id``,
    ``pending_id``); the pending transfer becomes POSTED_FROM_PENDING. Idempotent by
    ``id``. Raises PendingNotFound, PendingResolved, PendingExpired (its timeout
    passed: only a void is possible), TransferIdConflict.
    """
    return await _resolve(session, pending_id, id=id, amount=amount, post=True, now=now)


async def void_pending(
    session: AsyncSession, pending_id: str, *, id: str, now: datetime | None = None
) -> Transfer:
    """Void a pending transfer: release the whole reservation. Idempotent by ``id``."""
    return await _resolve(session, pending_id, id=id, amount=None, post=False, now=now)


async def expire_pending(session: AsyncSession, now: datetime, *, limit: int = 1000) -> int:
    """Void up to ``limit`` pending transfers whose timeout passed; return how many.

    Each expiry is recorded as a void with the reserved id ``ledger:expire:<seq>``
    and metadata ``{"reason": "expired"}``. Safe to run from several workers.
    """
    rows = await session.execute(
        select(ledger_transfers)
        .where(_T.state == TransferState.PENDING.value, _T.expires_at <= now)
        .order_by(_T.seq)
        .limit(limit)
    )
    candidates = [_transfer(row) for row in rows]
    if not candidates:
        return 0
    accounts = await _lock_accounts(session, {a for t in candidates for a in (t.debit, t.credit)})
    fresh = await _stored(session, [t.id for t in candidates])  # re-read under the locks
    changed: dict[str, Account] = {}
    expired = 0
    for pending in sorted(fresh.values(), key=lambda t: t.seq):
        if pending.state is not TransferState.PENDING:
            continue  # resolved by someone else while we waited for the locks
        current = {**accounts, **changed}
        planned = plan_resolution(pending, current, post_amount=None, now=now)
        if not await _claim(session, resolved(pending, posted=False)):
            continue  # untracked accounts only: another worker expired it first
        changed.update(planned)
        await _insert_transfer(
            session,
            resolution_of(
                pending,
                id=expiry_id(pending),
                post_amount=None,
                now=now,
                metadata=EXPIRED_METADATA,
            ),
        )
        expired += 1
    if changed:
        await write_counters(session, changed)
    return expired


# --- reading ---------------------------------------------------------------------------


async def balances(session: AsyncSession, account_ids: Iterable[str]) -> dict[str, Balance]:
    """The balances of ``account_ids`` (AccountNotFound names the first unknown one)."""
    ids = sorted(set(account_ids))
    found = await get_accounts(session, ids)
    for account_id in ids:
        if account_id not in found:
            raise AccountNotFound(account_id)
    return {account_id: found[account_id].balance for account_id in ids}


async def balance(session: AsyncSession, account_id: str) -> Balance:
    """One account's balance; AccountNotFound if there is no such account."""
    return (await balances(session, [account_id]))[account_id]


async def ledger_balances(session: AsyncSession, ledger: str) -> dict[str, Balance]:
    """Every account of ``ledger`` with its balance (for reconciliation)."""
    rows = await session.execute(select(ledger_accounts).where(_A.ledger == ledger).order_by(_A.id))
    accounts = await _with_derived(session, {row.id: account_of(row) for row in rows})
    return {account_id: account.balance for account_id, account in accounts.items()}


def _sums_by(side: Any, name: str) -> Any:
    return (
        select(
            side.label("account"),
            literal_column(f"'{name}'").label("side"),
            _T.state,
            func.sum(_T.amount).label("total"),
        )
        .where(
            side.in_(bindparam("ids", expanding=True)),
            _T.state.in_([TransferState.POSTED.value, TransferState.PENDING.value]),
        )
        .group_by(side, _T.state)
    )


_UNTRACKED_SUMS: Final = union_all(_sums_by(_T.debit, "debits"), _sums_by(_T.credit, "credits"))
"""Posted and open pending amounts per untracked account and side, from the log.

Every record in state ``posted`` moved posted counters by its amount (a single-phase
transfer, or the post of a reservation); a reservation counts as pending exactly
while its own record is ``pending`` (see :func:`ludex.ledger.model.replay`)."""


async def _with_derived(
    session: AsyncSession, accounts: Mapping[str, Account]
) -> dict[str, Account]:
    """``accounts`` with the counters of the untracked ones summed from the log."""
    untracked = sorted(a for a, account in accounts.items() if not account.spec.track_balance)
    if not untracked:
        return dict(accounts)
    conn = await session.connection()
    sums: dict[tuple[str, str, str], int] = {}
    for row in await conn.execute(_UNTRACKED_SUMS, {"ids": untracked}):
        sums[(row.account, row.side, row.state)] = int(row.total or 0)
    derived = dict(accounts)
    posted, pending = TransferState.POSTED.value, TransferState.PENDING.value
    for account_id in untracked:
        account = accounts[account_id]
        derived[account_id] = Account(
            account.spec,
            Balance(
                account_id,
                account.spec.ledger,
                posted_debits=sums.get((account_id, "debits", posted), 0),
                posted_credits=sums.get((account_id, "credits", posted), 0),
                pending_debits=sums.get((account_id, "debits", pending), 0),
                pending_credits=sums.get((account_id, "credits", pending), 0),
            ),
        )
    return derived


async def get_transfer(session: AsyncSession, transfer_id: str) -> Transfer | None:
    """The stored transfer with this id, or None."""
    return (await _stored(session, [transfer_id])).get(transfer_id)


async def transfers_of(
    session: AsyncSession, account_id: str, *, after_seq: int = 0, limit: int = 100
) -> list[Transfer]:
    """Transfers debiting or crediting ``account_id``, oldest first, after ``after_seq``."""
    rows = await session.execute(
        select(ledger_transfers)
        .where(or_(_T.debit == account_id, _T.credit == account_id), _T.seq > after_seq)
        .order_by(_T.seq)
        .limit(limit)
    )
    return [_transfer(row) for row in rows]


async def all_transfers(
    session: AsyncSession, ledger: str, *, after_seq: int = 0, limit: int | None = None
) -> list[Transfer]:
    """The transfer log of ``ledger`` in ``seq`` order (replay, reconciliation).

    ``seq`` is insertion order. For transfers sharing an account it is also commit
    order (the account locks serialize them); unrelated transfers may commit out of
    ``seq`` order, so a reader paging a live ledger by ``after_seq`` should re-read
    a short window behind its last ``seq``. Replay does not care: it only adds.
    """
    stmt = select(ledger_transfers).where(_T.ledger == ledger, _T.seq > after_seq).order_by(_T.seq)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [_transfer(row) for row in await session.execute(stmt)]
