"""The event envelope and the catalog of every event type ludex knows.

Pure: no I/O, no clock except when the caller does not pass ``occurred_at``.

An :class:`Envelope` wraps one typed payload with the metadata every consumer
needs: a unique, time-sortable id (a ULID), the event type, the partition key
that orders it on the bus, when it happened, who produced it and the schema
version of its payload. Envelopes serialize to compact JSON with msgspec.

The catalog maps each event type to its payload schema, its current version and
its topic. Decoding an envelope whose type is not in the catalog raises
:class:`~ludex.errors.UnknownEventType`; one whose envelope or payload does not
match its schema raises :class:`~ludex.errors.MalformedEvent`. Nothing is ever
dropped silently.

Amounts are integers in minor units (chips, token base units, wei). Addresses
and hashes are 0x-prefixed lowercase hex strings.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

import msgspec
from ulid import ULID

from ludex.errors import MalformedEvent, UnknownEventType

TOPIC_PREFIX: Final = "ludex."


class Payload(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every event payload; subclasses set ``event_type``."""

    event_type: ClassVar[str]
    version: ClassVar[int] = 1
    description: ClassVar[str] = ""


class Envelope(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One event: metadata plus its typed payload."""

    id: str
    type: str
    key: str
    occurred_at: datetime
    producer: str
    version: int
    payload: Any

    @property
    def topic(self) -> str:
        return topic_for(self.type)


class _RawEnvelope(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: str
    type: str
    key: str
    occurred_at: datetime
    producer: str
    version: int
    payload: msgspec.Raw


@dataclass(frozen=True, slots=True)
class EventSpec:
    """What the catalog knows about one event type."""

    type: str
    version: int
    payload: builtins.type[Payload]
    topic: str
    description: str


_CATALOG: dict[str, EventSpec] = {}
_BY_PAYLOAD: dict[type[Payload], EventSpec] = {}


def topic_for(event_type: str) -> str:
    """The topic of an event type: ``wallet.bet_placed`` goes to ``ludex.wallet``."""
    domain, _, name = event_type.partition(".")
    if not domain or not name:
        raise UnknownEventType(f"event type {event_type!r} is not of the form 'domain.name'")
    return TOPIC_PREFIX + domain


def register(cls: type[Payload]) -> type[Payload]:
    """Class decorator adding a payload schema to the catalog."""
    spec = EventSpec(
        type=cls.event_type,
        version=cls.version,
        payload=cls,
        topic=topic_for(cls.event_type),
        description=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else "",
    )
    if spec.type in _CATALOG:
        raise ValueError(f"event type {spec.type!r} registered twice")
    _CATALOG[spec.type] = spec
    _BY_PAYLOAD[cls] = spec
    return cls


def catalog() -> Iterator[EventSpec]:
    """Every registered event type, sorted by type."""
    return iter(sorted(_CATALOG.values(), key=lambda s: s.type))


def spec_for(event_type: str) -> EventSpec:
    try:
        return _CATALOG[event_type]
    except KeyError:
        raise UnknownEventType(
            f"unknown event type {event_type!r}; known types: {', '.join(sorted(_CATALOG))}"
        ) from None


def topics() -> list[str]:
    """Every topic the catalog uses."""
    return sorted({s.topic for s in _CATALOG.values()})


def new_event(
    payload: Payload,
    *,
    key: str,
    producer: str,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
) -> Envelope:
    """Wrap a payload in an envelope with a fresh ULID."""
    spec = _BY_PAYLOAD.get(type(payload))
    if spec is None:
        raise UnknownEventType(f"{type(payload).__name__} is not a registered event payload")
    if not key:
        raise MalformedEvent(f"{spec.type}: the partition key must not be empty")
    when = occurred_at or datetime.now(UTC)
    if when.tzinfo is None:
        raise MalformedEvent(f"{spec.type}: occurred_at must be timezone-aware")
    return Envelope(
        id=event_id or str(ULID.from_datetime(when)),
        type=spec.type,
        key=key,
        occurred_at=when,
        producer=producer,
        version=spec.version,
        payload=payload,
    )


_encoder = msgspec.json.Encoder()
_raw_decoder = msgspec.json.Decoder(_RawEnvelope)
_payload_decoders: dict[str, msgspec.json.Decoder[Any]] = {}


def encode(envelope: Envelope) -> bytes:
    """Serialize an envelope to JSON bytes, validating it first."""
    spec = spec_for(envelope.type)
    if not isinstance(envelope.payload, spec.payload):
        raise MalformedEvent(
            f"{envelope.type}: payload is {type(envelope.payload).__name__}, "
            f"expected {spec.payload.__name__}"
        )
    return _encoder.encode(envelope)


def decode(data: bytes) -> Envelope:
    """Parse and validate JSON bytes into an envelope with a typed payload."""
    try:
        raw = _raw_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise MalformedEvent(f"malformed event envelope: {exc}") from None
    spec = spec_for(raw.type)
    if raw.version > spec.version or raw.version < 1:
        raise MalformedEvent(
            f"{raw.type} (id {raw.id}): schema version {raw.version} is not supported "
            f"(this build reads versions 1..{spec.version})"
        )
    if len(raw.id) != 26:
        raise MalformedEvent(f"{raw.type}: id {raw.id!r} is not a ULID")
    decoder = _payload_decoders.get(raw.type)
    if decoder is None:
        decoder = _payload_decoders[raw.type] = msgspec.json.Decoder(spec.payload)
    try:
        payload = decoder.decode(raw.payload)
    except msgspec.DecodeError as exc:
        raise MalformedEvent(f"{raw.type} (id {raw.id}): bad payload: {exc}") from None
    if raw.occurred_at.tzinfo is None:
        raise MalformedEvent(f"{raw.type} (id {raw.id}): occurred_at has no timezone")
    return Envelope(
        id=raw.id,
        type=raw.type,
        key=raw.key,
        occurred_at=raw.occurred_at,
        producer=raw.producer,
        version=raw.version,
        payload=payload,
    )


def to_builtins(envelope: Envelope) -> dict[str, Any]:
    """The envelope as plain JSON-compatible Python values (for APIs and analytics)."""
    result: dict[str, Any] = msgspec.to_builtins(envelope)
    return result


# ---------------------------------------------------------------------------
# The catalog. Producers named here may arrive in later work; the schema is the
# contract they will follow. Bump ``version`` when a payload changes shape.
# ---------------------------------------------------------------------------

# wallet: bets, wins and rollbacks from game providers; deposits and withdrawals


@register
class BetPlaced(Payload, frozen=True, kw_only=True):
    """A provider's bet was accepted and debited from the player."""

    event_type: ClassVar[str] = "wallet.bet_placed"
    player_id: str
    provider: str
    game_id: str
    round_id: str
    transaction_id: str
    amount: int
    currency: str
    balance_after: int


@register
class WinSettled(Payload, frozen=True, kw_only=True):
    """A provider's win was credited to the player."""

    event_type: ClassVar[str] = "wallet.win_settled"
    player_id: str
    provider: str
    game_id: str
    round_id: str
    transaction_id: str
    amount: int
    currency: str
    balance_after: int


@register
class RolledBack(Payload, frozen=True, kw_only=True):
    """A bet was reversed by the provider's rollback."""

    event_type: ClassVar[str] = "wallet.rolled_back"
    player_id: str
    provider: str
    transaction_id: str
    rolled_back_transaction_id: str
    amount: int
    currency: str
    balance_after: int


@register
class LimitRefused(Payload, frozen=True, kw_only=True):
    """A bet was refused by a risk limit; names the limit."""

    event_type: ClassVar[str] = "wallet.limit_refused"
    player_id: str
    provider: str
    game_id: str
    transaction_id: str
    limit: str
    requested: int
    allowed: int
    currency: str


@register
class DepositCredited(Payload, frozen=True, kw_only=True):
    """An on-chain deposit was credited to the player's ledger account after confirmation."""

    event_type: ClassVar[str] = "wallet.deposit_credited"
    player_id: str
    chain_id: int
    tx_hash: str
    log_index: int
    token: str
    amount: int
    balance_after: int


@register
class WithdrawalDebited(Payload, frozen=True, kw_only=True):
    """An on-chain withdrawal was debited from the player's ledger account."""

    event_type: ClassVar[str] = "wallet.withdrawal_debited"
    player_id: str
    chain_id: int
    tx_hash: str
    log_index: int
    token: str
    amount: int
    balance_after: int


# game: rounds of provider games


@register
class GameFinalized(Payload, frozen=True, kw_only=True):
    """A game round is closed: no more bets or wins are accepted for it."""

    event_type: ClassVar[str] = "game.finalized"
    provider: str
    game_id: str
    round_id: str
    player_id: str
    total_bet: int
    total_win: int
    currency: str


# treasury: movements of house money (rake, float, fees)


@register
class TreasuryMoved(Payload, frozen=True, kw_only=True):
    """Money moved into or out of a treasury account."""

    event_type: ClassVar[str] = "treasury.moved"
    ledger: str
    transfer_id: str
    from_account: str
    to_account: str
    amount: int
    reason: str


# poker: table and hand lifecycle


@register
class HandStarted(Payload, frozen=True, kw_only=True):
    """A hand was dealt; carries the shuffle commitment published before the deal."""

    event_type: ClassVar[str] = "poker.hand_started"
    table_id: str
    hand_id: str
    button_seat: int
    seats: dict[str, str]
    stacks: dict[str, int]
    commitment: str


@register
class PlayerActed(Payload, frozen=True, kw_only=True):
    """One operation of the engine (fold, check, call, bet, raise, deal, collect)."""

    event_type: ClassVar[str] = "poker.action"
    table_id: str
    hand_id: str
    sequence: int
    seat: int | None
    action: str
    amount: int = 0


@register
class HandCompleted(Payload, frozen=True, kw_only=True):
    """A hand finished: its PHH history, shuffle reveal, chip deltas and rake."""

    event_type: ClassVar[str] = "poker.hand_completed"
    table_id: str
    hand_id: str
    history_phh: str
    commitment: str
    seed_reveal: str
    previous_record_hash: str
    record_hash: str
    deltas: dict[str, int]
    rake: int
    currency: str


# settlement: batches of hands settled on chain


@register
class SettlementSubmitted(Payload, frozen=True, kw_only=True):
    """A settlement transaction was signed and sent."""

    event_type: ClassVar[str] = "settlement.submitted"
    batch_id: str
    chain_id: int
    hand_ids: list[str]
    tx_hash: str
    nonce: int


@register
class SettlementConfirmed(Payload, frozen=True, kw_only=True):
    """A settlement transaction reached the confirmation depth."""

    event_type: ClassVar[str] = "settlement.confirmed"
    batch_id: str
    chain_id: int
    tx_hash: str
    block_number: int
    hand_ids: list[str]


@register
class SettlementFailed(Payload, frozen=True, kw_only=True):
    """A settlement batch (or a hand) could not be settled; says why and what happens next.

    ``next_step``: ``none`` (these hands will not be settled: refused, or their table is
    halted), ``requeue`` (the hands go into a new batch) or ``resubmit`` (a reorg undid
    the batch; the same batch is sent again). ``batch_id`` is empty for a hand refused
    before it was batched."""

    event_type: ClassVar[str] = "settlement.failed"
    batch_id: str
    chain_id: int
    hand_ids: list[str]
    reason: str
    tx_hash: str | None = None
    next_step: str = "none"


# chain: what the indexer sees


@register
class ChainBlock(Payload, frozen=True, kw_only=True):
    """A block was indexed."""

    event_type: ClassVar[str] = "chain.block"
    chain_id: int
    number: int
    hash: str
    parent_hash: str
    timestamp: int
    transaction_count: int


@register
class ChainTransaction(Payload, frozen=True, kw_only=True):
    """A transaction was indexed with its receipt status."""

    event_type: ClassVar[str] = "chain.transaction"
    chain_id: int
    block_number: int
    hash: str
    from_address: str
    to_address: str | None
    value: int
    status: int


@register
class ChainLog(Payload, frozen=True, kw_only=True):
    """A raw log emitted by a contract."""

    event_type: ClassVar[str] = "chain.log"
    chain_id: int
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    address: str
    topics: list[str]
    data: str


@register
class ChainEventDecoded(Payload, frozen=True, kw_only=True):
    """A log decoded through the ABI registry."""

    event_type: ClassVar[str] = "chain.event_decoded"
    chain_id: int
    block_number: int
    tx_hash: str
    log_index: int
    address: str
    name: str
    args: dict[str, Any]
    abi: str = ""  # the registry's name of the ABI that decoded it


@register
class TokenTransfer(Payload, frozen=True, kw_only=True):
    """An ERC-20, ERC-721 or ERC-1155 transfer."""

    event_type: ClassVar[str] = "chain.token_transfer"
    chain_id: int
    standard: str
    token: str
    from_address: str
    to_address: str
    value: int
    token_id: int | None = None
    block_number: int
    tx_hash: str
    log_index: int
    batch_index: int = 0  # ERC-1155 batches: one event per id, 0..n-1


@register
class BlockReverted(Payload, frozen=True, kw_only=True):
    """A block was orphaned by a reorg and its rows reverted."""

    event_type: ClassVar[str] = "chain.block_reverted"
    chain_id: int
    number: int
    hash: str
    depth: int


# --- chain: the mempool (ludex.indexer.mempool) ------------------------------------
# One event per change of a pending transaction's status, keyed by the sender so that
# the lifecycle of each sender's transactions stays in order on the bus.


@register
class ChainTxPending(Payload, frozen=True, kw_only=True):
    """A transaction was seen pending in the mempool (or came back to it)."""

    event_type: ClassVar[str] = "chain.tx_pending"
    chain_id: int
    hash: str
    from_address: str
    to_address: str | None
    nonce: int
    value: int
    gas: int
    gas_price: int | None = None  # legacy and EIP-2930 transactions only
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    tx_type: int


@register
class ChainTxIncluded(Payload, frozen=True, kw_only=True):
    """A transaction seen pending was included in a block."""

    event_type: ClassVar[str] = "chain.tx_included"
    chain_id: int
    hash: str
    from_address: str
    nonce: int
    block_number: int


@register
class ChainTxReplaced(Payload, frozen=True, kw_only=True):
    """A pending transaction left the mempool and its sender's nonce was used by another."""

    event_type: ClassVar[str] = "chain.tx_replaced"
    chain_id: int
    hash: str
    from_address: str
    nonce: int
    replaced_by: str | None = None  # the included transaction, when the indexer has it


@register
class ChainTxDropped(Payload, frozen=True, kw_only=True):
    """A pending transaction left the mempool without being included or replaced."""

    event_type: ClassVar[str] = "chain.tx_dropped"
    chain_id: int
    hash: str
    from_address: str
    nonce: int


# --- end of the mempool events ------------------------------------------------------
