"""Settlement batches: the EIP-712 records of finished hands and the operator's signature.

Pure: no I/O. The structures mirror ``contracts/LudexSettlement.sol``::

    Hand(uint64 tableId,uint64 handNumber,address token,bytes32 commitment,
         bytes32 previousRecord,uint256 rake,address[] players,int256[] deltas)
    Settlement(uint64 batchId,Hand[] hands)

under the domain ``EIP712Domain(name "Ludex", version "1", chainId, verifyingContract)``.
A hand's *record* is its EIP-712 struct hash; the next hand of its table names it as
``previousRecord``, so each table's settled history is a hash chain. The signature is
made by eth-account from the typed data (the standard encoder), and the same digest is
computed here independently (:func:`settlement_digest`), which the tests compare.

This module must never hold a key beyond the call that signs with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import is_checksum_address, to_checksum_address
from eth_utils.crypto import keccak

from ludex.errors import ChainError

ZERO_RECORD: Final = b"\x00" * 32
MAX_UINT64: Final = 2**64 - 1
HAND_TYPE: Final = (
    "Hand(uint64 tableId,uint64 handNumber,address token,bytes32 commitment,"
    "bytes32 previousRecord,uint256 rake,address[] players,int256[] deltas)"
)
HAND_TYPEHASH: Final = keccak(text=HAND_TYPE)
SETTLEMENT_TYPEHASH: Final = keccak(text="Settlement(uint64 batchId,Hand[] hands)" + HAND_TYPE)
_DOMAIN_TYPEHASH: Final = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
NATIVE: Final = "0x0000000000000000000000000000000000000000"
SEAT_BYTES: Final = 16
MAX_SEAT_AMOUNT: Final = 2**112 - 1
MAX_ROSTER: Final = 256


@dataclass(frozen=True, slots=True)
class Hand:
    """One finished hand as the settlement contract sees it."""

    table_id: int
    hand_number: int
    token: str
    commitment: bytes
    previous_record: bytes
    rake: int
    players: tuple[str, ...]
    deltas: tuple[int, ...]

    def __post_init__(self) -> None:
        for name, value in (("table_id", self.table_id), ("hand_number", self.hand_number)):
            if not 0 <= value <= MAX_UINT64:
                raise ChainError(f"hand: {name} {value} is not a uint64")
        if self.hand_number == 0:
            raise ChainError("hand: hand numbers start at 1")
        for field, digest in (
            ("commitment", self.commitment),
            ("previous_record", self.previous_record),
        ):
            if len(digest) != 32:
                raise ChainError(f"hand {self.hand_number}: {field} must be 32 bytes")
        if not self.players or len(self.players) != len(self.deltas):
            raise ChainError(
                f"hand {self.hand_number}: {len(self.players)} players and "
                f"{len(self.deltas)} deltas; each player needs one delta"
            )
        if self.rake < 0:
            raise ChainError(f"hand {self.hand_number}: rake {self.rake} is negative")
        if sum(self.deltas) + self.rake != 0:
            raise ChainError(
                f"hand {self.hand_number}: deltas sum to {sum(self.deltas)} and rake is "
                f"{self.rake}; together they must be zero"
            )
        for address in (self.token, *self.players):
            if not is_checksum_address(address):
                raise ChainError(f"hand {self.hand_number}: {address!r} is not a checksum address")

    def as_message(self) -> dict[str, Any]:
        return {
            "tableId": self.table_id,
            "handNumber": self.hand_number,
            "token": self.token,
            "commitment": self.commitment,
            "previousRecord": self.previous_record,
            "rake": self.rake,
            "players": list(self.players),
            "deltas": list(self.deltas),
        }


def checksum(address: str) -> str:
    try:
        return str(to_checksum_address(address))
    except ValueError:
        raise ChainError(f"{address!r} is not an address") from None


def hand_record(hand: Hand) -> bytes:
    """The hand's EIP-712 struct hash: its record."""
    return keccak(
        encode(
            [
                "bytes32",
                "uint64",
                "uint64",
                "address",
                "bytes32",
                "bytes32",
                "uint256",
                "bytes32",
                "bytes32",
            ],
            [
                HAND_TYPEHASH,
                hand.table_id,
                hand.hand_number,
                hand.token,
                hand.commitment,
                hand.previous_record,
                hand.rake,
                keccak(b"".join(encode(["address"], [p]) for p in hand.players)),
                keccak(b"".join(encode(["int256"], [d]) for d in hand.deltas)),
            ],
        )
    )


