"""The sealed record of a finished hand, the per-table hash chain, and their verification.

A :class:`HandRecord` holds what a player needs to check a hand after the fact: the
commitment published before the deal, the server seed revealed after it, the client
seeds, every card taken from the deck with its position and destination, the hand's
PHH history, and the hash of the table's previous record. Its ``record_hash`` seals all
of that, so the records of a table form a hash chain: changing any past hand breaks
every later link.

Deal order is recorded explicitly: each :class:`DealtCard` says which position of the
derived deck (0 = top, see :mod:`ludex.poker.shuffle`) went where (``"seat:N"``,
``"board"`` or ``"burn"``). The ludex dealing convention leaves the server no choice:
card ``k`` comes from position ``k``; each player's hole cards are taken together, p1
(the small blind) first, in the order of the PHH history; one card is burnt before each
board street. Verification re-derives the deck and checks every position, every
destination and every card the history shows against that convention.

The record hash is ``SHA-256`` over the canonical JSON of every field except
``record_hash`` itself: keys sorted, no insignificant whitespace
(``separators=(",", ":")``), non-ASCII characters written as UTF-8 (not escaped), and
``dealt`` as a list of ``{"card", "destination", "position"}`` objects in deal order.
:func:`canonical_bytes` is that encoding. The first record of a table has
``sequence`` 0 and ``previous_record_hash`` :data:`GENESIS_HASH` (64 zeros).

Seeds are hex in the record: ``seed_reveal`` is the server seed and ``client_seeds``
are the client seeds' bytes (text seeds UTF-8 encoded), in the order they were
submitted (the shuffle sorts them, so the order does not change the deck).

Pure: no I/O. :func:`verify_record` raises :class:`~ludex.errors.FairnessError` naming
the first thing that does not match.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from ludex.errors import CardError, FairnessError, HandHistoryError
from ludex.poker import phh
from ludex.poker.cards import DECK_SIZE, card, card_str
from ludex.poker.operations import DealBoard as OpDealBoard
from ludex.poker.operations import DealHole as OpDealHole
from ludex.poker.operations import Operation
from ludex.poker.shuffle import commitment, deck_for

RECORD_VERSION: Final = 1
GENESIS_HASH: Final = "0" * 64
BOARD: Final = "board"
BURN: Final = "burn"


def seat(number: int) -> str:
    """The destination of a hole card dealt to seat ``number``: ``"seat:3"``."""
    return f"seat:{number}"


@dataclass(frozen=True, slots=True)
class DealtCard:
    """One card taken from the deck: its position (0 = top), the card, where it went."""

    position: int
    card: str
    destination: str

    def to_json(self) -> dict[str, Any]:
        return {"card": self.card, "destination": self.destination, "position": self.position}


@dataclass(frozen=True, slots=True, kw_only=True)
class HandRecord:
    """A finished hand as sealed into its table's hash chain (see the module docstring)."""

    version: int = RECORD_VERSION
    table_id: str
    hand_id: str
    sequence: int
    commitment: str
    seed_reveal: str
    client_seeds: tuple[str, ...]
    dealt: tuple[DealtCard, ...]
    history_phh: str
    previous_record_hash: str
    record_hash: str

    def content(self) -> dict[str, Any]:
        """Every field but ``record_hash``, as plain JSON values."""
        return {
            "client_seeds": list(self.client_seeds),
            "commitment": self.commitment,
            "dealt": [d.to_json() for d in self.dealt],
            "hand_id": self.hand_id,
            "history_phh": self.history_phh,
            "previous_record_hash": self.previous_record_hash,
            "seed_reveal": self.seed_reveal,
            "sequence": self.sequence,
            "table_id": self.table_id,
            "version": self.version,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.content(), "record_hash": self.record_hash}

    def dumps(self) -> str:
        """One line of JSON (a line of a JSON-lines chain file)."""
        return json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False)


def canonical_bytes(content: dict[str, Any]) -> bytes:
    """The canonical JSON encoding the record hash is taken over."""
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def compute_record_hash(record: HandRecord) -> str:
    return hashlib.sha256(canonical_bytes(record.content())).hexdigest()


def dealt_cards(deck: Sequence[int], destinations: Iterable[str]) -> tuple[DealtCard, ...]:
    """Pair the top cards of ``deck`` with where they went, in deal order."""
    out = []
    for position, destination in enumerate(destinations):
        if position >= len(deck):
            raise FairnessError(f"more cards dealt than the deck holds ({len(deck)})")
        out.append(DealtCard(position, card_str(deck[position]), destination))
    return tuple(out)


