"""Cards as small integers: ``rank * 4 + suit``.

Ranks ``2..A`` are 0..12 and suits ``c, d, h, s`` are 0..3, so ``2c`` is 0 and ``As``
is 51. This is the encoding phevaluator uses, which keeps differential tests simple.
Text form is rank then suit, ``"Ah"``, ``"Td"``; PHH writes hands as concatenated
cards (``"AhKd"``) and unknown cards as ``"??"``.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

from ludex.errors import CardError

RANKS: Final = "23456789TJQKA"
SUITS: Final = "cdhs"
DECK_SIZE: Final = 52
FULL_DECK: Final = tuple(range(DECK_SIZE))

Card = int


def card(text: str) -> Card:
    """``"Ah"`` → 50."""
    if len(text) != 2:
        raise CardError(f"card {text!r} must be a rank and a suit, like 'Ah' or 'Td'")
    rank, suit = RANKS.find(text[0].upper()), SUITS.find(text[1].lower())
    if rank < 0 or suit < 0:
        raise CardError(f"card {text!r}: rank must be one of {RANKS}, suit one of {SUITS}")
    return rank * 4 + suit


def cards(text: str) -> list[Card]:
    """``"AhKd 2c"`` → [50, 45, 0]; spaces are ignored; duplicates are refused."""
    compact = "".join(text.split())
    if len(compact) % 2:
        raise CardError(f"cards {text!r}: odd number of characters")
    result = [card(compact[i : i + 2]) for i in range(0, len(compact), 2)]
    if len(set(result)) != len(result):
        raise CardError(f"cards {text!r}: a card appears twice")
    return result


def card_str(value: Card) -> str:
    if not 0 <= value < DECK_SIZE:
        raise CardError(f"card id {value} is not in 0..51")
    return RANKS[value >> 2] + SUITS[value & 3]


def cards_str(values: Iterable[Card]) -> str:
    return "".join(card_str(v) for v in values)


def rank_of(value: Card) -> int:
    return value >> 2


def suit_of(value: Card) -> int:
    return value & 3


def check_distinct(values: Sequence[Card]) -> None:
    """Refuse out-of-range or repeated cards."""
    seen = 0
    for value in values:
        if not 0 <= value < DECK_SIZE:
            raise CardError(f"card id {value} is not in 0..51")
        bit = 1 << value
        if seen & bit:
            raise CardError(f"card {card_str(value)} appears twice")
        seen |= bit