def domain_separator(chain_id: int, contract: str) -> bytes:
    return keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [_DOMAIN_TYPEHASH, keccak(text="Ludex"), keccak(text="1"), chain_id, contract],
        )
    )


def settlement_digest(chain_id: int, contract: str, batch_id: int, hands: Sequence[Hand]) -> bytes:
    """The EIP-712 digest the contract recovers the signer from."""
    hands_hash = keccak(b"".join(hand_record(h) for h in hands))
    struct = keccak(
        encode(["bytes32", "uint64", "bytes32"], [SETTLEMENT_TYPEHASH, batch_id, hands_hash])
    )
    return keccak(b"\x19\x01" + domain_separator(chain_id, contract) + struct)


def typed_data(
    chain_id: int, contract: str, batch_id: int, hands: Sequence[Hand]
) -> dict[str, Any]:
    """The batch as EIP-712 typed data (what a wallet or a remote signer is shown)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Hand": [
                {"name": "tableId", "type": "uint64"},
                {"name": "handNumber", "type": "uint64"},
                {"name": "token", "type": "address"},
                {"name": "commitment", "type": "bytes32"},
                {"name": "previousRecord", "type": "bytes32"},
                {"name": "rake", "type": "uint256"},
                {"name": "players", "type": "address[]"},
                {"name": "deltas", "type": "int256[]"},
            ],
            "Settlement": [
                {"name": "batchId", "type": "uint64"},
                {"name": "hands", "type": "Hand[]"},
            ],
        },
        "primaryType": "Settlement",
        "domain": {
            "name": "Ludex",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": contract,
        },
        "message": {"batchId": batch_id, "hands": [h.as_message() for h in hands]},
    }


def _seat(index: int, delta: int) -> bytes:
    amount = abs(delta)
    if amount > MAX_SEAT_AMOUNT:
        raise ChainError(f"a delta of {delta} does not fit the 14-byte seat amount")
    return bytes([index, 1 if delta < 0 else 0]) + amount.to_bytes(14, "big")


def table_runs(hands: Sequence[Hand]) -> list[tuple[Any, ...]]:
    """The hands as the contract's ``settle`` takes them (``TableRun[]``), in order.

    Consecutive hands of one table (same token, each naming the previous one's record)
    share a run: its first hand number and previous record, its roster of players
    (each address once), and per hand the commitment, the rake and 16 bytes per seat
    (roster index, 1 if a loss, amount). The contract rebuilds each full ``Hand`` from
    this, so the signature over the full hands (:func:`sign_settlement`) verifies.
    """
    runs: list[tuple[Hand, list[str], list[tuple[bytes, int, bytes]]]] = []
    last: Hand | None = None
    for hand in hands:
        run = runs[-1] if runs else None
        joins = (
            run is not None
            and last is not None
            and last.table_id == hand.table_id
            and last.token == hand.token
            and hand.hand_number == last.hand_number + 1
            and hand.previous_record == hand_record(last)
            and len(set(run[1]) | set(hand.players)) <= MAX_ROSTER
        )
        if not joins:
            run = (hand, [], [])
            runs.append(run)
        assert run is not None
        roster = run[1]
        seats = b""
        for player, delta in zip(hand.players, hand.deltas, strict=True):
            if player not in roster:
                roster.append(player)
            seats += _seat(roster.index(player), delta)
        run[2].append((hand.commitment, hand.rake, seats))
        last = hand
    return [
        (first.table_id, first.hand_number, first.previous_record, first.token, roster, compact)
        for first, roster, compact in runs
    ]


def sign_settlement(
    private_key: bytes, chain_id: int, contract: str, batch_id: int, hands: Sequence[Hand]
) -> bytes:
    """The 65-byte (r, s, v) signature of the batch by ``private_key``."""
    if not hands:
        raise ChainError("a settlement batch needs at least one hand")
    message = encode_typed_data(full_message=typed_data(chain_id, contract, batch_id, hands))
    signed = Account.sign_message(message, private_key)
    return bytes(signed.signature)
