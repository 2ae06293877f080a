"""The seamless wallet: balance, bet, win and rollback for external game providers.

Each money-moving request runs in ONE ``store.transaction()``: the ledger transfer,
the provider transaction row (idempotency record: request hash + first response),
the round update and the outbox event commit together or not at all.

Bets and wins are group committed (:mod:`ludex.wagering.batch`): concurrent ones
share a transaction that locks the rounds, then the player accounts (sorted), reads
the transaction ids after the locks, applies the requests one after the other in
memory and writes everything with a few multi-row statements (one on PostgreSQL,
:mod:`ludex.wagering.pg_batch`). A batch that fails as a whole is re-run one request
at a time. Rollbacks, rarer and reaching back to their bet, run alone.

Ledger mapping (ledger ``CHIPS``): a player's account is ``player:<id>``; a
provider's float is ``provider:<id>`` (may go negative: it is what the provider
owes or is owed). A bet moves player → float, a win float → player, a rollback
reverses its bet. Transfer codes are ``bet``, ``win`` and ``rollback``.

Idempotency and ordering, per (provider, transaction id):

* a duplicate with the same payload gets the stored first response, and nothing
  moves again; a different payload gets ``DUPLICATE_DIFFERENT_PAYLOAD``;
* a rollback of an id the wallet has not seen is acknowledged (``OK``) and leaves a
  *tombstone* under that id: the bet, if it arrives later, is refused with
  ``ROLLED_BACK`` and moves nothing;
* a rollback reverses its bet exactly once (a second rollback id for the same bet
  gets ``ROLLED_BACK``);
* a win needs an open round with a bet (``UNKNOWN_ROUND`` otherwise, e.g. a win that
  overtook its bet); closed rounds answer ``ROUND_CLOSED``, voided ones ``ROLLED_BACK``.

Only accepted transactions are stored: a refusal (insufficient funds, a limit,
unknown round ...) is answered again on a retry with the same id, re-evaluated.
Two concurrent requests with the same id race on the unique (provider,
transaction id) key; the loser's transaction rolls back and it answers from the
winner's row, so money moves once.

This module must never move money outside ``store.transaction()`` nor answer a
refusal after writing anything but the refusal's event.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import structlog
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from ludex import ledger
from ludex.adapters.sql.outbox import add_to_outbox
from ludex.errors import (
    AccountNotFound,
    InsufficientFunds,
    StoreError,
    TransferIdConflict,
    WageringError,
    WalletRefusal,
)
from ludex.events import (
    BetPlaced,
    Envelope,
    GameFinalized,
    LimitRefused,
    Payload,
    RolledBack,
    TreasuryMoved,
    WinSettled,
    new_event,
)
from ludex.ledger import AccountKind, AccountSpec, TransferSpec
from ludex.ledger import repository as ledger_repository
from ludex.ledger.model import plan_transfers, record_of
from ludex.ledger.repository import transfer_with_balances
from ludex.ports.kv import KeyValue
from ludex.ports.store import OperationalStore
from ludex.wagering import crypto, limits, pg_batch, repository
from ludex.wagering.batch import MAX_BATCH, SLOTS, GroupCommit, View, Writes
from ludex.wagering.models import (
    CURRENCY,
    BalanceRequest,
    BetRequest,
    LimitChange,
    RollbackRequest,
    Status,
    WalletResponse,
    WinRequest,
    refusal,
)
from ludex.wagering.signing import AuthFailure, AuthHeaders, check_request, valid_provider_id

log = structlog.get_logger(__name__)

T = TypeVar("T")

HOUSE_ACCOUNT: Final = "house"
CONFLICT_RETRIES: Final = 5


def player_account(player_id: str) -> str:
    return f"player:{player_id}"


def provider_account(provider_id: str) -> str:
    return f"provider:{provider_id}"


def transfer_id(kind: str, provider_id: str, transaction_id: str) -> str:
    """The ledger transfer id of a provider transaction (at most 64 characters)."""
    readable = f"w{kind[0]}:{provider_id}:{transaction_id}"
    if len(readable) <= 64:
        return readable
    digest = hashlib.sha256(f"{provider_id}\0{transaction_id}".encode()).hexdigest()
    return f"w{kind[0]}#{digest[:56]}"


def _refuse(status: Status, message: str, **details: object) -> WalletRefusal:
    return WalletRefusal(status.value, message, **details)


@dataclass(frozen=True, slots=True)
class _Request:
    """A bet or a win waiting for its batch."""

    provider_id: str
    request: BetRequest | WinRequest
    digest: str


def _spec(
    tid: str, debit: str, credit: str, amount: int, code: str, provider_id: str, transaction_id: str
) -> TransferSpec:
    return TransferSpec(
        id=tid,
        debit=debit,
        credit=credit,
        amount=amount,
        ledger=ledger.CHIPS,
        code=code,
        metadata={"provider": provider_id, "transaction_id": transaction_id},
    )


@contextmanager
def _ledger_refusals(amount: int) -> Iterator[None]:
    """Ledger refusals as wallet refusals (a missing provider account is a setup error)."""
    try:
        yield
    except InsufficientFunds as exc:
        raise _refuse(
            Status.INSUFFICIENT_FUNDS,
            f"available balance {exc.available} is below {amount}",
            balance=exc.available,
            currency=CURRENCY,
        ) from None
    except AccountNotFound as exc:
        if exc.account.startswith("player:"):
            raise _refuse(
                Status.UNKNOWN_PLAYER, f"player {exc.account!r} has no ledger account"
            ) from None
        raise WageringError(
            f"ledger account {exc.account!r} is missing; register the provider with "
            "`ludex wallet provider add`"
        ) from None


def _available(view: View, player_id: str) -> int:
    account = view.accounts.get(player_account(player_id))
    if account is None:
        raise _refuse(Status.UNKNOWN_PLAYER, f"player {player_id!r} has no account")
    return account.balance.available


def _store_transaction(view: View, writes: Writes, **values: Any) -> None:
    """Queue a provider transaction row, and show it to the rest of the batch."""
    values.setdefault("ref_transaction_id", None)
    writes.transactions.append(values)
    view.transactions[(values["provider_id"], values["transaction_id"])] = (
        repository.TransactionRow(id=0, rolled_back_by=None, **values)
    )


def _store_round(
    view: View, writes: Writes, row: repository.RoundRow, *, new: bool = False
) -> None:
    view.rounds[(row.provider_id, row.round_id)] = row
    writes.round(row, new=new)


@dataclass(frozen=True, slots=True)
class _Outcome:
    response: WalletResponse
    stored: bool = False


class WalletService:
    """The provider wallet over the operational store, the ledger and the KeyValue port."""

    def __init__(
        self,
        store: OperationalStore,
        kv: KeyValue,
        *,
        timestamp_window: float = 30.0,
        cache_seconds: float = 1.0,
        secrets_key: SecretStr | None = None,
        producer: str = "ludex",
        clock: Callable[[], float] = time.time,
        max_batch: int = MAX_BATCH,
        batch_slots: int = SLOTS,
    ) -> None:
        self._store = store
        self._kv = kv
        self._window = timestamp_window
        self._cache_seconds = cache_seconds
        self._key = crypto.key_bytes(secrets_key)
        self._producer = producer
        self._clock = clock
        self._limits: tuple[float, list[limits.Limit]] | None = None
        self._providers: dict[str, tuple[float, repository.ProviderRow | None]] = {}
        self._batches = GroupCommit(self._run_batch, max_batch=max_batch, slots=batch_slots)

    @property
    def store(self) -> OperationalStore:
        return self._store

    @property
    def batch_counts(self) -> tuple[int, int]:
        """(batches run, bets and wins in them) since this service started."""
        return self._batches.batches, self._batches.items

    # -- authentication -------------------------------------------------------------

    async def authenticate(self, auth: AuthHeaders, body: bytes) -> AuthFailure | None:
        """Provider known and active, timestamp in the window, signature, nonce unused."""
        provider = await self._provider(auth.provider)
        if provider is None:
            return AuthFailure(Status.INVALID_SIGNATURE, "unknown provider")
        if provider.status != "active":
            return AuthFailure(Status.PROVIDER_BLOCKED, "provider is blocked")
        secret = crypto.decrypt(self._key, provider.id, provider.secret)
        failure = check_request(auth, secret, body, now=self._clock(), window=self._window)
        if failure is not None:
            return failure
        remembered = await self._kv.remember(
            f"nonce:{auth.provider}:{auth.nonce}", b"1", ttl=2 * self._window
        )
        if not remembered.first:
            return AuthFailure(Status.NONCE_REUSED, "nonce already used; sign with a fresh nonce")
        return None

    async def _provider(self, provider_id: str) -> repository.ProviderRow | None:
        now = time.monotonic()
        cached = self._providers.get(provider_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self._store.transaction() as session:
            row = await repository.get_provider(session, provider_id)
        if self._cache_seconds > 0:
            self._providers[provider_id] = (now + self._cache_seconds, row)
        return row

    # -- the four operations --------------------------------------------------------

    async def balance(self, provider_id: str, request: BalanceRequest) -> WalletResponse:
        try:
            async with self._store.transaction() as session:
                await self._check_player(session, request.player_id, for_bet=False)
                amount = await self._player_balance(session, request.player_id)
        except WalletRefusal as refused:
            return _as_response(refused)
        return WalletResponse(status=Status.OK, balance=amount, currency=CURRENCY)

    async def bet(self, provider_id: str, request: BetRequest) -> WalletResponse:
        solo = await self._needs_sums(provider_id, request)
        return await self._batches.submit(
            _Request(provider_id, request, request.payload_hash("bet")), solo=solo
        )

    async def win(self, provider_id: str, request: WinRequest) -> WalletResponse:
        return await self._batches.submit(
            _Request(provider_id, request, request.payload_hash("win"))
        )

    async def rollback(self, provider_id: str, request: RollbackRequest) -> WalletResponse:
        digest = request.payload_hash("rollback")
        return await self._run(
            lambda session, status: self._rollback(session, status, provider_id, request, digest),
            provider_id,
            request.transaction_id,
            request.player_id,
            digest,
        )

    async def _needs_sums(self, provider_id: str, r: BetRequest) -> bool:
        """Whether a bet's limits need figures only SQL can sum (it then runs alone)."""
        rows = self._limits[1] if self._limits and self._limits[0] > time.monotonic() else None
        if rows is None:
            async with self._store.transaction() as session:
                rows = await self._all_limits(session)
        if not rows:
            return False
        effective = limits.effective_limits(
            rows, player_id=r.player_id, game_id=r.game_id, provider_id=provider_id
        )
        return not effective.keys().isdisjoint(limits.SUMMED)

    async def _run_batch(self, items: Sequence[_Request]) -> list[WalletResponse | BaseException]:
        """Apply a batch; if it fails as a whole (a deadlock, a key raced in by another
        process), apply each request alone, retrying a few times."""
        try:
            return await self._apply_batch(items)
        except (StoreError, TransferIdConflict) as exc:
            if len(items) > 1:
                log.info("wallet.batch_split", size=len(items), error=type(exc).__name__)
        outcomes: list[WalletResponse | BaseException] = []
        for item in items:
            for attempt in range(CONFLICT_RETRIES):
                try:
                    outcomes.append((await self._apply_batch([item]))[0])
                    break
                except (StoreError, TransferIdConflict) as exc:
                    if attempt == CONFLICT_RETRIES - 1:
                        outcomes.append(exc)
                        break
                    log.info(
                        "wallet.conflict_retry",
                        provider=item.provider_id,
                        transaction_id=item.request.transaction_id,
                        attempt=attempt + 1,
                        error=type(exc).__name__,
                    )
                    await asyncio.sleep(0.002 * (attempt + 1))
        return outcomes

    async def _apply_batch(self, items: Sequence[_Request]) -> list[WalletResponse | BaseException]:
        """One transaction: lock and read what the batch needs, apply every request in
        order in memory, write the changes, commit."""
        outcomes: list[WalletResponse | BaseException] = []
        async with self._store.transaction() as session:
            conn = await session.connection()
            driver = None
            if conn.dialect.name == "postgresql":  # the fast path: see pg_batch
                driver = (await conn.get_raw_connection()).driver_connection
            view = await self._load(session, driver, items)
            writes = Writes()
            now = datetime.now(UTC)
            for item in items:
                try:
                    if isinstance(item.request, BetRequest):
                        outcome: WalletResponse | BaseException = await self._bet(
                            session, view, writes, item.provider_id, item.request, item.digest, now
                        )
                    else:
                        outcome = await self._win(
                            session, view, writes, item.provider_id, item.request, item.digest, now
                        )
                except WalletRefusal as refused:
                    outcome = _as_response(refused)
                except WageringError as exc:
                    outcome = exc
                outcomes.append(outcome)
            if driver is not None:
                await pg_batch.write(driver, writes, now)
            else:
                await self._write(session, writes, now)
        return outcomes

    async def _load(
        self, session: AsyncSession, driver: Any | None, items: Sequence[_Request]
    ) -> View:
        """Read the batch's players; lock its rounds, then its accounts (each in sorted
        order, as every writer does), then read its transactions: after the locks, so a
        request that waited for another batch with the same id sees that batch's row."""
        rounds = {(i.provider_id, i.request.round_id) for i in items}
        accounts = {player_account(i.request.player_id) for i in items} | {
            provider_account(i.provider_id) for i in items
        }
        keys = {(i.provider_id, i.request.transaction_id) for i in items}
        keys |= {
            (i.provider_id, i.request.bet_transaction_id)
            for i in items
            if isinstance(i.request, WinRequest) and i.request.bet_transaction_id is not None
        }
        players = {i.request.player_id for i in items}
        # The players first, through the session: its first statement is what opens the
        # transaction the fast path's driver statements then run in.
        statuses = await repository.player_statuses(session, players)
        if driver is not None:
            view = await pg_batch.load(driver, rounds, accounts, keys)
        else:
            view = View()
            view.rounds = await repository.lock_rounds(session, rounds)
            view.accounts = await ledger_repository.lock_accounts(session, accounts)
            view.transactions = await repository.get_transactions(session, keys)
        view.players = statuses
        return view

    async def _write(self, session: AsyncSession, writes: Writes, now: datetime) -> None:
        """The portable write: a few multi-row statements through SQLAlchemy Core."""
        await ledger_repository.insert_transfers(session, writes.transfers)
        await ledger_repository.write_counters(session, writes.accounts)
        await repository.write_rounds(session, list(writes.rounds.values()), now)
        await repository.insert_transactions(session, writes.transactions)
        await add_to_outbox(session, *writes.events)

    async def _run(
        self,
        operation: Callable[[AsyncSession, str | None], Awaitable[_Outcome]],
        provider_id: str,
        transaction_id: str,
        player_id: str,
        digest: str,
    ) -> WalletResponse:
        """Run one operation in a transaction; on a race for the same id, answer from the
        row the winner stored (retrying a few times on deadlocks and key conflicts).

        The operation gets the player's status (None: unknown player), read in the same
        statement as the idempotency lookup."""
        for attempt in range(CONFLICT_RETRIES):
            try:
                async with self._store.transaction() as session:
                    existing, status = await repository.get_transaction_and_player(
                        session, provider_id, transaction_id, player_id
                    )
                    if existing is not None:
                        return _replay(existing, digest)
                    outcome = await operation(session, status)
                return outcome.response
            except WalletRefusal as refused:
                return _as_response(refused)
            except (StoreError, TransferIdConflict) as exc:
                if attempt == CONFLICT_RETRIES - 1:
                    raise
                log.info(
                    "wallet.conflict_retry",
                    provider=provider_id,
                    transaction_id=transaction_id,
                    attempt=attempt + 1,
                    error=type(exc).__name__,
                )
                await asyncio.sleep(0.002 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _bet(
        self,
        session: AsyncSession,
        view: View,
        writes: Writes,
        provider_id: str,
        r: BetRequest,
        digest: str,
        now: datetime,
    ) -> WalletResponse:
        existing = view.transactions.get((provider_id, r.transaction_id))
        if existing is not None:
            return _replay(existing, digest)
        _check_status(view.players.get(r.player_id), r.player_id, for_bet=True)
        round_row = view.rounds.get((provider_id, r.round_id))
        if round_row is not None:
            _check_round_owner(round_row, r.player_id, r.game_id)
            if round_row.status == "closed":
                raise _refuse(Status.ROUND_CLOSED, f"round {r.round_id!r} is settled")
            if round_row.status == "rolled_back":
                raise _refuse(Status.ROLLED_BACK, f"round {r.round_id!r} was rolled back")
        breach = await self._check_limits(session, provider_id, r, round_row)
        if breach is not None:
            writes.events.append(
                self._event(
                    r.player_id,
                    LimitRefused(
                        player_id=r.player_id,
                        provider=provider_id,
                        game_id=r.game_id,
                        transaction_id=r.transaction_id,
                        limit=breach.limit,
                        requested=breach.requested,
                        allowed=breach.allowed,
                        currency=r.currency,
                    ),
                )
            )
            return refusal(
                Status.LIMIT_REACHED, breach.message, limit=breach.limit, currency=CURRENCY
            )
        tid = transfer_id("bet", provider_id, r.transaction_id)
        balance = self._move(
            view,
            writes,
            now,
            tid,
            player_account(r.player_id),
            provider_account(provider_id),
            r.amount,
            "bet",
            provider_id,
            r.transaction_id,
        )
        response = WalletResponse(
            status=Status.OK, balance=balance, currency=CURRENCY, transaction_id=r.transaction_id
        )
        _store_transaction(
            view,
            writes,
            provider_id=provider_id,
            transaction_id=r.transaction_id,
            kind="bet",
            player_id=r.player_id,
            game_id=r.game_id,
            round_id=r.round_id,
            amount=r.amount,
            currency=r.currency,
            request_hash=digest,
            status=Status.OK.value,
            response=response.to_json(),
            transfer_id=tid,
            created_at=now,
        )
        if round_row is None:
            _store_round(
                view,
                writes,
                repository.RoundRow(
                    provider_id,
                    r.round_id,
                    r.player_id,
                    r.game_id,
                    "open",
                    r.amount,
                    1,
                    r.amount,
                    0,
                ),
                new=True,
            )
        else:
            _store_round(
                view,
                writes,
                replace(
                    round_row,
                    open_stakes=round_row.open_stakes + r.amount,
                    open_bets=round_row.open_bets + 1,
                    total_bet=round_row.total_bet + r.amount,
                ),
            )
        writes.events.append(
            self._event(
                r.player_id,
                BetPlaced(
                    player_id=r.player_id,
                    provider=provider_id,
                    game_id=r.game_id,
                    round_id=r.round_id,
                    transaction_id=r.transaction_id,
                    amount=r.amount,
                    currency=r.currency,
                    balance_after=balance,
                ),
            )
        )
        return response

    async def _win(
        self,
        session: AsyncSession,
        view: View,
        writes: Writes,
        provider_id: str,
        r: WinRequest,
        digest: str,
        now: datetime,
    ) -> WalletResponse:
        existing = view.transactions.get((provider_id, r.transaction_id))
        if existing is not None:
            return _replay(existing, digest)
        _check_status(view.players.get(r.player_id), r.player_id, for_bet=False)
        round_row = view.rounds.get((provider_id, r.round_id))
        if round_row is None:
            raise _refuse(
                Status.UNKNOWN_ROUND,
                f"round {r.round_id!r} has no accepted bet; send the win after its bet "
                "was acknowledged",
            )
        _check_round_owner(round_row, r.player_id, r.game_id)
        if round_row.status == "closed":
            raise _refuse(Status.ROUND_CLOSED, f"round {r.round_id!r} is settled")
        if round_row.status == "rolled_back":
            raise _refuse(Status.ROLLED_BACK, f"every bet of round {r.round_id!r} was rolled back")
        if r.bet_transaction_id is not None:
            bet = view.transactions.get((provider_id, r.bet_transaction_id))
            if bet is None or bet.kind not in {"bet", "tombstone"} or bet.round_id != r.round_id:
                raise _refuse(
                    Status.UNKNOWN_TRANSACTION,
                    f"no bet {r.bet_transaction_id!r} in round {r.round_id!r}",
                )
            if bet.kind == "tombstone" or bet.rolled_back_by is not None:
                raise _refuse(Status.ROLLED_BACK, f"bet {r.bet_transaction_id!r} was rolled back")
        tid: str | None = None
        if r.amount > 0:
            tid = transfer_id("win", provider_id, r.transaction_id)
            balance = self._move(
                view,
                writes,
                now,
                tid,
                provider_account(provider_id),
                player_account(r.player_id),
                r.amount,
                "win",
                provider_id,
                r.transaction_id,
            )
        else:
            balance = _available(view, r.player_id)
        response = WalletResponse(
            status=Status.OK, balance=balance, currency=CURRENCY, transaction_id=r.transaction_id
        )
        _store_transaction(
            view,
            writes,
            provider_id=provider_id,
            transaction_id=r.transaction_id,
            kind="win",
            player_id=r.player_id,
            game_id=r.game_id,
            round_id=r.round_id,
            amount=r.amount,
            currency=r.currency,
            request_hash=digest,
            status=Status.OK.value,
            response=response.to_json(),
            transfer_id=tid,
            ref_transaction_id=r.bet_transaction_id,
            created_at=now,
        )
        total_win = round_row.total_win + r.amount
        _store_round(
            view,
            writes,
            replace(round_row, total_win=total_win, status="closed" if r.round_closed else "open"),
        )
        writes.events.append(
            self._event(
                r.player_id,
                WinSettled(
                    player_id=r.player_id,
                    provider=provider_id,
                    game_id=r.game_id,
                    round_id=r.round_id,
                    transaction_id=r.transaction_id,
                    amount=r.amount,
                    currency=r.currency,
                    balance_after=balance,
                ),
            )
        )
        if r.round_closed:
            writes.events.append(
                self._event(
                    r.player_id,
                    GameFinalized(
                        provider=provider_id,
                        game_id=r.game_id,
                        round_id=r.round_id,
                        player_id=r.player_id,
                        total_bet=round_row.open_stakes,
                        total_win=total_win,
                        currency=r.currency,
                    ),
                )
            )
        return response

    async def _rollback(
        self,
        session: AsyncSession,
        player_status: str | None,
        provider_id: str,
        r: RollbackRequest,
        digest: str,
    ) -> _Outcome:
        _check_status(player_status, r.player_id, for_bet=False)
        now = datetime.now(UTC)
        target = await repository.get_transaction(
            session, provider_id, r.rolled_back_transaction_id
        )
        if target is None:
            return await self._tombstone(session, provider_id, r, digest, now)
        if target.kind == "tombstone" or target.rolled_back_by is not None:
            raise _refuse(
                Status.ROLLED_BACK,
                f"transaction {r.rolled_back_transaction_id!r} was already rolled back by "
                f"{target.rolled_back_by!r}",
                balance=await self._player_balance(session, r.player_id),
                currency=CURRENCY,
            )
        if target.kind != "bet":
            raise _refuse(
                Status.INVALID_REQUEST,
                f"transaction {r.rolled_back_transaction_id!r} is a {target.kind}; only bets "
                "can be rolled back",
            )
        if target.player_id != r.player_id or (
            r.round_id is not None and r.round_id != target.round_id
        ):
            raise _refuse(
                Status.INVALID_REQUEST,
                f"bet {r.rolled_back_transaction_id!r} belongs to another player or round",
            )
        assert target.round_id is not None  # bets always carry their round
        # Lock order: the round, then the bet row (as bets and wins lock the round first).
        round_row = await repository.get_round(
            session, provider_id, target.round_id, for_update=True
        )
        target = await repository.get_transaction(
            session, provider_id, r.rolled_back_transaction_id, for_update=True
        )
        if round_row is None or target is None:  # pragma: no cover - rows are never deleted
            raise WageringError(f"bet {r.rolled_back_transaction_id!r} lost its round")
        if target.rolled_back_by is not None:
            raise _refuse(
                Status.ROLLED_BACK,
                f"transaction {target.transaction_id!r} was already rolled back by "
                f"{target.rolled_back_by!r}",
            )
        if round_row.status == "closed":
            raise _refuse(
                Status.ROUND_CLOSED,
                f"round {round_row.round_id!r} is settled; a settled bet cannot be rolled back",
            )
        tid = transfer_id("rollback", provider_id, r.transaction_id)
        moved = await self._transfer_now(
            session,
            tid,
            provider_account(provider_id),
            player_account(r.player_id),
            target.amount,
            "rollback",
            provider_id,
            r.transaction_id,
        )
        balance = await self._balance_after(session, r.player_id, moved)
        response = WalletResponse(
            status=Status.OK, balance=balance, currency=CURRENCY, transaction_id=r.transaction_id
        )
        await repository.mark_rolled_back(
            session, provider_id, target.transaction_id, r.transaction_id
        )
        await repository.insert_transaction(
            session,
            provider_id=provider_id,
            transaction_id=r.transaction_id,
            kind="rollback",
            player_id=r.player_id,
            game_id=target.game_id,
            round_id=target.round_id,
            amount=target.amount,
            currency=target.currency,
            request_hash=digest,
            status=Status.OK.value,
            response=response.to_json(),
            transfer_id=tid,
            ref_transaction_id=target.transaction_id,
            created_at=now,
        )
        open_bets = round_row.open_bets - 1
        await repository.update_round(
            session,
            provider_id,
            round_row.round_id,
            now=now,
            open_stakes=round_row.open_stakes - target.amount,
            open_bets=open_bets,
            status="rolled_back" if open_bets == 0 else round_row.status,
        )
        await self._emit(
            session,
            r.player_id,
            RolledBack(
                player_id=r.player_id,
                provider=provider_id,
                transaction_id=r.transaction_id,
                rolled_back_transaction_id=target.transaction_id,
                amount=target.amount,
                currency=target.currency,
                balance_after=balance,
            ),
        )
        return _Outcome(response, stored=True)

    async def _tombstone(
        self,
        session: AsyncSession,
        provider_id: str,
        r: RollbackRequest,
        digest: str,
        now: datetime,
    ) -> _Outcome:
        """Acknowledge a rollback of an unseen id and make sure that id never moves money."""
        balance = await self._player_balance(session, r.player_id)
        response = WalletResponse(
            status=Status.OK,
            balance=balance,
            currency=CURRENCY,
            transaction_id=r.transaction_id,
            message=f"{r.rolled_back_transaction_id!r} was not seen; it is now refused",
        )
        common = {
            "provider_id": provider_id,
            "player_id": r.player_id,
            "round_id": r.round_id,
            "amount": 0,
            "currency": CURRENCY,
            "created_at": now,
        }
        await repository.insert_transaction(
            session,
            transaction_id=r.rolled_back_transaction_id,
            kind="tombstone",
            request_hash=None,
            status=Status.ROLLED_BACK.value,
            response=None,
            rolled_back_by=r.transaction_id,
            **common,
        )
        await repository.insert_transaction(
            session,
            transaction_id=r.transaction_id,
            kind="rollback",
            request_hash=digest,
            status=Status.OK.value,
            response=response.to_json(),
            ref_transaction_id=r.rolled_back_transaction_id,
            **common,
        )
        await self._emit(
            session,
            r.player_id,
            RolledBack(
                player_id=r.player_id,
                provider=provider_id,
                transaction_id=r.transaction_id,
                rolled_back_transaction_id=r.rolled_back_transaction_id,
                amount=0,
                currency=CURRENCY,
                balance_after=balance,
            ),
        )
        return _Outcome(response, stored=True)

    # -- helpers ----------------------------------------------------------------------

    async def _check_player(self, session: AsyncSession, player_id: str, *, for_bet: bool) -> None:
        _check_status(
            await repository.player_status(session, player_id), player_id, for_bet=for_bet
        )

    async def _balance_after(
        self, session: AsyncSession, player_id: str, moved: Mapping[str, ledger.Balance]
    ) -> int:
        """The player's available balance after a transfer: the one the ledger computed
        under the account lock when it has it, else read."""
        found = moved.get(player_account(player_id))
        if found is not None:
            return found.available
        return await self._player_balance(session, player_id)

    async def _player_balance(self, session: AsyncSession, player_id: str) -> int:
        try:
            found = await ledger.balance(session, player_account(player_id))
        except AccountNotFound:
            raise _refuse(Status.UNKNOWN_PLAYER, f"player {player_id!r} has no account") from None
        return found.available

    async def _transfer_now(
        self,
        session: AsyncSession,
        tid: str,
        debit: str,
        credit: str,
        amount: int,
        code: str,
        provider_id: str,
        transaction_id: str,
    ) -> Mapping[str, ledger.Balance]:
        """Apply the transfer now; return the balances of its tracked accounts after it."""
        spec = _spec(tid, debit, credit, amount, code, provider_id, transaction_id)
        with _ledger_refusals(amount):
            return (await transfer_with_balances(session, [spec]))[1]

    def _move(
        self,
        view: View,
        writes: Writes,
        now: datetime,
        tid: str,
        debit: str,
        credit: str,
        amount: int,
        code: str,
        provider_id: str,
        transaction_id: str,
    ) -> int:
        """Apply the transfer to the batch's locked accounts; return the player's
        available balance after it (the player is the debit of a bet, else the credit)."""
        spec = _spec(tid, debit, credit, amount, code, provider_id, transaction_id)
        with _ledger_refusals(amount):
            changed = plan_transfers([spec], view.accounts)
        view.accounts.update(changed)
        writes.accounts.update(changed)
        writes.transfers.append(record_of(spec, batch=None, now=now))
        player = debit if debit.startswith("player:") else credit
        return changed[player].balance.available

    def _event(self, key: str, payload: Payload) -> Envelope:
        return new_event(payload, key=key, producer=self._producer)

    async def _emit(self, session: AsyncSession, key: str, *payloads: Payload) -> None:
        await add_to_outbox(
            session, *(new_event(p, key=key, producer=self._producer) for p in payloads)
        )

    async def _all_limits(self, session: AsyncSession) -> list[limits.Limit]:
        now = time.monotonic()
        if self._limits is not None and self._limits[0] > now:
            return self._limits[1]
        rows = await repository.list_limits(session)
        if self._cache_seconds > 0:
            self._limits = (now + self._cache_seconds, rows)
        return rows

    def forget_cached(self) -> None:
        """Drop cached limits and providers (after this process changed them)."""
        self._limits = None
        self._providers.clear()

    async def _check_limits(
        self,
        session: AsyncSession,
        provider_id: str,
        r: BetRequest,
        round_row: repository.RoundRow | None,
    ) -> limits.Breach | None:
        rows = await self._all_limits(session)
        if not rows:
            return None
        effective = limits.effective_limits(
            rows, player_id=r.player_id, game_id=r.game_id, provider_id=provider_id
        )
        if not effective:
            return None
        now = datetime.now(UTC)

        def per_game(name: str) -> str | None:
            return r.game_id if effective[name].scope == "game" else None

        usage = limits.Usage(
            amount=r.amount,
            round_open_stakes=(round_row.open_stakes if round_row else 0)
            if "max_round_exposure" in effective
            else None,
            daily_loss=await repository.daily_loss(
                session,
                r.player_id,
                per_game("daily_loss"),
                now.replace(hour=0, minute=0, second=0, microsecond=0),
            )
            if "daily_loss" in effective
            else None,
            bets_last_minute=await repository.bets_since(
                session,
                r.player_id,
                per_game("bet_velocity"),
                now - timedelta(seconds=limits.VELOCITY_WINDOW_SECONDS),
            )
            if "bet_velocity" in effective
            else None,
            provider_open_stakes=await repository.provider_open_stakes(session, provider_id)
            if "max_liability" in effective
            else None,
        )
        return limits.check_bet(effective, usage)

    # -- administration (CLI and admin API) ------------------------------------------

    async def set_limit(self, change: LimitChange) -> tuple[int | None, int | None]:
        """Set or remove one limit and audit it; returns (old, new)."""
        problem = limits.check_definition(change.scope, change.name, change.value)
        if problem is not None:
            raise WageringError(problem)
        async with self._store.transaction() as session:
            old = await repository.get_limit(
                session, change.scope, change.key, change.name, for_update=True
            )
            now = datetime.now(UTC)
            await repository.put_limit(
                session,
                change.scope,
                change.key,
                change.name,
                change.value,
                exists=old is not None,
                now=now,
            )
            await repository.insert_audit(
                session,
                actor=change.actor,
                action="limit.set" if change.value is not None else "limit.removed",
                subject=f"limit:{change.scope}:{change.key}:{change.name}",
                old_value=None if old is None else json.dumps(old),
                new_value=None if change.value is None else json.dumps(change.value),
                now=now,
            )
        self.forget_cached()
        return old, change.value

    async def list_limits(self) -> list[limits.Limit]:
        async with self._store.transaction() as session:
            return await repository.list_limits(session)

    async def add_provider(self, provider_id: str, name: str, *, actor: str) -> str:
        """Register a provider and its float account; return its new secret (shown once)."""
        if not valid_provider_id(provider_id):
            raise WageringError(
                f"provider id {provider_id!r}: use 1-64 characters a-z, 0-9, '.', '_', '-', "
                "starting with a letter or digit"
            )
        secret = crypto.new_provider_secret()
        async with self._store.transaction() as session:
            if await repository.get_provider(session, provider_id) is not None:
                raise WageringError(f"provider {provider_id!r} exists; use `provider rotate`")
            now = datetime.now(UTC)
            await repository.insert_provider(
                session, provider_id, name, crypto.encrypt(self._key, provider_id, secret), now
            )
            await ledger.create_accounts(
                session,
                [
                    AccountSpec(
                        provider_account(provider_id),
                        ledger.CHIPS,
                        AccountKind.PROVIDER_FLOAT,
                        allow_negative=True,
                        track_balance=False,  # every bet and win of the provider: no hot row
                    )
                ],
            )
            await repository.insert_audit(
                session,
                actor=actor,
                action="provider.added",
                subject=f"provider:{provider_id}",
                old_value=None,
                new_value=json.dumps({"name": name, "status": "active"}),
                now=now,
            )
        self.forget_cached()
        return secret

    async def rotate_provider_secret(self, provider_id: str, *, actor: str) -> str:
        secret = crypto.new_provider_secret()
        await self._update_provider(
            provider_id,
            actor,
            "provider.secret_rotated",
            {"secret": crypto.encrypt(self._key, provider_id, secret)},
        )
        return secret

    async def set_provider_status(self, provider_id: str, status: str, *, actor: str) -> None:
        await self._update_provider(provider_id, actor, f"provider.{status}", {"status": status})

    async def _update_provider(
        self, provider_id: str, actor: str, action: str, values: Mapping[str, Any]
    ) -> None:
        async with self._store.transaction() as session:
            old = await repository.get_provider(session, provider_id)
            if old is None:
                raise WageringError(f"no provider {provider_id!r}")
            await repository.update_provider(session, provider_id, **values)
            shown = {k: v for k, v in values.items() if k != "secret"}
            await repository.insert_audit(
                session,
                actor=actor,
                action=action,
                subject=f"provider:{provider_id}",
                old_value=json.dumps({"status": old.status}),
                new_value=json.dumps(shown or {"secret": "rotated"}),
                now=datetime.now(UTC),
            )
        self.forget_cached()

    async def add_player(self, player_id: str, *, balance: int = 0, actor: str) -> int:
        """Create a player and its account, funded with ``balance`` from the house account.

        The funding is a ledger transfer ``house`` → ``player:<id>`` (code ``funding``)
        announced as ``treasury.moved``. Returns the player's balance.
        """
        if balance < 0:
            raise WageringError(f"balance must be >= 0, got {balance}")
        BalanceRequest(player_id=player_id)  # validates the id's shape
        async with self._store.transaction() as session:
            now = datetime.now(UTC)
            if await repository.player_status(session, player_id) is not None:
                raise WageringError(f"player {player_id!r} exists")
            await repository.insert_player(session, player_id, "active", now)
            await ledger.create_accounts(
                session,
                [
                    AccountSpec(player_account(player_id), ledger.CHIPS, AccountKind.PLAYER),
                    AccountSpec(
                        HOUSE_ACCOUNT,
                        ledger.CHIPS,
                        AccountKind.HOUSE,
                        allow_negative=True,
                        track_balance=False,  # funds every player: derived, never locked
                    ),
                ],
            )
            if balance > 0:
                tid = f"funding:{player_id}"
                await ledger.transfer(
                    session,
                    [
                        TransferSpec(
                            id=tid,
                            debit=HOUSE_ACCOUNT,
                            credit=player_account(player_id),
                            amount=balance,
                            ledger=ledger.CHIPS,
                            code="funding",
                        )
                    ],
                )
                await self._emit(
                    session,
                    player_id,
                    TreasuryMoved(
                        ledger=ledger.CHIPS,
                        transfer_id=tid,
                        from_account=HOUSE_ACCOUNT,
                        to_account=player_account(player_id),
                        amount=balance,
                        reason="player_funding",
                    ),
                )
            await repository.insert_audit(
                session,
                actor=actor,
                action="player.added",
                subject=f"player:{player_id}",
                old_value=None,
                new_value=json.dumps({"status": "active", "funded": balance}),
                now=now,
            )
            return await self._player_balance(session, player_id)

    async def set_player_status(self, player_id: str, status: str, *, actor: str) -> None:
        async with self._store.transaction() as session:
            old = await repository.player_status(session, player_id)
            if old is None:
                raise WageringError(f"no player {player_id!r}")
            await repository.set_player_status(session, player_id, status)
            await repository.insert_audit(
                session,
                actor=actor,
                action=f"player.{status}",
                subject=f"player:{player_id}",
                old_value=json.dumps({"status": old}),
                new_value=json.dumps({"status": status}),
                now=datetime.now(UTC),
            )

    async def player_balance(self, player_id: str) -> int:
        async with self._store.transaction() as session:
            return await self._player_balance(session, player_id)

    # -- the raw request log ------------------------------------------------------------

    async def log_request(
        self,
        *,
        received_at: datetime,
        provider_id: str | None,
        endpoint: str,
        headers: Mapping[str, str],
        body: bytes,
        http_status: int,
        status: str,
        response: bytes,
        duration_ms: float,
    ) -> None:
        """Store one request and its answer in a short transaction of its own."""
        async with self._store.transaction() as session:
            await repository.insert_request_log(
                session,
                received_at=received_at,
                provider_id=provider_id[:64] if provider_id else None,
                endpoint=endpoint,
                headers=json.dumps(dict(headers), sort_keys=True),
                body=body,
                http_status=http_status,
                status=status,
                response=response,
                duration_ms=duration_ms,
            )


def _check_status(status: str | None, player_id: str, *, for_bet: bool) -> None:
    if status is None:
        raise _refuse(Status.UNKNOWN_PLAYER, f"no player {player_id!r}")
    if status != "active" and for_bet:
        raise _refuse(Status.PLAYER_BLOCKED, f"player {player_id!r} is blocked")


def _check_round_owner(round_row: repository.RoundRow, player_id: str, game_id: str) -> None:
    if round_row.player_id != player_id or round_row.game_id != game_id:
        raise _refuse(
            Status.INVALID_REQUEST,
            f"round {round_row.round_id!r} belongs to player {round_row.player_id!r} in game "
            f"{round_row.game_id!r}",
        )


def _replay(existing: repository.TransactionRow, digest: str) -> WalletResponse:
    """The answer to a transaction id the wallet has seen before."""
    if existing.kind == "tombstone":
        return refusal(
            Status.ROLLED_BACK,
            f"transaction {existing.transaction_id!r} was rolled back (by "
            f"{existing.rolled_back_by!r}) before it arrived; nothing moved",
            transaction_id=existing.transaction_id,
        )
    if existing.request_hash != digest:
        return refusal(
            Status.DUPLICATE_DIFFERENT_PAYLOAD,
            f"transaction id {existing.transaction_id!r} was used with a different request",
            transaction_id=existing.transaction_id,
        )
    assert existing.response is not None  # accepted rows always store their response
    return WalletResponse.model_validate_json(existing.response)


def _as_response(refused: WalletRefusal) -> WalletResponse:
    return refusal(Status(refused.status), refused.message, **refused.details)