def dealt_from_operations(
    deck: Sequence[int], operations: Iterable[Operation], seats: Sequence[int]
) -> tuple[DealtCard, ...]:
    """The deal list of an engine hand dealt from ``deck`` by the ludex convention.

    The convention: each :class:`~ludex.poker.operations.DealHole` takes the next cards
    from the top, in the order of the log; before each board street one card is burnt,
    then the street's cards are taken. ``seats[i]`` is the seat number
    of engine player ``i``. Raises :class:`FairnessError` if the log's cards are not the
    deck's cards at those positions, so a server that dealt wrongly finds out at once.
    """
    dealt: list[DealtCard] = []

    def take(value: int | None, destination: str) -> None:
        position = len(dealt)
        if position >= len(deck):
            raise FairnessError(f"more cards dealt than the deck holds ({len(deck)})")
        if value is not None and value != deck[position]:
            raise FairnessError(
                f"the log deals {card_str(value)} to {_destination(destination)} but deck "
                f"position {position} holds {card_str(deck[position])}"
            )
        dealt.append(DealtCard(position, card_str(deck[position]), destination))

    for op in operations:
        if isinstance(op, OpDealHole):
            for value in op.cards:
                take(value, seat(seats[op.player]))
        elif isinstance(op, OpDealBoard):
            take(None, BURN)
            for value in op.cards:
                take(value, BOARD)
    return tuple(dealt)


def seal(
    *,
    table_id: str,
    hand_id: str,
    sequence: int,
    server_seed: bytes,
    client_seeds: Sequence[bytes | str],
    dealt: Sequence[DealtCard],
    history_phh: str,
    previous: HandRecord | None,
) -> HandRecord:
    """Build the record of a finished hand and compute its hash.

    ``previous`` is the table's last record (``None`` for the first hand, which must
    have sequence 0). The record is not verified here; :func:`verify_record` does that.
    """
    record = HandRecord(
        table_id=table_id,
        hand_id=hand_id,
        sequence=sequence,
        commitment=commitment(server_seed),
        seed_reveal=server_seed.hex(),
        client_seeds=tuple(
            (s.encode("utf-8") if isinstance(s, str) else bytes(s)).hex() for s in client_seeds
        ),
        dealt=tuple(dealt),
        history_phh=history_phh,
        previous_record_hash=previous.record_hash if previous else GENESIS_HASH,
        record_hash="",
    )
    return replace(record, record_hash=compute_record_hash(record))


# -- verification -----------------------------------------------------------------------


def _hex(value: str, what: str, record: HandRecord) -> bytes:
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise FairnessError(f"{_where(record)}: {what} {value!r} is not hex") from None


def _where(record: HandRecord) -> str:
    return f"table {record.table_id} hand {record.hand_id} (#{record.sequence})"


def verify_record(record: HandRecord, previous: HandRecord | None) -> None:
    """Check one record and its link; raise :class:`FairnessError` at the first mismatch.

    In order: the revealed seed matches the commitment; every dealt card is the card the
    seeds put at that position of the deck (and no position is used twice); the cards of
    the PHH history are the dealt cards; the record hash matches the content; the link
    to ``previous`` (or the genesis link for sequence 0) holds.
    """
    where = _where(record)
    if record.version != RECORD_VERSION:
        raise FairnessError(f"{where}: record version {record.version} is not supported")
    server_seed = _hex(record.seed_reveal, "the revealed server seed", record)
    if len(server_seed) < 16:
        raise FairnessError(f"{where}: the revealed server seed is too short to be a real seed")
    revealed = commitment(server_seed)
    if revealed != record.commitment:
        raise FairnessError(
            f"{where}: the commitment published before the hand was {record.commitment}, "
            f"but SHA-256 of the revealed server seed is {revealed}: this is not the seed "
            "the server committed to"
        )
    clients = [_hex(s, "client seed", record) for s in record.client_seeds]
    deck = deck_for(server_seed, clients, record.hand_id)
    _verify_dealt(record, deck)
    _verify_history(record)
    computed = compute_record_hash(record)
    if computed != record.record_hash:
        raise FairnessError(
            f"{where}: the record hash is {record.record_hash} but its content hashes to "
            f"{computed}: the record was changed after it was sealed"
        )
    _verify_link(record, previous)


