"""The ledger mirror of the Ludex vault: node answers as typed records, account ids,
and the arithmetic that turns on-chain amounts into ledger transfers.

Pure: no I/O, no clock. :mod:`ludex.services.deposit_watcher` (vault events) and
:mod:`ludex.services.settlement` (settled hands) read the node and the store and ask
this module what to write; :mod:`ludex.chain.reconcile` uses the same account ids.

* **Node answers** (:func:`parse_header`, :func:`parse_log`) are validated here, once:
  every hash is 32 bytes of hex, every address 20, every quantity 0x-hex, a log is not
  ``removed``. Anything else raises :class:`~ludex.errors.ChainError`; nothing loose
  goes further in.
* **Accounts.** Each token of a chain is one ledger, ``TOKEN:<chain id>:<token>``
  (:func:`ludex.ledger.token_ledger`; the native coin is the zero address). In it, a
  player of one vault contract holds two accounts: ``vault:<player>:<tag>`` (the
  vault's ``available``) and ``locked:<player>:<tag>`` (its ``locked``, the funds at
  the tables). ``<tag>`` is 14 hex digits of keccak(chain id, contract, token): an
  account id holds at most 64 characters and belongs to one ledger, so it cannot
  spell out both addresses (and a redeployed contract gets accounts of its own).
  ``vault-chain:<tag>`` is the outside world (deposits come from it, withdrawals go to
  it) and ``vault-rounding:<tag>`` absorbs rounding (below); both are untracked and may
  go negative.
* **Units.** A ledger counter is a signed 64-bit integer, so the mirror counts in
  ledger units of ``ledger_unit`` base units (10**9 wei by default). Each account shows
  ``floor(exact / ledger_unit)`` of the exact on-chain amount the watcher keeps per
  player, token and bucket; an event moves the ledger from the floor of the exact
  amount before to the floor after (:func:`mirror_legs`). Dust below one unit is never
  lost: it stays in the exact amount and counts once it completes a unit, so once the
  watcher and the settlement service have caught up, a player's ledger balance equals
  ``on-chain // ledger_unit`` and is never negative. A lock or release can change
  the two floors by different amounts (1.5 + 0.6 units: lock 0.5, available goes
  1 -> 1, locked 0 -> 1); the difference goes to or comes from the rounding account.
* **Settled hands** (:func:`hand_legs`, written by :mod:`ludex.services.settlement` when
  a batch is confirmed) move ``locked`` funds between the hand's players and the rake
  to the contract's treasury. Their on-chain amounts are whole ledger units (ledger
  units * ``ledger_unit``), so each player's floor moves by exactly the delta in units:
  losers' ``locked:`` accounts pay ``vault-clearing:<tag>`` (untracked; zero after
  every hand), which pays the winners' ``locked:`` accounts and the rake to
  ``vault-treasury:<tag>`` (the contract's ``treasury(token)``). The exact ``locked``
  amounts move by the deltas too, in the same transaction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from ludex.chain.settlement import Hand
from ludex.errors import ChainError
from ludex.ledger.model import AccountKind, AccountSpec, TransferSpec, token_ledger

NATIVE: Final = "0x0000000000000000000000000000000000000000"
TAG_HEX_DIGITS: Final = 14
AVAILABLE_PREFIX: Final = "vault:"
LOCKED_PREFIX: Final = "locked:"
TREASURY_PREFIX: Final = "vault-treasury:"
CLEARING_PREFIX: Final = "vault-clearing:"
RAKE: Final = "rake"
"""The party of a settled hand's rake leg (the others are players' addresses)."""

_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_HEX = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")
_ACCOUNT = re.compile(rf"(vault|locked):(0x[0-9a-fA-F]{{40}}):([0-9a-f]{{{TAG_HEX_DIGITS}}})")


class VaultEventKind(StrEnum):
    """The vault events the mirror follows (the contract's event names)."""

    DEPOSITED = "Deposited"
    WITHDRAWN = "Withdrawn"
    LOCKED = "Locked"
    RELEASED = "Released"


class EventStatus(StrEnum):
    """Where a seen vault event stands.

    * ``pending``: seen, not yet ``confirmations`` blocks deep (a deposit holds a
      pending ledger credit meanwhile).
    * ``applied``: confirmed and mirrored in the ledger, once.
    * ``reverted``: its block left the canonical chain before confirmation; its
      pending credit was voided. It becomes ``pending`` again if the same
      transaction reappears on the new branch.
    * ``rejected``: confirmed, but the ledger refused it (an amount past 2**63 - 1
      ledger units: a junk token; an account changed behind the watcher's back);
      logged, nothing moved in the ledger (the exact amounts still follow it), and
      ``ludex chain reconcile`` shows the difference.
    """

    PENDING = "pending"
    APPLIED = "applied"
    REVERTED = "reverted"
    REJECTED = "rejected"


# --- node answers ------------------------------------------------------------------


def _field(raw: Mapping[str, Any], name: str, what: str) -> Any:
    if name not in raw:
        raise ChainError(f"{what}: the node's answer has no {name!r}")
    return raw[name]


def _hash(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _HASH.fullmatch(value):
        raise ChainError(f"{what}: expected a 32-byte 0x-hex hash, got {value!r:.80}")
    return value.lower()


def _quantity(value: Any, what: str) -> int:
    if not isinstance(value, str) or not _QUANTITY.fullmatch(value):
        raise ChainError(f"{what}: expected a 0x-hex quantity, got {value!r:.80}")
    return int(value, 16)


def _address(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise ChainError(f"{what}: expected a 20-byte 0x-hex address, got {value!r:.80}")
    return to_checksum_address(value)


def _data(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise ChainError(f"{what}: expected 0x-hex bytes, got {value!r:.80}")
    return bytes.fromhex(value[2:])


@dataclass(frozen=True, slots=True)
class BlockHeader:
    number: int
    hash: str
    parent_hash: str


def parse_header(raw: Any, number: int) -> BlockHeader | None:
    """The header of block ``number`` from ``eth_getBlockByNumber``; None when the node
    has no such block (null); ChainError when the answer is malformed or is another block."""
    if raw is None:
        return None
    what = f"block {number}"
    if not isinstance(raw, Mapping):
        raise ChainError(f"{what}: expected an object, got {type(raw).__name__}")
    got = _quantity(_field(raw, "number", what), f"{what} number")
    if got != number:
        raise ChainError(f"{what}: the node answered block {got}")
    return BlockHeader(
        number,
        _hash(_field(raw, "hash", what), f"{what} hash"),
        _hash(_field(raw, "parentHash", what), f"{what} parentHash"),
    )


@dataclass(frozen=True, slots=True)
class ChainLog:
    """One log from ``eth_getLogs``, validated; hashes in lower case."""

    address: str
    topics: tuple[bytes, ...]
    data: bytes
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int


def parse_log(raw: Any) -> ChainLog:
    """A log entry, or ChainError naming the malformed field (nothing is guessed)."""
    if not isinstance(raw, Mapping):
        raise ChainError(f"log: expected an object, got {type(raw).__name__}")
    tx_hash = _hash(_field(raw, "transactionHash", "log"), "log transactionHash")
    what = f"log of {tx_hash}"
    if raw.get("removed", False) is not False:
        raise ChainError(f"{what}: marked removed (a reorg) in a getLogs answer")
    topics = _field(raw, "topics", what)
    if not isinstance(topics, list) or len(topics) > 4:
        raise ChainError(f"{what}: topics must be a list of at most 4 hashes")
    return ChainLog(
        address=_address(_field(raw, "address", what), f"{what} address"),
        topics=tuple(bytes.fromhex(_hash(t, f"{what} topic")[2:]) for t in topics),
        data=_data(_field(raw, "data", what), f"{what} data"),
        block_number=_quantity(_field(raw, "blockNumber", what), f"{what} blockNumber"),
        block_hash=_hash(_field(raw, "blockHash", what), f"{what} blockHash"),
        tx_hash=tx_hash,
        log_index=_quantity(_field(raw, "logIndex", what), f"{what} logIndex"),
    )


@dataclass(frozen=True, slots=True)
class VaultEvent:
    """A vault event seen on chain; (chain id, tx hash, log index) is its identity."""

    chain_id: int
    tx_hash: str
    log_index: int
    block_number: int
    block_hash: str
    kind: VaultEventKind
    player: str
    token: str
    amount: int

    @property
    def key(self) -> tuple[int, str, int]:
        return (self.chain_id, self.tx_hash, self.log_index)


def vault_event(
    chain_id: int, log: ChainLog, name: str, args: Mapping[str, Any]
) -> VaultEvent | None:
    """The vault event of a decoded log (None for the contract's other events)."""
    try:
        kind = VaultEventKind(name)
    except ValueError:
        return None
    player, token, amount = args.get("player"), args.get("token"), args.get("amount")
    if not isinstance(player, str) or not isinstance(token, str):
        raise ChainError(f"{name} in {log.tx_hash}: player and token must be addresses")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ChainError(f"{name} in {log.tx_hash}: amount must be positive, got {amount!r}")
    return VaultEvent(
        chain_id=chain_id,
        tx_hash=log.tx_hash,
        log_index=log.log_index,
        block_number=log.block_number,
        block_hash=log.block_hash,
        kind=kind,
        player=to_checksum_address(player),
        token=to_checksum_address(token),
        amount=amount,
    )


# --- accounts ----------------------------------------------------------------------


def ledger_tag(chain_id: int, contract: str, token: str) -> str:
    """14 hex digits naming one (chain, vault contract, token) in account ids."""
    text = f"ludex-vault:{chain_id}:{contract.lower()}:{token.lower()}"
    return keccak(text=text).hex()[:TAG_HEX_DIGITS]


@dataclass(frozen=True, slots=True)
class VaultAccounts:
    """The ledger and the account ids that mirror one player's holding of one token."""

    ledger: str
    available: str
    locked: str
    chain: str
    rounding: str

    def specs(self) -> list[AccountSpec]:
        return [
            AccountSpec(
                self.chain,
                self.ledger,
                AccountKind.EXTERNAL,
                allow_negative=True,
                track_balance=False,
            ),
            AccountSpec(
                self.rounding,
                self.ledger,
                AccountKind.EXTERNAL,
                allow_negative=True,
                track_balance=False,
            ),
            AccountSpec(self.available, self.ledger, AccountKind.PLAYER),
            # Locked funds move between players when hands settle on chain. The watcher
            # and the settlement service mirror at their own confirmation depths, so a
            # release of winnings can be mirrored before the hand that won them: the
            # account is below zero until the settlement catches up.
            AccountSpec(self.locked, self.ledger, AccountKind.TABLE_ESCROW, allow_negative=True),
        ]

    def role(self, name: str) -> str:
        """The account id of a role in :class:`Leg` (``available``, ``locked``, ...)."""
        ids = {
            "available": self.available,
            "locked": self.locked,
            "chain": self.chain,
            "rounding": self.rounding,
        }
        return ids[name]


def vault_accounts(chain_id: int, contract: str, token: str, player: str) -> VaultAccounts:
    tag = ledger_tag(chain_id, contract, token)
    player = to_checksum_address(player)
    return VaultAccounts(
        ledger=token_ledger(chain_id, to_checksum_address(token)),
        available=f"{AVAILABLE_PREFIX}{player}:{tag}",
        locked=f"{LOCKED_PREFIX}{player}:{tag}",
        chain=f"vault-chain:{tag}",
        rounding=f"vault-rounding:{tag}",
    )


@dataclass(frozen=True, slots=True)
class TreasuryAccounts:
    """The accounts of one vault contract and token that settled hands go through."""

    ledger: str
    treasury: str
    clearing: str

    def specs(self) -> list[AccountSpec]:
        return [
            AccountSpec(self.treasury, self.ledger, AccountKind.TREASURY),
            # Every settled hand of the token passes through it (zero after each hand):
            # untracked, so it is never a hot row.
            AccountSpec(
                self.clearing,
                self.ledger,
                AccountKind.TABLE_ESCROW,
                allow_negative=True,
                track_balance=False,
            ),
        ]


def treasury_accounts(chain_id: int, contract: str, token: str) -> TreasuryAccounts:
    tag = ledger_tag(chain_id, contract, token)
    return TreasuryAccounts(
        ledger=token_ledger(chain_id, to_checksum_address(token)),
        treasury=f"{TREASURY_PREFIX}{tag}",
        clearing=f"{CLEARING_PREFIX}{tag}",
    )


def watcher_cursor(contract: str) -> str:
    """The ``chain_cursors`` name of the vault watcher of ``contract``. Its row is locked
    first by every transaction that moves the contract's exact amounts."""
    return f"vault:{to_checksum_address(contract)}"


@dataclass(frozen=True, slots=True)
class PlayerAccount:
    bucket: str  # "available" or "locked"
    player: str
    tag: str


def parse_account_id(account_id: str) -> PlayerAccount | None:
    """The bucket, player and tag of a ``vault:``/``locked:`` account id (else None)."""
    match = _ACCOUNT.fullmatch(account_id)
    if match is None:
        return None
    bucket = "available" if match.group(1) == "vault" else "locked"
    return PlayerAccount(bucket, to_checksum_address(match.group(2)), match.group(3))


# --- units and transfers -------------------------------------------------------------


def ledger_units(exact: int, unit: int) -> int:
    """Whole ledger units in an exact on-chain amount (floor; negative stays negative)."""
    return exact // unit


def reserve_units(amount: int, unit: int) -> int:
    """What a deposit can add to the ledger at most: ceil(amount / unit).

    floor((e + a) / u) - floor(e / u) never exceeds ceil(a / u), so a pending credit of
    this size can always be posted in part once the deposit is confirmed.
    """
    return -(-amount // unit)


@dataclass(frozen=True, slots=True)
class Holding:
    """A player's exact on-chain amounts of one token, as the mirror knows them.

    ``locked`` may go below zero for a while: settled hands are mirrored by the
    settlement service at its own depth, so a release of winnings can be applied
    before the hand that won them.
    """

    available: int = 0
    locked: int = 0

    def after(self, kind: VaultEventKind, amount: int) -> Holding:
        if kind is VaultEventKind.DEPOSITED:
            return Holding(self.available + amount, self.locked)
        if kind is VaultEventKind.WITHDRAWN:
            return Holding(self.available - amount, self.locked)
        if kind is VaultEventKind.LOCKED:
            return Holding(self.available - amount, self.locked + amount)
        return Holding(self.available + amount, self.locked - amount)


@dataclass(frozen=True, slots=True)
class Leg:
    """One ledger transfer of an event, between roles of :class:`VaultAccounts`."""

    name: str  # "main" or "rounding"
    debit: str
    credit: str
    amount: int


def mirror_legs(kind: VaultEventKind, before: Holding, after: Holding, unit: int) -> list[Leg]:
    """The transfers that move the ledger from ``floor(before)`` to ``floor(after)``.

    Deposits and withdrawals move only ``available``, against the outside world. A
    lock moves units from available to locked (a release the other way); when the two
    floors change by different amounts, the difference goes through the rounding
    account. Empty when no floor changes (dust).
    """
    d_available = ledger_units(after.available, unit) - ledger_units(before.available, unit)
    d_locked = ledger_units(after.locked, unit) - ledger_units(before.locked, unit)
    if kind in (VaultEventKind.DEPOSITED, VaultEventKind.WITHDRAWN):
        if d_available > 0:
            return [Leg("main", "chain", "available", d_available)]
        if d_available < 0:
            return [Leg("main", "available", "chain", -d_available)]
        return []
    if kind is VaultEventKind.LOCKED:
        source, target, out, into = "available", "locked", -d_available, d_locked
    else:
        source, target, out, into = "locked", "available", -d_locked, d_available
    moved = min(out, into)
    legs = [Leg("main", source, target, moved)] if moved > 0 else []
    if out > moved:
        legs.append(Leg("rounding", source, "rounding", out - moved))
    if into > moved:
        legs.append(Leg("rounding", "rounding", target, into - moved))
    return legs


TRANSFER_CODES: Final = {
    VaultEventKind.DEPOSITED: "vault.deposit",
    VaultEventKind.WITHDRAWN: "vault.withdraw",
    VaultEventKind.LOCKED: "vault.lock",
    VaultEventKind.RELEASED: "vault.release",
}


def transfer_id(chain_id: int, tx_hash: str, log_index: int, purpose: str) -> str:
    """The ledger transfer id of one purpose of one log: ``vault:`` + 56 hex digits.

    Derived from (chain id, tx hash, log index, purpose) alone, so a transfer written
    twice is the same transfer (the ledger applies an id once). Purposes: ``credit``
    (the posting of a deposit: once per log, whatever branch it was seen on),
    ``pending:<n>`` / ``void:<n>`` (the n-th sighting's reservation and its void),
    ``main`` and ``rounding`` (the legs of the other events).
    """
    text = f"ludex-vault:{chain_id}:{tx_hash.lower()}:{log_index}:{purpose}"
    return "vault:" + keccak(text=text).hex()[:56]


# --- settled hands -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HandLeg:
    """One ledger transfer of a settled hand.

    ``party`` is the player whose ``locked`` account it moves, or :data:`RAKE`; ``debit``
    and ``credit`` are roles: ``locked`` (the party's), ``clearing`` or ``treasury``
    (:class:`TreasuryAccounts`).
    """

    party: str
    debit: str
    credit: str
    amount: int

    @property
    def code(self) -> str:
        """The ledger transfer code: ``vault.rake``, or ``vault.settle`` for a player."""
        return "vault.rake" if self.party == RAKE else "vault.settle"


def hand_legs(players: Sequence[str], deltas: Sequence[int], rake: int, unit: int) -> list[HandLeg]:
    """The ledger transfers of one settled hand (on-chain amounts in, ledger units out).

    Losers first (their ``locked`` to the clearing account), then winners (clearing to
    their ``locked``), then the rake (clearing to the treasury): the clearing account
    is back to zero after the hand. A player with a zero delta has no leg. ValueError
    when the hand is not one the contract settled: players repeated, the deltas and
    the rake not summing to zero, a negative rake, or an amount that is not a whole
    number of ledger units (the settlement service sends ledger units * ``unit``; a
    changed ``LUDEX_CHAIN_LEDGER_UNIT`` with hands in flight would do that).
    """
    if unit < 1:
        raise ValueError(f"the ledger unit must be >= 1, got {unit}")
    if len(players) != len(deltas):
        raise ValueError(f"{len(players)} players but {len(deltas)} deltas")
    if len({p.lower() for p in players}) != len(players):
        raise ValueError("a player appears twice in the hand")
    if rake < 0:
        raise ValueError(f"rake {rake} is negative")
    if sum(deltas) + rake != 0:
        raise ValueError(f"deltas sum to {sum(deltas)} and rake is {rake}; not zero together")
    for amount in (*deltas, rake):
        if amount % unit:
            raise ValueError(
                f"{amount} base units is not a whole number of ledger units of {unit}; "
                "was LUDEX_CHAIN_LEDGER_UNIT changed while hands were in flight?"
            )
    losses = [
        HandLeg(player, "locked", "clearing", -delta // unit)
        for player, delta in zip(players, deltas, strict=True)
        if delta < 0
    ]
    wins = [
        HandLeg(player, "clearing", "locked", delta // unit)
        for player, delta in zip(players, deltas, strict=True)
        if delta > 0
    ]
    fee = [HandLeg(RAKE, "clearing", "treasury", rake // unit)] if rake else []
    return [*losses, *wins, *fee]


def hand_transfer_id(
    chain_id: int, contract: str, table_id: int, hand_number: int, party: str
) -> str:
    """The ledger transfer id of one party's leg of a settled hand: ``settle:`` + 56 hex
    digits of keccak(chain id, contract, table id, hand number, party).

    The same hand applied twice names the same transfers (the ledger applies an id
    once); ``party`` is a player's address (any case) or :data:`RAKE`.
    """
    text = f"ludex-settle:{chain_id}:{contract.lower()}:{table_id}:{hand_number}:{party.lower()}"
    return "settle:" + keccak(text=text).hex()[:56]


def hand_transfers(
    chain_id: int, contract: str, hand: Hand, unit: int, metadata: Mapping[str, str]
) -> tuple[list[AccountSpec], list[TransferSpec]]:
    """The accounts (to create; idempotent) and the linked ledger transfers that mirror
    one settled hand: :func:`hand_legs` with account ids and transfer ids filled in.
    ValueError as :func:`hand_legs`; the ledger's own errors for a spec it refuses."""
    house = treasury_accounts(chain_id, contract, hand.token)
    players = {p: vault_accounts(chain_id, contract, hand.token, p) for p in hand.players}
    shared = {"clearing": house.clearing, "treasury": house.treasury}

    def account(role: str, party: str) -> str:
        return players[party].locked if role == "locked" else shared[role]

    specs = [
        TransferSpec(
            id=hand_transfer_id(chain_id, contract, hand.table_id, hand.hand_number, leg.party),
            debit=account(leg.debit, leg.party),
            credit=account(leg.credit, leg.party),
            amount=leg.amount,
            ledger=house.ledger,
            code=leg.code,
            metadata=metadata,
        )
        for leg in hand_legs(hand.players, hand.deltas, hand.rake, unit)
    ]
    accounts = [*house.specs(), *(spec for a in players.values() for spec in a.specs())]
    return accounts, specs
