"""The SQL ledger on every store: the same tests on SQLite, PostgreSQL and MariaDB.

Each test gets a fresh database migrated to head. Refusals are checked by the
absence of any change: balances and the transfer log are read back afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from ludex import ledger
from ludex.adapters.sql import SqlStore
from ludex.adapters.sql.tables import ledger_accounts, ledger_transfers
from ludex.errors import (
    AccountConflict,
    AccountNotFound,
    BalanceOverflow,
    InsufficientFunds,
    InvalidTransfer,
    LedgerMismatch,
    PendingExpired,
    PendingNotFound,
    PendingResolved,
    StoreError,
    TransferIdConflict,
)
from ludex.ledger import AccountKind, AccountSpec, Balance, TransferSpec, TransferState
from ludex.ledger.model import MAX_AMOUNT, token_ledger
from tests.contract.sql_backends import BACKENDS, fresh_database, started_store

USDC = token_ledger(8453, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913")
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)

ACCOUNTS = [
    AccountSpec("world", "CHIPS", AccountKind.EXTERNAL, allow_negative=True),
    AccountSpec("house", "CHIPS", AccountKind.HOUSE, allow_negative=True),
    AccountSpec("alice", "CHIPS", AccountKind.PLAYER),
    AccountSpec("bob", "CHIPS", AccountKind.PLAYER),
    AccountSpec("alice-usdc", USDC, AccountKind.PLAYER),
]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with fresh_database(request.param, tmp_path) as url, started_store(url) as s:
        async with s.transaction() as session:
            await ledger.create_accounts(session, ACCOUNTS)
        yield s


def spec(
    id: str,
    debit: str,
    credit: str,
    amount: int,
    code: str = "bet",
    *,
    ledger: str = "CHIPS",
    metadata: dict[str, str] | None = None,
    pending: bool = False,
    timeout_s: int | None = None,
) -> TransferSpec:
    return TransferSpec(id, debit, credit, amount, ledger, code, metadata or {}, pending, timeout_s)


async def fund(store: SqlStore, account: str, amount: int, id: str = "fund") -> None:
    async with store.transaction() as session:
        await ledger.transfer(
            session, [spec(f"{id}-{account}", "world", account, amount, "deposit")]
        )


async def state(store: SqlStore) -> tuple[dict[str, Balance], int]:
    """Every balance and the number of stored transfers."""
    async with store.transaction() as session:
        found = await ledger.balances(session, [a.id for a in ACCOUNTS])
        count = await session.scalar(select(func.count()).select_from(ledger_transfers))
    return found, int(count or 0)


async def test_create_accounts_is_idempotent_and_refuses_a_different_spec(store: SqlStore) -> None:
    async with store.transaction() as session:
        await ledger.create_accounts(session, ACCOUNTS)  # again: no error, no change
        found = await ledger.get_accounts(session, ["alice", "nobody"])
    assert set(found) == {"alice"}
    assert found["alice"].spec == ACCOUNTS[2]
    with pytest.raises(AccountConflict, match="allow_negative"):
        async with store.transaction() as session:
            await ledger.create_accounts(
                session, [AccountSpec("alice", "CHIPS", AccountKind.PLAYER, allow_negative=True)]
            )
    with pytest.raises(AccountConflict):
        async with store.transaction() as session:
            await ledger.create_accounts(
                session,
                [
                    AccountSpec("carol", "CHIPS", AccountKind.PLAYER),
                    AccountSpec("carol", USDC, AccountKind.PLAYER),
                ],
            )
    async with store.transaction() as session:
        assert await ledger.get_accounts(session, ["carol"]) == {}
        assert (await ledger.get_accounts(session, ["alice"]))["alice"].spec.allow_negative is False


async def test_ids_compare_exactly_on_every_store(store: SqlStore) -> None:
    # MySQL's default collation would make these one account; ascii_bin keeps them two.
    async with store.transaction() as session:
        await ledger.create_accounts(
            session,
            [
                AccountSpec("Carol", "CHIPS", AccountKind.PLAYER),
                AccountSpec("carol", "CHIPS", AccountKind.PLAYER),
            ],
        )
        await ledger.transfer(session, [spec("T", "world", "carol", 5, "deposit")])
        await ledger.transfer(session, [spec("t", "world", "Carol", 7, "deposit")])
        found = await ledger.balances(session, ["Carol", "carol"])
    assert (found["Carol"].balance, found["carol"].balance) == (7, 5)


async def test_transfer_moves_money_and_is_recorded(store: SqlStore) -> None:
    await fund(store, "alice", 1_000)
    async with store.transaction() as session:
        [bet] = await ledger.transfer(
            session,
            [spec("bet-1", "alice", "house", 300, metadata={"round": "r1"})],
            now=T0,
        )
    assert (bet.amount, bet.state, bet.debit, bet.credit) == (
        300,
        TransferState.POSTED,
        "alice",
        "house",
    )
    assert bet.created_at == T0
    assert dict(bet.metadata) == {"round": "r1"}
    balances, count = await state(store)
    assert balances["alice"] == Balance("alice", "CHIPS", 300, 1_000, 0, 0)
    assert (balances["alice"].balance, balances["house"].balance, balances["world"].balance) == (
        700,
        300,
        -1_000,
    )
    assert count == 2
    async with store.transaction() as session:
        history = await ledger.transfers_of(session, "alice")
        assert [t.id for t in history] == ["fund-alice", "bet-1"]
        assert history[1] == bet
        assert await ledger.get_transfer(session, "bet-1") == bet
        assert [
            t.id for t in await ledger.transfers_of(session, "alice", after_seq=history[0].seq)
        ] == ["bet-1"]


async def test_insufficient_funds_changes_nothing(store: SqlStore) -> None:
    await fund(store, "alice", 100)
    before = await state(store)
    with pytest.raises(InsufficientFunds) as caught:
        async with store.transaction() as session:
            await ledger.transfer(session, [spec("too-much", "alice", "house", 101)])
    assert (caught.value.account, caught.value.available, caught.value.amount) == (
        "alice",
        100,
        101,
    )
    assert await state(store) == before
    # The refusal is not remembered: the same id succeeds once funds arrive.
    await fund(store, "alice", 1, id="more")
    async with store.transaction() as session:
        await ledger.transfer(session, [spec("too-much", "alice", "house", 101)])
    assert (await state(store))[0]["alice"].balance == 0


async def test_allow_negative_accounts_may_go_below_zero(store: SqlStore) -> None:
    async with store.transaction() as session:
        await ledger.transfer(session, [spec("payout", "house", "bob", 50, "win")])
        found = await ledger.balances(session, ["house", "bob"])
    assert (found["house"].balance, found["bob"].balance) == (-50, 50)


async def test_ledger_mismatch_and_unknown_accounts_are_refused(store: SqlStore) -> None:
    before = await state(store)
    with pytest.raises(LedgerMismatch):
        async with store.transaction() as session:
            await ledger.transfer(session, [spec("x1", "world", "alice-usdc", 5, "deposit")])
    with pytest.raises(LedgerMismatch):
        async with store.transaction() as session:
            await ledger.transfer(
                session, [spec("x2", "world", "alice", 5, "deposit", ledger=USDC)]
            )
    with pytest.raises(AccountNotFound) as caught:
        async with store.transaction() as session:
            await ledger.transfer(session, [spec("x3", "world", "nobody", 5, "deposit")])
    assert caught.value.account == "nobody"
    with pytest.raises(AccountNotFound):
        async with store.transaction() as session:
            await ledger.balance(session, "nobody")
    assert await state(store) == before


async def test_resubmission_returns_the_first_result_once(store: SqlStore) -> None:
    await fund(store, "alice", 500)
    async with store.transaction() as session:
        first = await ledger.transfer(session, [spec("bet-7", "alice", "house", 200)])
    after_first = await state(store)
    async with store.transaction() as session:
        again = await ledger.transfer(session, [spec("bet-7", "alice", "house", 200)])
    assert again == first
    assert await state(store) == after_first
    for changed, field in (
        (spec("bet-7", "alice", "house", 201), "amount"),
        (spec("bet-7", "bob", "house", 200), "debit"),
        (spec("bet-7", "alice", "house", 200, code="win"), "code"),
        (spec("bet-7", "alice", "house", 200, metadata={"a": "b"}), "metadata"),
    ):
        with pytest.raises(TransferIdConflict, match=field) as caught:
            async with store.transaction() as session:
                await ledger.transfer(session, [changed])
        assert caught.value.transfer_id == "bet-7"
    assert await state(store) == after_first


async def test_linked_transfers_are_all_or_nothing(store: SqlStore) -> None:
    await fund(store, "alice", 100)
    before = await state(store)
    batch = [
        spec("buy-in", "alice", "house", 80, "buy_in"),
        spec("rake", "bob", "house", 10, "rake"),  # bob has nothing: the batch fails
    ]
    with pytest.raises(InsufficientFunds) as caught:
        async with store.transaction() as session:
            await ledger.transfer(session, batch)
    assert caught.value.account == "bob"
    assert await state(store) == before
    # Within one batch, later transfers see the earlier ones.
    chained = [
        spec("to-bob", "alice", "bob", 60, "gift"),
        spec("bob-bets", "bob", "house", 60),
    ]
    async with store.transaction() as session:
        records = await ledger.transfer(session, chained)
    assert [r.batch for r in records] == ["to-bob", "to-bob"]
    balances, _ = await state(store)
    assert (balances["alice"].balance, balances["bob"].balance, balances["house"].balance) == (
        40,
        0,
        60,
    )
    async with store.transaction() as session:
        assert await ledger.transfer(session, chained) == records
    # An id of the batch resubmitted alone is different content.
    with pytest.raises(TransferIdConflict):
        async with store.transaction() as session:
            await ledger.transfer(session, [chained[0]])
    with pytest.raises(TransferIdConflict):
        async with store.transaction() as session:
            await ledger.transfer(session, [*chained, spec("third", "alice", "house", 1)])


async def test_two_phase_post_partial_and_void(store: SqlStore) -> None:
    await fund(store, "alice", 1_000)
    async with store.transaction() as session:
        [hold] = await ledger.transfer(
            session, [spec("hold-1", "alice", "house", 400, pending=True, timeout_s=60)], now=T0
        )
        assert hold.state is TransferState.PENDING
        assert hold.expires_at == T0 + timedelta(seconds=60)
        alice = await ledger.balance(session, "alice")
        assert (alice.balance, alice.available, alice.pending_debits) == (1_000, 600, 400)
    # The reservation counts against what alice may spend.
    with pytest.raises(InsufficientFunds) as caught:
        async with store.transaction() as session:
            await ledger.transfer(session, [spec("spend", "alice", "house", 601)])
    assert caught.value.available == 600
    async with store.transaction() as session:
        posted = await ledger.post_pending(
            session, "hold-1", id="post-1", amount=250, now=T0 + timedelta(seconds=5)
        )
    assert (posted.amount, posted.pending_id, posted.state) == (250, "hold-1", TransferState.POSTED)
    async with store.transaction() as session:
        alice = await ledger.balance(session, "alice")
        house = await ledger.balance(session, "house")
        stored_hold = await ledger.get_transfer(session, "hold-1")
        # A resubmitted post returns the first result; another id cannot resolve it twice.
        assert await ledger.post_pending(session, "hold-1", id="post-1", amount=250) == posted
    assert (alice.balance, alice.available, alice.pending_debits) == (750, 750, 0)
    assert (house.balance, house.pending_credits) == (250, 0)
    assert stored_hold is not None
    assert stored_hold.state is TransferState.POSTED_FROM_PENDING
    with pytest.raises(PendingResolved):
        async with store.transaction() as session:
            await ledger.void_pending(session, "hold-1", id="void-1")
    with pytest.raises(TransferIdConflict):
        async with store.transaction() as session:
            await ledger.post_pending(session, "hold-1", id="post-1", amount=100)

    async with store.transaction() as session:
        await ledger.transfer(session, [spec("hold-2", "alice", "house", 100, pending=True)])
        voided = await ledger.void_pending(session, "hold-2", id="void-2")
        alice = await ledger.balance(session, "alice")
    assert (voided.state, voided.amount, voided.pending_id) == (TransferState.VOIDED, 100, "hold-2")
    assert (alice.balance, alice.available, alice.pending_debits) == (750, 750, 0)

    before = await state(store)
    async with store.transaction() as session:
        await ledger.transfer(session, [spec("hold-3", "alice", "house", 100, pending=True)])
    with pytest.raises(PendingNotFound):
        async with store.transaction() as session:
            await ledger.post_pending(session, "nope", id="p")
    with pytest.raises(PendingNotFound):  # a posted single-phase transfer is not pending
        async with store.transaction() as session:
            await ledger.post_pending(session, "bet-none", id="p")
    with pytest.raises(InvalidTransfer, match="reserved 100"):
        async with store.transaction() as session:
            await ledger.post_pending(session, "hold-3", id="p", amount=101)
    assert (await state(store))[1] == before[1] + 1


async def test_expired_pending_refuses_post_and_is_voided_by_expiry(store: SqlStore) -> None:
    await fund(store, "alice", 100)
    async with store.transaction() as session:
        await ledger.transfer(
            session, [spec("hold", "alice", "house", 70, pending=True, timeout_s=30)], now=T0
        )
        await ledger.transfer(
            session, [spec("hold-long", "alice", "house", 20, pending=True, timeout_s=3600)], now=T0
        )
    later = T0 + timedelta(seconds=31)
    with pytest.raises(PendingExpired):
        async with store.transaction() as session:
            await ledger.post_pending(session, "hold", id="late-post", now=later)
    async with store.transaction() as session:
        assert await ledger.expire_pending(session, T0 + timedelta(seconds=29)) == 0
        assert await ledger.expire_pending(session, later) == 1
        assert await ledger.expire_pending(session, later) == 0
        alice = await ledger.balance(session, "alice")
        hold = await ledger.get_transfer(session, "hold")
        log = await ledger.all_transfers(session, "CHIPS")
    assert (alice.available, alice.pending_debits) == (80, 20)
    assert hold is not None
    assert hold.state is TransferState.VOIDED
    expiry = log[-1]
    assert (expiry.pending_id, expiry.state, dict(expiry.metadata)) == (
        "hold",
        TransferState.VOIDED,
        {"reason": "expired"},
    )
    assert expiry.id.startswith("ledger:expire:")
    with pytest.raises(PendingResolved):
        async with store.transaction() as session:
            await ledger.post_pending(session, "hold", id="late-post", now=later)


async def test_counters_refuse_to_pass_the_maximum(store: SqlStore) -> None:
    async with store.transaction() as session:
        await ledger.transfer(session, [spec("big", "world", "bob", MAX_AMOUNT, "deposit")])
    with pytest.raises(BalanceOverflow):
        async with store.transaction() as session:
            await ledger.transfer(session, [spec("one-more", "world", "bob", 1, "deposit")])
    async with store.transaction() as session:
        bob = await ledger.balance(session, "bob")
    assert bob.balance == MAX_AMOUNT


async def test_a_failure_after_ledger_writes_rolls_them_back(store: SqlStore) -> None:
    """The caller's transaction owns the writes: an error later in it undoes them."""
    before = await state(store)

    async def transfer_then_fail() -> None:
        async with store.transaction() as session:
            await ledger.transfer(session, [spec("rolled", "world", "alice", 5, "deposit")])
            await session.execute(ledger_transfers.insert().values(id="rolled"))  # NOT NULLs

    with pytest.raises(StoreError):
        await transfer_then_fail()
    assert await state(store) == before