def _verify_dealt(record: HandRecord, deck: Sequence[int]) -> None:
    where = _where(record)
    used: dict[int, int] = {}
    for k, dealt in enumerate(record.dealt):
        if not 0 <= dealt.position < DECK_SIZE:
            raise FairnessError(f"{where}: card {k} has deck position {dealt.position}")
        if dealt.position != k:
            raise FairnessError(
                f"{where}: card {k} claims deck position {dealt.position}; cards are taken "
                f"from the top in order, so card {k} must come from position {k}"
            )
        if dealt.position in used:
            raise FairnessError(
                f"{where}: card {k} and card {used[dealt.position]} both claim deck "
                f"position {dealt.position}"
            )
        used[dealt.position] = k
        expected = card_str(deck[dealt.position])
        try:
            recorded = card_str(card(dealt.card))
        except CardError as exc:
            raise FairnessError(f"{where}: card {k}: {exc}") from None
        if recorded != expected:
            raise FairnessError(
                f"{where}: card {k} dealt to {_destination(dealt.destination)} was "
                f"{recorded}, but the deck derived from the revealed seeds has {expected} "
                f"at position {dealt.position}"
            )
        if dealt.destination not in (BOARD, BURN) and not _seat_number(dealt.destination):
            raise FairnessError(
                f"{where}: card {k} has destination {dealt.destination!r}; expected "
                "'seat:N', 'board' or 'burn'"
            )


def _destination(text: str) -> str:
    number = _seat_number(text)
    return f"seat {number}" if number else f"the {text}"


def _seat_number(text: str) -> int | None:
    prefix, _, number = text.partition(":")
    return int(number) if prefix == "seat" and number.isdigit() else None


def _verify_history(record: HandRecord) -> None:
    """The deal must follow the history under the ludex dealing convention.

    Walking the PHH actions: each ``d dh`` takes the next cards from the top for that
    player's seat (players in order p1, p2, ... as the standard requires), each
    ``d db`` first burns one card and then takes the street's cards for the board. The
    recorded destinations and the history's known cards must match that walk exactly,
    so the server had no choice about which deck card went where.
    """
    where = _where(record)
    try:
        history = phh.loads(record.history_phh)
    except HandHistoryError as exc:
        raise FairnessError(f"{where}: the PHH history does not parse: {exc}") from None
    if history.seats is None:
        raise FairnessError(
            f"{where}: the PHH history has no 'seats' field, so its players cannot be "
            "matched to the seats the cards were dealt to"
        )
    dealt = record.dealt
    k = 0
    next_player = 0

    def take(destination: str, shown: str | None, action: int) -> None:
        nonlocal k
        text = history.actions[action]
        if k >= len(dealt):
            raise FairnessError(
                f"{where}: actions[{action}] {text!r} deals card {k}, but only {len(dealt)} "
                "cards were taken from the deck"
            )
        card_k = dealt[k]
        if card_k.destination != destination:
            raise FairnessError(
                f"{where}: card {k} (deck position {card_k.position}) went to "
                f"{_destination(card_k.destination)}, but by the history (actions[{action}] "
                f"{text!r}) and the dealing order it belongs to {_destination(destination)}"
            )
        if shown is not None and shown != phh.UNKNOWN_CARD and shown != card_k.card:
            raise FairnessError(
                f"{where}: actions[{action}] {text!r} shows {shown} as card {k}, but card "
                f"{k} dealt to {_destination(destination)} was {card_k.card}"
            )
        k += 1

    for index, action in enumerate(history.parsed_actions):
        if isinstance(action, phh.DealHole):
            if action.player != next_player:
                raise FairnessError(
                    f"{where}: actions[{index}] deals to p{action.player + 1} but "
                    f"p{next_player + 1} is next: hole cards go to p1, p2, ... in order"
                )
            next_player += 1
            for shown in action.cards:
                take(seat(history.seats[action.player]), shown, index)
        elif isinstance(action, phh.DealBoard):
            take(BURN, None, index)
            for shown in action.cards:
                take(BOARD, shown, index)
    if k != len(dealt):
        raise FairnessError(
            f"{where}: card {k} (to {_destination(dealt[k].destination)}) was taken from the "
            "deck but the history never deals it"
        )


