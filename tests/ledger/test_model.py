"""The ledger's pure rules: validation, balance arithmetic, two-phase, replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ludex.errors import (
    AccountNotFound,
    BalanceOverflow,
    InsufficientFunds,
    InvalidAccount,
    InvalidTransfer,
    LedgerError,
    LedgerMismatch,
    LudexError,
    PendingExpired,
    PendingNotFound,
    PendingResolved,
)
from ludex.ledger.model import (
    MAX_AMOUNT,
    Account,
    AccountKind,
    AccountSpec,
    Balance,
    Book,
    TransferSpec,
    TransferState,
    content_difference,
    plan_transfers,
    replay,
    token_ledger,
    validate_ledger,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ADDRESS = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"


def book() -> Book:
    b = Book()
    b.open(
        AccountSpec("world", "CHIPS", AccountKind.EXTERNAL, allow_negative=True),
        AccountSpec("alice", "CHIPS", AccountKind.PLAYER),
        AccountSpec("house", "CHIPS", AccountKind.HOUSE, allow_negative=True),
        AccountSpec("alice-usdc", token_ledger(8453, ADDRESS), AccountKind.PLAYER),
    )
    return b


def t(id: str, debit: str, credit: str, amount: int, **kw: object) -> TransferSpec:
    return TransferSpec(id, debit, credit, amount, "CHIPS", "bet", **kw)  # type: ignore[arg-type]


def test_errors_are_ledger_errors() -> None:
    for error in (InsufficientFunds, AccountNotFound, LedgerMismatch, PendingExpired):
        assert issubclass(error, LedgerError)
    assert issubclass(LedgerError, LudexError)


@pytest.mark.parametrize(
    "name",
    ["CHIPS", "TOKEN:1:0x" + "ab" * 20, "TOKEN:8453:0x833589fcd6edb6e08f4c7c32d4f71b54bda02913"],
)
def test_valid_ledger_names(name: str) -> None:
    validate_ledger(name)


@pytest.mark.parametrize(
    "name",
    [
        "chips",
        "USD",
        "TOKEN:1:0x" + "AB" * 20,  # must be lowercase: one ledger, one spelling
        "TOKEN:01:0x" + "ab" * 20,
        "TOKEN:1:0x" + "ab" * 19,
        "TOKEN::0x" + "ab" * 20,
        "TOKEN:1:" + "ab" * 20,
    ],
)
def test_invalid_ledger_names(name: str) -> None:
    with pytest.raises(InvalidAccount, match="TOKEN"):
        validate_ledger(name)


def test_token_ledger_lowercases_the_address() -> None:
    assert token_ledger(8453, ADDRESS) == "TOKEN:8453:" + ADDRESS.lower()


def test_account_spec_validation() -> None:
    with pytest.raises(InvalidAccount, match="account id"):
        AccountSpec("has space", "CHIPS", AccountKind.PLAYER)
    with pytest.raises(InvalidAccount, match="account id"):
        AccountSpec("x" * 65, "CHIPS", AccountKind.PLAYER)
    with pytest.raises(InvalidAccount, match="kind"):
        AccountSpec("a", "CHIPS", "croupier")  # type: ignore[arg-type]
    assert AccountSpec("a", "CHIPS", "player").kind is AccountKind.PLAYER  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"amount": 0}, "positive"),
        ({"amount": -5}, "positive"),
        ({"amount": MAX_AMOUNT + 1}, "maximum"),
        ({"amount": 1.5}, "int"),
        ({"amount": True}, "int"),
        ({"credit": "alice"}, "same account"),
        ({"id": "x" * 65}, "transfer id"),
        ({"id": "ledger:expire:1"}, "reserved"),
        ({"code": "Bet With Spaces"}, "code"),
        ({"ledger": "EUR"}, "TOKEN"),
        ({"timeout_s": 30}, "pending transfers only"),
        ({"pending": True, "timeout_s": 0}, "timeout_s"),
        ({"metadata": {"k": "v" * 5000}}, "metadata"),
        ({"metadata": {"k": 1}}, "metadata"),
    ],
)
def test_transfer_spec_validation(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "id": "t1",
        "debit": "alice",
        "credit": "house",
        "amount": 10,
        "ledger": "CHIPS",
        "code": "bet",
    }
    fields.update(kwargs)
    with pytest.raises(InvalidTransfer, match=message):
        TransferSpec(**fields)  # type: ignore[arg-type]


def test_metadata_is_frozen_copy() -> None:
    source = {"round": "r1"}
    spec = t("t1", "alice", "house", 1, metadata=source)
    source["round"] = "r2"
    assert spec.metadata["round"] == "r1"
    with pytest.raises(TypeError):
        spec.metadata["round"] = "r3"  # type: ignore[index]


def test_balance_arithmetic() -> None:
    b = Balance(
        "a", "CHIPS", posted_debits=30, posted_credits=100, pending_debits=20, pending_credits=5
    )
    assert b.balance == 70
    assert b.available == 50


def test_transfers_move_money_and_refuse_overdraft() -> None:
    b = book()
    b.transfer([t("d", "world", "alice", 100)], T0)
    b.transfer([t("bet", "alice", "house", 60)], T0)
    assert b.balance("alice").balance == 40
    assert b.balance("world").balance == -100
    with pytest.raises(InsufficientFunds) as caught:
        b.transfer([t("bet2", "alice", "house", 41)], T0)
    assert (caught.value.account, caught.value.available, caught.value.amount) == ("alice", 40, 41)
    assert "40 CHIPS available" in str(caught.value)
    assert b.balance("alice").balance == 40


def test_plan_is_all_or_nothing_and_sees_earlier_transfers() -> None:
    b = book()
    accounts = dict(b.accounts)
    with pytest.raises(InsufficientFunds):
        plan_transfers([t("a", "world", "alice", 10), t("b", "alice", "house", 11)], accounts)
    assert b.accounts == accounts
    changed = plan_transfers([t("a", "world", "alice", 10), t("b", "alice", "house", 10)], accounts)
    assert changed["alice"].balance.balance == 0
    assert changed["house"].balance.balance == 10
    with pytest.raises(InvalidTransfer, match="repeats"):
        plan_transfers([t("a", "world", "alice", 1), t("a", "world", "alice", 1)], accounts)
    with pytest.raises(AccountNotFound):
        plan_transfers([t("a", "world", "nobody", 1)], accounts)


def test_ledger_mismatch() -> None:
    b = book()
    with pytest.raises(LedgerMismatch, match="one ledger"):
        b.transfer([t("x", "world", "alice-usdc", 1)], T0)
    usdc = token_ledger(8453, ADDRESS)
    with pytest.raises(LedgerMismatch):
        b.transfer([TransferSpec("y", "world", "alice", 1, usdc, "deposit")], T0)


def test_counters_cannot_pass_the_maximum() -> None:
    account = Account.opened(AccountSpec("a", "CHIPS", AccountKind.HOUSE, allow_negative=True))
    full = account.moved(credit=MAX_AMOUNT, pending=False)
    with pytest.raises(BalanceOverflow, match="posted credits"):
        full.moved(credit=1, pending=False)


def test_two_phase_post_partial_void_expire() -> None:
    b = book()
    b.transfer([t("d", "world", "alice", 100)], T0)
    [hold] = b.transfer([t("h", "alice", "house", 80, pending=True, timeout_s=10)], T0)
    assert hold.expires_at == T0 + timedelta(seconds=10)
    assert (b.balance("alice").available, b.balance("alice").balance) == (20, 100)
    with pytest.raises(InvalidTransfer, match="reserved 80"):
        b.resolve("h", id="p", post_amount=81, now=T0)
    post = b.resolve("h", id="p", post_amount=50, now=T0 + timedelta(seconds=9))
    assert (post.amount, post.state, post.pending_id) == (50, TransferState.POSTED, "h")
    assert b.transfers["h"].state is TransferState.POSTED_FROM_PENDING
    assert b.balance("alice") == Balance("alice", "CHIPS", 50, 100, 0, 0)
    with pytest.raises(PendingResolved):
        b.resolve("h", id="p2", post_amount=None, now=T0)
    with pytest.raises(PendingNotFound):
        b.resolve("d", id="p3", post_amount=None, now=T0)
    with pytest.raises(PendingNotFound):
        b.resolve("missing", id="p4", post_amount=None, now=T0)

    b.transfer([t("h2", "alice", "house", 30, pending=True, timeout_s=10)], T0)
    with pytest.raises(PendingExpired):
        b.resolve("h2", id="late", post_amount=30, now=T0 + timedelta(seconds=10))
    void = b.resolve("h2", id="v", post_amount=None, now=T0 + timedelta(seconds=10))
    assert (void.state, void.amount) == (TransferState.VOIDED, 30)
    assert b.balance("alice").available == 50


def test_replay_rebuilds_balances_including_two_phase() -> None:
    b = book()
    b.transfer([t("d", "world", "alice", 100)], T0)
    b.transfer([t("h1", "alice", "house", 40, pending=True)], T0)
    b.transfer([t("h2", "alice", "house", 30, pending=True)], T0)
    b.transfer([t("h3", "alice", "house", 10, pending=True)], T0)
    b.resolve("h1", id="p1", post_amount=25, now=T0)
    b.resolve("h2", id="v2", post_amount=None, now=T0)
    rebuilt = replay(b.transfers.values())
    for account in ("world", "alice", "house"):
        assert rebuilt[account] == b.balance(account)
    assert rebuilt["alice"].pending_debits == 10


def test_content_difference_names_the_field() -> None:
    b = book()
    [stored] = b.transfer([t("x", "world", "alice", 5)], T0)
    assert content_difference(t("x", "world", "alice", 5), None, stored) is None
    assert "amount" in (content_difference(t("x", "world", "alice", 6), None, stored) or "")
    assert "batch" in (content_difference(t("x", "world", "alice", 5), "y", stored) or "")


def test_an_untracked_account_must_allow_a_negative_balance() -> None:
    with pytest.raises(InvalidAccount, match="must allow a negative balance"):
        AccountSpec("float", "CHIPS", AccountKind.PROVIDER_FLOAT, track_balance=False)
    spec = AccountSpec("float", "CHIPS", AccountKind.PROVIDER_FLOAT, True, track_balance=False)
    assert (spec.allow_negative, spec.track_balance) == (True, False)
    assert AccountSpec("alice", "CHIPS", AccountKind.PLAYER).track_balance is True


def test_untracked_counters_are_planned_on_zeros_and_not_bounded() -> None:
    """The repository plans an untracked account from zeros it never writes; the Book
    keeps its true sums, which may pass the column maximum (no column holds them)."""
    spec = AccountSpec("float", "CHIPS", AccountKind.PROVIDER_FLOAT, True, track_balance=False)
    full = Account.opened(spec).moved(credit=MAX_AMOUNT, pending=False)
    assert full.moved(credit=1, pending=False).balance.posted_credits == MAX_AMOUNT + 1
    b = Book()
    b.open(spec, AccountSpec("alice", "CHIPS", AccountKind.PLAYER))
    b.transfer([t("w", "float", "alice", 100)], T0)
    b.transfer([t("h", "alice", "float", 40, pending=True)], T0)
    b.resolve("h", id="p", post_amount=25, now=T0)
    assert b.balance("float") == Balance("float", "CHIPS", 100, 25, 0, 0)
    assert replay(b.transfers.values())["float"] == b.balance("float")