FLOAT = AccountSpec(
    "float", "CHIPS", AccountKind.PROVIDER_FLOAT, allow_negative=True, track_balance=False
)
OUTSIDE = AccountSpec("outside", "CHIPS", AccountKind.EXTERNAL, True, track_balance=False)


async def _stored_counters(store: SqlStore, account_id: str) -> tuple[int, ...]:
    async with store.transaction() as session:
        row = (
            await session.execute(
                select(
                    ledger_accounts.c.posted_debits,
                    ledger_accounts.c.posted_credits,
                    ledger_accounts.c.pending_debits,
                    ledger_accounts.c.pending_credits,
                ).where(ledger_accounts.c.id == account_id)
            )
        ).one()
    return tuple(int(v) for v in row)


async def test_untracked_accounts_derive_their_balance_from_the_log(store: SqlStore) -> None:
    async with store.transaction() as session:
        await ledger.create_accounts(session, [FLOAT, OUTSIDE])
        await ledger.create_accounts(session, [FLOAT])  # idempotent
    with pytest.raises(AccountConflict, match="track_balance"):
        async with store.transaction() as session:
            await ledger.create_accounts(
                session, [AccountSpec("float", "CHIPS", AccountKind.PROVIDER_FLOAT, True)]
            )
    await fund(store, "alice", 1_000)
    async with store.transaction() as session:
        await ledger.transfer(session, [spec("bet-1", "alice", "float", 300)])
        await ledger.transfer(session, [spec("win-1", "float", "alice", 500, "win")])
        await ledger.transfer(session, [spec("hold-1", "alice", "float", 100, pending=True)])
        await ledger.transfer(session, [spec("hold-2", "alice", "float", 50, pending=True)])
        await ledger.transfer(
            session, [spec("hold-3", "alice", "float", 20, pending=True, timeout_s=30)], now=T0
        )
        await ledger.post_pending(session, "hold-1", id="post-1", amount=60)
        float_now = await ledger.balance(session, "float")
    assert float_now == Balance("float", "CHIPS", 500, 360, 0, 70)
    assert (float_now.balance, float_now.available) == (-140, -140)
    with pytest.raises(PendingResolved):
        async with store.transaction() as session:
            await ledger.void_pending(session, "hold-1", id="void-1")
    async with store.transaction() as session:
        await ledger.void_pending(session, "hold-2", id="void-2")
        assert await ledger.expire_pending(session, T0 + timedelta(seconds=31)) == 1
        alice = await ledger.balance(session, "alice")
        float_after = await ledger.balance(session, "float")
        everything = await ledger.ledger_balances(session, "CHIPS")
        log = await ledger.all_transfers(session, "CHIPS")
    assert alice == Balance("alice", "CHIPS", 360, 1_500, 0, 0)
    assert float_after == Balance("float", "CHIPS", 500, 360, 0, 0)
    assert everything["float"] == float_after
    assert everything["outside"] == Balance("outside", "CHIPS")
    assert sum(b.balance for b in everything.values()) == 0
    rebuilt = ledger.replay(log)
    assert {a: rebuilt[a] for a in ("alice", "float")} == {"alice": alice, "float": float_after}
    # The row itself is never written: the numbers come from the log alone.
    assert await _stored_counters(store, "float") == (0, 0, 0, 0)
    assert await _stored_counters(store, "alice") == (360, 1_500, 0, 0)


async def test_transfers_between_untracked_accounts_apply_exactly_once(store: SqlStore) -> None:
    async with store.transaction() as session:
        await ledger.create_accounts(session, [FLOAT, OUTSIDE])
    move = spec("settle", "float", "outside", 700, "settlement")
    async with store.transaction() as session:
        [first] = await ledger.transfer(session, [move])
        [again] = await ledger.transfer(session, [move])
    assert again == first
    with pytest.raises(TransferIdConflict, match="amount"):
        async with store.transaction() as session:
            await ledger.transfer(session, [spec("settle", "float", "outside", 701, "settlement")])
    async with store.transaction() as session:
        await ledger.transfer(session, [spec("res", "outside", "float", 40, pending=True)])
        await ledger.post_pending(session, "res", id="res-post", amount=15)
        assert await ledger.post_pending(session, "res", id="res-post", amount=15) is not None
        found = await ledger.balances(session, ["float", "outside"])
    assert found["float"] == Balance("float", "CHIPS", 700, 15, 0, 0)
    assert found["outside"] == Balance("outside", "CHIPS", 15, 700, 0, 0)
    assert (await state(store))[1] == 3