def _verify_link(record: HandRecord, previous: HandRecord | None) -> None:
    where = _where(record)
    if previous is None:
        if record.sequence == 0 and record.previous_record_hash != GENESIS_HASH:
            raise FairnessError(
                f"{where}: the first hand of a table must link to the genesis hash "
                f"{GENESIS_HASH}, not {record.previous_record_hash}"
            )
        return
    if record.table_id != previous.table_id:
        raise FairnessError(
            f"{where}: follows a hand of table {previous.table_id}; a chain holds one table"
        )
    if record.sequence != previous.sequence + 1:
        raise FairnessError(
            f"{where}: sequence {record.sequence} follows sequence {previous.sequence}; "
            f"expected {previous.sequence + 1} (a hand is missing or out of order)"
        )
    if record.previous_record_hash != previous.record_hash:
        raise FairnessError(
            f"{where}: links to previous hash {record.previous_record_hash}, but the previous "
            f"record (hand {previous.hand_id}) hashes to {previous.record_hash}"
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of checking one record of a chain."""

    sequence: int
    hand_id: str
    ok: bool
    reason: str = ""


def verify_chain(records: Sequence[HandRecord]) -> list[Verdict]:
    """Check every record and each link to the record before it, in file order."""
    verdicts = []
    previous: HandRecord | None = None
    for record in records:
        try:
            verify_record(record, previous)
        except FairnessError as exc:
            verdicts.append(Verdict(record.sequence, record.hand_id, False, str(exc)))
        else:
            verdicts.append(Verdict(record.sequence, record.hand_id, True))
        previous = record
    return verdicts


# -- JSON -------------------------------------------------------------------------------

_FIELDS: Final = {
    "version": int,
    "table_id": str,
    "hand_id": str,
    "sequence": int,
    "commitment": str,
    "seed_reveal": str,
    "client_seeds": list,
    "dealt": list,
    "history_phh": str,
    "previous_record_hash": str,
    "record_hash": str,
}


def from_json(value: Any, where: str = "record") -> HandRecord:
    """A record from its JSON object; refuses missing, extra or mistyped fields."""
    if not isinstance(value, dict):
        raise FairnessError(f"{where}: expected a JSON object")
    missing = sorted(set(_FIELDS) - set(value))
    extra = sorted(set(value) - set(_FIELDS))
    if missing or extra:
        raise FairnessError(f"{where}: missing fields {missing}, unknown fields {extra}")
    for name, kind in _FIELDS.items():
        if not isinstance(value[name], kind) or isinstance(value[name], bool):
            raise FairnessError(f"{where}: field {name!r} must be a {kind.__name__}")
    if not all(isinstance(s, str) for s in value["client_seeds"]):
        raise FairnessError(f"{where}: client_seeds must be hex strings")
    dealt = []
    for k, item in enumerate(value["dealt"]):
        if (
            not isinstance(item, dict)
            or set(item) != {"position", "card", "destination"}
            or not isinstance(item["position"], int)
            or not isinstance(item["card"], str)
            or not isinstance(item["destination"], str)
        ):
            raise FairnessError(
                f"{where}: dealt[{k}] must be {{'position': int, 'card': str, 'destination': str}}"
            )
        dealt.append(DealtCard(item["position"], item["card"], item["destination"]))
    return HandRecord(
        version=value["version"],
        table_id=value["table_id"],
        hand_id=value["hand_id"],
        sequence=value["sequence"],
        commitment=value["commitment"],
        seed_reveal=value["seed_reveal"],
        client_seeds=tuple(value["client_seeds"]),
        dealt=tuple(dealt),
        history_phh=value["history_phh"],
        previous_record_hash=value["previous_record_hash"],
        record_hash=value["record_hash"],
    )


def loads_records(text: str) -> list[HandRecord]:
    """Records from a file's text: one JSON object, a JSON array, or JSON lines."""
    stripped = text.strip()
    if not stripped:
        raise FairnessError("the file holds no hand record")
    try:
        whole = json.loads(stripped)
    except json.JSONDecodeError:
        whole = None
    else:
        if isinstance(whole, list):
            return [from_json(v, f"record {i}") for i, v in enumerate(whole)]
        return [from_json(whole)]
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FairnessError(f"line {number}: not JSON ({exc.msg})") from None
        records.append(from_json(value, f"line {number}"))
    return records


def dumps_records(records: Iterable[HandRecord]) -> str:
    """A JSON-lines chain file."""
    return "".join(r.dumps() + "\n" for r in records)
