"""The vault mirror's pure rules: account ids, units and rounding, settled hands,
node-answer parsing."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from hypothesis import given
from hypothesis import strategies as st

from ludex.chain.settlement import Hand
from ludex.chain.vault import (
    NATIVE,
    RAKE,
    HandLeg,
    Holding,
    VaultEventKind,
    hand_legs,
    hand_transfer_id,
    hand_transfers,
    ledger_units,
    mirror_legs,
    parse_account_id,
    parse_header,
    parse_log,
    reserve_units,
    transfer_id,
    treasury_accounts,
    vault_accounts,
)
from ludex.errors import ChainError
from ludex.ledger import AccountKind, AccountSpec, TransferSpec

PLAYER = Account.create().address
CONTRACT = Account.create().address
TOKEN = Account.create().address
TX = "0x" + "ab" * 32


def test_account_ids_fit_the_ledger_and_name_player_token_and_contract() -> None:
    native = vault_accounts(31337, CONTRACT, NATIVE, PLAYER)
    token = vault_accounts(31337, CONTRACT, TOKEN, PLAYER)
    other_contract = vault_accounts(31337, Account.create().address, NATIVE, PLAYER)
    other_chain = vault_accounts(1, CONTRACT, NATIVE, PLAYER)
    ids = [
        a
        for accounts in (native, token, other_contract, other_chain)
        for a in (accounts.available, accounts.locked, accounts.chain, accounts.rounding)
    ]
    assert len(set(ids)) == len(ids)
    assert max(len(i) for i in ids) <= 64
    assert all(isinstance(s, AccountSpec) for s in native.specs())  # valid specs
    assert native.ledger == "TOKEN:31337:" + NATIVE
    assert token.ledger == f"TOKEN:31337:{TOKEN.lower()}"
    parsed = parse_account_id(native.locked)
    assert parsed is not None
    assert (parsed.bucket, parsed.player) == ("locked", PLAYER)
    assert native.available.startswith(f"vault:{PLAYER}:")
    assert parse_account_id(native.chain) is None
    assert parse_account_id("vault:not-an-address:0123") is None


def test_transfer_ids_are_valid_deterministic_and_distinct() -> None:
    ids = {transfer_id(31337, TX, 0, p) for p in ("credit", "pending:1", "pending:2", "main")}
    assert len(ids) == 4
    assert transfer_id(31337, TX.upper().replace("0X", "0x"), 0, "credit") in ids
    assert transfer_id(1, TX, 0, "credit") not in ids
    for tid in ids:
        TransferSpec(id=tid, debit="a", credit="b", amount=1, ledger="CHIPS", code="x")


@given(st.integers(0, 10**30), st.integers(1, 10**30), st.integers(1, 10**20))
def test_a_reservation_covers_what_the_deposit_can_add(exact: int, amount: int, unit: int) -> None:
    added = ledger_units(exact + amount, unit) - ledger_units(exact, unit)
    assert 0 <= added <= reserve_units(amount, unit)


_EVENT = st.tuples(st.sampled_from(list(VaultEventKind)), st.integers(1, 5 * 10**9))


@given(st.lists(_EVENT, max_size=40), st.sampled_from([1, 7, 10**9]))
def test_the_ledger_is_the_floor_of_the_chain_and_always_balances(
    events: list[tuple[VaultEventKind, int]], unit: int
) -> None:
    holding = Holding()
    ledger = {"available": 0, "locked": 0, "chain": 0, "rounding": 0}
    for kind, amount in events:
        if kind in (VaultEventKind.WITHDRAWN, VaultEventKind.LOCKED):
            amount = min(amount, holding.available)  # the contract refuses more
            if amount == 0:
                continue
        after = holding.after(kind, amount)
        for leg in mirror_legs(kind, holding, after, unit):
            assert leg.amount > 0
            ledger[leg.debit] -= leg.amount
            ledger[leg.credit] += leg.amount
        holding = after
        assert ledger["available"] == holding.available // unit >= 0
        assert ledger["locked"] == holding.locked // unit
        assert sum(ledger.values()) == 0


def test_a_lock_whose_floors_differ_goes_through_rounding() -> None:
    before = Holding(15, 6)  # units of 10: 1.5 available, 0.6 locked
    after = before.after(VaultEventKind.LOCKED, 5)
    legs = mirror_legs(VaultEventKind.LOCKED, before, after, 10)
    assert [(leg.name, leg.debit, leg.credit, leg.amount) for leg in legs] == [
        ("rounding", "rounding", "locked", 1)
    ]
    assert mirror_legs(VaultEventKind.DEPOSITED, Holding(), Holding(9), 10) == []


# -- settled hands --------------------------------------------------------------------

U = 10**9
A, B, C = (Account.create().address for _ in range(3))


def test_losers_pay_the_clearing_account_which_pays_winners_and_the_treasury() -> None:
    legs = hand_legs([A, B, C], [-10 * U, 18 * U, -10 * U], 2 * U, U)
    assert legs == [
        HandLeg(A, "locked", "clearing", 10),
        HandLeg(C, "locked", "clearing", 10),
        HandLeg(B, "clearing", "locked", 18),
        HandLeg(RAKE, "clearing", "treasury", 2),
    ]
    assert [leg.code for leg in legs] == ["vault.settle"] * 3 + ["vault.rake"]
    # A player who broke even has no leg; a hand without rake has no rake leg.
    assert hand_legs([A, B, C], [-5 * U, 0, 5 * U], 0, U) == [
        HandLeg(A, "locked", "clearing", 5),
        HandLeg(C, "clearing", "locked", 5),
    ]


@pytest.mark.parametrize(
    ("players", "deltas", "rake", "message"),
    [
        ([A, B], [-10 * U, 8 * U + 1], 2 * U - 1, "whole number of ledger units"),
        ([A, B], [-10 * U, 9 * U], 2 * U, "not zero together"),
        ([A, B], [-8 * U, 10 * U], -2 * U, "negative"),
        ([A, A.lower()], [-10 * U, 10 * U], 0, "appears twice"),
        ([A, B], [0], 0, "2 players but 1 deltas"),
    ],
    ids=["dust", "not-zero-sum", "negative-rake", "same-player", "lengths"],
)
def test_a_hand_the_contract_would_not_settle_is_refused(
    players: list[str], deltas: list[int], rake: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        hand_legs(players, deltas, rake, U)


_HAND = st.lists(st.integers(-(10**6), 10**6), min_size=1, max_size=9).flatmap(
    lambda wins: st.tuples(st.just(wins), st.integers(0, 10**4))
)


@given(
    st.lists(_HAND, max_size=20),
    st.lists(st.integers(0, 10**12), min_size=9, max_size=9),
    st.sampled_from([1, 7, 10**9]),
)
def test_settled_hands_keep_every_locked_floor_and_balance_the_ledger(
    hands: list[tuple[list[int], int]], start: list[int], unit: int
) -> None:
    """Whatever the exact amounts (dust included), a hand of whole units moves each
    player's floor by its delta; the clearing account is back to zero after each hand."""
    players = [f"p{n}" for n in range(9)]
    exact = dict(zip(players, start, strict=True))
    ledger = {p: ledger_units(e, unit) for p, e in exact.items()}
    ledger["clearing"] = ledger["treasury"] = 0
    ledger["outside"] = -sum(ledger.values())  # where the locked units came from
    treasury = 0
    for units, rake in hands:
        seated = players[: len(units)]
        deltas = [d * unit for d in units]
        deltas[0] -= (sum(units) + rake) * unit  # the first seat makes it zero-sum
        for leg in hand_legs(seated, deltas, rake * unit, unit):
            assert leg.amount > 0
            debit = leg.party if leg.debit == "locked" else leg.debit
            credit = leg.party if leg.credit == "locked" else leg.credit
            ledger[debit] -= leg.amount
            ledger[credit] += leg.amount
        for player, delta in zip(seated, deltas, strict=True):
            exact[player] += delta
        treasury += rake * unit
        assert ledger["clearing"] == 0
        assert all(ledger[p] == ledger_units(exact[p], unit) for p in players)
        assert ledger["treasury"] == ledger_units(treasury, unit)
        assert sum(ledger.values()) == 0


