"""The Ludex contract on a real anvil node: every revert path, every event, gas.

Each test deploys a fresh Ludex (and a TestToken) from fresh accounts funded with
``anvil_setBalance``, so tests share the node but nothing else. Reverts are checked
by their decoded custom error and its arguments, events by name and values.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

from ludex.adapters.chain.jsonrpc import JsonRpcChain, parse_quantity
from ludex.chain.artifacts import load_artifact
from ludex.chain.contracts import Contract, Receipt, Transactor, deploy
from ludex.chain.settlement import (
    NATIVE,
    ZERO_RECORD,
    Hand,
    hand_record,
    settlement_digest,
    sign_settlement,
    table_runs,
    typed_data,
)
from ludex.errors import ChainError, ContractReverted
from tests.chain.vault_env import funded
from tests.conftest import service_url

ETHER = 10**18


@pytest.fixture
async def chain() -> AsyncIterator[JsonRpcChain]:
    client = JsonRpcChain(service_url("anvil"))
    await client.start()
    try:
        yield client
    finally:
        await client.close()


@dataclass
class Deployment:
    chain: JsonRpcChain
    chain_id: int
    ludex: Contract
    token: Contract
    owner: Transactor
    operator: Transactor
    players: list[Transactor]
    stranger: Transactor

    def hands(
        self,
        table: int,
        count: int,
        *,
        first: int = 1,
        previous: bytes = ZERO_RECORD,
        token: str | None = None,
        seats: int = 3,
        rake: int = 2,
    ) -> list[Hand]:
        """``count`` chained hands at ``table``: the winner rotates, losers pay 10 each."""
        out = []
        players = tuple(p.address for p in self.players[:seats])
        for n in range(first, first + count):
            winner = n % seats
            deltas = tuple(10 * (seats - 1) - rake if s == winner else -10 for s in range(seats))
            hand = Hand(
                table_id=table,
                hand_number=n,
                token=token or NATIVE,
                commitment=keccak(text=f"shuffle {table}/{n}"),
                previous_record=previous,
                rake=rake,
                players=players,
                deltas=deltas,
            )
            out.append(hand)
            previous = hand_record(hand)
        return out

    async def settle(
        self,
        batch_id: int,
        hands: Sequence[Hand],
        *,
        signer: Transactor | None = None,
        signature: bytes | None = None,
        raw: list[Any] | None = None,
    ) -> Receipt:
        key = (signer or self.operator).account.key
        if signature is None:
            signature = sign_settlement(key, self.chain_id, self.ludex.address, batch_id, hands)
        payload = raw if raw is not None else table_runs(hands)
        return await self.ludex.transact(self.operator, "settle", batch_id, payload, signature)

    async def lock_for_play(self, amount: int, *, seats: int = 3) -> None:
        for player in self.players[:seats]:
            await self.ludex.transact(player, "deposit", value=amount)
            await self.ludex.transact(player, "lock", NATIVE, amount)

    async def locked(self, player: Transactor, token: str = NATIVE) -> int:
        return int((await self.ludex.call("locked", player.address, token))[0])


@pytest.fixture
async def d(chain: JsonRpcChain) -> Deployment:
    owner, operator, stranger = [await funded(chain) for _ in range(3)]
    players = [await funded(chain) for _ in range(4)]
    ludex, _ = await deploy(owner, load_artifact("Ludex"), owner.address)
    await ludex.transact(owner, "setOperator", operator.address, True)
    token, _ = await deploy(owner, load_artifact("TestToken"), "Test", "TST")
    return Deployment(
        chain, await chain.chain_id(), ludex, token, owner, operator, players, stranger
    )


def _names(contract: Contract, receipt: Receipt) -> list[str]:
    return [e.name for e in contract.events(receipt)]


async def _reverts(error: str, call: Any, **args: Any) -> ContractReverted:
    with pytest.raises(ContractReverted) as caught:
        await call
    assert caught.value.error == error, caught.value
    for name, value in args.items():
        assert caught.value.args_[name] == value, (name, caught.value.args_)
    return caught.value


# -- vault -----------------------------------------------------------------------------


async def test_native_deposit_withdraw_and_their_refusals(d: Deployment) -> None:
    alice = d.players[0]
    receipt = await d.ludex.transact(alice, "deposit", value=5 * ETHER)
    [event] = d.ludex.events(receipt)
    assert (event.name, event.args) == (
        "Deposited",
        {"player": alice.address, "token": NATIVE, "amount": 5 * ETHER},
    )
    assert (await d.ludex.call("available", alice.address, NATIVE))[0] == 5 * ETHER
    await _reverts("ZeroAmount", d.ludex.transact(alice, "deposit", value=0))
    await _reverts(
        "InsufficientAvailable",
        d.ludex.transact(alice, "withdraw", NATIVE, 6 * ETHER),
        requested=6 * ETHER,
        held=5 * ETHER,
    )
    before = parse_quantity(await d.chain.call("eth_getBalance", [alice.address, "latest"]), "b")
    receipt = await d.ludex.transact(alice, "withdraw", NATIVE, 2 * ETHER)
    assert _names(d.ludex, receipt) == ["Withdrawn"]
    after = parse_quantity(await d.chain.call("eth_getBalance", [alice.address, "latest"]), "b")
    assert 2 * ETHER - after + before > 0  # got 2 ether back, minus gas
    assert after - before > 2 * ETHER - ETHER // 100
    assert (await d.ludex.call("available", alice.address, NATIVE))[0] == 3 * ETHER


async def test_token_deposit_needs_approval_and_credits_what_arrives(d: Deployment) -> None:
    alice = d.players[0]
    await d.token.transact(alice, "mint", alice.address, 1000)
    await _reverts("TransferFailed", d.ludex.transact(alice, "depositToken", d.token.address, 100))
    await _reverts("NativeNotAccepted", d.ludex.transact(alice, "depositToken", NATIVE, 1))
    await d.token.transact(alice, "approve", d.ludex.address, 1000)
    receipt = await d.ludex.transact(alice, "depositToken", d.token.address, 400)
    assert [e.args for e in d.ludex.events(receipt)] == [
        {"player": alice.address, "token": d.token.address, "amount": 400}
    ]
    assert (await d.token.call("balanceOf", d.ludex.address))[0] == 400
    await d.ludex.transact(alice, "withdraw", d.token.address, 150)
    assert (await d.token.call("balanceOf", alice.address))[0] == 750
    assert (await d.ludex.call("available", alice.address, d.token.address))[0] == 250


async def test_locked_funds_cannot_be_withdrawn_and_only_an_operator_releases(
    d: Deployment,
) -> None:
    alice = d.players[0]
    await d.ludex.transact(alice, "deposit", value=ETHER)
    receipt = await d.ludex.transact(alice, "lock", NATIVE, ETHER)
    assert _names(d.ludex, receipt) == ["Locked"]
    await _reverts("InsufficientAvailable", d.ludex.transact(alice, "withdraw", NATIVE, 1))
    await _reverts(
        "NotOperator",
        d.ludex.transact(alice, "release", alice.address, NATIVE, ETHER),
        caller=alice.address,
    )
    await _reverts(
        "InsufficientLocked",
        d.ludex.transact(d.operator, "release", alice.address, NATIVE, 2 * ETHER),
    )
    receipt = await d.ludex.transact(d.operator, "release", alice.address, NATIVE, ETHER)
    assert [e.args for e in d.ludex.events(receipt)] == [
        {"player": alice.address, "token": NATIVE, "amount": ETHER}
    ]
    await d.ludex.transact(alice, "withdraw", NATIVE, ETHER)


# -- settlement ----------------------------------------------------------------------------


def test_our_digest_is_the_eip712_digest_of_the_typed_data() -> None:
    players = tuple(Account.create().address for _ in range(3))
    hand = Hand(7, 1, NATIVE, b"\x01" * 32, ZERO_RECORD, 3, players, (-5, -5, 7))
    contract = Account.create().address
    ours = settlement_digest(31337, contract, 9, [hand, hand])
    message = encode_typed_data(full_message=typed_data(31337, contract, 9, [hand, hand]))
    standard = keccak(b"\x19" + message.version + message.header + message.body)
    assert ours == standard
    assert settlement_digest(31337, contract, 10, [hand, hand]) != ours  # the batch id counts
    assert settlement_digest(1, contract, 9, [hand, hand]) != ours  # so does the chain


def test_runs_group_consecutive_hands_of_a_table() -> None:
    players = tuple(Account.create().address for _ in range(3))
    first = Hand(1, 1, NATIVE, b"\x01" * 32, ZERO_RECORD, 2, players, (-10, 18, -10))
    second = Hand(1, 2, NATIVE, b"\x02" * 32, hand_record(first), 0, players[:2], (5, -5))
    other = Hand(2, 7, NATIVE, b"\x03" * 32, b"\x09" * 32, 0, players[1:], (1, -1))
    runs = table_runs([first, second, other])
    assert [(r[0], r[1], r[2]) for r in runs] == [(1, 1, ZERO_RECORD), (2, 7, b"\x09" * 32)]
    assert runs[0][4] == list(players)  # the roster: each player once, first seen first
    assert runs[1][4] == list(players[1:])
    (_, rake, seats), (_, _, seats2) = runs[0][5]
    assert rake == 2
    assert seats == b"".join(
        bytes([i, int(d < 0)]) + abs(d).to_bytes(14, "big") for i, d in enumerate((-10, 18, -10))
    )
    assert seats2 == bytes([0, 0]) + (5).to_bytes(14, "big") + bytes([1, 1]) + (5).to_bytes(
        14, "big"
    )
    # A hand that does not follow its predecessor's record starts a run of its own.
    stray = Hand(1, 3, NATIVE, b"\x04" * 32, b"\x05" * 32, 0, players[:2], (0, 0))
    assert len(table_runs([first, second, stray])) == 2


def test_hands_that_break_the_rules_are_refused_before_signing() -> None:
    players = (Account.create().address, Account.create().address)
    with pytest.raises(ChainError, match="must be zero"):
        Hand(1, 1, NATIVE, b"\x01" * 32, ZERO_RECORD, 1, players, (-5, 5))
    with pytest.raises(ChainError, match="each player needs one delta"):
        Hand(1, 1, NATIVE, b"\x01" * 32, ZERO_RECORD, 0, players, (0,))
    with pytest.raises(ChainError, match="start at 1"):
        Hand(1, 0, NATIVE, b"\x01" * 32, ZERO_RECORD, 0, players, (0, 0))
    with pytest.raises(ChainError, match="checksum"):
        Hand(1, 1, NATIVE, b"\x01" * 32, ZERO_RECORD, 0, (players[0].lower(), players[1]), (0, 0))


async def test_a_signed_batch_settles_moves_funds_and_chains_each_table(d: Deployment) -> None:
    await d.lock_for_play(ETHER)
    first = d.hands(table=1, count=3) + d.hands(table=2, count=2)
    receipt = await d.settle(1, first)
    events = d.ludex.events(receipt)
    settled = [(e.args["tableId"], e.args["handNumber"]) for e in events if e.name == "HandSettled"]
    assert settled == [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2)]
    records = [e.args["record"] for e in events if e.name == "HandSettled"]
    assert records == [hand_record(h) for h in first]
    rake = [e.args for e in events if e.name == "RakeCollected"]
    assert rake == [  # one per run of hands of a table
        {"token": NATIVE, "batchId": 1, "amount": 6},
        {"token": NATIVE, "batchId": 1, "amount": 4},
    ]
    [batch] = [e.args for e in events if e.name == "BatchSettled"]
    assert batch == {"batchId": 1, "signer": d.operator.address, "hands": 5}
    assert (await d.ludex.call("tables", 1))[0] == hand_record(first[2])
    assert (await d.ludex.call("tables", 1))[1] == 3
    assert (await d.ludex.call("treasury", NATIVE))[0] == 10
    locked = [await d.locked(p) for p in d.players[:3]]
    assert sum(locked) == 3 * ETHER - 10
    # Seat s wins hands whose number is s mod 3: table 1 hands 1..3, table 2 hands 1..2.
    # Winners: table 1 seats 1, 2, 0; table 2 seats 1, 2 (18 each, losers -10).
    assert locked == [ETHER - 22, ETHER + 6, ETHER + 6]
    # The next batch continues each chain where it stopped.
    more = d.hands(table=1, count=2, first=4, previous=hand_record(first[2]))
    await d.settle(2, more)
    assert (await d.ludex.call("tables", 1))[1] == 5


async def test_forged_malformed_and_malleable_signatures_are_refused(d: Deployment) -> None:
    await d.lock_for_play(ETHER)
    hands = d.hands(table=1, count=1)
    await _reverts(
        "SignerNotOperator",
        d.settle(1, hands, signer=d.stranger),
        signer=d.stranger.address,
    )
    good = sign_settlement(d.operator.account.key, d.chain_id, d.ludex.address, 1, hands)
    await _reverts("BadSignature", d.settle(1, hands, signature=good[:64]))
    await _reverts("BadSignature", d.settle(1, hands, signature=good[:64] + bytes([29])))
    # The same signature with s flipped to the high half (s' = n - s, v flipped).
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = int.from_bytes(good[32:64], "big")
    malleable = good[:32] + (n - s).to_bytes(32, "big") + bytes([55 - good[64]])
    await _reverts("BadSignature", d.settle(1, hands, signature=malleable))
    # Signed for another batch id: recovers someone else.
    other = sign_settlement(d.operator.account.key, d.chain_id, d.ludex.address, 2, hands)
    await _reverts("SignerNotOperator", d.settle(1, hands, signature=other))
    # A revoked operator's signature no longer counts.
    await d.ludex.transact(d.owner, "setOperator", d.operator.address, False)
    await _reverts("SignerNotOperator", d.settle(1, hands), signer=d.operator.address)


async def test_replayed_reordered_and_unbalanced_hands_are_refused(d: Deployment) -> None:
    await d.lock_for_play(ETHER)
    hands = d.hands(table=1, count=2)
    await d.settle(1, hands)
    await _reverts("HandOutOfOrder", d.settle(2, hands), tableId=1, expected=3, got=1)  # replayed
    skipped = d.hands(table=1, count=1, first=4, previous=hand_record(hands[1]))
    await _reverts("HandOutOfOrder", d.settle(3, skipped), expected=3, got=4)
    forked = d.hands(table=1, count=1, first=3, previous=hand_record(hands[0]))
    await _reverts("WrongPreviousRecord", d.settle(4, forked), tableId=1, handNumber=3)
    good = d.hands(table=1, count=1, first=3, previous=hand_record(hands[1]))[0]
    [run] = table_runs([good])

    def with_seats(seats: bytes) -> list[Any]:
        (commitment, rake, _), *_ = run[5]
        return [(*run[:5], [(commitment, rake, seats)])]

    seats = run[5][0][2]
    bumped = bytearray(seats)
    bumped[15] += 1  # the first seat's amount, one more
    await _reverts(
        "NotZeroSum", d.settle(5, [good], raw=with_seats(bytes(bumped))), tableId=1, handNumber=3
    )
    for bad in (seats[:-1], b"", bytes([9]) + seats[1:], seats[:1] + bytes([2]) + seats[2:]):
        # not whole seats, no seat, an index past the roster, a loss flag that is not 0/1
        await _reverts("BadSeats", d.settle(6, [good], raw=with_seats(bad)), handNumber=3)
    negative_zero = bytes([0, 1]) + bytes(14) + seats[16:]
    await _reverts("BadSeats", d.settle(7, [good], raw=with_seats(negative_zero)))
    (commitment, _, seats_of_good), *_ = run[5]
    huge_rake = [(*run[:5], [(commitment, 2**112, seats_of_good)])]
    await _reverts("RakeTooLarge", d.settle(8, [good], raw=huge_rake), handNumber=3)
    await _reverts("EmptyBatch", d.settle(8, [good], raw=[]))
    await _reverts("EmptyBatch", d.settle(8, [good], raw=[(*run[:5], [])]))
    # A loser without enough at the table.
    broke = d.hands(table=9, count=1, seats=4)  # the fourth player locked nothing
    await _reverts("InsufficientLocked", d.settle(9, broke), player=d.players[3].address)


async def test_pause_stops_deposits_and_settlement_but_not_withdrawals(d: Deployment) -> None:
    alice = d.players[0]
    await d.ludex.transact(alice, "deposit", value=ETHER)
    await _reverts("NotOperator", d.ludex.transact(alice, "pause"))
    receipt = await d.ludex.transact(d.operator, "pause")
    assert [(e.name, e.args) for e in d.ludex.events(receipt)] == [
        ("Paused", {"by": d.operator.address})
    ]
    await _reverts("IsPaused", d.ludex.transact(alice, "deposit", value=1))
    await _reverts("IsPaused", d.ludex.transact(alice, "lock", NATIVE, 1))
    await _reverts("IsPaused", d.settle(1, d.hands(table=1, count=1)))
    await d.ludex.transact(alice, "withdraw", NATIVE, ETHER)  # still open
    await _reverts("NotOwner", d.ludex.transact(d.operator, "unpause"))
    receipt = await d.ludex.transact(d.owner, "unpause")
    assert _names(d.ludex, receipt) == ["Unpaused"]
    await d.ludex.transact(alice, "deposit", value=1)


async def test_roles_ownership_and_treasury(d: Deployment) -> None:
    await d.lock_for_play(ETHER)
    await d.settle(1, d.hands(table=1, count=5))  # 10 wei of rake
    await _reverts(
        "NotOwner",
        d.ludex.transact(d.operator, "moveTreasury", NATIVE, d.operator.address, 10),
    )
    await _reverts(
        "InsufficientTreasury",
        d.ludex.transact(d.owner, "moveTreasury", NATIVE, d.stranger.address, 11),
    )
    receipt = await d.ludex.transact(d.owner, "moveTreasury", NATIVE, d.stranger.address, 10)
    assert [e.args for e in d.ludex.events(receipt)] == [
        {"token": NATIVE, "to": d.stranger.address, "amount": 10}
    ]
    await _reverts(
        "NotOwner", d.ludex.transact(d.stranger, "setOperator", d.stranger.address, True)
    )
    await _reverts("ZeroAddress", d.ludex.transact(d.owner, "setOperator", NATIVE, True))
    receipt = await d.ludex.transact(d.owner, "transferOwnership", d.stranger.address)
    assert _names(d.ludex, receipt) == ["OwnershipTransferStarted"]
    assert (await d.ludex.call("owner"))[0] == d.owner.address  # not yet
    await _reverts("NotPendingOwner", d.ludex.transact(d.operator, "acceptOwnership"))
    receipt = await d.ludex.transact(d.stranger, "acceptOwnership")
    assert [e.args for e in d.ludex.events(receipt)] == [
        {"previousOwner": d.owner.address, "newOwner": d.stranger.address}
    ]
    await _reverts("NotOwner", d.ludex.transact(d.owner, "unpause"))
    receipt = await d.ludex.transact(d.stranger, "setOperator", d.players[0].address, True)
    assert [e.args for e in d.ludex.events(receipt)] == [
        {"operator": d.players[0].address, "enabled": True}
    ]


async def test_no_one_but_the_player_moves_unlocked_funds(d: Deployment) -> None:
    """The owner and the operator have no function that takes a player's available
    funds: the ABI's state-changing functions are listed and each privileged one is
    shown to leave a player's available balance alone."""
    abi = load_artifact("Ludex").abi
    writable = sorted(
        f["name"]
        for f in abi
        if f.get("type") == "function" and f.get("stateMutability") in {"nonpayable", "payable"}
    )
    assert writable == [
        "acceptOwnership",
        "deposit",
        "depositToken",
        "lock",
        "moveTreasury",
        "pause",
        "release",
        "setOperator",
        "settle",
        "transferOwnership",
        "unpause",
        "withdraw",
    ]
    alice = d.players[0]
    await d.ludex.transact(alice, "deposit", value=ETHER)
    await _reverts(
        "InsufficientLocked",
        d.ludex.transact(d.operator, "release", alice.address, NATIVE, 1),
    )
    # A signed hand cannot take from available funds either: alice locked nothing.
    hand = d.hands(table=3, count=1, seats=2)
    await _reverts("InsufficientLocked", d.settle(1, hand))
    assert (await d.ludex.call("available", alice.address, NATIVE))[0] == ETHER