def _hand(**changes: Any) -> Hand:
    values: dict[str, Any] = {
        "table_id": 7,
        "hand_number": 3,
        "token": NATIVE,
        "commitment": b"\x01" * 32,
        "previous_record": b"\x00" * 32,
        "rake": 2 * U,
        "players": (A, B, C),
        "deltas": (-10 * U, 18 * U, -10 * U),
    }
    values.update(changes)
    return Hand(**values)


def test_a_hands_transfers_name_the_players_accounts_the_treasury_and_fixed_ids() -> None:
    accounts, transfers = hand_transfers(31337, CONTRACT, _hand(), U, {"hand_id": "h"})
    house = treasury_accounts(31337, CONTRACT, NATIVE)
    a, b, c = (vault_accounts(31337, CONTRACT, NATIVE, p) for p in (A, B, C))
    assert [(t.debit, t.credit, t.amount) for t in transfers] == [
        (a.locked, house.clearing, 10),
        (c.locked, house.clearing, 10),
        (house.clearing, b.locked, 18),
        (house.clearing, house.treasury, 2),
    ]
    assert house.ledger == a.ledger
    assert {t.ledger for t in transfers} == {a.ledger}
    assert [t.id for t in transfers] == [
        hand_transfer_id(31337, CONTRACT, 7, 3, party) for party in (A, C, B, RAKE)
    ]
    assert all(t.metadata == {"hand_id": "h"} for t in transfers)
    specs = {spec.id: spec for spec in accounts}
    assert specs[house.treasury].kind is AccountKind.TREASURY
    assert not specs[house.treasury].allow_negative
    assert not specs[house.clearing].track_balance
    assert {a.locked, b.locked, c.locked, a.available} <= set(specs)
    assert max(len(i) for i in specs) <= 64
    # The same hand gives the same ids; any other hand, table, contract, chain, party not.
    again = hand_transfers(31337, CONTRACT, _hand(), U, {"hand_id": "h"})[1]
    assert [t.id for t in again] == [t.id for t in transfers]
    base = hand_transfer_id(31337, CONTRACT, 7, 3, A)
    assert hand_transfer_id(31337, CONTRACT.lower(), 7, 3, A.lower()) == base
    others = {
        hand_transfer_id(1, CONTRACT, 7, 3, A),
        hand_transfer_id(31337, TOKEN, 7, 3, A),
        hand_transfer_id(31337, CONTRACT, 8, 3, A),
        hand_transfer_id(31337, CONTRACT, 7, 4, A),
        hand_transfer_id(31337, CONTRACT, 7, 3, B),
        hand_transfer_id(31337, CONTRACT, 7, 3, RAKE),
    }
    assert len(others) == 6
    assert base not in others
    assert not base.startswith("ledger:")
    token = hand_transfers(31337, CONTRACT, _hand(token=TOKEN), U, {})[1]
    assert {t.ledger for t in token} == {f"TOKEN:31337:{TOKEN.lower()}"}