async def test_gas_per_hand_falls_with_the_batch_size(d: Deployment) -> None:
    await d.lock_for_play(10 * ETHER, seats=3)
    small = await d.settle(1, d.hands(table=1, count=1))
    previous = hand_record(d.hands(table=1, count=1)[0])
    ten = await d.settle(2, d.hands(table=1, count=10, first=2, previous=previous))
    per_hand = (small.gas_used, ten.gas_used / 10)
    assert per_hand[1] < per_hand[0] / 2, per_hand
    print(json.dumps({"gas_per_hand": {"1": per_hand[0], "10": per_hand[1]}}))


async def test_a_withdrawal_cannot_be_reentered(d: Deployment) -> None:
    """A contract that calls ``withdraw`` again from its ``receive`` gets nothing twice.
    It holds 2 ether and withdraws 1, so the inner withdrawal of 1 more would pass the
    balance check: only the reentrancy guard refuses it; the outer transfer then fails
    and everything reverts."""
    attacker, _ = await deploy(d.stranger, load_artifact("Reenterer"), d.ludex.address)
    await attacker.transact(d.stranger, "depositToVault", value=2 * ETHER)
    assert (await d.ludex.call("available", attacker.address, NATIVE))[0] == 2 * ETHER
    unknown = await _reverts("UnknownError", attacker.transact(d.stranger, "attack", ETHER))
    # The error is the vault's, bubbled through the attacker: decode it with the vault's ABI.
    raw = bytes.fromhex(unknown.args_["selector"][2:] + unknown.args_["data"][2:])
    error, args = d.ludex.abi.decode_error(raw)
    assert (error, args["to"], args["amount"]) == ("TransferFailed", attacker.address, ETHER)
    assert (await d.ludex.call("available", attacker.address, NATIVE))[0] == 2 * ETHER
    balance = await d.chain.call("eth_getBalance", [attacker.address, "latest"])
    assert parse_quantity(balance, "balance") == 0
    assert (await attacker.call("reentries"))[0] == 0  # the attempt was rolled back too