def _log(**changes: Any) -> dict[str, Any]:
    entry = {
        "address": CONTRACT,
        "topics": ["0x" + "11" * 32],
        "data": "0x",
        "blockNumber": "0x10",
        "blockHash": "0x" + "22" * 32,
        "transactionHash": TX,
        "logIndex": "0x3",
        "removed": False,
    }
    entry.update(changes)
    return entry


def test_a_good_log_parses_with_lower_case_hashes() -> None:
    entry = parse_log(_log(blockHash="0x" + "AB" * 32))
    assert (entry.block_number, entry.log_index) == (16, 3)
    assert entry.block_hash == "0x" + "ab" * 32
    assert entry.address == CONTRACT


@pytest.mark.parametrize(
    "changes",
    [
        {"blockNumber": "16"},
        {"blockNumber": "0x"},
        {"blockHash": "0x1234"},
        {"transactionHash": None},
        {"address": "0x1234"},
        {"data": "0x123"},
        {"topics": "0x"},
        {"topics": ["0x" + "11" * 32] * 5},
        {"removed": True},
    ],
    ids=str,
)
def test_a_malformed_log_is_a_chain_error(changes: dict[str, Any]) -> None:
    with pytest.raises(ChainError):
        parse_log(_log(**changes))
    with pytest.raises(ChainError, match="has no 'logIndex'"):
        parse_log({k: v for k, v in _log().items() if k != "logIndex"})


def test_headers_must_be_the_block_asked_for() -> None:
    raw = {"number": "0x5", "hash": "0x" + "01" * 32, "parentHash": "0x" + "02" * 32}
    assert parse_header(raw, 5) is not None
    assert parse_header(None, 5) is None
    with pytest.raises(ChainError, match="answered block 5"):
        parse_header(raw, 6)
    with pytest.raises(ChainError):
        parse_header({**raw, "hash": None}, 5)
